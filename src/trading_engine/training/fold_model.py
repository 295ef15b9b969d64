"""A fold's trained model with everything it needs to predict: its scaler, its return scale, the
feature names and the window length. It round-trips through a checkpoint of plain values and
tensors, so that `torch.load(..., weights_only=True)` reads it back."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from trading_engine.features.scaling import RobustScaler
from trading_engine.models import ModelOutput, build_model, model_config_dict
from trading_engine.training.windows import PooledSeries, gather_windows, window_offsets

CHECKPOINT_FORMAT = "trading_engine.fold_model/1"
PREDICTION_COLUMNS = ("timestamp", "series", "symbol", "timeframe", "fold", "segment",
                      "prob_down", "prob_flat", "prob_up", "pred_return", "confidence")
_LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if ctypes.util.find_library("c") else None


def release_freed_heap() -> None:
    """Hand the heap that glibc keeps after many freed tensors back to the system (what is left
    after an inference into preallocated outputs; docs/benchmarks.md, "The seed's example at full
    size"); a no-op where malloc_trim does not exist."""
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; full precision elsewhere."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class FoldModel:
    model: nn.Module
    model_name: str
    scaler: RobustScaler
    return_scale: float  # the regression head predicts target_ret / return_scale
    feature_names: list[str]
    seq_len: int
    fold: int

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def infer(self, scaled: torch.Tensor, end_rows: torch.Tensor, batch_size: int = 2048) -> ModelOutput:
        """Raw head outputs (float32, on the device) for the windows ending at `end_rows` of the
        scaled (N, F) table."""
        self.model.eval()
        offsets = window_offsets(self.seq_len, scaled.device)
        n, n_classes = len(end_rows), self.model.heads.classification.out_features
        # Written in place: no small results kept between the batches' large temporaries, which
        # would pin them in the heap (the batches then grow it instead of reusing it).
        result = ModelOutput(torch.empty(n, n_classes, device=scaled.device), torch.empty(n, device=scaled.device),
                             torch.empty(n, device=scaled.device))
        for start in range(0, n, batch_size):
            batch = end_rows[start:start + batch_size]
            with autocast(scaled.device):
                output = self.model(gather_windows(scaled, batch, offsets))
            for into, values in zip(result, output, strict=True):
                into[start:start + len(batch)] = values.float()
        release_freed_heap()
        return result

    def predict(self, frames: Mapping[str, pd.DataFrame], batch_size: int = 2048) -> pd.DataFrame:
        """Predictions for every bar of `frames` (model-input frames; targets not needed) that has a
        full window: timestamp, series, symbol, timeframe and the heads' outputs."""
        pooled = PooledSeries.from_frames(frames, horizon=None)
        if pooled.feature_names != self.feature_names:
            raise ValueError("the frames' feature columns differ from the ones the model was trained on")
        scaled = self.scaler.transform(torch.from_numpy(pooled.features).to(self.device))
        rows = np.flatnonzero(pooled.window_end_rows(self.seq_len))
        output = self.infer(scaled, torch.from_numpy(rows).to(self.device), batch_size)
        return prediction_frame(pooled, rows, output, self.return_scale)

    def to_checkpoint(self, **extra: Any) -> dict[str, Any]:
        """Weights, model config, scaler and the rest as plain values; `extra` must be plain too."""
        return {
            "format": CHECKPOINT_FORMAT,
            "model_name": self.model_name,
            "model_config": model_config_dict(self.model),
            "state_dict": {name: tensor.detach().cpu().clone() for name, tensor in self.model.state_dict().items()},
            "scaler": self.scaler.to_state(),
            "return_scale": float(self.return_scale),
            "feature_names": list(self.feature_names),
            "seq_len": int(self.seq_len),
            "fold": int(self.fold),
            **extra,
        }

    @classmethod
    def from_checkpoint(cls, checkpoint: Mapping[str, Any], device: torch.device | str = "cpu") -> FoldModel:
        if checkpoint.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"not a fold-model checkpoint (format {checkpoint.get('format')!r})")
        hyper_parameters = dict(checkpoint["model_config"])
        n_features, seq_len = hyper_parameters.pop("n_features"), hyper_parameters.pop("seq_len")
        model = build_model(checkpoint["model_name"], n_features, seq_len, hyper_parameters)
        model.load_state_dict(checkpoint["state_dict"])
        return cls(model.to(device).eval(), checkpoint["model_name"], RobustScaler.from_state(checkpoint["scaler"]),
                   float(checkpoint["return_scale"]), list(checkpoint["feature_names"]),
                   int(checkpoint["seq_len"]), int(checkpoint["fold"]))


def prediction_frame(
    pooled: PooledSeries,
    rows: np.ndarray,
    output: ModelOutput,
    return_scale: float,
    fold: int | None = None,
    segment: str | None = None,
) -> pd.DataFrame:
    """The predictions table (docs/architecture.md) for `rows` of the pooled table; the `fold` and
    `segment` columns only when given."""
    # To the CPU before float64: MPS has no float64.
    probabilities = torch.softmax(output.logits, dim=-1).cpu().double().numpy()
    series_index = pooled.series_index[rows]
    frame = pd.DataFrame({
        "timestamp": pd.to_datetime(pooled.timestamps[rows], unit="ns", utc=True),
        "series": np.asarray(pooled.keys, dtype=object)[series_index],
        "symbol": np.asarray(pooled.symbols, dtype=object)[series_index],
        "timeframe": np.asarray(pooled.timeframes, dtype=object)[series_index],
        "fold": np.full(len(rows), -1 if fold is None else fold, dtype=np.int64),
        "segment": segment,
        "prob_down": probabilities[:, 0],
        "prob_flat": probabilities[:, 1],
        "prob_up": probabilities[:, 2],
        "pred_return": output.pred_return.cpu().double().numpy() * return_scale,
        "confidence": torch.sigmoid(output.confidence_logit).cpu().double().numpy(),
    }, columns=list(PREDICTION_COLUMNS))
    if fold is None:
        frame = frame.drop(columns=["fold", "segment"])
    return frame
