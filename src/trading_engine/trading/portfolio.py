"""Trade a predictions table: the one path from model outputs to strategy returns.

Early stopping (training), the tuning objective and the evaluation all call
`strategy_returns` and `portfolio_returns`, so they share the trading rule, the cost model and
the fill timing of `rules.py`, `costs.py` and `engine.py`. The evaluation's baselines trade their
own positions on the same bars with `align_market` + `trade_positions`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from trading_engine.data.segments import as_nanoseconds
from trading_engine.trading.calendar import periods_per_year, series_bar_length
from trading_engine.trading.costs import CostModel
from trading_engine.trading.engine import simulate
from trading_engine.trading.rule import (
    FLAT,
    RuleState,
    TradingRule,
    continue_positions,
    decision_bars,
    volatility_target_sizes,
)

RESULT_COLUMNS = ("held_position", "gross_return", "fee_cost", "slippage_cost", "funding_cost",
                  "net_return", "turnover")
# A segment is traded on its own: positions never carry across a purge gap or a fold boundary.
SEGMENT_KEYS = ["series", "fold", "segment"]


def align_market(predictions: pd.DataFrame, market: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The rows of `predictions` sorted into contiguous (series, fold, segment) blocks (in order
    of first appearance, each sorted by timestamp), with the market columns `open` and `close` of
    their bars, and:
    - `segment_start`: True on the first bar of each block; a block also ends at a gap (a time
      step longer than the series' bar), and the bar after it starts a new one;
    - `gap_before`: True on a block start that follows a gap in the same (series, fold, segment);
    - `funding_rate`: what settled after the previous row's open up to this row's open (so a
      position held through a gap is charged every settlement in it, including those of bars
      the model input dropped): from the market's `funding_cumulative` when it has one (the
      model input does), else its `funding_rate`; 0 where it has neither.
    `market` maps a series key to a frame indexed by timestamp, e.g. the model input; a bar
    missing there is an error."""
    missing = {"timestamp", *SEGMENT_KEYS} - set(predictions.columns)
    if missing:
        raise ValueError(f"predictions lack the columns {sorted(missing)}")
    block = block_codes(predictions)
    times = pd.DatetimeIndex(predictions["timestamp"]).as_unit("ns").asi8
    order = np.lexsort((times, block))
    aligned = predictions.iloc[order].reset_index(drop=True)
    block, times = block[order], times[order]
    new_block = np.ones(len(aligned), dtype=bool)
    new_block[1:] = block[1:] != block[:-1]
    # Per block (a few), not per row (millions): its series, bar length and funding column.
    firsts = np.flatnonzero(new_block)
    block_index = np.cumsum(new_block) - 1
    block_series = [str(series) for series in aligned["series"].iloc[firsts]]
    missing_series = sorted(set(block_series) - set(market))
    if missing_series:
        raise KeyError(f"no market data for series {missing_series}; have {sorted(market)}")
    bar_ns = np.array([series_bar_length(series).value for series in block_series], dtype=np.int64)[block_index]
    gap = np.zeros(len(aligned), dtype=bool)
    gap[1:] = ~new_block[1:] & (np.diff(times) > bar_ns[1:])
    aligned["segment_start"] = new_block | gap
    aligned["gap_before"] = gap
    aligned["bar_ns"] = bar_ns

    opens, closes = np.zeros(len(aligned)), np.zeros(len(aligned))
    funding, cumulative = np.zeros(len(aligned)), np.zeros(len(aligned))
    timestamps = pd.DatetimeIndex(aligned["timestamp"])
    for series, rows in rows_by_series(aligned).items():
        frame = market[series]
        where = _positions_in(frame, timestamps[rows], series)
        opens[rows] = frame["open"].to_numpy(dtype=np.float64)[where]
        closes[rows] = frame["close"].to_numpy(dtype=np.float64)[where]
        if "funding_rate" in frame.columns:
            rates = frame["funding_rate"].to_numpy(dtype=np.float64)
            funding[rows] = rates[where]
            running = (frame["funding_cumulative"].to_numpy(dtype=np.float64) if "funding_cumulative" in frame.columns
                       else np.cumsum(rates))
            cumulative[rows] = running[where]
    aligned["open"], aligned["close"] = opens, closes
    since_previous_row = funding.copy()
    since_previous_row[1:] = np.where(new_block[1:], funding[1:], np.diff(cumulative))
    aligned["funding_rate"] = since_previous_row
    return aligned


def block_codes(predictions: pd.DataFrame) -> np.ndarray:
    """A code per (series, fold, segment), numbered in order of first appearance."""
    codes = [pd.factorize(predictions[key], use_na_sentinel=False)[0].astype(np.int64) for key in SEGMENT_KEYS]
    combined = codes[0]
    for code in codes[1:]:
        combined = combined * (int(code.max(initial=0)) + 1) + code
    return pd.factorize(combined)[0]


def _positions_in(frame: pd.DataFrame, timestamps: pd.DatetimeIndex, series: str) -> np.ndarray:
    """The rows of `frame` (indexed by timestamp) at `timestamps`, matched as UTC nanoseconds:
    pandas' own matching of two indexes whose UTC differs in kind (ZoneInfo from Parquet,
    datetime.timezone.utc from pd.to_datetime) takes an object path, 80x slower (32 s for 210,000
    bars of a 2.6 M-bar frame)."""
    index = as_nanoseconds(pd.DatetimeIndex(frame.index))
    wanted = as_nanoseconds(timestamps)
    if index.shape[0] and bool(np.all(index[1:] > index[:-1])):  # sorted and unique, as the model input
        where = np.minimum(np.searchsorted(index, wanted), index.shape[0] - 1)
        where = np.where(index[where] == wanted, where, -1)
    else:
        where = pd.Index(index).get_indexer(wanted)
    if (where < 0).any():
        raise ValueError(f"market data of {series!r} misses {(where < 0).sum()} bars that have predictions")
    return where


def rows_by_series(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """The row positions of each series in `rows`. An aligned frame (with `segment_start`) is cut
    at its block starts and wherever the series changes (a continued block, as the live signals
    pass, need not start at its first row), which is fast on millions of rows; any other frame is
    grouped."""
    if "segment_start" not in rows.columns:
        return {str(k): v for k, v in rows.groupby("series", sort=False, observed=True).indices.items()}
    series_codes = pd.factorize(rows["series"])[0]
    cuts = rows["segment_start"].to_numpy(dtype=bool).copy()
    cuts[1:] |= series_codes[1:] != series_codes[:-1]
    if len(cuts):
        cuts[0] = True
    starts = np.flatnonzero(cuts)
    stops = np.append(starts[1:], len(rows))
    by_series: dict[str, list[np.ndarray]] = {}
    for series, start, stop in zip(rows["series"].iloc[starts], starts, stops, strict=True):
        by_series.setdefault(str(series), []).append(np.arange(start, stop))
    return {series: np.concatenate(parts) for series, parts in by_series.items()}


def bar_values(rows: pd.DataFrame, market: Mapping[str, pd.DataFrame], columns: Sequence[str],
               optional: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """The market values (float64) at the bars of `rows` (columns `series`, `timestamp`), one
    array per column of `columns`; a column in `optional` is 0 where the market lacks it. A bar
    missing from the market is an error."""
    values = {name: np.zeros(len(rows)) for name in columns}
    timestamps = pd.DatetimeIndex(rows["timestamp"])
    for series, where_rows in rows_by_series(rows).items():
        if series not in market:
            raise KeyError(f"no market data for series {series!r}; have {sorted(market)}")
        frame = market[series]
        where = _positions_in(frame, timestamps[where_rows], series)
        for name in columns:
            if name in frame.columns:
                values[name][where_rows] = frame[name].to_numpy(dtype=np.float64)[where]
            elif name not in optional:
                raise KeyError(f"market data of {series!r} has no column {name!r}")
    return values


def trade_positions(aligned: pd.DataFrame, positions: np.ndarray, costs: CostModel) -> pd.DataFrame:
    """Per-bar results of trading `positions` (one target per row of `aligned`, the output of
    `align_market`, decided at that bar's close). Each block starts flat and is simulated on its
    own. Returns timestamp, series, fold, segment and the engine's per-bar columns."""
    result = simulate(positions, aligned["open"].to_numpy(), aligned["close"].to_numpy(), costs,
                      aligned["funding_rate"].to_numpy(), segment_starts=aligned["segment_start"].to_numpy(),
                      gap_before=aligned["gap_before"].to_numpy())
    return pd.DataFrame({**{name: aligned[name] for name in ("timestamp", *SEGMENT_KEYS)},
                         **{name: getattr(result, name) for name in RESULT_COLUMNS}})


def bar_lengths_ns(series: pd.Series | np.ndarray) -> np.ndarray:
    """The bar length (ns) of each row, from the timeframe in its series key (BTC_USDT_5m: 5 min)."""
    codes, keys = pd.factorize(np.asarray(series))
    lengths = np.array([series_bar_length(str(key)).value for key in keys], dtype=np.int64)
    return lengths[codes]


def rule_positions(aligned: pd.DataFrame, expected_return: np.ndarray, rule: TradingRule, costs: CostModel,
                   horizon: int, confidence: np.ndarray | None = None,
                   market: Mapping[str, pd.DataFrame] | None = None) -> np.ndarray:
    """The shared rule's positions for the rows of `aligned` (the output of `align_market`),
    given each row's forecast of the `horizon`-bar return (and its confidence): the round trip
    cost of each bar from `costs`, the decision bars from the rows' timestamps, and, when the rule
    targets a volatility, the sizes from the closes of `market` (the series' full frames, so
    that the volatility at a block's first bar is known). Every block starts flat."""
    return continue_rule_positions(aligned, expected_return, rule, costs, horizon, FLAT, confidence, market)[0]


def continue_rule_positions(aligned: pd.DataFrame, expected_return: np.ndarray, rule: TradingRule,
                            costs: CostModel, horizon: int, state: RuleState,
                            confidence: np.ndarray | None = None,
                            market: Mapping[str, pd.DataFrame] | None = None) -> tuple[np.ndarray, RuleState]:
    """`rule_positions` from `state` (the rule's state after the bar before the first row; a row
    whose `segment_start` is True starts flat instead), and the state after the last row: the
    live signals decide one bar at a time with it, exactly as `rule_positions` decides a block."""
    if rule.flat or aligned.empty:
        return np.zeros(len(aligned)), FLAT if rule.flat else state
    bar_ns = aligned["bar_ns"].to_numpy() if "bar_ns" in aligned.columns else bar_lengths_ns(aligned["series"])
    timestamps = pd.DatetimeIndex(aligned["timestamp"]).as_unit("ns").asi8
    size: np.ndarray | float = 1.0
    if rule.target_volatility is not None:
        if market is None:
            raise ValueError("a volatility-targeted rule needs the market frames")
        sizes = {series: pd.DataFrame({"size": volatility_target_sizes(
                     market[series]["close"].to_numpy(), rule, periods_per_year(series_bar_length(series)))},
                     index=market[series].index)
                 for series in aligned["series"].unique()}
        size = bar_values(aligned, sizes, ["size"])["size"]
    return continue_positions(expected_return, rule, costs.round_trip_cost(aligned["open"].to_numpy(),
                                                                           aligned["close"].to_numpy()),
                              horizon, state, confidence=confidence, size=size,
                              decision=decision_bars(timestamps, bar_ns, rule.decide_every),
                              segment_starts=aligned["segment_start"].to_numpy())


def model_forecast(aligned: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The model's forecast in the predictions table: the regression head's expected return over
    the horizon (`pred_return`, in return units) and the confidence head's probability that its
    direction is right (`confidence`)."""
    return aligned["pred_return"].to_numpy(dtype=np.float64), aligned["confidence"].to_numpy(dtype=np.float64)


def strategy_returns(
    predictions: pd.DataFrame,
    market: Mapping[str, pd.DataFrame],
    rule: TradingRule,
    costs: CostModel,
    horizon: int,
) -> pd.DataFrame:
    """Per-bar results of trading `predictions` (the predictions contract of
    docs/architecture.md; forecasts of the `horizon`-bar return) on `market` (series key -> frame
    indexed by timestamp with `open`, `close` and optionally `funding_rate`, e.g. the model input)
    with the shared rule and costs.

    Each (series, fold, segment) block is a contiguous run of bars and is simulated on its own,
    flat at its start. Returns one row per prediction: timestamp, series, fold, segment and the
    engine's per-bar columns.
    """
    if predictions.empty:
        return pd.DataFrame(columns=["timestamp", *SEGMENT_KEYS, *RESULT_COLUMNS])
    aligned = align_market(predictions, market)
    expected_return, confidence = model_forecast(aligned)
    positions = rule_positions(aligned, expected_return, rule, costs, horizon, confidence, market)
    return trade_positions(aligned, positions, costs)


def portfolio_returns(trades: pd.DataFrame, column: str = "net_return") -> pd.Series:
    """Equal-weight portfolio of the series in `trades`: each series gets 1/N of the capital,
    rebalanced every bar; a series with no bar at a timestamp is flat there."""
    if trades.empty:
        return pd.Series(dtype=np.float64, name=column)
    n_series = trades["series"].nunique()
    timestamps = pd.DatetimeIndex(trades["timestamp"])
    if n_series == 1 and timestamps.is_monotonic_increasing and timestamps.is_unique:
        return pd.Series(trades[column].to_numpy(dtype=np.float64), index=timestamps, name=column)
    returns = trades.groupby("timestamp", sort=True)[column].sum() / n_series
    returns.index = pd.DatetimeIndex(returns.index)
    return returns.astype(np.float64).rename(column)
