"""The human report of the backtest (Markdown) and the end-of-run console summary.

The report sits beside the plots in the reporting folder; the catalog names the plot files as in
`PLOT_FILES`, so the links below resolve.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

PLOT_FILES = {
    "Timeline": "backtest_timeline.png",
    "Equity curves": "backtest_equity_curves.png",
    "Drawdown": "backtest_drawdown.png",
    "Rolling Sharpe": "backtest_rolling_sharpe.png",
    "Calibration": "backtest_calibration.png",
    "Coverage vs precision": "backtest_coverage_precision.png",
}
PERIOD_NAMES = {"out_of_sample": "out-of-sample", "holdout": "holdout"}
BASELINE_NAMES = {"flat": "flat (no trades)", "buy_and_hold": "buy and hold", "always_short": "always short",
                  "trend_following": "trend following (CTA, 20% vol)", "momentum": "momentum",
                  "mean_reversion": "1-bar mean reversion", "logistic": "logistic regression",
                  "gradient_boosting": "gradient boosting", "random": "random signal (95th percentile)"}
SIGNIFICANT_DSR = 0.95


def _number(value: Any, digits: int = 2, percent: bool = False) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool | str):
        return str(value)
    return f"{100 * value:.{digits - 1}f}%" if percent else f"{value:.{digits}f}"


def _row(name: str, period: str, entry: Mapping[str, Any]) -> str:
    before = entry.get("before_costs", {})
    cagr = entry.get("cagr")
    cells = [name, PERIOD_NAMES.get(period, period), _number(entry.get("sharpe")), _number(before.get("sharpe")),
             _number(entry.get("max_drawdown"), percent=True), str(entry.get("n_trades", "n/a")),
             _number(entry.get("turnover_per_day")), _number(entry.get("average_holding_hours"), 1),
             _number(entry.get("time_in_market"), percent=True),
             _number(cagr, percent=True) if cagr is not None else "n/a (< 1 year)"]
    return "| " + " | ".join(cells) + " |"


def summary_table(metrics: Mapping[str, Any]) -> str:
    """Markdown table: the model and every deterministic baseline, per period, after costs (and
    the Sharpe ratio before costs)."""
    header = ("| strategy | period | Sharpe | Sharpe before costs | max drawdown | trades | turnover a day "
              "| mean hold (h) | time in market | CAGR |\n|" + " --- |" * 10)
    rows = [header]
    portfolio = metrics.get("portfolio", {})
    for period in PERIOD_NAMES:
        if period not in portfolio:
            continue
        rows.append(_row("**model**", period, portfolio[period]))
        for name, baseline in metrics.get("baselines", {}).items():
            entry = baseline.get("portfolio", {}).get(period) if "portfolio" in baseline else None
            if entry:
                rows.append(_row(BASELINE_NAMES.get(name, name), period, entry))
    return "\n".join(rows)


def cost_table(metrics: Mapping[str, Any]) -> str:
    """Where the money went, per strategy and period: gross, fees, slippage, funding and net, in
    % of the capital a year."""
    header = ("| strategy | period | gross | fees | slippage | funding | net |\n|" + " --- |" * 7)
    rows = [header]
    entries = [("**model**", metrics.get("portfolio", {}))]
    entries += [(BASELINE_NAMES.get(name, name), baseline.get("portfolio", {}))
                for name, baseline in metrics.get("baselines", {}).items() if "portfolio" in baseline]
    for period in PERIOD_NAMES:
        for name, by_period in entries:
            per_year = (by_period.get(period) or {}).get("per_year")
            if not per_year:
                continue
            cells = [name, PERIOD_NAMES[period], _number(per_year.get("gross_return"), percent=True),
                     _number(_negative(per_year.get("fees")), percent=True),
                     _number(_negative(per_year.get("slippage")), percent=True),
                     _number(_negative(per_year.get("funding")), percent=True),
                     _number(per_year.get("net_return"), percent=True)]
            rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _negative(cost: float | None) -> float | None:
    return None if cost is None else -cost


def _significance_word(result: Mapping[str, Any]) -> str:
    p_value = result.get("p_value")
    if p_value is None:
        return "significance unknown"
    return f"{'significant' if result.get('significant') else 'not significant'}, p = {p_value:.3f}"


def verdicts(metrics: Mapping[str, Any]) -> list[str]:
    """One plain sentence per period and baseline: does the model beat it after costs, and is the
    difference significant? Then the overall verdict per period."""
    lines = []
    for period, comparison in metrics.get("comparison", {}).items():
        name_of_period = PERIOD_NAMES.get(period, period)
        for name, result in comparison.items():
            if name == "all_baselines":
                continue
            beats = "beats" if result["model_beats"] else "does NOT beat"
            against = result.get("baseline_sharpe_p95", result["baseline_sharpe"])
            lines.append(f"- {name_of_period}: the model {beats} {BASELINE_NAMES.get(name, name)} "
                         f"(Sharpe after costs {_number(result['model_sharpe'])} vs {_number(against)}; "
                         f"{_significance_word(result)})")
        overall = comparison.get("all_baselines")
        if overall:
            strongest = BASELINE_NAMES.get(overall.get("strongest"), overall.get("strongest"))
            if overall["model_beats"]:
                how = "significantly" if overall["significant"] else "but not significantly"
                lines.append(f"- **{name_of_period}: the model beats the baselines, {how}** "
                             f"(including {strongest}).")
            else:
                lines.append(f"- **{name_of_period}: the model does NOT beat the baselines** "
                             f"(it must beat every one, {strongest} included).")
    return lines


def _track_record(days: float | None) -> str:
    return "infinite (Sharpe <= 0)" if days is None else f"{days:.0f} days"


def _interval(entry: Mapping[str, Any]) -> str:
    interval = entry.get("sharpe_interval") or {}
    if interval.get("low") is None:
        return ""
    return (f", {100 * interval['confidence']:.0f}% bootstrap interval of the Sharpe "
            f"[{interval['low']:.2f}, {interval['high']:.2f}]")


def significance_lines(metrics: Mapping[str, Any]) -> list[str]:
    lines = []
    for period, entry in metrics.get("portfolio", {}).items():
        if period not in PERIOD_NAMES:
            continue
        dsr = entry.get("deflated_sharpe")
        significant = dsr is not None and dsr >= SIGNIFICANT_DSR
        lines.append(
            f"- {PERIOD_NAMES[period]}: Sharpe after costs {_number(entry.get('sharpe'))}"
            f" (before costs {_number(entry.get('before_costs', {}).get('sharpe'))}){_interval(entry)}; "
            f"PSR {_number(entry.get('probabilistic_sharpe'), 3)}, "
            f"DSR {_number(dsr, 3)} over {entry.get('n_trials')} trials "
            f"({'significant' if significant else 'not significant'} at {SIGNIFICANT_DSR}), "
            f"minimum track record {_track_record(entry.get('min_track_record_length_days'))} "
            f"(have {entry.get('n_days')} days)")
    return lines


def trials_sentence(trials: Mapping[str, Any]) -> str:
    variance = trials.get("trial_sharpe_variance")
    spread = (f"the variance of the Sharpe ratios of the study's {trials.get('n_trial_sharpes')} complete trials"
              if variance is not None else "the variance of a luck-only Sharpe ratio (fewer than 10 complete trials "
                                           "to measure the study's own)")
    return (f"Trials counted: {trials.get('total')} ({trials.get('optuna', 0)} Optuna trials + "
            f"{trials.get('rule_choices', 0)} rule choices ({trials.get('rule_candidates', 0)} candidates in each "
            f"fold) + {trials.get('model_variants', 0)} model variants (epochs compared by early stopping)); the "
            f"deflation uses {spread}.")


def tuning_sentence(metrics: Mapping[str, Any]) -> str:
    """Which bars the tuning study read, against the first bar the report calls out-of-sample."""
    tuning = metrics.get("trials", {}).get("tuning") or {}
    start = metrics.get("portfolio", {}).get("out_of_sample", {}).get("start")
    if not tuning.get("last_bar_seen"):
        return (f"No tuning study was counted. The out-of-sample period starts at {start}; tuning may read the bars "
                "before its tuning window ends (see the timeline).")
    clean = start is None or pd.Timestamp(tuning["last_bar_seen"]) < pd.Timestamp(start)
    sentence = (f"Tuning read bars from {tuning['tuning_window_start']} to {tuning['last_bar_seen']} (the tuning "
                f"window plus the horizon of its labels); the out-of-sample period starts at {start}")
    return sentence + (", after every bar tuning read." if clean else
                       ". **WARNING: the study read bars the report calls out-of-sample** (it was run on other "
                       "data or another layout): the out-of-sample figures are not clean.")


def model_table(metrics: Mapping[str, Any]) -> str:
    rows = ["| period | accuracy (classes) | balanced accuracy | log loss | IC (Spearman) | direction right "
            "| ECE (direction) | predictions |", "|" + " --- |" * 8]
    for period, entry in metrics.get("model", {}).items():
        rows.append("| " + " | ".join([
            PERIOD_NAMES.get(period, period), _number(entry.get("accuracy"), 3),
            _number(entry.get("balanced_accuracy"), 3), _number(entry.get("log_loss"), 3),
            _number(entry.get("information_coefficient"), 3), _number(entry.get("directional_accuracy"), 3),
            _number(entry.get("expected_calibration_error"), 3), str(entry.get("n_predictions", 0))]) + " |")
    return "\n".join(rows)


def rule_table(metrics: Mapping[str, Any]) -> str:
    """The rule each forecaster trades in each fold (chosen on that fold's validation rows)."""
    chosen = metrics.get("trading_rule", {}).get("chosen", {})
    rows = ["| forecaster | fold | rule |", "|" + " --- |" * 3]
    for name, folds in chosen.items():
        label = "**model**" if name == "model" else BASELINE_NAMES.get(name, name)
        for entry in folds:
            rows.append(f"| {label} | {entry['fold']} | {entry['description']} |")
    return "\n".join(rows)


def _grid_text(grid: Mapping[str, Any] | None) -> str:
    """cost_multiple in {1, 2, 4}; exit_cost_multiple in {default, 0}"""
    if not grid:
        return "no grid: the base rule only"
    return "; ".join(f"{name} in {{{', '.join('default' if v is None else f'{v:g}' if isinstance(v, float) else str(v) for v in values)}}}"
                     for name, values in grid.items())


def _costs_sentence(costs: Mapping[str, Any]) -> str:
    if not costs:
        return ""
    funding = "funding charged at every settlement" if costs.get("charge_funding") else "no funding"
    per_side = costs.get("taker_fee", 0) + costs.get("slippage_bps", 0) * 1e-4
    return (f"Costs: taker fee {100 * costs.get('taker_fee', 0):.3f}% and slippage {costs.get('slippage_bps', 0):g} bp "
            f"a side (a round trip costs {200 * per_side:.3f}% of the notional), {funding}.")


def backtest_report(metrics: Mapping[str, Any]) -> str:
    """The Markdown report: headline, significance, the tables, the verdicts, model metrics, plots."""
    rule = metrics.get("trading_rule", {})
    trials = metrics.get("trials", {})
    sections = [
        "# Backtest report",
        "Equal-weight portfolio of the series. The model trades the shared cost-aware rule: it opens a position "
        "only when its forecast of the horizon's return beats the round trip cost by a factor chosen, with the "
        "rest of the rule, on each fold's validation rows, where not trading is always a candidate. The "
        "forecasting baselines are chosen the same way; every baseline trades the same bars with the same costs. "
        "Sharpe ratios are annualised from daily returns (x sqrt(365)). Definitions: docs/metrics.md.",
        "## Significance",
        "\n".join(significance_lines(metrics)),
        trials_sentence(trials),
        tuning_sentence(metrics),
        "## Does the model beat the baselines?",
        "\n".join(verdicts(metrics)),
        "## Model and baselines (after costs)",
        summary_table(metrics),
        "## Where the money went (% of capital a year)",
        cost_table(metrics),
        "## Trading rule",
        f"Horizon {rule.get('horizon')} bars. Candidates per fold: {rule.get('n_candidates')} "
        f"(not trading, and {_grid_text(rule.get('grid'))}), scored by {rule.get('selection_metric')} on validation "
        f"rows. {_costs_sentence(rule.get('costs', {}))}",
        rule_table(metrics),
        "## Prediction quality",
        model_table(metrics),
        "## Plots",
        "\n".join(f"### {title}\n![{title}]({file})" for title, file in PLOT_FILES.items()),
    ]
    return "\n\n".join(sections) + "\n"


def console_summary(metrics: Mapping[str, Any]) -> str:
    """What `kedro run` prints at its end: the table, the significance and the verdicts."""
    return "\n".join(["Backtest summary (after costs; equal-weight portfolio)", summary_table(metrics),
                      "Significance:", *significance_lines(metrics), "Verdicts:", *verdicts(metrics)])
