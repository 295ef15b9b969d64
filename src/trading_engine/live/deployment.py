"""The deployed model: one self-contained, versioned artifact, and the pointer that says which
version is in use.

The artifact (a dict of plain values and tensors, read back with `torch.load(...,
weights_only=True)`, so loading never runs pickled code) holds everything a live decision needs
and nothing it must look up elsewhere:

* the model (`FoldModel.to_checkpoint`: weights, model config, the scaler, the return scale, the
  feature list, the window length), refitted on every bar available, purged at the end;
* the series and timeframe it trades, the horizon it forecasts, the feature recipe
  (`window.FeatureRecipe`);
* the trading rule the evaluation chose for it (the model's last fold's rule, the one the
  holdout traded) with every parameter, and the cost model;
* the data range it saw, the evaluation's metrics, and a hash of the code (every `.py` file of
  the package) and of the configuration.

`DeployedModelDataset` is a Kedro versioned dataset (`versioned: true`): every deploy writes
`<filepath>/<version>/<name>` and points `<pointer>` (a small JSON file) at it. Loading
without an explicit version (`--load-versions`) loads the version the pointer names, not the
latest one, so that a rollback (`DeploymentRegistry.roll_back`, `python -m trading_engine
rollback`) is one command and takes effect at the next signals run.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
import torch
from kedro.io.core import AbstractVersionedDataset, DatasetError, Version

from trading_engine.data.schema import timeframe_to_timedelta
from trading_engine.live.window import FeatureRecipe
from trading_engine.params import known_params
from trading_engine.trading.costs import CostModel
from trading_engine.trading.rule import TradingRule
from trading_engine.training.fold_model import FoldModel

ARTIFACT_FORMAT = "trading_engine.deployed_model/1"
PACKAGE_DIR = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class DeploySettings:
    """`params:deploy` (conf/base/parameters_deploy.yml)."""

    epochs: int | None = None  # of the refit on all bars; None: what early stopping chose on the last fold

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> DeploySettings:
        return cls(**known_params(params, cls, "deploy parameters"))


class NoDeploymentError(DatasetError):
    """No model has been deployed yet (or the pointer names a version that is gone)."""


def code_hash(package_dir: Path = PACKAGE_DIR) -> str:
    """SHA-256 of every `.py` file of the package (paths and contents, in path order)."""
    digest = hashlib.sha256()
    for path in sorted(package_dir.rglob("*.py")):
        digest.update(path.relative_to(package_dir).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def config_hash(configuration: Mapping[str, Any]) -> str:
    """SHA-256 of the configuration as canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(configuration, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class DeployedModel:
    """A loaded artifact: the model and what its decisions need."""

    version: str
    model: FoldModel
    series: list[str]
    timeframe: str
    horizon: int
    rule: TradingRule
    costs: CostModel
    features: FeatureRecipe
    card: dict[str, Any] = field(default_factory=dict)  # the data range, metrics, hashes (people)

    @property
    def feature_names(self) -> list[str]:
        return self.model.feature_names

    @property
    def seq_len(self) -> int:
        return self.model.seq_len

    @property
    def bar(self) -> pd.Timedelta:
        return timeframe_to_timedelta(self.timeframe)

    @classmethod
    def from_artifact(cls, artifact: Mapping[str, Any], version: str) -> DeployedModel:
        if artifact.get("format") != ARTIFACT_FORMAT:
            raise ValueError(f"not a deployed-model artifact (format {artifact.get('format')!r})")
        return cls(version=version, model=FoldModel.from_checkpoint(artifact["model"]),
                   series=list(artifact["series"]), timeframe=str(artifact["timeframe"]),
                   horizon=int(artifact["horizon"]), rule=TradingRule.from_params(artifact["rule"]),
                   costs=CostModel.from_params(artifact["costs"]),
                   features=FeatureRecipe.from_dict(artifact["features"]), card=model_card(artifact))


def build_artifact(checkpoint: Mapping[str, Any], *, series: list[str], timeframe: str, horizon: int,
                   rule: TradingRule, costs: CostModel, features: FeatureRecipe, data_range: Mapping[str, Any],
                   evaluation: Mapping[str, Any], training: Mapping[str, Any]) -> dict[str, Any]:
    """The artifact of a model checkpoint (`FoldModel.to_checkpoint()`) and what it trades with;
    `evaluation` is what the evaluation that chose the rule measured, `training` the training
    configuration and epochs. The configuration hash covers everything that shapes a decision."""
    configuration = {"series": list(series), "timeframe": timeframe, "horizon": int(horizon), "rule": asdict(rule),
                     "costs": asdict(costs), "features": features.to_dict(), "training": dict(training)}
    return {
        "format": ARTIFACT_FORMAT,
        "model": dict(checkpoint),
        **configuration,
        "feature_names": list(checkpoint["feature_names"]),
        "rule_description": rule.describe(horizon),
        "data_range": dict(data_range),
        "evaluation": dict(evaluation),
        "code_hash": code_hash(),
        "config_hash": config_hash(configuration),
        "created_at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
    }


def model_card(artifact: Mapping[str, Any]) -> dict[str, Any]:
    """Everything in the artifact but the weights and the scaler (JSON, for people)."""
    card = {key: value for key, value in artifact.items() if key != "model"}
    checkpoint = artifact["model"]
    card["model"] = {key: checkpoint[key] for key in ("model_name", "model_config", "return_scale", "seq_len", "fold")
                     if key in checkpoint}
    return json.loads(json.dumps(card, default=str))


# ------------------------------------------------------------------ versions and the pointer


class DeploymentRegistry:
    """The versions of a deployed-model dataset (`<filepath>/<version>/<name>`) and the pointer
    file that names the one in use, with the history of what it pointed at."""

    def __init__(self, filepath: str | os.PathLike, pointer: str | os.PathLike) -> None:
        self.filepath = Path(filepath)
        self.pointer = Path(pointer)

    def versions(self) -> list[str]:
        """Every stored version, oldest first (Kedro's versions sort by time)."""
        if not self.filepath.is_dir():
            return []
        return sorted(p.name for p in self.filepath.iterdir() if (p / self.filepath.name).is_file())

    def path_of(self, version: str) -> Path:
        return self.filepath / version / self.filepath.name

    def record(self) -> dict[str, Any]:
        if not self.pointer.is_file():
            return {"version": None, "history": []}
        try:
            return json.loads(self.pointer.read_text())
        except ValueError as error:
            raise NoDeploymentError(f"cannot read the deployment pointer {self.pointer}: {error}") from error

    def deployed(self) -> str | None:
        """The version in use, or None before the first deploy."""
        return self.record().get("version")

    def point(self, version: str, action: str) -> None:
        """Point at `version` (atomically: temporary file, fsync, rename)."""
        if version not in self.versions():
            raise NoDeploymentError(f"no deployed-model version {version!r} under {self.filepath}; "
                                    f"have {self.versions()}")
        record = self.record()
        history = list(record.get("history", []))
        history.append({"version": version, "action": action,
                        "at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds")})
        self.pointer.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.pointer.with_name(f".{self.pointer.name}.{os.getpid()}.tmp")
        with open(temporary, "w") as handle:
            json.dump({"version": version, "history": history}, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.pointer)

    def roll_back(self, to: str | None = None) -> str:
        """Point at `to`, or at the version in use before the current one. -> the version."""
        current = self.deployed()
        if current is None:
            raise NoDeploymentError(f"nothing is deployed ({self.pointer} does not exist): nothing to roll back")
        if to is None:
            earlier = [entry["version"] for entry in self.record().get("history", [])
                       if entry["version"] != current]
            if not earlier:
                raise NoDeploymentError(f"{current} is the only version ever deployed: nothing to roll back to; "
                                        f"stored versions: {self.versions()}")
            to = earlier[-1]
        self.point(to, "rollback")
        return to


class DeployedModelDataset(AbstractVersionedDataset[dict[str, Any], DeployedModel]):
    """catalog.yml:

    ```yaml
    deployed_model:
      type: trading_engine.live.deployment.DeployedModelDataset
      filepath: data/06_models/deployed_model.pt
      pointer: data/06_models/deployed.json
      versioned: true
    ```

    `save(artifact)` writes a new version and points at it; `load()` gives the `DeployedModel`
    the pointer names (or the version given with `--load-versions deployed_model:<version>`)."""

    def __init__(self, *, filepath: str, pointer: str, version: Version | None = None,
                 metadata: dict[str, Any] | None = None) -> None:
        if version is None:
            raise DatasetError("a DeployedModelDataset must be versioned (versioned: true in the catalog)")
        super().__init__(PurePosixPath(filepath), version)
        self.registry = DeploymentRegistry(filepath, pointer)
        self.metadata = metadata

    def resolve_load_version(self) -> str | None:
        if self._version.load:
            return self._version.load
        deployed = self.registry.deployed()
        if deployed is None:
            raise NoDeploymentError(f"no model is deployed ({self.registry.pointer} does not exist): run "
                                    "`kedro run --pipelines deploy` first")
        return deployed

    def load(self) -> DeployedModel:
        version = self.resolve_load_version()
        path = self.registry.path_of(version)
        if not path.is_file():
            raise NoDeploymentError(f"the deployed version {version!r} is missing ({path}); stored versions: "
                                    f"{self.registry.versions()}")
        artifact = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
        return DeployedModel.from_artifact(artifact, version)

    def save(self, data: dict[str, Any]) -> None:
        path = Path(str(self._get_save_path()))
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(data, buffer)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(temporary, "wb") as handle:
            handle.write(buffer.getvalue())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        self.registry.point(path.parent.name, "deploy")

    def _exists(self) -> bool:
        version = self._version.load or self.registry.deployed()
        return version is not None and self.registry.path_of(version).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "pointer": str(self.registry.pointer), "version": self._version}
