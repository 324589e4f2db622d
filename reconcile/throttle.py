"""Throttle: how fast all workers together may send, and when they must stop for a while.

Three mechanisms, shared by every worker of a run:

* **Pause.** A ``Retry-After`` on a 429 or 503 stops sending for *all* workers until it passes: the server
  said it is overloaded, not that one worker is.
* **Adaptive rate.** The first throttling answer sets the send rate just under the rate the platform was
  actually accepting (successes in the last second), the estimate BBR-style congestion control uses rather
  than blind halving; the rate then creeps up slowly to find more room.  Every throttling episode costs a
  pause, so probing is deliberately slow: a run should settle near the cap, not saw-tooth below it.
* **Hard cap.** ``--max-rps`` is a token bucket no adaptive rate may exceed.

:class:`RetryBudget` is botocore's retry quota: retries cost, successes refund, and when it is empty the
platform is failing persistently and the run stops instead of hammering it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from .errors import PlatformUnavailable, TransportError

log = logging.getLogger("reconcile.throttle")

WINDOW = 1.0  # seconds of success history used to estimate the accepted rate
BUCKETS = 8  # the window is kept as this many buckets
SETTLE_SHARE = 0.97  # after a throttle, send at this share of the accepted rate
COOLDOWN = 2.0  # answers within this long after a cut come from requests sent before it
PROBE_EVERY = 5.0  # seconds between upward steps of the adaptive rate
PROBE_STEP = 0.01  # share added at each step
MIN_RATE = 1.0
BURST_SECONDS = 0.05  # a token bucket may send this many seconds' worth at once


class Throttle:
    """Shared pause, adaptive rate and hard cap; call :meth:`before_send` before every request."""

    def __init__(
        self,
        *,
        max_rps: float | None = None,
        budget: RetryBudget | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_rps = max_rps
        self.budget = budget or RetryBudget()
        self._clock = clock
        self._paused_until = 0.0
        self._adaptive: float | None = None  # None until the platform first throttles us
        self._next_slot = 0.0
        self._last_cut = -COOLDOWN
        self._last_probe = 0.0
        self._bucket_width = WINDOW / BUCKETS
        self._counts = [0] * BUCKETS
        self._bucket_index = 0
        self._bucket_started = clock()
        self.throttled = 0  # 429/503 answers seen
        self.retries = 0
        self.pauses = 0

    @property
    def rate(self) -> float | None:
        """The current send limit in requests per second, or None for unlimited."""
        if self._adaptive is None:
            return self.max_rps
        return self._adaptive if self.max_rps is None else min(self._adaptive, self.max_rps)

    async def before_send(self) -> None:
        now = self._clock()
        if now < self._paused_until:
            await asyncio.sleep(self._paused_until - now)
            now = self._clock()
        rate = self.rate
        if rate is None:
            return
        self._probe(now)
        interval = 1.0 / rate
        slot = max(self._next_slot, now - BURST_SECONDS)
        self._next_slot = slot + interval
        if slot > now:
            await asyncio.sleep(slot - now)

    def on_success(self) -> None:
        self.budget.refund()
        now = self._clock()
        if now - self._bucket_started >= self._bucket_width:
            self._advance(now)
        self._counts[self._bucket_index] += 1

    def on_throttle(self, retry_after: float | None) -> None:
        """A 429 or 503 arrived: pause everyone for ``retry_after`` and settle the rate below the cap."""
        self.throttled += 1
        now = self._clock()
        if retry_after and now + retry_after > self._paused_until:
            self._paused_until = now + retry_after
            self.pauses += 1
        if now - self._last_cut < COOLDOWN:
            return
        self._last_cut = self._last_probe = now
        accepted = self._accepted_rate(now)
        current = self.rate
        base = accepted if accepted > 0 else (current or MIN_RATE * 10) / 2
        if current is not None:
            base = min(base, current)
        self._adaptive = max(MIN_RATE, base * SETTLE_SHARE)
        log.info("platform is throttling; sending at most %.0f requests/s (accepted %.0f/s)",
                 self._adaptive, accepted)

    def on_retry(self, retry_state: Any) -> None:
        """tenacity ``before_sleep`` hook: charge the retry to the shared budget."""
        self.retries += 1
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        self.budget.spend(exc)

    def _probe(self, now: float) -> None:
        if self._adaptive is not None and now - self._last_probe >= PROBE_EVERY:
            self._last_probe = now
            self._adaptive *= 1.0 + PROBE_STEP

    def _advance(self, now: float) -> None:
        steps = int((now - self._bucket_started) / self._bucket_width)
        for _ in range(min(steps, BUCKETS)):
            self._bucket_index = (self._bucket_index + 1) % BUCKETS
            self._counts[self._bucket_index] = 0
        self._bucket_started += steps * self._bucket_width

    def _accepted_rate(self, now: float) -> float:
        self._advance(now)
        return sum(self._counts) / WINDOW


class RetryBudget:
    """botocore's retry quota, shared by all workers: a failing platform is not hammered."""

    def __init__(self, capacity: int = 500, retry_cost: int = 5, timeout_cost: int = 10) -> None:
        self.capacity = capacity
        self.available = capacity
        self.retry_cost = retry_cost
        self.timeout_cost = timeout_cost

    def spend(self, exc: BaseException | None) -> None:
        cost = self.timeout_cost if isinstance(exc, TransportError) and exc.timeout else self.retry_cost
        if cost > self.available:
            raise PlatformUnavailable(
                f"the platform kept failing (last: {exc}); the retry budget of {self.capacity} is spent, "
                "so the run stopped instead of hammering it. Rows not checked are 'unchecked'. "
                "HINT: re-run the same command later to resume"
            )
        self.available -= cost

    def refund(self) -> None:
        if self.available < self.capacity:
            self.available += 1
