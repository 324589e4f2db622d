"""Concurrency: the slots a request holds while it is on the wire, and the controller that sizes them.

:class:`Slots` counts requests on the wire (a row waiting to be retried holds none); its size may change while
tasks wait.  :class:`ConcurrencyController` is a gradient limiter after Envoy's adaptive concurrency filter and
Netflix's Gradient2: ``limit = gradient × limit + √limit``, fed only the latencies of answers.  The design and its
reasons: docs/design.md, "The concurrency controller".
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("reconcile.platform._concurrency")

INITIAL = 16  # slots an automatic run starts with: gentle on an unknown platform
MINIMUM = 2
BUFFER = 0.1  # latency up to this share above no-load counts as no queue
MIN_GRADIENT = 0.5  # one update never more than halves the limit
WINDOW = 0.25  # seconds of answers per update, at least ...
WINDOW_LATENCIES = 4  # ... and at least this many median latencies, so slow platforms are judged on whole answers
MIN_SAMPLES = 20  # answers per update, at least
APP_LIMITED = 0.8  # grow only when at least this share of the slots was on the wire at once
PROBE_EVERY = 60.0  # seconds between no-load re-measurements (Envoy: 60 s), jittered by ...
PROBE_JITTER = 0.15
PROBE_SHARE = 1 / 8  # ... at this share of the limit (at least MINIMUM) ...
PROBE_SAMPLES = 16  # ... for this many answers to requests sent during the probe
PROBE_TIMEOUT = 5.0  # or this long at the most


class Slots:
    """A resizable count of requests allowed on the wire at once; waiters are served first come, first served."""

    # Futures in a deque, not anyio's CapacityLimiter: that cost ~5% of a CPU-bound run's CPU (bench/README.md).

    def __init__(self, total: int) -> None:
        self._total = total
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.on_wire = 0
        self.peak_on_wire = 0  # since the last :meth:`take_peak`

    @property
    def total(self) -> int:
        return self._total

    @total.setter
    def total(self, value: int) -> None:
        self._total = value
        self._wake()

    async def acquire(self) -> None:
        """Wait for a slot; :meth:`release` gives it back."""
        if self.on_wire >= self._total or self._waiters:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter  # the slot is counted as ours when the future is resolved
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self.release()  # handed a slot just as the wait was cancelled: pass it on
                elif waiter in self._waiters:  # not yet passed over by _wake
                    self._waiters.remove(waiter)
                raise
        else:
            self.on_wire += 1
        if self.on_wire > self.peak_on_wire:
            self.peak_on_wire = self.on_wire

    def release(self) -> None:
        self.on_wire -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.on_wire < self._total:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.on_wire += 1
                waiter.set_result(None)

    def take_peak(self) -> int:
        """The most slots in use at once since the last call; starts the next count from now."""
        peak, self.peak_on_wire = self.peak_on_wire, self.on_wire
        return peak


@dataclass(frozen=True, slots=True)
class Change:
    """One change of the limit, for the log and the summary."""

    limit: int
    reason: str


class ConcurrencyController:
    """Sizes :class:`Slots` from the latencies of answered requests; call :meth:`answered` for each."""

    def __init__(
        self,
        *,
        ceiling: int,
        initial: int = INITIAL,
        buffer: float = BUFFER,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.ceiling = max(MINIMUM, ceiling)
        self.limit = min(max(MINIMUM, initial), self.ceiling)
        self.buffer = buffer
        self._clock = clock
        self._rng = rng or random.Random()
        self.slots: Slots | None = None
        self.no_load: float | None = None  # seconds
        self.lowest = self.highest = self.limit
        self.changes = 0
        self._samples: list[float] = []
        self._window_start = clock()
        self._probing: tuple[int, float] | None = None  # (limit to restore, probe start) while re-measuring
        self._probe_generation = 0  # requests sent during a probe carry its generation
        self._probe_samples: list[float] = []
        self._next_probe = self._window_start + self._probe_interval()

    def attach(self, slots: Slots) -> None:
        """Size ``slots``; the first answers measure no-load at a few slots, before the first limit applies."""
        self.slots = slots
        self._begin_probe(self._clock())

    @property
    def generation(self) -> int:
        """Stamp a request with this when it is sent and pass it back to :meth:`answered`."""
        return self._probe_generation if self._probing else -1

    def answered(self, latency: float, generation: int = -1) -> Change | None:
        """An answer (any HTTP status but a throttle) took ``latency`` seconds; the change of limit it led to."""
        now = self._clock()
        if self._probing is not None:
            if generation == self._probe_generation:
                self._probe_samples.append(latency)
            restore, started = self._probing
            if len(self._probe_samples) >= PROBE_SAMPLES or now - started >= PROBE_TIMEOUT:
                return self._end_probe(restore, now)
            return None
        self._samples.append(latency)
        elapsed = now - self._window_start
        if len(self._samples) < MIN_SAMPLES or elapsed < WINDOW:
            return None
        median = statistics.median(self._samples)
        if elapsed < WINDOW_LATENCIES * median:
            return None
        self._samples.clear()
        self._window_start = now
        peak = self.slots.take_peak() if self.slots is not None else self.limit
        if self.no_load is None or median < self.no_load:
            self.no_load = median
        if now >= self._next_probe:
            return self._begin_probe(now)
        return self._update(median, peak)

    def _update(self, median: float, peak: int) -> Change | None:
        assert self.no_load is not None
        gradient = min(1.0, max(MIN_GRADIENT, (1 + self.buffer) * self.no_load / median))
        limit = self.limit
        target = gradient * limit + math.sqrt(limit)
        if gradient >= 1.0 and peak < APP_LIMITED * limit:
            return None  # the slots were not the limit: growing them says nothing
        new = int(min(self.ceiling, max(MINIMUM, round(target))))
        if new == limit:
            return None
        why = (
            f"median latency {median * 1000:.0f} ms is {median / self.no_load:.2f}x no-load "
            f"({self.no_load * 1000:.0f} ms)"
        )
        return self._set(new, ("growing: " if new > limit else "a queue is forming at the platform: ") + why)

    def _begin_probe(self, now: float) -> Change:
        self._probing = (self.limit, now)
        self._probe_generation += 1
        self._probe_samples.clear()
        self._apply(max(MINIMUM, int(self.limit * PROBE_SHARE)))
        return Change(self.slots.total if self.slots else self.limit, "re-measuring the platform's no-load latency")

    def _end_probe(self, restore: int, now: float) -> Change:
        self._probing = None
        self._next_probe = now + self._probe_interval()
        self._window_start = now
        self._samples.clear()
        if self._probe_samples:
            self.no_load = statistics.median(self._probe_samples)
        self._apply(restore)
        no_load = f"{self.no_load * 1000:.0f} ms" if self.no_load is not None else "unknown"
        return Change(restore, f"no-load latency re-measured: {no_load}")

    def _set(self, limit: int, reason: str) -> Change:
        self.limit = limit
        self.changes += 1
        self.lowest = min(self.lowest, limit)
        self.highest = max(self.highest, limit)
        self._apply(limit)
        return Change(limit, reason)

    def _apply(self, total: int) -> None:
        if self.slots is not None:
            self.slots.total = total

    def _probe_interval(self) -> float:
        return PROBE_EVERY * (1 + self._rng.uniform(-PROBE_JITTER, PROBE_JITTER))
