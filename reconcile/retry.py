"""Retry policy: which failures are retried, how long to wait, when to give up.

The policy is data (:class:`RetryPolicy`); :func:`call_with_retries` applies it with tenacity.  Waits honour
the server's ``Retry-After`` (seconds or HTTP-date, capped) and otherwise use full-jitter exponential backoff,
as botocore's "standard" mode and azure-core do.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)
from tenacity.wait import wait_base

from .errors import TransientError

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
    """Wait what the server asked for when it said, else fall back to another wait strategy."""

    def __init__(self, fallback: wait_base, cap: float) -> None:
        self.fallback = fallback
        self.cap = cap

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return float(min(retry_after, self.cap))
        return float(self.fallback(retry_state))


def retrying(policy: RetryPolicy, *, before_sleep: Callable[[RetryCallState], None] | None = None) -> AsyncRetrying:
    """A tenacity controller for ``policy``; it retries :class:`TransientError` only."""
    return AsyncRetrying(
        stop=stop_after_attempt(policy.max_attempts) | stop_after_delay(policy.max_time),
        wait=wait_retry_after(
            wait_random_exponential(multiplier=policy.backoff_initial, max=policy.backoff_max),
            policy.retry_after_cap,
        ),
        retry=retry_if_exception_type(TransientError),
        before_sleep=before_sleep,
        reraise=True,
    )


@dataclass(slots=True)
class Attempts:
    """How many attempts a call took; filled in by :func:`call_with_retries`, also when it raises."""

    count: int = 0

    def __str__(self) -> str:
        return f"{self.count} attempt{'' if self.count == 1 else 's'}"  # "after 1 attempt", never "1 attempts"


async def call_with_retries(
    attempt: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    attempts: Attempts,
    *,
    before_sleep: Callable[[RetryCallState], None] | None = None,
) -> T:
    """Run ``attempt`` until it succeeds or ``policy`` gives up; the last error is re-raised."""
    attempts.count = 1
    try:
        # Most calls succeed first time; building a tenacity controller costs ~30 µs, so only failures pay it.
        return await attempt()
    except TransientError as exc:
        first: TransientError | None = exc
    if policy.max_attempts <= 1 and first is not None:
        raise first

    async def replay_then_attempt() -> T:
        # tenacity's first attempt replays the failure already seen, so its wait and counting apply to it.
        nonlocal first
        if first is not None:
            failure, first = first, None
            raise failure
        attempts.count += 1
        return await attempt()

    controller = retrying(policy, before_sleep=before_sleep)
    return await controller(replay_then_attempt)
