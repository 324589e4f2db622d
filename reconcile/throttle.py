"""Throttle: how fast all workers together may send, and when they must stop for a while.

Three mechanisms, shared by every worker of a run:

* **Pause.** A ``Retry-After`` on a 429 or 503 stops sending for *all* workers until it passes: the server
  said it is overloaded, not that one worker is.
* **Adaptive rate.** The first throttling answer starts TCP-style slow start from what got through; its
  overshoot halves the limit, which then climbs back 8 % a second until the next throttle settles it one step
  back (two when the burst the platform refills during a pause hid the step before).  Once settled it probes
  up slowly and stays under the lowest limit throttled.  Every throttling episode costs a pause of every
  worker, so the rules aim at few episodes: a run should settle near the cap, not saw-tooth below it.
  Only answers to requests sent under the current limit may cut it, and a lone 429 soon after a cut is noise.
* **Hard cap.** ``--max-rps`` is a token bucket no adaptive rate may exceed.

:class:`RetryBudget` is botocore's retry quota: retries cost, successes refund, and when it is empty the
platform is failing persistently and the run stops instead of hammering it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .errors import PlatformUnavailable, TransportError
from .logs import ROW

log = logging.getLogger("reconcile.throttle")

WINDOW = 1.0  # seconds of history used to measure send and success rates
MIN_EVIDENCE = 0.25  # seconds of unpaused sending needed before a measurement is trusted
BINDING = 0.8  # the limit is what holds us back when we send at least this share of it
DECREASE = 0.95  # a throttle while the limit binds cuts it to this share ...
SETTLE_SHARE = 0.96  # ... or to this share of the rate the platform accepted, whichever is lower;
BLIND_DECREASE = 0.9  # ... or, with nothing to measure (throttled straight after a pause), to this share
FLOOR_SHARE = 0.25  # never below this share of the best accepted rate seen: random faults must not collapse it
PROBE_EVERY = 5.0  # seconds between upward steps of a settled limit
PROBE_STEP = 0.01  # share added at each step, or a quarter of the way to the ceiling if that is more
SLOW_START_EVERY = 0.25  # before any reliable estimate the limit doubles this often, as in TCP's slow start
COOLDOWN = 2.0  # unless the limit rose since, no second cut this soon after the last: a lone 429 is no trend
SLOW_START_COOLDOWN = 1.0  # slow start always rises: it gets this long (16x) before a 429 may end it
CEILING_SHARE = 0.93  # once throttled at a limit, probing stops at this share of the lowest such limit ...
CEILING_MEMORY = 60.0  # ... for this long: every episode costs a pause, the cap rarely moves
RECOVER_EVERY = 1.0  # after slow start overshot, the halved limit climbs back this often ...
RECOVER_STEP = 0.08  # ... by this share, until the next throttle settles it
SLOW_START_FLOOR = 10.0  # requests per second to start from when nothing got through
MIN_RATE = 1.0
BURST_SECONDS = 0.02  # a token bucket may send this many seconds' worth at once
RECHECK = 0.05  # seconds a waiting sender sleeps before looking at the rate again


_PHASES = {  # phase: (seconds between raises, factor)
    "slow": (SLOW_START_EVERY, 2.0),
    "recover": (RECOVER_EVERY, 1.0 + RECOVER_STEP),
    "settled": (PROBE_EVERY, 1.0 + PROBE_STEP),
}


class _Meter:
    """Event times of the last few seconds, newest last, for rates over a window."""

    def __init__(self) -> None:
        self.stamps: deque[float] = deque(maxlen=16_384)

    def count(self, start: float) -> int:
        count = 0
        for stamp in reversed(self.stamps):
            if stamp < start:
                break
            count += 1
        return count

    def rate(self, start: float, now: float) -> float:
        return self.count(start) / max(now - start, 1e-9)


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
        self._started = self._paused_until = clock()
        self._pauses: deque[tuple[float, float]] = deque(maxlen=64)  # recent pauses: (start, end)
        self._adaptive: float | None = None  # None until the platform first throttles us
        self._phase = "settled"  # "slow" (doubling), "recover" (climbing back fast) or "settled" (probing)
        self._best_accepted = 0.0
        self._ceiling = (float("inf"), 0.0)  # (a limit that was throttled, until when to respect it)
        self._next_slot = 0.0
        self._turn = asyncio.Lock()
        self._epoch = self._paused_until  # only answers to requests sent after this (the last cut) may cut again
        self._last_probe = 0.0
        self._last_raise = 0.0
        self._sent = _Meter()
        self._accepted = _Meter()
        self.throttled = 0  # 429/503 answers seen
        self.retries = 0
        self.pauses = 0

    @property
    def rate(self) -> float | None:
        """The current send limit in requests per second, or None for unlimited."""
        if self._adaptive is None:
            return self.max_rps
        return self._adaptive if self.max_rps is None else min(self._adaptive, self.max_rps)

    @property
    def holding(self) -> bool:
        """Whether a sender may have to wait (a pause or a rate limit); False lets it skip :meth:`before_send`."""
        return self.rate is not None or self._clock() < self._paused_until

    def sent(self) -> float:
        """Record a send that did not go through :meth:`before_send`; returns its time for :meth:`on_throttle`."""
        now = self._clock()
        self._sent.stamps.append(now)
        return now

    async def before_send(self) -> float:
        """Wait for a pause to pass and for a slot under the rate limit; returns the send time."""
        now = self._clock()
        if now < self._paused_until:
            await asyncio.sleep(self._paused_until - now)
        if self.rate is not None:
            # One sender at a time waits for the next slot; the rest queue on the lock instead of each polling
            # the clock (at 100 workers that polling cost more CPU than the requests).
            async with self._turn:
                await self._next_slot_free()
        return self.sent()

    async def _next_slot_free(self) -> None:
        while (rate := self.rate) is not None:
            now = self._clock()
            self._probe(now, rate)
            slot = max(self._next_slot, now - BURST_SECONDS)
            if slot <= now:
                self._next_slot = slot + 1.0 / rate
                return
            # Re-check rather than sleep until the slot: the rate may rise (or a pause begin) meanwhile.
            await asyncio.sleep(min(slot - now, RECHECK))
            if self._clock() < self._paused_until:
                await asyncio.sleep(self._paused_until - self._clock())

    def on_success(self) -> None:
        self.budget.refund()
        self._accepted.stamps.append(self._clock())

    def on_throttle(self, retry_after: float | None, *, too_fast: bool = True, sent_at: float | None = None) -> None:
        """A 429 (``too_fast``) or 503 arrived: pause everyone for ``retry_after``; on a 429, settle the rate.

        A 503 says the platform is unavailable, not that we send too fast: it pauses but does not cut.
        ``sent_at`` is when the throttled request was sent (default: now).  Only a request sent under the current
        limit says anything about it, so answers to requests sent before the last cut do not cut again (TCP cuts
        once per round trip for the same reason).  A lone 429 soon after a cut is taken for noise unless the
        limit has risen since (:meth:`_cooling`): a cooldown for every case had wasted whole pauses on overshoots.
        """
        self.throttled += 1
        now = self._clock()
        already_paused = now < self._paused_until
        if retry_after and now + retry_after > self._paused_until:
            if not already_paused:
                log.info(
                    "platform answered %s with Retry-After: every worker pauses %.1f s",
                    429 if too_fast else 503,
                    retry_after,
                    extra={"pause": retry_after},
                )
            self._paused_until = now + retry_after
            # Resume evenly spaced, without the catch-up burst an idle limiter allows: every worker is waiting
            # at the end of a pause, and a platform with a small burst answered that bunch with the next 429.
            self._next_slot = max(self._next_slot, self._paused_until)
            if already_paused:
                self._pauses[-1] = (self._pauses[-1][0], self._paused_until)
            else:
                self._pauses.append((now, self._paused_until))
            self.pauses += 1
        if not too_fast or already_paused or (now if sent_at is None else sent_at) < self._epoch:
            return  # the same episode: these answers are for requests sent before the first one
        if self._cooling(now):
            return
        if self._settle(now):
            self._epoch = self._last_probe = max(now, self._paused_until)
            log.info("platform is throttling; sending at most %.0f requests/s", self._adaptive)

    def _cooling(self, now: float) -> bool:
        """Whether a 429 now is too soon after the last cut to be more than noise."""
        if self._adaptive is None:
            return False
        if self._phase == "slow":
            return now < self._epoch + SLOW_START_COOLDOWN
        # A limit raised since the cut is news; the limit that was cut, still in force, wants more than one 429.
        return self._last_raise < self._epoch and now < self._epoch + COOLDOWN

    def on_retry(self, retry_state: Any) -> None:
        """tenacity ``before_sleep`` hook: charge the retry to the shared budget."""
        self.retries += 1
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        self.budget.spend(exc)
        if log.isEnabledFor(logging.INFO):
            _log_retry(retry_state, exc)

    def _settle(self, now: float) -> bool:
        """Choose a new limit after a throttle; False when the limit is not what holds us back."""
        # Slow start doubles every quarter second: only the last step's window says what the cap is.
        window, evidence = (SLOW_START_EVERY, 0.1) if self._phase == "slow" else (WINDOW, MIN_EVIDENCE)
        start, sending = self._window(now, window)
        measured = sending >= evidence
        current = self.rate
        if current is None:
            # Throttled with no limit yet (a start-up burst): guess from what got through, then grow fast.
            got_through = self._accepted.rate(now - WINDOW, now)
            self._phase = "slow"
            self._adaptive = max(SLOW_START_FLOOR, got_through)
            return True
        # In slow start the window may straddle a doubling, so it is measured as loosely as _probe measures it.
        binding = BINDING / 2 if self._phase == "slow" else BINDING
        if measured and self._sent.count(start) / sending < binding * current:
            return False  # sending below the limit: this throttle is not about our rate
        accepted = self._accepted.count(start) / sending if measured else 0.0
        if self._phase != "slow":  # slow start's quarter-second windows are too short to trust as a best
            self._best_accepted = max(self._best_accepted, accepted)
        if self._phase == "slow":
            # Doubling overshot the cap: fall back to the last step's limit, which sent without complaint (TCP's
            # ssthresh), and climb from there.  What got through is no guide here: a quarter second after a pause
            # it is mostly the platform's refilled burst, and settling on it left the limit far above the cap.
            target = current / 2
            self._phase = "recover"
        else:
            target, over = self._cut(now, current)
            target = min(target, SETTLE_SHARE * accepted if measured else BLIND_DECREASE * current)
            self._phase = "settled"
            ceiling, until = self._ceiling
            self._ceiling = (min(over, ceiling if now < until else over), now + CEILING_MEMORY)
        self._adaptive = max(MIN_RATE, FLOOR_SHARE * self._best_accepted, target)
        return True

    def _window(self, now: float, length: float) -> tuple[float, float]:
        """Where the last ``length`` seconds spent sending began, reaching back past pauses, and the time spent
        sending since then (less only when the run is younger than that).

        Time paused because the platform asked is not evidence of a low rate, and a throttle straight after a
        pause is judged on the sending before it rather than cut blind: random 429s right after each pause
        otherwise ratcheted the rate down to nothing.
        """
        need, edge = length, now
        for pause_start, pause_end in reversed(self._pauses):
            if pause_end < edge:
                if edge - pause_end >= need:
                    break
                need -= edge - pause_end
            edge = min(edge, pause_start)
        start = max(edge - need, self._started)
        return start, length - need + max(0.0, edge - start)

    def _cut(self, now: float, current: float) -> tuple[float, float]:
        """The limit after a throttle at ``current`` outside slow start, and the lowest limit now known too high."""
        if self._phase != "recover":
            return DECREASE * current, current
        # Climbing back overshot: the step before this one sent a whole step without complaint.  Unless the
        # throttle came early in this step: then that step had already spent the platform's burst, so it was
        # over the cap too, only hidden by the burst.
        previous = current / (1 + RECOVER_STEP)
        if now - self._last_raise < RECOVER_EVERY / 2:
            return previous / (1 + RECOVER_STEP), previous
        return previous, current

    def _probe(self, now: float, rate: float) -> None:
        """Raise the limit while it binds: slowly once settled, by doubling in slow start."""
        if self._adaptive is None:
            return
        every, factor = _PHASES[self._phase]
        if now - self._last_probe < every:
            return
        self._last_probe = now
        # Raise only a limit that binds (as TCP validates its window): a limit the workers cannot fill says
        # nothing about the platform.  Slow start's short steps are measured more loosely.
        binding = BINDING if self._phase == "settled" else BINDING / 2
        if self._sent.rate(now - every, now) >= binding * rate:
            ceiling, until = self._ceiling
            raised = self._adaptive * factor
            if now < until:
                # Far under the ceiling, close a quarter of the gap per step: 1 % steps took a minute to climb
                # back from a cut made blind.
                top = CEILING_SHARE * ceiling
                raised = min(max(raised, self._adaptive + (top - self._adaptive) / 4), max(self._adaptive, top))
            if raised != self._adaptive:
                self._last_raise = now
                log.debug("raising the send limit to %.1f requests/s (%s)", raised, self._phase)
            self._adaptive = raised


def _log_retry(retry_state: Any, exc: BaseException | None) -> None:
    record = ROW.get()
    where = f"row {record.row} of manifest {record.source + 1} ({record.filename!r})" if record else "a request"
    status = getattr(exc, "status", None)
    log.info(
        "%s: attempt %d failed (%s); retrying in %.1f s",
        where,
        retry_state.attempt_number,
        exc,
        retry_state.upcoming_sleep,
        extra={
            "row": record.row if record else None,
            "manifest": record.source + 1 if record else None,
            "status": status,
            "attempt": retry_state.attempt_number,
            "wait": retry_state.upcoming_sleep,
        },
    )


class RetryBudget:
    """botocore's retry quota, shared by all workers: a failing platform is not hammered."""

    def __init__(self, capacity: int = 500, retry_cost: int = 5, timeout_cost: int = 10, paced_cost: int = 1) -> None:
        self.capacity = capacity
        self.available = capacity
        self.retry_cost = retry_cost
        self.timeout_cost = timeout_cost
        self.paced_cost = paced_cost

    @classmethod
    def for_concurrency(cls, concurrency: int) -> RetryBudget:
        """botocore's 500 units suit its 10 connections; one failed burst of N in flight must not drain it."""
        return cls(capacity=max(500, 20 * concurrency))

    def spend(self, exc: BaseException | None) -> None:
        if isinstance(exc, TransportError) and exc.timeout:
            cost = self.timeout_cost
        elif getattr(exc, "retry_after", None) is not None:
            # The server said when to come back and every worker is paused until then: that is pacing, not
            # hammering, so it costs little.  It still costs something, so endless throttling ends the run.
            cost = self.paced_cost
        else:
            cost = self.retry_cost
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
