"""The search space: parsed from `tuning.search_space`, validated before the first trial, sampled
with Optuna and applied to the training and trading parameters.

The space mirrors the parameter files. A leaf is a mapping with a `type`; its path is the Optuna
parameter name and the place its value goes, e.g.

    search_space:
      training:
        learning_rate: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
        transformer:
          d_model: {type: categorical, choices: [16, 32]}
      trading:
        rule:
          confidence_threshold: {type: float, low: 0.0, high: 0.6}

gives the parameters `training.learning_rate`, `training.transformer.d_model` and
`trading.rule.confidence_threshold`. An entry set to null is not searched (an environment can drop
a parameter that base searches). Entry keys:

- `type`: int | float | categorical
- int / float: `low`, `high` (both inclusive), optional `log` (false) and `step` (not with log)
- categorical: `choices`, a non-empty list of numbers, strings or booleans

Only keys that exist in `params:training` (except the ones that fix the experiment: model,
timeframe, folds, device, num_threads, seed, progress; and the sections of models not in use) and in
`params:trading.rule` can be searched. The transformer's `n_heads` must divide `d_model` for every
pair of values the search can draw; a space that breaks any rule fails here, before any trial.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from trading_engine.models import MODELS
from trading_engine.trading import TradingRule
from trading_engine.training import TrainingConfig

TYPES = ("int", "float", "categorical")
ENTRY_KEYS = {"type", "low", "high", "step", "log", "choices"}
ROOTS = ("training", "trading.rule")
# Keys of params:training that define the experiment rather than the model: never searched.
FIXED_TRAINING_KEYS = ("model", "timeframe", "folds", "device", "num_threads", "seed", "progress")
# (width, heads) pairs of a model's config where heads must divide the width.
DIVISIBLE_PAIRS = {"transformer": [("d_model", "n_heads")]}
# Largest integer range enumerated to check the divisibility rule.
MAX_ENUMERATED_VALUES = 100_000


class SearchSpaceError(ValueError):
    """A search-space entry that cannot be searched; raised before the first trial."""


@dataclass(frozen=True)
class ParameterSpec:
    name: str  # dotted path, e.g. training.transformer.d_model
    type: str  # int | float | categorical
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None

    @classmethod
    def from_entry(cls, name: str, entry: Mapping[str, Any]) -> ParameterSpec:
        unknown = set(entry) - ENTRY_KEYS
        if unknown:
            raise SearchSpaceError(f"{name}: unknown keys {sorted(unknown)}; an entry has {sorted(ENTRY_KEYS)}")
        kind = entry.get("type")
        if kind not in TYPES:
            raise SearchSpaceError(f"{name}: unknown type {kind!r}; use one of {TYPES}")
        if kind == "categorical":
            return cls._categorical(name, entry)
        if "choices" in entry:
            raise SearchSpaceError(f"{name}: `choices` belongs to type categorical, not {kind}")
        if "low" not in entry or "high" not in entry:
            raise SearchSpaceError(f"{name}: type {kind} needs `low` and `high`")
        number = int if kind == "int" else float
        low, high = (_number(name, key, entry[key], number) for key in ("low", "high"))
        step = None if entry.get("step") is None else _number(name, "step", entry["step"], number)
        log = entry.get("log", False)
        if not isinstance(log, bool):
            raise SearchSpaceError(f"{name}: `log` must be true or false, got {log!r}")
        if low > high:
            raise SearchSpaceError(f"{name}: low {low} > high {high}")
        if log and low <= 0:
            raise SearchSpaceError(f"{name}: a log scale needs low > 0, got {low}")
        if log and step is not None:
            raise SearchSpaceError(f"{name}: `step` and `log: true` cannot be combined")
        if step is not None and step <= 0:
            raise SearchSpaceError(f"{name}: step must be > 0, got {step}")
        return cls(name, kind, low, high, step, log)

    @classmethod
    def _categorical(cls, name: str, entry: Mapping[str, Any]) -> ParameterSpec:
        extra = {"low", "high", "step", "log"} & set(entry)
        if extra:
            raise SearchSpaceError(f"{name}: type categorical takes `choices` only, not {sorted(extra)}")
        choices = entry.get("choices")
        if not isinstance(choices, list | tuple) or not choices:
            raise SearchSpaceError(f"{name}: type categorical needs a non-empty list of `choices`")
        for choice in choices:
            if not isinstance(choice, bool | int | float | str):
                raise SearchSpaceError(f"{name}: choice {choice!r} is not a number, string or boolean")
        if len(set(choices)) != len(choices):
            raise SearchSpaceError(f"{name}: repeated choices in {list(choices)}")
        return cls(name, "categorical", choices=tuple(choices))

    def distribution(self) -> BaseDistribution:
        if self.type == "categorical":
            return CategoricalDistribution(self.choices)
        if self.type == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, self.choices)
        if self.type == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def extremes(self) -> tuple[Any, ...]:
        """The values that bound what a trial can draw: low and high, or every choice."""
        return self.choices if self.type == "categorical" else (self.low, self.high)

    def values(self) -> tuple[Any, ...] | None:
        """Every value a trial can draw; None for a float range."""
        if self.type == "categorical":
            return self.choices
        if self.type == "float":
            return None
        distribution = self.distribution()
        count = (distribution.high - distribution.low) // distribution.step + 1
        if count > MAX_ENUMERATED_VALUES:
            return None
        return tuple(range(distribution.low, distribution.high + 1, distribution.step))


@dataclass(frozen=True)
class SearchSpace:
    parameters: tuple[ParameterSpec, ...]

    @classmethod
    def from_params(cls, space: Mapping[str, Any] | None, training: Mapping[str, Any],
                    trading: Mapping[str, Any]) -> SearchSpace:
        """Parse and validate `tuning.search_space` against the training and trading parameters
        the trials start from; raise SearchSpaceError with the entry's name on the first problem."""
        targets = {"training": dict(training), "trading": {"rule": dict(trading.get("rule") or {})}}
        parameters = tuple(ParameterSpec.from_entry(name, entry) for name, entry in space_entries(space or {}))
        if not parameters:
            raise SearchSpaceError("the search space is empty: give at least one entry under tuning.search_space")
        model = targets["training"].get("model", TrainingConfig.model)
        for spec in parameters:
            _check_name(spec.name, targets, model)
        result = cls(parameters)
        result._check_divisible_pairs(targets, model)
        result._check_configurations(targets)
        return result

    @property
    def names(self) -> list[str]:
        return [spec.name for spec in self.parameters]

    def max_value(self, name: str) -> Any | None:
        """The largest value `name` can take, or None when it is not searched."""
        for spec in self.parameters:
            if spec.name == name:
                return max(spec.extremes())
        return None

    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        """Draw every parameter of the space for `trial`, in the order of the space."""
        return {spec.name: spec.suggest(trial) for spec in self.parameters}

    @staticmethod
    def apply(values: Mapping[str, Any], training: Mapping[str, Any],
              trading: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Copies of the training and trading parameters with `values` (dotted names) set."""
        targets = {"training": copy.deepcopy(dict(training)), "trading": copy.deepcopy(dict(trading))}
        for name, value in values.items():
            *parents, leaf = name.split(".")
            node = targets
            for key in parents:
                node = node.setdefault(key, {})
            node[leaf] = value
        return targets["training"], targets["trading"]

    def _check_divisible_pairs(self, targets: Mapping[str, Any], model: str) -> None:
        section = targets["training"].get(model) or {}
        for width, heads in DIVISIBLE_PAIRS.get(model, []):
            width_name, heads_name = f"training.{model}.{width}", f"training.{model}.{heads}"
            width_values = self._possible_values(width_name, section.get(width))
            heads_values = self._possible_values(heads_name, section.get(heads))
            bad = [(w, h) for w, h in itertools.product(width_values, heads_values)
                   if not (isinstance(w, int) and isinstance(h, int) and h > 0 and w % h == 0)]
            if bad:
                shown = ", ".join(f"{width} {w} / {heads} {h}" for w, h in bad[:5])
                raise SearchSpaceError(
                    f"{heads_name} must divide {width_name} for every value the search can draw; "
                    f"it does not for {shown}{' ...' if len(bad) > 5 else ''}. Use choices of "
                    f"{heads} that divide every choice of {width} (e.g. powers of two)")

    def _possible_values(self, name: str, fixed: Any) -> tuple[Any, ...]:
        for spec in self.parameters:
            if spec.name == name:
                values = spec.values()
                if values is None:
                    raise SearchSpaceError(f"{name} must be an int range of at most {MAX_ENUMERATED_VALUES} "
                                           f"values or categorical, not type {spec.type}")
                return values
        return (fixed,)

    def _check_configurations(self, targets: Mapping[str, Any]) -> None:
        """Every bound of every entry (the others at their first bound) must make a valid training
        config, model config and trading rule."""
        first = {spec.name: spec.extremes()[0] for spec in self.parameters}
        for spec in self.parameters:
            for value in spec.extremes():
                training, trading = self.apply({**first, spec.name: value}, targets["training"], targets["trading"])
                try:
                    config = TrainingConfig.from_params(training)
                    MODELS[config.model][0](n_features=1, seq_len=config.seq_len, **config.model_params)
                    TradingRule.from_params(trading["rule"])
                except (TypeError, ValueError) as error:
                    raise SearchSpaceError(f"{spec.name} = {value!r} gives an invalid configuration: {error}") from error


def _number(name: str, key: str, value: Any, number: type) -> int | float:
    """An int or float entry value; YAML 1.1 reads 1e-4 as a string, so numeric strings are accepted."""
    if isinstance(value, bool):
        raise SearchSpaceError(f"{name}: {key} must be a number, got {value!r}")
    try:
        converted = float(value)
    except (TypeError, ValueError):
        raise SearchSpaceError(f"{name}: {key} must be a number, got {value!r}") from None
    if not math.isfinite(converted):
        raise SearchSpaceError(f"{name}: {key} must be finite, got {value!r}")
    if number is int:
        if converted != int(converted):
            raise SearchSpaceError(f"{name}: {key} of an int entry must be a whole number, got {value!r}")
        return int(converted)
    return converted


def space_entries(space: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(dotted name, entry) of every leaf: a mapping with a `type`; null leaves are skipped."""
    if not isinstance(space, Mapping):
        raise SearchSpaceError(f"{prefix or 'search_space'}: expected a mapping, got {space!r}")
    for key, value in space.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if value is None:
            continue
        if not isinstance(value, Mapping):
            raise SearchSpaceError(f"{name}: expected an entry with a `type` or a section, got {value!r}")
        if "type" in value:
            yield name, value
        else:
            yield from space_entries(value, name)


def _check_name(name: str, targets: Mapping[str, Any], model: str) -> None:
    if not any(name.startswith(f"{root}.") for root in ROOTS):
        raise SearchSpaceError(f"unknown parameter {name!r}: a searched name starts with one of "
                               f"{[root + '.' for root in ROOTS]}")
    parts = name.split(".")
    if parts[0] == "training":
        if parts[1] in FIXED_TRAINING_KEYS:
            raise SearchSpaceError(f"{name} fixes the experiment and cannot be searched "
                                   f"(fixed: {', '.join(FIXED_TRAINING_KEYS)})")
        if parts[1] in MODELS and parts[1] != model:
            raise SearchSpaceError(f"{name} is not used: training.model is {model!r}")
    node: Any = targets
    for depth, key in enumerate(parts):
        if not isinstance(node, Mapping) or key not in node:
            where = ".".join(parts[:depth]) or "the parameters"
            known = sorted(node) if isinstance(node, Mapping) else []
            raise SearchSpaceError(f"unknown parameter {name!r}: {where} has no key {key!r}; known: {known}")
        node = node[key]
    if isinstance(node, Mapping):
        raise SearchSpaceError(f"{name} is a section, not a value: search its keys instead")
