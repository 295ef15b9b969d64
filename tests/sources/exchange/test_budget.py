"""The request-weight pacer on a simulated clock: the bound it guarantees and the budget it uses."""

from __future__ import annotations

import numpy as np

from trading_engine.sources.exchange import WeightBudget


class SimulatedClock:
    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _sent(
    budget: WeightBudget, clock: SimulatedClock, weights, work_s: float
) -> list[tuple[float, float]]:
    """Acquire each weight, then 'work' for work_s; -> (send time, weight) of every request."""
    sent = []
    for weight in weights:
        budget.acquire(weight)
        sent.append((clock.now, weight))
        clock.sleep(work_s)
    return sent


def _heaviest_window(sent: list[tuple[float, float]], window_s: float) -> float:
    times = np.array([t for t, _ in sent])
    weights = np.cumsum([0.0] + [w for _, w in sent])
    ends = np.searchsorted(times, times + window_s - 1e-9, side="right")
    return float(np.max(weights[ends] - weights[np.arange(len(times))]))


def test_no_window_holds_more_than_the_paced_weight_plus_one_request():
    clock = SimulatedClock()
    budget = WeightBudget(
        limit=2400,
        window_s=60.0,
        utilisation=0.98,
        clock=clock,
        wall_clock=clock,
        sleep=clock.sleep,
    )
    weights = np.random.default_rng(0).choice([1, 2, 5, 10], size=3000, p=[0.05, 0.05, 0.85, 0.05])

    sent = _sent(budget, clock, weights, work_s=0.001)

    assert _heaviest_window(sent, 60.0) <= 2400 * 0.98 + 10 <= 2400


def test_a_fast_client_uses_the_paced_share_of_the_budget():
    clock = SimulatedClock()
    budget = WeightBudget(
        limit=2400,
        window_s=60.0,
        utilisation=0.98,
        clock=clock,
        wall_clock=clock,
        sleep=clock.sleep,
    )

    sent = _sent(budget, clock, [5] * 2000, work_s=0.02)

    elapsed = sent[-1][0] - sent[0][0]
    assert 5 * (len(sent) - 1) / elapsed * 60 / 2400 >= 0.975


def test_retry_after_pauses_everyone_and_a_full_exchange_minute_waits_for_the_next():
    clock = SimulatedClock(start=6_000.0)  # a whole minute of the wall clock
    budget = WeightBudget(
        limit=2400, window_s=60.0, clock=clock, wall_clock=clock, sleep=clock.sleep
    )

    budget.pause(3.0)
    assert budget.acquire(5) == 3.0
    clock.sleep(20.0)  # at 6023 s the exchange says 2395 of this minute's 2400 are used
    budget.observe_used_weight(2395)
    assert abs(budget.acquire(5) - 37.05) < 1e-6  # until 6060 s, the next minute, plus 50 ms
