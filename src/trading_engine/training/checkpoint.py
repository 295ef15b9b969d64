"""A Kedro dataset for one fold model's checkpoint (a dict of plain values and tensors, see
`FoldModel.to_checkpoint`). It saves with `torch.save` and loads with `weights_only=True`, so
loading never runs pickled code. Used per fold under a PartitionedDataset (`fold_models`)."""

from __future__ import annotations

import io
from pathlib import PurePosixPath
from typing import Any

import fsspec
import torch
from kedro.io.core import AbstractDataset, get_filepath_str, get_protocol_and_path


class TorchCheckpointDataset(AbstractDataset[dict[str, Any], dict[str, Any]]):
    """catalog.yml: `type: trading_engine.training.checkpoint.TorchCheckpointDataset`, `filepath: ...pt`."""

    def __init__(self, *, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        protocol, path = get_protocol_and_path(filepath)
        self._protocol = protocol
        self._filepath = PurePosixPath(path)
        self._fs = fsspec.filesystem(protocol, **({"auto_mkdir": True} if protocol == "file" else {}))
        self.metadata = metadata

    def load(self) -> dict[str, Any]:
        with self._fs.open(get_filepath_str(self._filepath, self._protocol), "rb") as file:
            return torch.load(io.BytesIO(file.read()), map_location="cpu", weights_only=True)

    def save(self, data: dict[str, Any]) -> None:
        buffer = io.BytesIO()
        torch.save(data, buffer)
        with self._fs.open(get_filepath_str(self._filepath, self._protocol), "wb") as file:
            file.write(buffer.getvalue())

    def _exists(self) -> bool:
        return self._fs.exists(get_filepath_str(self._filepath, self._protocol))

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "protocol": self._protocol}
