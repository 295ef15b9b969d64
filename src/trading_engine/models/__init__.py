"""Sequence models over windows of features: same batch in (B, seq_len, n_features), same three
heads out (`ModelOutput`). Choose one by name with `build_model`."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from torch import nn

from trading_engine.models.heads import (
    CLASS_NAMES,
    IGNORE_CLASS,
    LossParts,
    LossWeights,
    ModelOutput,
    PredictionHeads,
    multitask_loss,
)
from trading_engine.models.tcn import TCN, TCNConfig
from trading_engine.models.transformer import Transformer, TransformerConfig

MODELS: dict[str, tuple[type, type[nn.Module]]] = {
    "transformer": (TransformerConfig, Transformer),
    "tcn": (TCNConfig, TCN),
}


def build_model(name: str, n_features: int, seq_len: int, hyper_parameters: dict[str, Any] | None = None) -> nn.Module:
    """A fresh model: `name` is a key of MODELS; `hyper_parameters` are fields of its config."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    config_class, model_class = MODELS[name]
    hyper_parameters = dict(hyper_parameters or {})
    known = set(config_class.__dataclass_fields__) - {"n_features", "seq_len"}
    unknown = set(hyper_parameters) - known
    if unknown:
        raise ValueError(f"unknown {name} hyper-parameters {sorted(unknown)}; known: {sorted(known)}")
    return model_class(config_class(n_features=n_features, seq_len=seq_len, **hyper_parameters))


def model_config_dict(model: nn.Module) -> dict[str, Any]:
    """The model's config as plain values (what a checkpoint stores to rebuild it)."""
    return asdict(model.config)


__all__ = [
    "CLASS_NAMES", "IGNORE_CLASS", "MODELS", "TCN", "LossParts", "LossWeights", "ModelOutput",
    "PredictionHeads", "TCNConfig", "Transformer", "TransformerConfig", "build_model",
    "model_config_dict", "multitask_loss",
]
