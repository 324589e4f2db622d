"""Retry-After parsing and the retry policy, with tiny policies and real (short) waits."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from multidict import CIMultiDict
from tenacity import RetryCallState

from reconcile.errors import RequestRejected, RetryableStatus, TransientError, TransportError
from reconcile.platform._retry import (
    RETRYABLE_STATUSES,
    Attempts,
    RetryPolicy,
    call_with_retries,
    parse_retry_after,
    retry_after_from_headers,
)

NOW = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
FAST = RetryPolicy(max_attempts=4, backoff_initial=0.001, backoff_max=0.002)


def http_date(when: datetime) -> str:
    return format_datetime(when, usegmt=True)


# -- parse_retry_after ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [("5", 5.0), ("0", 0.0), (" 12 ", 12.0), ("1.5", 1.5)])
def test_delta_seconds(value: str, expected: float) -> None:
    """Retry-After in delta-seconds is that many seconds."""
    assert parse_retry_after(value) == expected


def test_http_date_is_measured_from_now() -> None:
    """An HTTP-date means 'wait until then', measured from the given now."""
    value = http_date(NOW + timedelta(seconds=7))
    assert parse_retry_after(value, now=NOW.timestamp()) == pytest.approx(7.0)


def test_http_date_in_the_past_means_no_wait() -> None:
    """A date already passed gives 0, not a negative wait."""
    assert parse_retry_after(http_date(NOW - timedelta(minutes=5)), now=NOW.timestamp()) == 0.0


def test_negative_delta_means_no_wait() -> None:
    """A negative delta is clamped to 0."""
    assert parse_retry_after("-3") == 0.0


@pytest.mark.parametrize("value", [None, "", "   ", "soon", "Wed, 99 Foo 2026", "nan", "1 2 3"])
def test_unreadable_values_give_none(value: str | None) -> None:
    """Absent or garbage Retry-After values mean 'the server said nothing'."""
    assert parse_retry_after(value) is None


def test_cap_applies_to_both_forms() -> None:
    """Delta-seconds and HTTP-dates beyond the cap are shortened to it."""
    assert parse_retry_after("3600", cap=60) == 60
    assert parse_retry_after("inf", cap=60) == 60
    far = http_date(NOW + timedelta(hours=6))
    assert parse_retry_after(far, now=NOW.timestamp(), cap=30) == 30


def test_http_date_without_now_uses_the_wall_clock() -> None:
    """Without an explicit now, an HTTP-date is measured from the current time."""
    value = http_date(datetime.now(UTC) + timedelta(seconds=30))
    wait = parse_retry_after(value)
    assert wait is not None
    assert 27 <= wait <= 31


# -- retry_after_from_headers -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["retry-after-ms", "x-ms-retry-after-ms", "Retry-After-Ms", "X-MS-Retry-After-MS"])
def test_millisecond_headers(name: str) -> None:
    """Azure's millisecond variants are read (case-insensitively, as aiohttp's headers are) and win."""
    headers = CIMultiDict({name: "1500", "Retry-After": "30"})
    assert retry_after_from_headers(headers) == 1.5


def test_unreadable_millisecond_header_falls_back_to_retry_after() -> None:
    """A garbage retry-after-ms is ignored in favour of Retry-After."""
    assert retry_after_from_headers(CIMultiDict({"retry-after-ms": "x", "Retry-After": "4"})) == 4.0


def test_millisecond_header_is_capped() -> None:
    """retry-after-ms is capped like Retry-After."""
    assert retry_after_from_headers(CIMultiDict({"retry-after-ms": "900000"}), cap=10) == 10


def test_no_headers_means_none() -> None:
    """No Retry-After of any form: None."""
    assert retry_after_from_headers(CIMultiDict()) is None


# -- call_with_retries ------------------------------------------------------------------------------------


class Script:
    """An attempt function that raises the scripted errors in order, then returns 'ok'."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.calls = 0
        self.times: list[float] = []

    async def __call__(self) -> str:
        self.calls += 1
        self.times.append(time.monotonic())
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


async def test_success_first_time_is_one_attempt() -> None:
    """A call that succeeds at once counts one attempt."""
    attempts = Attempts()
    script = Script()
    assert await call_with_retries(script, FAST, attempts) == "ok"
    assert (attempts.count, script.calls) == (1, 1)


async def test_transient_failures_are_retried_and_counted() -> None:
    """Two transient failures then success: three attempts, counted."""
    attempts = Attempts()
    script = Script(RetryableStatus("HTTP 500", status=500), TransportError("reset"))
    assert await call_with_retries(script, FAST, attempts) == "ok"
    assert (attempts.count, script.calls) == (3, 3)


async def test_retry_after_is_the_wait() -> None:
    """A Retry-After on the failure is what the policy waits (not backoff), and it is really waited."""
    sleeps: list[float] = []

    def before_sleep(state: RetryCallState) -> None:
        sleeps.append(state.upcoming_sleep)

    script = Script(RetryableStatus("HTTP 429", status=429, retry_after=0.15))
    await call_with_retries(script, FAST, Attempts(), before_sleep=before_sleep)
    assert sleeps == [0.15]
    assert script.times[1] - script.times[0] >= 0.14


async def test_retry_after_beyond_the_policy_cap_is_shortened() -> None:
    """A Retry-After longer than the policy's cap waits the cap."""
    sleeps: list[float] = []
    policy = RetryPolicy(max_attempts=2, backoff_initial=0.001, retry_after_cap=0.05)
    script = Script(RetryableStatus("HTTP 503", status=503, retry_after=3600))
    await call_with_retries(script, policy, Attempts(), before_sleep=lambda s: sleeps.append(s.upcoming_sleep))
    assert sleeps == [0.05]


async def test_backoff_is_full_jitter_and_bounded() -> None:
    """Without Retry-After the waits are random, within [0, initial * 2**n] and never above backoff_max."""
    sleeps: list[float] = []
    policy = RetryPolicy(max_attempts=6, backoff_initial=0.001, backoff_max=0.004)
    script = Script(*[TransportError("reset") for _ in range(5)])
    await call_with_retries(script, policy, Attempts(), before_sleep=lambda s: sleeps.append(s.upcoming_sleep))
    assert len(sleeps) == 5
    for n, wait in enumerate(sleeps):
        assert 0 <= wait <= min(0.001 * 2 ** (n + 1), 0.004) + 1e-12


async def test_non_transient_errors_are_not_retried() -> None:
    """A 400 (RequestRejected) or an unexpected exception is raised after one attempt."""
    for failure in (RequestRejected("HTTP 400: bad", status=400), ValueError("bug")):
        attempts = Attempts()
        script = Script(failure)
        with pytest.raises(type(failure)):
            await call_with_retries(script, FAST, attempts)
        assert (attempts.count, script.calls) == (1, 1)


async def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    """When every attempt fails the last error is re-raised, after exactly max_attempts attempts."""
    failures = [RetryableStatus(f"HTTP 503 #{i}", status=503) for i in range(1, 10)]
    attempts = Attempts()
    script = Script(*failures)
    with pytest.raises(RetryableStatus) as caught:
        await call_with_retries(script, FAST, attempts)
    assert caught.value is failures[FAST.max_attempts - 1]
    assert attempts.count == script.calls == FAST.max_attempts


async def test_one_attempt_policy_never_retries() -> None:
    """max_attempts=1 raises the first transient error at once."""
    attempts = Attempts()
    script = Script(TransportError("reset"), TransportError("again"))
    with pytest.raises(TransportError, match="reset"):
        await call_with_retries(script, RetryPolicy(max_attempts=1), attempts)
    assert script.calls == 1


async def test_max_time_stops_retrying_before_max_attempts() -> None:
    """The total-time bound ends retries even when attempts remain."""
    policy = RetryPolicy(max_attempts=100, max_time=0.1, backoff_initial=0.001)
    script = Script(*[RetryableStatus("HTTP 503", status=503, retry_after=0.04) for _ in range(100)])
    started = time.monotonic()
    with pytest.raises(RetryableStatus):
        await call_with_retries(script, policy, Attempts())
    assert 2 <= script.calls <= 5
    assert time.monotonic() - started < 1.0


def test_retryable_statuses_are_the_documented_set() -> None:
    """408, 429, 500, 502, 503 and 504 are retried; 400, 401, 403 and 404 are not."""
    assert {408, 429, 500, 502, 503, 504} <= RETRYABLE_STATUSES
    assert not {400, 401, 403, 404} & RETRYABLE_STATUSES


def test_transient_errors_are_what_the_policy_retries() -> None:
    """Both retryable kinds are TransientError; a rejected request is not."""
    assert issubclass(RetryableStatus, TransientError)
    assert issubclass(TransportError, TransientError)
    assert not issubclass(RequestRejected, TransientError)
