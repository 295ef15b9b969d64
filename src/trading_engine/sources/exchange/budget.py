"""The request-weight budget: pace requests so that their weight stays inside the exchange's limit
without wasting it.

Binance counts the weight of an IP's requests per minute (2400 on USDT-M futures; klines with
limit 1000 weigh 5) and answers 429, then 418 (a ban), beyond it. ccxt's own throttle waits
`rateLimit * cost` after every request (50 ms x 5 for a page of klines), about half the budget.

`WeightBudget` is a GCRA pacer (generic cell rate algorithm): each unit of weight books
`window_s / (limit * utilisation)` seconds, and a request waits until its predecessors' time is
used up. Over any window of `window_s` seconds the weight sent is at most
`limit * utilisation` plus one request, so `utilisation=0.98` keeps about 40 weight of margin a
minute for clock skew and network jitter while using 98 % of the budget. It is shared by every
thread that talks to the exchange.

Two signals from the exchange override the pace:
* `observe_used_weight(used)`, from the `X-MBX-USED-WEIGHT-1M` header: when the exchange says the
  current minute is (nearly) full, for example because another program shares the IP, nobody
  sends until the next minute begins;
* `pause(seconds)`, from a 429/418 answer's `Retry-After`: nobody sends until it has passed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class WeightBudget:
    """A thread-safe request-weight pacer; `limit=None` sends at once (no throttling) but still
    honours `pause` and the exchange's used-weight header."""

    def __init__(
        self,
        limit: int | None = 2400,
        window_s: float = 60.0,
        utilisation: float = 0.98,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit is not None and limit <= 0:
            raise ValueError(f"weight limit must be positive, got {limit}")
        if not 0.0 < utilisation <= 1.0:
            raise ValueError(f"utilisation must be in (0, 1], got {utilisation}")
        self.limit = limit
        self.window_s = float(window_s)
        self.utilisation = utilisation
        self._seconds_per_weight = 0.0 if limit is None else self.window_s / (limit * utilisation)
        self._clock, self._wall_clock, self._sleep = clock, wall_clock, sleep
        self._lock = threading.Lock()
        self._next_free = clock()  # the time from which the next request may go
        self._paused_until = clock()
        self.weight_sent = 0
        self.requests_sent = 0
        self.seconds_waited = 0.0

    def acquire(self, weight: float = 1.0) -> float:
        """Block until a request of `weight` may be sent; -> seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                ready_at = max(
                    self._next_free if self.limit is not None else now, self._paused_until
                )
                if ready_at <= now:
                    self._next_free = max(self._next_free, now) + weight * self._seconds_per_weight
                    self.weight_sent += weight
                    self.requests_sent += 1
                    self.seconds_waited += waited
                    return waited
                delay = ready_at - now
            self._sleep(delay)
            waited += delay

    def pause(self, seconds: float) -> None:
        """Nobody sends for `seconds` (an exchange's Retry-After)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def observe_used_weight(self, used: int, next_weight: float = 10.0) -> None:
        """The exchange's count of weight used in its current window (`X-MBX-USED-WEIGHT-1M`).
        When one more request of `next_weight` would pass the limit, wait for the next window:
        Binance's windows are whole minutes of its clock."""
        if self.limit is None or used + next_weight <= self.limit:
            return
        wall = self._wall_clock()
        self.pause(self.window_s - wall % self.window_s + 0.05)
