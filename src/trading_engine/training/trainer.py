"""Walk-forward training: one model per fold, pooled over every series of one timeframe, early-stopped
on the Sharpe ratio of trading its validation predictions with the project's one trading rule and
cost model (`trading_engine.trading`).

    result = train_walk_forward(model_input, TrainingConfig.from_params(params["training"]),
                                TradingRule.from_params(...), CostModel.from_params(...))
    result.predictions        # validation, test and holdout predictions of every fold
    result.training_log       # one row per fold and epoch
    result.checkpoints()      # {"fold_0": checkpoint, ...} for TorchCheckpointDataset
    result.summary()          # best epochs, validation Sharpes, fold layout, config
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from trading_engine.data.schema import parse_series_key
from trading_engine.data.segments import Segment
from trading_engine.features.scaling import RobustScaler, robust_scale
from trading_engine.models import (
    IGNORE_CLASS,
    MODELS,
    LossWeights,
    ModelOutput,
    build_model,
    multitask_loss,
)
from trading_engine.params import known_params
from trading_engine.progress import tqdm
from trading_engine.trading.costs import CostModel
from trading_engine.trading.metrics import sharpe_daily_annualised
from trading_engine.trading.portfolio import portfolio_returns, strategy_returns
from trading_engine.trading.rule import TradingRule
from trading_engine.training.fold_model import (
    PREDICTION_COLUMNS,
    FoldModel,
    autocast,
    prediction_frame,
)
from trading_engine.training.splits import Fold, FoldLayout, FoldSettings, make_fold_layout
from trading_engine.training.windows import (
    PooledSeries,
    gather_windows,
    target_horizons,
    window_offsets,
)

logger = logging.getLogger(__name__)

LOG_COLUMNS = ("fold", "epoch", "train_loss", "validation_loss", "validation_accuracy",
               "validation_sharpe", "learning_rate", "seconds")
DEVICES = ("auto", "cuda", "mps", "cpu")


@dataclass(frozen=True)
class TrainingConfig:
    model: str = "transformer"  # a key of trading_engine.models.MODELS
    model_params: dict[str, Any] = field(default_factory=dict)  # fields of that model's config
    timeframe: str | None = None  # train on the series of this timeframe; None: the only one present
    horizon: int = 15  # bars: the targets target_dir_{horizon} / target_ret_{horizon}
    seq_len: int = 32
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    max_epochs: int = 10
    patience: int = 3  # epochs without a better validation Sharpe before stopping
    max_samples_per_epoch: int | None = None  # a random subset of the training windows each epoch
    gradient_clip_norm: float | None = 1.0
    scaler_clip: float = 5.0
    loss_weights: LossWeights = field(default_factory=LossWeights)
    folds: FoldSettings = field(default_factory=FoldSettings)
    device: str = "auto"  # auto: CUDA, then MPS, then CPU
    num_threads: int | None = None  # CPU threads of torch while training; None: torch's default
    seed: int = 42
    progress: bool = True  # tqdm bars per fold (epochs) and epoch (batches)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; choose one of {sorted(MODELS)}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        for name in ("horizon", "seq_len", "batch_size", "max_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0, got {self.patience}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> TrainingConfig:
        """From `params:training`: the fields above, with `loss_weights` and `folds` as mappings and
        the chosen model's hyper-parameters under its name (e.g. `transformer: {d_model: 32}`);
        the other models' sections are ignored."""
        params = dict(params)
        model = params.get("model", cls.model)
        model_sections = {name: params.pop(name) for name in list(params) if name in MODELS}
        known_params(params, cls, "training parameters", also_known=MODELS)
        if "model_params" not in params:
            params["model_params"] = dict(model_sections.get(model) or {})
        params["loss_weights"] = LossWeights(**dict(params.get("loss_weights") or {}))
        params["folds"] = FoldSettings.from_params(params.get("folds"))
        for name in ("learning_rate", "weight_decay", "scaler_clip"):  # YAML reads 1e-4 as a string
            if name in params:
                params[name] = float(params[name])
        return cls(**params)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def series_of_timeframe(keys: Iterable[str], timeframe: str | None) -> list[str]:
    """The series keys of `timeframe`; with None, all keys, which must share one timeframe."""
    by_timeframe: dict[str, list[str]] = {}
    for key in sorted(keys):
        by_timeframe.setdefault(parse_series_key(key)[1], []).append(key)
    if timeframe is None:
        if len(by_timeframe) != 1:
            raise ValueError(f"model input holds several timeframes {sorted(by_timeframe)}: set training.timeframe")
        return next(iter(by_timeframe.values()))
    if timeframe not in by_timeframe:
        raise ValueError(f"no series of timeframe {timeframe!r} in the model input; have {sorted(by_timeframe)}")
    return by_timeframe[timeframe]


def trading_sharpe(
    predictions: pd.DataFrame, market: Mapping[str, pd.DataFrame], rule: TradingRule, costs: CostModel,
    horizon: int,
) -> float:
    """Daily annualised Sharpe of the equal-weight portfolio that trades `predictions` (forecasts
    of the `horizon`-bar return) with the shared rule and costs: the early-stopping criterion,
    computed exactly as the evaluation does."""
    return sharpe_daily_annualised(portfolio_returns(strategy_returns(predictions, market, rule, costs, horizon)))


class EarlyStopping:
    """Keeps a copy of the weights of the best-scoring epoch; stops after `patience` epochs
    without a strictly better score (NaN never counts as better)."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best_score = -np.inf
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.epochs_without_improvement = 0

    def update(self, score: float, epoch: int, model: torch.nn.Module) -> bool:
        """Record an epoch's score; True when it is the best so far."""
        if self.best_state is None or score > self.best_score:
            self.best_score, self.best_epoch = float(score), epoch
            self.best_state = copy.deepcopy(model.state_dict())
            self.epochs_without_improvement = 0
            return True
        self.epochs_without_improvement += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.epochs_without_improvement >= max(self.patience, 1)

    def restore(self, model: torch.nn.Module) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)


@dataclass
class FoldResult:
    fold: Fold
    model: FoldModel
    best_epoch: int
    validation_sharpe: float  # of the best epoch
    epochs_run: int
    train_windows: int
    seconds: float
    log: pd.DataFrame  # LOG_COLUMNS, one row per epoch
    predictions: pd.DataFrame  # validation, test (and holdout) rows

    def summary(self) -> dict[str, Any]:
        return {"fold": self.fold.index, "best_epoch": self.best_epoch,
                "validation_sharpe": self.validation_sharpe, "epochs_run": self.epochs_run,
                "train_windows": self.train_windows, "seconds": round(self.seconds, 2)}


@dataclass
class WalkForwardResult:
    config: TrainingConfig
    layout: FoldLayout
    series: list[str]
    feature_names: list[str]
    device: str
    folds: list[FoldResult]

    @property
    def validation_sharpes(self) -> list[float]:
        return [fold.validation_sharpe for fold in self.folds]

    @property
    def mean_validation_sharpe(self) -> float:
        return float(np.mean(self.validation_sharpes)) if self.folds else float("nan")

    @property
    def predictions(self) -> pd.DataFrame:
        return pd.concat([fold.predictions for fold in self.folds], ignore_index=True)

    @property
    def training_log(self) -> pd.DataFrame:
        return pd.concat([fold.log for fold in self.folds], ignore_index=True)

    def checkpoints(self) -> dict[str, dict[str, Any]]:
        """{"fold_<k>": checkpoint} for the `fold_models` dataset."""
        return {f"fold_{fold.fold.index}": fold.model.to_checkpoint(
                    training_config=self.config.to_dict(), fold_layout=fold.fold.to_dict(),
                    purge_bars=self.layout.purge_bars, best_epoch=int(fold.best_epoch))
                for fold in self.folds}

    def summary(self) -> dict[str, Any]:
        return {
            "model": self.config.model,
            "mean_validation_sharpe": self.mean_validation_sharpe,
            "folds": [fold.summary() for fold in self.folds],
            "fold_layout": self.layout.to_dict(),
            "series": self.series,
            "feature_names": self.feature_names,
            "device": self.device,
            "config": self.config.to_dict(),
        }


def longest_horizon(frames: Mapping[str, pd.DataFrame], default: int) -> int:
    horizons = [h for frame in frames.values() for h in target_horizons(frame)]
    return max([default, *horizons])


def common_axis(frames: Mapping[str, pd.DataFrame]) -> pd.DatetimeIndex:
    """The common time axis of several series: every bar of any of them, sorted."""
    stamps = np.unique(np.concatenate([pd.DatetimeIndex(frame.index).as_unit("ns").asi8 for frame in frames.values()]))
    return pd.DatetimeIndex(pd.to_datetime(stamps, unit="ns", utc=True))


def make_walk_forward_layout(model_input: Mapping[str, pd.DataFrame], config: TrainingConfig) -> FoldLayout:
    """The folds, the holdout (with its refit) and the tuning window for this model input and
    config, on the common time axis of the series of `config.timeframe`."""
    frames = {key: model_input[key] for key in series_of_timeframe(model_input, config.timeframe)}
    purge_bars = longest_horizon(frames, config.horizon) + config.seq_len
    return make_fold_layout(common_axis(frames), config.folds, purge_bars)


def train_walk_forward(
    model_input: Mapping[str, pd.DataFrame],
    config: TrainingConfig,
    trading_rule: TradingRule,
    costs: CostModel,
    on_fold_end: Callable[[int, float], None] | None = None,
    folds: list[Fold] | None = None,
    predict_test: bool = True,
    layout: FoldLayout | None = None,
) -> WalkForwardResult:
    """Train one pooled model per fold on the series of `config.timeframe`.

    model_input: series key -> model-input frame (docs/architecture.md); the market columns are
        also what the validation trades.
    on_fold_end(fold_index, validation_sharpe): called after each fold (e.g. Optuna's report and
        prune); an exception it raises stops the run.
    layout: the folds and holdout (default: `make_walk_forward_layout(model_input, config)`).
    folds: the folds to train (default: the layout's); tuning passes its validation folds.
    predict_test: predict each fold's test rows. Tuning passes False: a trial reads validation only.
    The holdout is not predicted here: `refit_for_holdout` trains its model.
    """
    keys = series_of_timeframe(model_input, config.timeframe)
    frames = {key: model_input[key] for key in keys}
    pooled = PooledSeries.from_frames(frames, config.horizon)
    layout = layout or make_walk_forward_layout(frames, config)
    device = resolve_device(config.device)
    to_train = layout.folds if folds is None else folds
    logger.info("training %s on %d series (%d rows, %d features) on %s; %d folds, purge %d bars",
                config.model, len(keys), len(pooled.timestamps), pooled.n_features, device,
                len(to_train), layout.purge_bars)
    results = []
    started = time.perf_counter()
    with torch_threads(config.num_threads):
        for fold in to_train:
            result = train_fold(pooled, frames, fold, config, trading_rule, costs, device, predict_test)
            logger.info("fold %d: best epoch %d of %d, validation Sharpe %.2f, %d training windows, %.1f s",
                        fold.index, result.best_epoch, result.epochs_run, result.validation_sharpe,
                        result.train_windows, result.seconds)
            results.append(result)
            if on_fold_end is not None:
                on_fold_end(fold.index, result.validation_sharpe)
    result = WalkForwardResult(config, layout, keys, pooled.feature_names, str(device), results)
    logger.info("walk-forward training done: %d folds, mean validation Sharpe %.2f, %.0f s",
                len(results), result.mean_validation_sharpe, time.perf_counter() - started)
    return result


def refit_for_holdout(model_input: Mapping[str, pd.DataFrame], config: TrainingConfig, layout: FoldLayout,
                      epochs: int) -> FoldResult:
    """The holdout's model: the same configuration trained on every bar before the holdout, one
    purge before it (`layout.holdout_refit`), for `epochs` epochs (what early stopping chose on
    the last fold: there is no validation left to stop on); it predicts the holdout."""
    if layout.holdout_refit is None:
        raise ValueError("the layout has no holdout to refit for (training.folds.holdout_fraction is 0)")
    keys = series_of_timeframe(model_input, config.timeframe)
    result = _refit({key: model_input[key] for key in keys}, config, layout.holdout_refit, epochs)
    logger.info("holdout model: %d epochs on %d training windows up to %s, %.1f s", result.epochs_run,
                result.train_windows, layout.holdout_refit.train.end, result.seconds)
    return result


def refit_on_all_bars(model_input: Mapping[str, pd.DataFrame], config: TrainingConfig, epochs: int) -> FoldResult:
    """The model to deploy: the same configuration trained on every bar of the series of
    `config.timeframe` except the last purge (the longest target horizon + seq_len bars), for
    `epochs` epochs (what early stopping chose on the last fold). Its fold (index n_folds + 1)
    trains on [first bar, last bar - purge] and its test segment is that final purge, which it
    predicts (segment "holdout", as every refit without validation)."""
    keys = series_of_timeframe(model_input, config.timeframe)
    frames = {key: model_input[key] for key in keys}
    axis = common_axis(frames)
    purge_bars = max(longest_horizon(frames, config.horizon) + config.seq_len, config.folds.min_purge_bars)
    train_bars = len(axis) - purge_bars
    if train_bars <= purge_bars:
        raise ValueError(f"{len(axis)} bars cannot train a model purged by {purge_bars} bars at the end")
    fold = Fold(config.folds.n_folds + 1, Segment(axis[0], axis[train_bars - 1], train_bars), None,
                Segment(axis[train_bars], axis[-1], purge_bars))
    result = _refit(frames, config, fold, epochs)
    logger.info("model refitted on all bars: %d epochs on %d training windows, %s to %s (purge %d bars), %.1f s",
                result.epochs_run, result.train_windows, fold.train.start, fold.train.end, purge_bars, result.seconds)
    return result


def _refit(frames: Mapping[str, pd.DataFrame], config: TrainingConfig, fold: Fold, epochs: int) -> FoldResult:
    """Train `fold` (no validation) for exactly `epochs` epochs."""
    pooled = PooledSeries.from_frames(frames, config.horizon)
    device = resolve_device(config.device)
    refit_config = replace(config, max_epochs=max(int(epochs), 1))
    with torch_threads(config.num_threads):
        # The rule and costs trade validation rows only, and a refit has none.
        return train_fold(pooled, frames, fold, refit_config, TradingRule(), CostModel(), device)


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """torch's CPU threads set to `count` (None: unchanged) while inside."""
    before = torch.get_num_threads()
    try:
        if count:
            torch.set_num_threads(count)
        yield
    finally:
        torch.set_num_threads(before)


def optimisation_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    windows: torch.Tensor,  # (B, L, F)
    target_class: torch.Tensor,  # (B,)
    target_return: torch.Tensor,  # (B,) divided by the return scale
    config: TrainingConfig,
) -> torch.Tensor:
    """One gradient step on one batch; returns the batch's loss (a detached scalar on the device)."""
    with autocast(windows.device):
        output = model(windows)
    loss = multitask_loss(output, target_class, target_return, config.loss_weights)
    optimizer.zero_grad(set_to_none=True)
    loss.total.backward()
    if config.gradient_clip_norm:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.gradient_clip_norm)
    optimizer.step()
    return loss.total.detach()


@dataclass(frozen=True)
class FoldRows:
    """Rows of the pooled table (positions) that a fold uses; windows are named by their end row."""

    scaler: np.ndarray  # every bar of the train segment: the scaler is fitted on these only
    train: np.ndarray  # training windows: full window, known target, label ends before the validation
    validation: np.ndarray  # every validation bar with a full window (early stopping trades all of them)
    test: np.ndarray  # every test bar with a full window


def fold_rows(pooled: PooledSeries, fold: Fold, seq_len: int) -> FoldRows:
    full_window = pooled.window_end_rows(seq_len)
    in_train = fold.train.contains(pooled.timestamps)
    # The purge already keeps labels out of the next segment; this also holds where a series has gaps.
    next_segment = fold.validation if fold.validation is not None else fold.test
    label_ends_in_time = pooled.label_end < next_segment.start.as_unit("ns").value
    nothing = np.zeros(0, dtype=np.int64)
    rows = FoldRows(
        scaler=np.flatnonzero(in_train),
        train=np.flatnonzero(in_train & full_window & (pooled.target_class != IGNORE_CLASS) & label_ends_in_time),
        validation=(np.flatnonzero(fold.validation.contains(pooled.timestamps) & full_window)
                    if fold.validation is not None else nothing),
        test=np.flatnonzero(fold.test.contains(pooled.timestamps) & full_window) if fold.test is not None else nothing,
    )
    if len(rows.train) == 0 or (fold.validation is not None and len(rows.validation) == 0):
        raise ValueError(f"fold {fold.index} has {len(rows.train)} training and {len(rows.validation)} "
                         "validation windows")
    return rows


def fit_scaling(pooled: PooledSeries, rows: FoldRows, clip: float) -> tuple[RobustScaler, float]:
    """The feature scaler and the return scale of the regression target, from training rows only."""
    scaler = RobustScaler.fit(pooled.features, clip, rows=rows.scaler)
    return_scale = float(robust_scale(pooled.target_return[rows.train, None])[0])
    return scaler, return_scale


def train_fold(
    pooled: PooledSeries,
    market: Mapping[str, pd.DataFrame],
    fold: Fold,
    config: TrainingConfig,
    trading_rule: TradingRule,
    costs: CostModel,
    device: torch.device,
    predict_test: bool = True,
) -> FoldResult:
    """Fit one fold: scaler on its training rows, model early-stopped on its validation Sharpe;
    predict its validation rows and its test rows (when `predict_test`) with the best weights.

    A fold without validation (the holdout's refit) trains for exactly `config.max_epochs` epochs
    (the caller sets the count chosen by early stopping elsewhere) and predicts its test segment,
    the holdout, with the last weights."""
    started = time.perf_counter()
    torch.manual_seed(config.seed + fold.index)
    sampler = torch.Generator().manual_seed(config.seed + fold.index)
    rows = fold_rows(pooled, fold, config.seq_len)
    train_rows, validation_rows = rows.train, rows.validation
    known = pooled.target_class != IGNORE_CLASS
    scaler, return_scale = fit_scaling(pooled, rows, config.scaler_clip)
    scaled = scaler.transform(torch.from_numpy(pooled.features).to(device))  # (N, F) on the device
    target_class = torch.from_numpy(pooled.target_class).to(device)
    target_return = torch.from_numpy(pooled.target_return).to(device) / return_scale

    model = build_model(config.model, pooled.n_features, config.seq_len, config.model_params).to(device)
    fold_model = FoldModel(model, config.model, scaler, return_scale, pooled.feature_names, config.seq_len,
                           fold.index)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    stopper = EarlyStopping(config.patience)
    validates = fold.validation is not None
    train_rows_device = torch.from_numpy(train_rows).to(device)
    validation_rows_device = torch.from_numpy(validation_rows).to(device)
    validation_known = torch.from_numpy(known[validation_rows]).to(device)
    offsets = window_offsets(config.seq_len, device)

    log = []
    best_validation_predictions = pd.DataFrame(columns=list(PREDICTION_COLUMNS))
    epochs = tqdm(range(1, config.max_epochs + 1), desc=f"fold {fold.index}", unit="epoch",
                  disable=not config.progress)
    for epoch in epochs:
        epoch_started = time.perf_counter()
        model.train()
        order = torch.randperm(len(train_rows), generator=sampler)[: config.max_samples_per_epoch]
        batches = train_rows_device[order.to(device)].split(config.batch_size)
        loss_sum = torch.zeros((), device=device)
        for end_rows in tqdm(batches, desc=f"epoch {epoch}", unit="batch", leave=False,
                             disable=not config.progress):
            windows = gather_windows(scaled, end_rows, offsets)  # (B, L, F), gathered on the device
            loss = optimisation_step(model, optimizer, windows, target_class[end_rows], target_return[end_rows],
                                     config)
            loss_sum += loss * len(end_rows)
        train_loss = float(loss_sum) / len(order)
        if not np.isfinite(train_loss):  # diverged: fail now rather than trade a broken model
            raise FloatingPointError(f"non-finite loss (diverged): fold {fold.index}, epoch {epoch}, training loss {train_loss}; "
                                     "lower training.learning_rate or check the model input")

        validation_loss = validation_accuracy = sharpe = float("nan")
        if validates:
            output = fold_model.infer(scaled, validation_rows_device)
            labelled = ModelOutput(*(t[validation_known] for t in output))
            labels = target_class[validation_rows_device][validation_known]
            validation_loss = float(multitask_loss(labelled, labels,
                                                   target_return[validation_rows_device][validation_known],
                                                   config.loss_weights).total)
            validation_accuracy = float((labelled.logits.argmax(dim=-1) == labels).float().mean())
            validation_predictions = prediction_frame(pooled, validation_rows, output, return_scale, fold.index,
                                                      "validation")
            sharpe = trading_sharpe(validation_predictions, market, trading_rule, costs, config.horizon)
            if stopper.update(sharpe, epoch, model):
                best_validation_predictions = validation_predictions  # the best weights' own, not inferred again
        log.append({"fold": fold.index, "epoch": epoch, "train_loss": train_loss,
                    "validation_loss": validation_loss, "validation_accuracy": validation_accuracy,
                    "validation_sharpe": sharpe, "learning_rate": optimizer.param_groups[0]["lr"],
                    "seconds": time.perf_counter() - epoch_started})
        epochs.set_postfix(loss=f"{train_loss:.4f}", val_sharpe=f"{sharpe:.2f}", best=stopper.best_epoch)
        if validates and stopper.should_stop:
            break
    epochs.close()
    predictions = []
    if validates:
        stopper.restore(model)
        predictions.append(best_validation_predictions)
        segments = {"test": rows.test} if predict_test and fold.test is not None else {}
    else:
        stopper.best_epoch, stopper.best_score = len(log), float("nan")
        segments = {"holdout": rows.test}
    for name, end_rows in segments.items():
        output = fold_model.infer(scaled, torch.from_numpy(end_rows).to(device))
        predictions.append(prediction_frame(pooled, end_rows, output, return_scale, fold.index, name))
    return FoldResult(fold, fold_model, stopper.best_epoch, stopper.best_score, len(log), len(train_rows),
                      time.perf_counter() - started, pd.DataFrame(log, columns=list(LOG_COLUMNS)),
                      pd.concat(predictions, ignore_index=True))
