"""Throttle: how fast all workers together may send, and when every one of them must wait.

One :class:`Throttle` per run: an adaptive rate that cuts only on a throttle share well above the background,
to just under what the platform let through; a platform-wide pause when most recent answers are throttles; an
outage gate that probes one request at a time; and ``--max-rps`` as a hard token bucket.  :class:`RetryBudget`
is botocore's retry quota.  The design and its reasons: docs/design.md, "The throttle".
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from reconcile.config import ROW
from reconcile.errors import HostUnreachable, PlatformUnavailable, TransportError

log = logging.getLogger("reconcile.platform._throttle")

WINDOW = 1.0  # seconds of answers judged together, at least ...
MIN_ANSWERS = 200  # ... and this many answers (so a 5 % background is measured to ±1.5 %) ...
MAX_WINDOW = 10.0  # ... unless the platform answers so slowly that this much time passes first
MIN_THROTTLES = 5  # no cut on fewer throttles than this in a window
FIRST_CUT_SHARE = 0.10  # until a cap is measured, nothing below this share of throttles is evidence of one
MARGIN = 0.03  # a cut wants the throttle share this far above the background, or three standard errors
BACKGROUND_WEIGHT = 0.1  # the background share is an average of calm windows with this weight on the newest
CUT_SHARE = 0.97  # a cut lands this far under what the platform let through
RECOVER_SHARE = 0.5  # well below the last peak, each window closes this share of the gap
NEAR_PEAK = 0.97  # from this share of the peak on, the limit probes slowly: ...
PROBE_EVERY = 3.0  # ... this often ...
PROBE_STEP = 0.01  # ... by this share; once past STALE_PEAK times the peak (the cap moved), the step doubles ...
STALE_PEAK = 1.1
PROBE_MAX_STEP = 0.25  # ... up to this
BINDING = 0.8  # the limit holds us back when we send at least this share of it; only then does it rise
SLOW_START_WINDOW = 0.25  # in slow start, windows this short ...
SLOW_START_ANSWERS = 10  # ... with this many answers; each calm one doubles the limit
SLOW_START_FLOOR = 10.0  # requests/s to start from when almost nothing got through
UNDO_RATE_DROP = 0.9  # a cut (or a run of cuts) is judged once the rate fell to this share of where it began ...
UNDO_RATE_DROP_AFTER_A_CAP = 0.8  # ... or to this share, when a cap had been measured before
UNDO_WINDOWS = 6  # windows after a cut in which it may still be found to have been background
MIN_RATE = 1.0
PAUSE_ANSWERS = 20  # the platform as a whole refuses when, of the last this many answers, ...
PAUSE_SHARE = 0.6  # ... at least this share are throttles
PAUSE_WITHOUT_RETRY_AFTER = 1.0  # seconds to pause for when those throttles give no Retry-After
OUTAGE_FAILURES = 8  # failures in a row, with no answer between (0.04**8: never by chance), ...
OUTAGE_SILENCE = 0.05  # ... and no answer for this long make an outage; when the failures are HTTP statuses
OUTAGE_SILENCE_ANSWERED = 1.0  # (a gateway answering 502/503/504, or shedding load), this long
PROBE_BACKOFF = (0.25, 0.5, 1.0, 2.0)  # seconds between outage probes; the last repeats
DEFAULT_OUTAGE_TOLERANCE = 180.0  # seconds an outage may last before the run stops
HEALTHY_SHARE = 0.25  # the platform is healthy while fewer than this share of recent attempts fail ...
HEALTH_MEMORY = 64  # ... averaged over about this many attempts
BURST_SECONDS = 0.05  # an idle token bucket may send this many seconds' worth at once
RECHECK = 0.05  # seconds a waiting sender sleeps before looking at the rate again


@dataclass(frozen=True, slots=True)
class _Cut:
    """A cut, remembered until it is shown to have been about the rate or not."""

    share: float
    send_rate: float
    previous: float | None
    previous_peak: float
    windows: int = 0


class Throttle:
    """Shared rate limit, pause and outage gate; call :meth:`before_send` before every request."""

    def __init__(
        self,
        *,
        max_rps: float | None = None,
        budget: RetryBudget | None = None,
        outage_tolerance: float = DEFAULT_OUTAGE_TOLERANCE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_rps = max_rps
        self.budget = budget or RetryBudget()
        self.outage_tolerance = outage_tolerance
        self._clock = clock
        now = clock()
        # -- the adaptive rate
        self._adaptive: float | None = None
        self._peak = 0.0
        self._background = 0.0
        self._calm = 0  # probes past a stale peak, for the probe step
        self._last_probe = now
        self._slow_start = False  # after a cut on too little evidence: double until the next cut
        self._cut: _Cut | None = None
        self.cuts = 0
        self.lowest_rate: float | None = None
        self._start = self._epoch = now
        self._sent = self._accepted = self._throttles = 0
        # -- the token bucket
        self._next_slot = 0.0
        self._turn = asyncio.Lock()
        # -- the platform-wide pause
        self._recent: deque[bool] = deque(maxlen=PAUSE_ANSWERS)  # True for a throttle
        self._paused_until = now
        # -- outages
        self._answered = False  # the platform has answered at least once
        self._last_answer = now
        self._failures_in_a_row = 0
        self._outage_start: float | None = None
        self._outage_seconds = 0.0  # in outages that ended
        self._probe_at = 0.0
        self._probes = 0
        self._probing = False
        self._outage_cause = ""
        self._gate = asyncio.Event()
        self._gate.set()
        self._failing = 0.0  # moving share of attempts that failed
        # -- counters, for progress and the summary
        self.throttled = 0  # 429/503 answers
        self.faults = 0  # other failures: 5xx, resets, timeouts
        self.retries = 0
        self.pauses = 0
        self.outages = 0

    # -- what displays read ---------------------------------------------------------------------------

    @property
    def rate(self) -> float | None:
        """The current send limit in requests per second, or None for unlimited."""
        if self._adaptive is None:
            return self.max_rps
        return self._adaptive if self.max_rps is None else min(self._adaptive, self.max_rps)

    @property
    def holding(self) -> bool:
        """Whether a sender would have to wait now: for a rate limit, a pause or an outage."""
        return self.rate is not None or not self._gate.is_set() or self._clock() < self._paused_until

    @property
    def paused_until(self) -> float:
        """When a platform-wide pause ends (on the throttle's clock); in the past when there is none."""
        return self._paused_until

    @property
    def unreachable_for(self) -> float | None:
        """Seconds the current outage has lasted, or None when the platform answers."""
        return None if self._outage_start is None else self._clock() - self._outage_start

    def healthy(self) -> bool:
        """Whether most recent attempts succeed, so a failure is noise to retry soon rather than overload."""
        return self._failing < HEALTHY_SHARE and self._outage_start is None

    def outage_seconds(self) -> float:
        """Seconds spent in outages so far, the current one included: time no row is charged for."""
        current = self.unreachable_for
        return self._outage_seconds + (current or 0.0)

    # -- sending --------------------------------------------------------------------------------------

    def sent(self) -> float:
        """Count a send and return its time: the end of :meth:`before_send`, and how tests drive a throttle."""
        self._sent += 1
        return self._clock()

    async def before_send(self) -> float:
        """Wait out an outage or a pause, then for a slot under the rate limit; returns the send time."""
        while not self._gate.is_set() or self._probing:
            if not self._probing and self._outage_start is not None:
                self._probing = True  # this sender is the next probe
                try:
                    await self._wait_for_probe()
                except BaseException:
                    self._probing = False
                    raise
                return self.sent()
            await self._gate.wait()
        now = self._clock()
        if now < self._paused_until:
            await asyncio.sleep(self._paused_until - now)
        if self.rate is not None:
            # One sender at a time waits for the next slot; the rest queue on the lock instead of polling.
            async with self._turn:
                await self._next_slot_free()
        return self.sent()

    async def _wait_for_probe(self) -> None:
        # An answer to a request sent before the outage may end it while this probe waits for its turn.
        while (start := self._outage_start) is not None:
            now = self._clock()
            if now - start > self.outage_tolerance:
                raise HostUnreachable(
                    f"the platform has not answered for {now - start:.0f} s "
                    f"(last: {self._outage_cause}); the outage tolerance of {self.outage_tolerance:.0f} s ran out. "
                    "Rows not checked are 'unchecked'. HINT: re-run the same command to resume; "
                    "--outage-tolerance sets how long to wait"
                )
            if now >= self._probe_at:
                return
            await asyncio.sleep(min(self._probe_at, start + self.outage_tolerance + 0.01) - now)

    async def _next_slot_free(self) -> None:
        while (rate := self.rate) is not None:
            now = self._clock()
            slot = max(self._next_slot, now - BURST_SECONDS)
            if slot <= now:
                self._next_slot = slot + 1.0 / rate
                return
            # Re-check rather than sleep until the slot: the rate may rise (or a pause begin) meanwhile.
            await asyncio.sleep(min(slot - now, RECHECK))
            if self._clock() < self._paused_until:
                await asyncio.sleep(self._paused_until - self._clock())

    # -- answers --------------------------------------------------------------------------------------

    def on_success(self, sent_at: float | None = None) -> None:
        """The platform answered (200, or any status that is neither a throttle nor a fault).

        ``sent_at`` is when the request was sent (as :meth:`sent` returned it): only answers to requests sent
        since the last cut or pause judge the current limit, as TCP cuts once per round trip.
        """
        self.budget.refund()
        self._failing -= self._failing / HEALTH_MEMORY
        if sent_at is None or sent_at >= self._epoch:
            self._accepted += 1
            self._recent.append(False)
        now = self._clock()
        self._answer(now)
        self._judge(now)

    def on_refused(self) -> None:
        """A 401: the platform answered (an outage is over), though not to this token."""
        self._answer(self._clock())

    def on_throttle(self, status: int, retry_after: float | None, sent_at: float | None = None) -> None:
        """A 429 or 503 arrived; pause everyone only when most recent answers are throttles."""
        self.throttled += 1
        self._failing += (1 - self._failing) / HEALTH_MEMORY
        now = self._clock()
        if sent_at is not None and sent_at < self._epoch:
            self._answer(now)  # an answer to a request sent before the last cut: it says nothing of the limit now
            return
        self._throttles += 1
        self._recent.append(True)
        if status == 503 and retry_after is None:
            # A 503 with no advice may be an outage too, or load shed by a platform that is alive.
            self._fault(f"HTTP {status} without Retry-After", now, silence=OUTAGE_SILENCE_ANSWERED)
        else:
            self._answer(now)
        if len(self._recent) == PAUSE_ANSWERS and sum(self._recent) >= PAUSE_SHARE * PAUSE_ANSWERS:
            self._pause(status, retry_after, now)
        self._judge(now)

    def on_fault(self, exc: BaseException, *, outage: bool) -> bool:
        """A failure that is no throttle (5xx, reset, timeout); ``outage`` when it may mean the platform is gone.

        Returns whether the failure counts against its row: not while the platform is out.
        """
        self.faults += 1
        self._failing += (1 - self._failing) / HEALTH_MEMORY
        now = self._clock()
        if outage:
            answered = not isinstance(exc, TransportError)  # a gateway's 502/504: something still answers
            self._fault(str(exc), now, silence=OUTAGE_SILENCE_ANSWERED if answered else OUTAGE_SILENCE)
        else:
            self._answer(now)
        return self._outage_start is None

    def _answer(self, now: float) -> None:
        self._answered = True
        self._last_answer = now
        self._failures_in_a_row = 0
        if self._outage_start is not None:
            lasted = now - self._outage_start
            self._outage_seconds += lasted
            self._outage_start = None
            self._probing = False
            self._gate.set()
            log.warning("the platform answers again after %.1f s; resuming", lasted, extra={"outage": lasted})

    def _fault(self, cause: str, now: float, *, silence: float = OUTAGE_SILENCE) -> None:
        self._failures_in_a_row += 1
        self._outage_cause = cause
        if self._outage_start is not None:
            # The probe failed: the next one waits longer, and any waiting sender may be it.
            self._probes += 1
            self._probe_at = now + PROBE_BACKOFF[min(self._probes, len(PROBE_BACKOFF) - 1)]
            self._probing = False
            self._gate.set()
            self._gate.clear()  # wake the waiters, one of which takes the probe
            return
        if self._answered and self._failures_in_a_row >= OUTAGE_FAILURES and now - self._last_answer >= silence:
            self.outages += 1
            self._outage_start = self._last_answer
            self._probes = 0
            self._probe_at = now + PROBE_BACKOFF[0]
            self._gate.clear()
            log.warning(
                "the platform stopped answering (%s): sending paused, probing for up to %.0f s",
                cause,
                self.outage_tolerance,
            )

    def _pause(self, status: int, retry_after: float | None, now: float) -> None:
        wait = PAUSE_WITHOUT_RETRY_AFTER if retry_after is None else retry_after
        if now + wait <= self._paused_until:
            return
        if now >= self._paused_until:
            self.pauses += 1
            log.info(
                "most recent answers are %d: every worker pauses %.1f s",
                status,
                wait,
                extra={"pause": wait},
            )
        self._paused_until = self._epoch = now + wait
        self._next_slot = max(self._next_slot, self._paused_until)  # resume evenly spaced, not in a burst
        self._recent.clear()
        self._judge(now, force=True)

    # -- the adaptive rate ------------------------------------------------------------------------------

    def _judge(self, now: float, force: bool = False) -> None:
        """Close the current window when it holds enough answers, and act on what it says."""
        elapsed = now - self._start
        answers = self._accepted + self._throttles
        if self._slow_start:
            ready = elapsed >= SLOW_START_WINDOW and answers >= SLOW_START_ANSWERS
        else:
            ready = (elapsed >= WINDOW and answers >= MIN_ANSWERS) or (
                elapsed >= MAX_WINDOW and answers >= MIN_THROTTLES
            )
        if not (ready or force):
            return
        sent, accepted, throttles = self._sent, self._accepted, self._throttles
        share = throttles / answers if answers else 0.0
        base = self._background
        threshold = base + max(MARGIN, 3 * math.sqrt(max(base, 0.01) * (1 - base) / max(answers, 1)))
        if not self._peak:
            threshold = max(threshold, FIRST_CUT_SHARE)  # no cap measured yet: the background is unknown
        if share > threshold and throttles < MIN_THROTTLES and not force:
            return  # a hint of a cap: gather throttles enough to judge it, rather than call the window calm
        self._start = max(now, self._paused_until)  # time paused is no evidence of a low rate
        self._sent = self._accepted = self._throttles = 0
        if answers < MIN_THROTTLES or elapsed <= 0:
            return
        send_rate = sent / elapsed
        if self._cut is not None and self._was_background(share, send_rate, answers):
            return
        if throttles >= MIN_THROTTLES and share > threshold:
            if elapsed < WINDOW and not self._slow_start:
                # A fraction of a second, maybe the platform's burst: too little to measure a cap from.  Back to
                # just under the cap measured before, if there is one; else slow start from what got through.
                if self._peak:
                    self._cut_to(now, CUT_SHARE * self._peak, share, send_rate, peak=self._peak)
                else:
                    self._cut_to(now, max(SLOW_START_FLOOR, accepted / WINDOW), share, send_rate, slow_start=True)
            else:
                through = send_rate * (1 - (share - self._background))  # what the platform let through
                if self._slow_start:
                    # Doubling overshot: back to the step that sent without complaint (TCP's ssthresh); a
                    # quarter second's measure, swollen by the platform's burst, is only the peak to recover to.
                    self._cut_to(now, (self._adaptive or through) / 2, share, send_rate, peak=through)
                else:
                    # Only a cut measured over a whole window may later prove to have been background.
                    undoable = elapsed >= WINDOW
                    self._cut_to(now, CUT_SHARE * through, share, send_rate, peak=through, undoable=undoable)
        elif share <= threshold:
            # A window of few answers (slow start's) says little of the background: it moves it little.
            weight = BACKGROUND_WEIGHT * min(1.0, answers / MIN_ANSWERS)
            self._background += weight * (share - self._background)
            self._raise(now, send_rate)

    def _cut_to(
        self,
        now: float,
        target: float,
        share: float,
        send_rate: float,
        *,
        peak: float = 0.0,
        slow_start: bool = False,
        undoable: bool = False,
    ) -> None:
        target = max(MIN_RATE, target)
        current = self.rate
        if current is not None and target >= current:
            return  # sending above the limit in a burst: the limit already covers it
        if not undoable:
            self._cut = None
        elif self._cut is None:  # a run of cuts is judged against where it began
            self._cut = _Cut(share, send_rate, self._adaptive, self._peak)
        self._epoch = max(self._epoch, now)
        self._adaptive, self._peak, self._calm, self._slow_start = target, peak, 0, slow_start
        self.cuts += 1
        self.lowest_rate = target if self.lowest_rate is None else min(self.lowest_rate, target)
        log.info(
            "%.0f%% of answers are throttles (background %.0f%%): sending at most %.0f requests/s",
            share * 100,
            self._background * 100,
            target,
            extra={"rate": target},
        )

    def _was_background(self, share: float, send_rate: float, answers: int) -> bool:
        """Undo the last cut when sending slower left the throttle share where it was: it was not about the rate."""
        cut = self._cut
        assert cut is not None
        # With a cap measured before, a cut is presumed about it: the share must stay level over a larger drop.
        drop = UNDO_RATE_DROP if not cut.previous_peak else UNDO_RATE_DROP_AFTER_A_CAP
        if send_rate > drop * cut.send_rate:
            windows = cut.windows + 1  # still sending at the old rate: judge the cut later
            self._cut = None if windows >= UNDO_WINDOWS else replace(cut, windows=windows)
            return False
        self._cut = None
        noise = 2 * math.sqrt(max(share, 0.01) * (1 - share) / answers)
        if abs(share - cut.share) > max(0.02, noise):
            return False  # the share moved with the rate (down: the cut worked; up: it was too small)
        self._background = share  # what is refused below the old rate is the background
        self._adaptive, self._peak, self._slow_start = cut.previous, cut.previous_peak, False
        self.cuts -= 1
        log.info(
            "throttles stayed at %.0f%% of answers when sending slower: not a rate limit; rate restored",
            share * 100,
            extra={"rate": self._adaptive},
        )
        return True

    def _raise(self, now: float, send_rate: float) -> None:
        adaptive = self._adaptive
        if adaptive is None or send_rate < BINDING * adaptive:
            return  # a limit the workers do not fill says nothing about the platform
        if self._slow_start:
            raised, why = 2 * adaptive, "slow start"
            self._epoch = now  # only answers to requests sent at the new step judge it
        elif adaptive < NEAR_PEAK * self._peak:
            raised, why = adaptive + RECOVER_SHARE * (self._peak - adaptive), "back towards the last peak"
        elif now - self._last_probe >= PROBE_EVERY:
            self._last_probe = now
            step = PROBE_STEP
            if adaptive > STALE_PEAK * self._peak:
                step = min(PROBE_MAX_STEP, PROBE_STEP * 2**self._calm)
                self._calm += 1
            raised, why = adaptive * (1 + step), "probing"
        else:
            return
        self._adaptive = raised
        log.info("sending at most %.0f requests/s (%s)", raised, why, extra={"rate": raised})

    # -- retries --------------------------------------------------------------------------------------

    def on_retry(self, retry_state: Any) -> None:
        """tenacity ``before_sleep`` hook: charge the retry to the shared budget."""
        self.retries += 1
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        self.budget.spend(exc)
        if log.isEnabledFor(logging.INFO):
            _log_retry(retry_state, exc)


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
        return cls(capacity=_capacity(concurrency))

    def resize(self, concurrency: int) -> None:
        """Follow a concurrency that moved: the units gained or lost go with the capacity."""
        capacity = _capacity(concurrency)
        self.available = max(0, min(capacity, self.available + capacity - self.capacity))
        self.capacity = capacity

    def spend(self, exc: BaseException | None) -> None:
        paced = getattr(exc, "retry_after", None) is not None or not getattr(exc, "counted", True)
        if paced or (isinstance(exc, TransportError) and exc.connect and not exc.timeout):
            # The server said when to come back, the platform is out and only probes go, or a connection was
            # refused (which costs the platform nothing): pacing, not hammering, so it costs little.  It still
            # costs something, so endless throttling ends the run.
            cost = self.paced_cost
        elif isinstance(exc, TransportError) and exc.timeout:
            cost = self.timeout_cost
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


def _capacity(concurrency: int) -> int:
    return max(500, 20 * concurrency)
