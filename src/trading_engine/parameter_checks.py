"""Every settings object the pipelines build from parameters, built once before the first node runs.

A `kedro run` with a typo or a bad value (`training.model=lstm`, `training.max_epochs=abc`) should
fail in seconds, with one message that names every problem, instead of after ingestion and
features have run again. `trading_engine.hooks.ParameterHooks` calls `check_parameters` in
`before_pipeline_run`.

The checks are a registry (`CHECKS`). Each one names the parameter section it reads and builds
that section's settings the way the pipelines do: with the settings class's own `from_params`
(TradingRule, CostModel, FoldSettings, TrainingConfig, EvaluationSettings, TuningSettings, the
tuning SearchSpace) or the public function that reads it (the model configs, ingestion, features).
No field list is copied here: a new field, a renamed one or a new rule in a class's
`__post_init__` is checked without a change to this module. Where a check has a settings
dataclass, its field types (read from the class) turn "'<' not supported between 'str' and 'int'"
into "training.max_epochs: 'abc' is not an integer".

Only the checks whose sections the run's pipeline reads (`params:...` inputs) run, so
`--pipelines ingestion` is not held up by a training typo.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import pandas as pd

from trading_engine.data.schema import normalise_symbol, timeframe_to_milliseconds
from trading_engine.errors import UserError
from trading_engine.evaluation.backtest import EvaluationSettings
from trading_engine.evaluation.selection import RuleSelectionSettings, rule_candidates
from trading_engine.features import compute_targets
from trading_engine.live.deployment import DeploySettings
from trading_engine.live.replay import ReplaySettings
from trading_engine.live.signals import SignalSettings
from trading_engine.models import MODELS, build_model
from trading_engine.sources import SOURCES, Window, download_settings
from trading_engine.sources.archive import ArchiveSettings
from trading_engine.sources.exchange import DownloadSettings, RetryPolicy
from trading_engine.trading import CostModel, TradingRule
from trading_engine.training import TrainingConfig
from trading_engine.training.splits import FoldSettings
from trading_engine.tuning import SearchSpace, TuningSettings, trial_training_params

MISSING = object()


class ParameterError(UserError):
    """One or more parameters that no pipeline could use; nothing has run."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"invalid parameters (nothing has run):\n{lines}\n"
                         "Fix them in conf/ or in --params, e.g. --params training.max_epochs=5")


@dataclass(frozen=True)
class SettingsCheck:
    section: str  # the parameters the settings are built from, dotted: "training.folds"
    build: Callable[[Mapping[str, Any]], Any]  # every parameter -> the settings; raises on a bad value
    settings_class: type | None = None  # the dataclass whose field types describe `section`
    also_reads: tuple[str, ...] = ()  # other sections the check reads (runs only when the run reads them)

    @property
    def reads(self) -> tuple[str, ...]:
        return (self.section, *self.also_reads)


def section(params: Mapping[str, Any], path: str, default: Any = None) -> Any:
    """params["a"]["b"] for path "a.b"; `default` where a key is missing."""
    node: Any = params
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return default
        node = node[key]
    return node


def _mapping(params: Mapping[str, Any], path: str) -> dict[str, Any]:
    value = section(params, path, {})
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{path} must be a mapping of parameters, got {value!r}")
    return dict(value)


# ------------------------------------------------------------------ the settings each pipeline builds


def _model_config(name: str, params: Mapping[str, Any]) -> Any:
    seq_len = section(params, "training.seq_len", TrainingConfig.seq_len)
    return build_model(name, n_features=1, seq_len=int(seq_len), hyper_parameters=_mapping(params, f"training.{name}")).config


def _rule_selection(params: Mapping[str, Any]) -> RuleSelectionSettings:
    """The settings, and every candidate of the grid over trading.rule is a valid rule."""
    settings = RuleSelectionSettings.from_params(_mapping(params, "evaluation.rule_selection"))
    rule_candidates(TradingRule.from_params(_mapping(params, "trading.rule")), settings.grid)
    return settings


def _search_space(params: Mapping[str, Any]) -> SearchSpace:
    settings = TuningSettings.from_params(_mapping(params, "tuning"))
    base = trial_training_params(_mapping(params, "training"), settings.trial_training)
    return SearchSpace.from_params(settings.search_space, base, _mapping(params, "trading"))


def _ingestion(params: Mapping[str, Any]) -> None:
    ingestion = _mapping(params, "ingestion")
    if ingestion.get("source") not in SOURCES:
        raise ValueError(f"unknown source {ingestion.get('source')!r}; choose one of {list(SOURCES)}")
    Window.from_parameters(ingestion)
    for name, parse in (("symbols", normalise_symbol), ("timeframes", timeframe_to_milliseconds)):
        values = ingestion.get(name)
        if not isinstance(values, list) or not values:
            raise ValueError(f"{name} must be a non-empty list, got {values!r}")
        for value in values:
            parse(value)


def _features(params: Mapping[str, Any]) -> None:
    features = _mapping(params, "features")
    if features.get("reference_symbol"):
        normalise_symbol(features["reference_symbol"])
    for name in ("warmup_bars", "reference_fill_limit"):
        value = features.get(name, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a whole number of bars >= 0, got {value!r}")
    keyword_arguments(compute_targets, _mapping(params, "features.targets"), "features.targets")
    compute_targets(pd.DataFrame({"close": [1.0, 1.0]}), **_mapping(params, "features.targets"))


def _horizon_is_a_target(params: Mapping[str, Any]) -> None:
    horizon = section(params, "training.horizon")
    horizons = section(params, "features.targets.horizons") or []
    if horizon not in horizons:
        raise ValueError(f"{horizon!r} is not a target horizon; choose one of features.targets.horizons "
                         f"{list(horizons)}")


def _timeframe_is_ingested(params: Mapping[str, Any]) -> None:
    timeframe = section(params, "training.timeframe")
    timeframes = section(params, "ingestion.timeframes") or []
    if timeframe is not None and timeframe not in timeframes:
        raise ValueError(f"{timeframe!r} is not ingested; choose one of ingestion.timeframes {list(timeframes)}")


def keyword_arguments(function: Callable[..., Any], given: Mapping[str, Any], where: str) -> None:
    """Fail on a key of `given` that is not an optional argument of `function`."""
    known = {name for name, parameter in inspect.signature(function).parameters.items()
             if parameter.kind in (parameter.KEYWORD_ONLY, parameter.POSITIONAL_OR_KEYWORD)
             and parameter.default is not parameter.empty}
    unknown = sorted(set(given) - known)
    if unknown:
        raise ValueError(f"unknown {where} parameters {unknown}; known: {sorted(known)}")


CHECKS: tuple[SettingsCheck, ...] = (
    SettingsCheck("trading.rule", lambda p: TradingRule.from_params(_mapping(p, "trading.rule")), TradingRule),
    SettingsCheck("trading.costs", lambda p: CostModel.from_params(_mapping(p, "trading.costs")), CostModel),
    SettingsCheck("training.folds", lambda p: FoldSettings.from_params(_mapping(p, "training.folds")), FoldSettings),
    *(SettingsCheck(f"training.{name}", partial(_model_config, name), config_class)
      for name, (config_class, _) in MODELS.items()),
    SettingsCheck("training", lambda p: TrainingConfig.from_params(_mapping(p, "training")), TrainingConfig),
    SettingsCheck("evaluation.settings",
                  lambda p: EvaluationSettings.from_params(_mapping(p, "evaluation.settings"),
                                                           section(p, "training.horizon", 1)),
                  EvaluationSettings, also_reads=("training.horizon",)),
    SettingsCheck("evaluation.rule_selection", _rule_selection, RuleSelectionSettings, also_reads=("trading.rule",)),
    SettingsCheck("tuning", lambda p: TuningSettings.from_params(_mapping(p, "tuning")), TuningSettings),
    SettingsCheck("tuning.search_space", _search_space, SearchSpace, also_reads=("training", "trading")),
    SettingsCheck("ingestion.download", lambda p: download_settings(_mapping(p, "ingestion")), DownloadSettings),
    SettingsCheck("ingestion.retry", lambda p: RetryPolicy(**_mapping(p, "ingestion.retry")), RetryPolicy),
    SettingsCheck("ingestion.archive", lambda p: ArchiveSettings(**_mapping(p, "ingestion.archive")), ArchiveSettings),
    SettingsCheck("ingestion", _ingestion),
    SettingsCheck("deploy", lambda p: DeploySettings.from_params(_mapping(p, "deploy")), DeploySettings),
    SettingsCheck("signals", lambda p: SignalSettings.from_params(_mapping(p, "signals")), SignalSettings),
    SettingsCheck("replay", lambda p: ReplaySettings.from_params(_mapping(p, "replay")), ReplaySettings),
    SettingsCheck("features", _features),
    SettingsCheck("training.horizon", _horizon_is_a_target, also_reads=("features.targets.horizons",)),
    SettingsCheck("training.timeframe", _timeframe_is_ingested, also_reads=("ingestion.timeframes",)),
)


# ------------------------------------------------------------------ running the checks


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def sections_read(dataset_names: Iterable[str]) -> set[str] | None:
    """The parameter sections a pipeline reads, from its inputs (`params:training` -> training);
    None when it reads every parameter (`parameters`)."""
    names = set(dataset_names)
    if "parameters" in names:
        return None
    return {name.removeprefix("params:") for name in names if name.startswith("params:")}


def parameter_problems(params: Mapping[str, Any], read: set[str] | None = None,
                       checks: Sequence[SettingsCheck] = CHECKS) -> list[str]:
    """One line per problem, from the checks whose sections are all read (`read`: sections; None:
    every check). A parent's settings build its children's (TrainingConfig builds FoldSettings), so
    the same failure found by both is listed once."""
    problems: dict[tuple[str, ...], str] = {}
    failed: list[str] = []
    for check in checks:
        if read is not None and not all(any(_overlaps(wanted, r) for r in read) for wanted in check.reads):
            continue
        if any(_overlaps(input_section, bad) for input_section in check.also_reads for bad in failed):
            continue  # its other inputs are wrong already: what it found would be a consequence
        found = _check(check, params)
        if found:
            failed.append(check.section)
        for location, description, is_type in found:
            key = (location, description) if is_type else (description,)
            problems.setdefault(key, description if description.startswith(location) else f"{location}: {description}")
    return list(problems.values())


def check_parameters(params: Mapping[str, Any], read: set[str] | None = None) -> None:
    """Raise ParameterError listing every problem; nothing when all settings build."""
    problems = parameter_problems(params, read)
    if problems:
        raise ParameterError(problems)


def _check(check: SettingsCheck, params: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    """(where, what is wrong, whether it is a type problem) for each problem of one check."""
    given = section(params, check.section, MISSING)
    try:
        built = check.build(params)
    except (ValueError, TypeError, KeyError) as error:
        mistyped = []
        if check.settings_class is not None and isinstance(given, Mapping):
            mistyped = type_problems(given, check.settings_class, check.section, lenient=True)
        if not mistyped:
            return [(check.section, _message(error), False)]
        try:  # what else is wrong, once the mistyped values are left to their defaults
            check.build(_without(params, [location for location, _, _ in mistyped]))
        except (ValueError, TypeError, KeyError) as other:
            return [*mistyped, (check.section, _message(other), False)]
        return mistyped
    if check.settings_class is not None and isinstance(given, Mapping) and dataclasses.is_dataclass(built):
        return built_type_problems(built, given, check.section)
    return []


def _without(params: Mapping[str, Any], locations: Iterable[str]) -> dict[str, Any]:
    """A copy of `params` without the values at the dotted `locations`."""
    result = copy.deepcopy(dict(params))
    for location in locations:
        *parents, leaf = location.split(".")
        node = section(result, ".".join(parents)) if parents else result
        if isinstance(node, dict):
            node.pop(leaf, None)
    return result


def _message(error: BaseException) -> str:
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    return text or type(error).__name__


# ------------------------------------------------------------------ field types, read from the dataclasses


def type_problems(given: Mapping[str, Any], settings_class: type, path: str,
                  lenient: bool) -> list[tuple[str, str, bool]]:
    """Values of `given` whose key is a field of `settings_class` and whose type is not the field's
    (nested dataclass fields are followed into their mappings). `lenient`: a number written as a
    string is accepted where a float is expected (from_params may convert it)."""
    problems = []
    hints = typing.get_type_hints(settings_class)
    for field in dataclasses.fields(settings_class):
        if field.name not in given:
            continue
        value, hint, where = given[field.name], hints[field.name], f"{path}.{field.name}"
        nested = _dataclass_of(hint)
        if nested is not None and isinstance(value, Mapping):
            problems.extend(type_problems(value, nested, where, lenient))
        elif not conforms(value, hint, lenient):
            problems.append((where, f"{value!r} is not {describe(hint)}", True))
    return problems


def built_type_problems(built: Any, given: Mapping[str, Any], path: str) -> list[tuple[str, str, bool]]:
    """Fields of a built settings object (that were given as parameters) whose value does not have
    the field's type, e.g. a float where an int is needed."""
    problems = []
    hints = typing.get_type_hints(type(built))
    for field in dataclasses.fields(built):
        if field.name not in given:
            continue
        value, where = getattr(built, field.name), f"{path}.{field.name}"
        if dataclasses.is_dataclass(value) and isinstance(given[field.name], Mapping):
            problems.extend(built_type_problems(value, given[field.name], where))
        elif not conforms(value, hints[field.name], lenient=False):
            problems.append((where, f"{given[field.name]!r} is not {describe(hints[field.name])}", True))
    return problems


def _dataclass_of(hint: Any) -> type | None:
    options = typing.get_args(hint) if _is_union(hint) else (hint,)
    return next((option for option in options if isinstance(option, type) and dataclasses.is_dataclass(option)), None)


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _is_number_text(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return isinstance(value, str)


def conforms(value: Any, hint: Any, lenient: bool) -> bool:
    """Whether `value` has the type `hint` names (types this module does not know pass)."""
    if hint is Any:
        return True
    if _is_union(hint):
        return any(conforms(value, option, lenient) for option in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return (isinstance(value, int | float) and not isinstance(value, bool)) or (lenient and _is_number_text(value))
    if hint is str:
        return isinstance(value, str)
    origin = typing.get_origin(hint) or hint
    if isinstance(origin, type) and dataclasses.is_dataclass(origin):
        return isinstance(value, Mapping | origin)
    if origin in (dict, Mapping):
        return isinstance(value, Mapping)
    if origin in (list, tuple, Sequence):
        return isinstance(value, list | tuple)
    return True


def describe(hint: Any) -> str:
    if _is_union(hint):
        return " or ".join(describe(option) for option in typing.get_args(hint))
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null"}
    if hint in names:
        return names[hint]
    origin = typing.get_origin(hint) or hint
    if origin in (dict, Mapping) or (isinstance(origin, type) and dataclasses.is_dataclass(origin)):
        return "a mapping"
    if origin in (list, tuple, Sequence):
        return "a list"
    return getattr(hint, "__name__", str(hint))


# ------------------------------------------------------------------ --params


def single_values_as_lists(runtime: Mapping[str, Any], configured: Any) -> dict[str, Any]:
    """Runtime parameters (`--params`) in which a single value given for a parameter that the
    configuration holds as a list becomes a one-element list: `ingestion.symbols=XRP/USDT:USDT`
    means `[XRP/USDT:USDT]`, not the characters of the string."""
    result = {}
    for key, value in runtime.items():
        configured_value = configured.get(key) if isinstance(configured, Mapping) else None
        if isinstance(value, Mapping):
            result[key] = single_values_as_lists(value, configured_value)
        elif isinstance(configured_value, list) and value is not None and not isinstance(value, list | tuple):
            result[key] = [value]
        else:
            result[key] = value
    return result
