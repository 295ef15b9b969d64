"""Walk-forward training: purged folds with a holdout (`splits`), robust scaling fitted on training
rows (`scaling`), windows gathered by index from one pooled table (`windows`), the trainer with
early stopping on the validation Sharpe (`trainer`) and the saved fold models (`fold_model`,
`checkpoint`)."""

from trading_engine.data.segments import Segment
from trading_engine.training.fold_model import PREDICTION_COLUMNS, FoldModel
from trading_engine.training.splits import (
    Fold,
    FoldLayout,
    FoldSettings,
    make_fold_layout,
    make_validation_folds,
)
from trading_engine.training.trainer import (
    LOG_COLUMNS,
    EarlyStopping,
    FoldResult,
    FoldRows,
    TrainingConfig,
    WalkForwardResult,
    fit_scaling,
    fold_rows,
    make_walk_forward_layout,
    refit_for_holdout,
    refit_on_all_bars,
    resolve_device,
    series_of_timeframe,
    trading_sharpe,
    train_walk_forward,
)

__all__ = [
    "LOG_COLUMNS", "PREDICTION_COLUMNS", "EarlyStopping", "Fold", "FoldLayout", "FoldModel", "FoldResult",
    "FoldRows", "FoldSettings", "Segment", "TrainingConfig", "WalkForwardResult", "fit_scaling", "fold_rows",
    "make_fold_layout", "make_validation_folds", "make_walk_forward_layout", "refit_for_holdout", "refit_on_all_bars",
    "resolve_device", "series_of_timeframe", "train_walk_forward", "trading_sharpe",
]
