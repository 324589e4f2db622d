"""Retry policy: which failures are retried, how long to wait, when to give up.

The policy is data (:class:`RetryPolicy`); :func:`call_with_retries` applies it with tenacity.  Waits are
full-jitter exponential backoff, as botocore's "standard" mode and azure-core do (shorter while most answers
succeed: a random fault of a healthy platform is retried soon, an ailing platform is spared), and never shorter than the
server's ``Retry-After`` (seconds or HTTP-date, capped).  The wait belongs to the row alone: the caller holds
no concurrency slot while it sleeps.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from reconcile.errors import TransientError

T = TypeVar("T")

#: HTTP statuses worth another attempt: timeouts, throttling, and server-side failures that pass.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try one request before giving up on it."""

    max_attempts: int = 5
    max_time: float = 120.0  # seconds from the first failure; no new attempt starts after that
    backoff_initial: float = 0.5  # full-jitter backoff: a random wait in [0, initial * 2**n], ...
    backoff_max: float = 20.0  # ... never above this
    # While most answers succeed a failure is the platform's noise, not its overload: retry soon.
    healthy_backoff_initial: float = 0.05
    healthy_backoff_max: float = 1.0
    retry_after_cap: float = 60.0  # a Retry-After longer than this is shortened to it


def parse_retry_after(value: str | None, *, now: float | None = None, cap: float = 60.0) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP-date; None if absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # an HTTP-date is GMT by definition
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), cap)


def retry_after_from_headers(headers: Mapping[str, str], *, cap: float = 60.0) -> float | None:
    """The wait a response asks for, from ``Retry-After`` or Azure's millisecond variants."""
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        raw = headers.get(name)
        if raw is not None:
            try:
                return min(max(float(raw) / 1000.0, 0.0), cap)
            except ValueError:
                pass
    return parse_retry_after(headers.get("Retry-After"), cap=cap)


class wait_retry_after(wait_base):
    """Full-jitter backoff by the failures charged to the row, and never less than the server's Retry-After."""

    def __init__(self, policy: RetryPolicy, attempts: Attempts, healthy: Callable[[], bool]) -> None:
        self.policy = policy
        self.attempts = attempts
        self.healthy = healthy

    def __call__(self, retry_state: RetryCallState) -> float:
        policy = self.policy
        if self.healthy():
            initial, most = policy.healthy_backoff_initial, policy.healthy_backoff_max
        else:
            initial, most = policy.backoff_initial, policy.backoff_max
        ceiling = min(most, initial * 2 ** max(self.attempts.failures, 1))
        backoff = random.uniform(0, ceiling)
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            # Jitter above the server's time, so the rows it refused together do not all come back together.
            return max(float(min(retry_after, policy.retry_after_cap)), backoff)
        return backoff


class stop_for_row(stop_base):
    """Stop after ``max_attempts`` charged failures or ``max_time`` seconds, outage time not counted."""

    def __init__(self, policy: RetryPolicy, attempts: Attempts, paused: Callable[[], float]) -> None:
        self.policy = policy
        self.attempts = attempts
        self.paused = paused
        self.paused_at_start = paused()

    def __call__(self, retry_state: RetryCallState) -> bool:
        if self.attempts.failures >= self.policy.max_attempts:
            return True
        elapsed = retry_state.seconds_since_start or 0.0
        return elapsed - (self.paused() - self.paused_at_start) >= self.policy.max_time


def _no_pause() -> float:
    return 0.0


def _unknown_health() -> bool:
    return False


def retrying(
    policy: RetryPolicy,
    attempts: Attempts,
    *,
    before_sleep: Callable[[RetryCallState], None] | None = None,
    paused: Callable[[], float] = _no_pause,
    healthy: Callable[[], bool] = _unknown_health,
) -> AsyncRetrying:
    """A tenacity controller for ``policy``; it retries :class:`TransientError` only.

    ``paused`` gives the seconds the platform has been out so far in the run: that time is not charged to
    the row's ``max_time``.  ``healthy`` says whether most recent answers succeed: then the short backoff
    applies.
    """
    return AsyncRetrying(
        stop=stop_for_row(policy, attempts, paused),
        wait=wait_retry_after(policy, attempts, healthy),
        retry=retry_if_exception_type(TransientError),
        before_sleep=before_sleep,
        reraise=True,
    )


@dataclass(slots=True)
class Attempts:
    """How many attempts a call took, and how many failures were charged to it; filled in as it runs."""

    count: int = 0
    failures: int = 0  # failures that count against max_attempts: not throttles, not an outage's

    def failed(self, exc: BaseException) -> None:
        if getattr(exc, "counted", True):
            self.failures += 1

    def __str__(self) -> str:
        return f"{self.count} attempt{'' if self.count == 1 else 's'}"  # "after 1 attempt", never "1 attempts"


async def call_with_retries(
    attempt: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    attempts: Attempts,
    *,
    before_sleep: Callable[[RetryCallState], None] | None = None,
    paused: Callable[[], float] = _no_pause,
    healthy: Callable[[], bool] = _unknown_health,
) -> T:
    """Run ``attempt`` until it succeeds or ``policy`` gives up; the last error is re-raised.

    A failure whose ``counted`` attribute is false (a throttle, a failure while the platform is out) is
    retried without being charged to ``max_attempts``; ``max_time`` still bounds it.
    """
    attempts.count = 1
    try:
        # Most calls succeed first time; a success through tenacity costs ~250 µs more (docs/design.md).
        return await attempt()
    except TransientError as exc:
        first: TransientError | None = exc
        attempts.failed(exc)
    if attempts.failures >= policy.max_attempts and first is not None:
        raise first

    async def replay_then_attempt() -> T:
        # tenacity's first attempt replays the failure already seen, so its wait and counting apply to it.
        nonlocal first
        if first is not None:
            failure, first = first, None
            raise failure
        attempts.count += 1
        try:
            return await attempt()
        except TransientError as exc:
            attempts.failed(exc)
            raise

    controller = retrying(policy, attempts, before_sleep=before_sleep, paused=paused, healthy=healthy)
    return await controller(replay_then_attempt)
