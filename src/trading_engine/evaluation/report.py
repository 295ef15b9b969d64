"""The human report of the backtest (Markdown) and its summary table.

The report sits beside the plots in the reporting folder; the catalog names the plot files as in
`PLOT_FILES`, so the links below resolve.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PLOT_FILES = {
    "Equity curves": "backtest_equity_curves.png",
    "Drawdown": "backtest_drawdown.png",
    "Rolling Sharpe": "backtest_rolling_sharpe.png",
    "Calibration": "backtest_calibration.png",
    "Coverage vs precision": "backtest_coverage_precision.png",
}
PERIOD_NAMES = {"out_of_sample": "out-of-sample", "holdout": "holdout"}
BASELINE_NAMES = {"buy_and_hold": "buy and hold", "always_short": "always short", "momentum": "momentum",
                  "mean_reversion": "1-bar mean reversion", "logistic": "logistic regression",
                  "random": "random signal (95th percentile)"}


def _number(value: Any, digits: int = 2, percent: bool = False) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool | str):
        return str(value)
    return f"{100 * value:.{digits - 1}f}%" if percent else f"{value:.{digits}f}"


def _row(name: str, period: str, entry: Mapping[str, Any]) -> str:
    before = entry.get("before_costs", {})
    cells = [name, PERIOD_NAMES.get(period, period), _number(entry.get("sharpe")), _number(entry.get("sortino")),
             _number(entry.get("max_drawdown"), percent=True), _number(entry.get("win_rate"), percent=True),
             _number(entry.get("profit_factor")), str(entry.get("n_trades", "n/a")),
             _number(entry.get("cagr"), percent=True), _number(before.get("sharpe"))]
    return "| " + " | ".join(cells) + " |"


def summary_table(metrics: Mapping[str, Any]) -> str:
    """Markdown table: the model and every deterministic baseline, per period, after costs (and
    the Sharpe ratio before costs)."""
    header = ("| strategy | period | Sharpe | Sortino | max drawdown | win rate | profit factor | trades "
              "| CAGR | Sharpe before costs |\n|" + " --- |" * 10)
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


def verdicts(metrics: Mapping[str, Any]) -> list[str]:
    """One plain sentence per period and baseline: does the model beat it after costs?"""
    lines = []
    for period, comparison in metrics.get("comparison", {}).items():
        for name, result in comparison.items():
            beats = "beats" if result["model_beats"] else "does NOT beat"
            against = result.get("baseline_sharpe_p95", result["baseline_sharpe"])
            lines.append(f"- {PERIOD_NAMES.get(period, period)}: the model {beats} {BASELINE_NAMES.get(name, name)} "
                         f"(Sharpe after costs {_number(result['model_sharpe'])} vs {_number(against)})")
    return lines


def _track_record(days: float | None) -> str:
    return "infinite (Sharpe <= 0)" if days is None else f"{days:.0f} days"


def significance_lines(metrics: Mapping[str, Any]) -> list[str]:
    lines = []
    for period, entry in metrics.get("portfolio", {}).items():
        if period not in PERIOD_NAMES:
            continue
        dsr = entry.get("deflated_sharpe")
        significant = dsr is not None and dsr >= 0.95
        lines.append(
            f"- {PERIOD_NAMES[period]}: PSR {_number(entry.get('probabilistic_sharpe'), 3)}, "
            f"DSR {_number(dsr, 3)} over {entry.get('n_trials')} trials "
            f"({'significant' if significant else 'not significant'} at 0.95), "
            f"minimum track record {_track_record(entry.get('min_track_record_length_days'))} "
            f"(have {entry.get('n_days')} days)")
    return lines


def model_table(metrics: Mapping[str, Any]) -> str:
    rows = ["| period | accuracy | balanced accuracy | log loss | IC (Spearman) | ECE | predictions |",
            "|" + " --- |" * 7]
    for period, entry in metrics.get("model", {}).items():
        rows.append("| " + " | ".join([
            PERIOD_NAMES.get(period, period), _number(entry.get("accuracy"), 3),
            _number(entry.get("balanced_accuracy"), 3), _number(entry.get("log_loss"), 3),
            _number(entry.get("information_coefficient"), 3), _number(entry.get("expected_calibration_error"), 3),
            str(entry.get("n_predictions", 0))]) + " |")
    return "\n".join(rows)


def backtest_report(metrics: Mapping[str, Any]) -> str:
    """The Markdown report: headline, significance, the table, the verdicts, model metrics, plots."""
    rule = metrics.get("trading_rule", {})
    thresholds = ", ".join(f"fold {t['fold']}: {t['confidence_threshold']:.3f}"
                           for t in rule.get("confidence_thresholds", []))
    trials = metrics.get("trials", {})
    sections = [
        "# Backtest report",
        "Equal-weight portfolio of the series; the model trades the shared rule with the confidence "
        "threshold chosen on each fold's validation rows; every baseline trades the same bars with the "
        "same costs. Sharpe ratios are annualised from daily returns (x sqrt(365)). Definitions: docs/metrics.md.",
        "## Significance",
        "\n".join(significance_lines(metrics)),
        f"Trials counted: {trials.get('total')} ({trials.get('optuna', 0)} Optuna trials + "
        f"{trials.get('confidence_threshold_candidates', 0)} confidence-threshold candidates).",
        "## Model and baselines (after costs)",
        summary_table(metrics),
        "## Does the model beat the baselines?",
        "\n".join(verdicts(metrics)),
        "## Prediction quality",
        model_table(metrics),
        "## Trading rule",
        f"Confidence thresholds: {thresholds or 'n/a'} (selected by {rule.get('selection_metric')}). "
        f"Rest of the shared rule: { {k: v for k, v in rule.get('rule', {}).items() if k != 'confidence_threshold'} }. "
        f"Costs: {rule.get('costs')}.",
        "## Plots",
        "\n".join(f"### {title}\n![{title}]({file})" for title, file in PLOT_FILES.items()),
    ]
    return "\n\n".join(sections) + "\n"
