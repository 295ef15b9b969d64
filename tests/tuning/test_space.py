"""The search space fails before the first trial on a bad entry, and draws only valid configurations."""

from __future__ import annotations

import copy

import optuna
import pytest

from tests.tuning.conftest import TINY_SPACE, project_parameters, tiny_training, tiny_tuning
from trading_engine.models import MODELS
from trading_engine.pipelines.tuning.nodes import run_tuning_study
from trading_engine.training import TrainingConfig
from trading_engine.tuning import (
    SearchSpace,
    SearchSpaceError,
    TuningSettings,
    trial_training_params,
)

TRADING = project_parameters()["trading"]


def space_with(entries: dict) -> dict:
    space = copy.deepcopy(TINY_SPACE)
    for section, values in entries.items():
        space.setdefault(section, {}).update(values)
    return space


@pytest.mark.parametrize(("entries", "message"), [
    ({"training": {"learning_rate": {"type": "float", "low": 0.1, "high": 0.01}}}, "low 0.1 > high 0.01"),
    ({"training": {"dropout_rate": {"type": "float", "low": 0.0, "high": 0.1}}}, "unknown parameter 'training.dropout_rate'"),
    ({"training": {"batch_size": {"type": "uniform", "low": 64, "high": 128}}}, "unknown type 'uniform'"),
    ({"training": {"batch_size": {"type": "int", "lo": 64, "high": 128}}}, "unknown keys ['lo']"),
    ({"training": {"transformer": {"d_model": {"type": "categorical", "choices": [16, 24]},
                                   "n_heads": {"type": "categorical", "choices": [2, 16]}}}},
     "must divide training.transformer.d_model"),
    ({"training": {"transformer": {"d_model": {"type": "int", "low": 16, "high": 20}}}}, "must divide"),
    ({"training": {"transformer": {"n_heads": {"type": "float", "low": 1, "high": 4}}}}, "must be an int range"),
    ({"training": {"weight_decay": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}}, "log scale needs low > 0"),
    ({"training": {"weight_decay": {"type": "float", "low": 0.1, "high": 0.2, "log": True, "step": 0.01}}},
     "cannot be combined"),
    ({"training": {"seq_len": {"type": "int", "low": 8.5, "high": 16}}}, "whole number"),
    ({"training": {"batch_size": {"type": "categorical", "choices": []}}}, "non-empty list"),
    ({"training": {"seed": {"type": "int", "low": 0, "high": 9}}}, "fixes the experiment"),
    ({"training": {"tcn": {"channels": {"type": "categorical", "choices": [8, 16]}}}}, "is not used"),
    ({"training": {"loss_weights": {"type": "float", "low": 0.1, "high": 1.0}}}, "is a section"),
    ({"trading": {"costs": {"taker_fee": {"type": "float", "low": 0.0, "high": 0.001}}}}, "unknown parameter"),
    ({"trading": {"rule": {"confidence_threshold": {"type": "float", "low": 0.0, "high": 1.5}}}},
     "confidence_threshold = 1.5 gives an invalid configuration"),
])
def test_a_bad_entry_fails_with_a_message_naming_it(entries, message):
    with pytest.raises(SearchSpaceError) as error:
        SearchSpace.from_params(space_with(entries), tiny_training(), TRADING)
    assert message in str(error.value)


def test_an_empty_space_fails_and_null_drops_an_entry():
    with pytest.raises(SearchSpaceError, match="empty"):
        SearchSpace.from_params({"training": {"learning_rate": None}}, tiny_training(), TRADING)
    space = space_with({"training": {"learning_rate": None}})
    assert "training.learning_rate" not in SearchSpace.from_params(space, tiny_training(), TRADING).names


def test_a_bad_space_fails_before_any_data_is_read_or_study_created(tmp_path):
    def must_not_load():
        raise AssertionError("the model input was read before the search space was validated")

    storage = tmp_path / "journal.log"
    tuning = tiny_tuning(str(storage), search_space=space_with({"training": {"learning_rate": {
        "type": "float", "low": 0.1, "high": 0.01}}}))
    with pytest.raises(SearchSpaceError, match="training.learning_rate"):
        run_tuning_study({"BTC_USDT_1h": must_not_load}, tiny_training(), TRADING, tuning)
    assert not storage.exists()


@pytest.mark.parametrize("env", ["base", "binance"])
def test_every_draw_of_the_project_spaces_is_a_valid_configuration(env):
    params = project_parameters(env)
    settings = TuningSettings.from_params(params["tuning"])
    base = trial_training_params(params["training"], settings.trial_training)
    space = SearchSpace.from_params(settings.search_space, base, params["trading"])
    assert {"training.transformer.d_model", "training.transformer.n_heads", "training.transformer.n_layers",
            "training.transformer.d_ff", "training.transformer.dropout", "training.learning_rate",
            "training.weight_decay", "training.batch_size", "training.seq_len",
            "training.loss_weights.classification", "training.loss_weights.regression",
            "training.loss_weights.confidence"} == set(space.names)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(40):
        trial = study.ask()
        values = space.sample(trial)
        training, trading = space.apply(values, base, params["trading"])
        config = TrainingConfig.from_params(training)
        MODELS[config.model][0](n_features=1, seq_len=config.seq_len, **config.model_params)  # d_model % n_heads
        assert config.learning_rate == values["training.learning_rate"]
        study.tell(trial, 0.0)
    assert space.max_value("training.transformer.d_model") == (256 if env == "binance" else 32)


def test_the_demo_search_is_small_and_the_binance_search_is_the_briefs_scale():
    base, binance = (TuningSettings.from_params(project_parameters(env)["tuning"]) for env in ("base", "binance"))
    assert base.n_trials <= 8 and base.trial_training["folds"]["n_folds"] == 2
    assert base.storage == "sqlite:///data/06_models/optuna.db"
    assert binance.storage == "sqlite:///data/06_models/binance/optuna.db"
    assert binance.n_trials >= 50 and binance.trial_training["max_epochs"] > base.trial_training["max_epochs"]
