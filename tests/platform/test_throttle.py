"""The shared throttle (adaptive rate, platform-wide pause, outage gate, hard cap) and the retry budget.

The rate tests drive a :class:`Throttle` on a fake clock against a simulated platform: a cap (a token bucket that
answers 429 above its rate), a share of random throttles that does not depend on the rate, or both.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from reconcile.errors import HostUnreachable, PlatformUnavailable, RetryableStatus, TransportError
from reconcile.platform._throttle import (
    OUTAGE_FAILURES,
    OUTAGE_SILENCE,
    PAUSE_ANSWERS,
    PROBE_BACKOFF,
    RetryBudget,
    Throttle,
)
from tests.conftest import Clock


@dataclass
class Seen:
    """What the simulated platform answered in the measured part of a simulation."""

    seconds: float = 0.0
    accepted: int = 0
    capped: int = 0  # 429s of the cap
    noise: int = 0  # random throttles

    @property
    def answers(self) -> int:
        return self.accepted + self.capped + self.noise

    @property
    def accepted_rate(self) -> float:
        return self.accepted / self.seconds

    @property
    def capped_share(self) -> float:
        return self.capped / self.answers


def simulate(
    throttle: Throttle,
    clock: Clock,
    seconds: float,
    *,
    demand: float,
    cap: float | None = None,
    noise: float = 0.0,
    measure_after: float = 0.0,
    seed: int = 1,
) -> Seen:
    """Send as fast as the throttle allows (at most ``demand``/s) for ``seconds`` against the simulated platform.

    Answers come at once; a throttle carries ``Retry-After: 1``.  Counts answers after ``measure_after`` seconds.
    """
    rng = random.Random(seed)
    start, tokens, last = clock.now, 0.0, clock.now
    seen = Seen()
    while clock.now < start + seconds:
        if clock.now < throttle.paused_until:
            clock.now = throttle.paused_until
        rate = throttle.rate
        clock.now += 1.0 / (min(demand, rate) if rate is not None else demand)
        throttle.sent()
        measured = clock.now - start >= measure_after
        if cap is not None:
            tokens = min(cap * 0.1, tokens + (clock.now - last) * cap)  # a 0.1 s burst, as the emulator allows
        last = clock.now
        if cap is not None and tokens < 1:
            throttle.on_throttle(429, 1.0)
            seen.capped += measured
            continue
        tokens -= 1
        if rng.random() < noise:
            throttle.on_throttle(rng.choice((429, 503)), 1.0)
            seen.noise += measured
            continue
        throttle.on_success()
        seen.accepted += measured
    seen.seconds = seconds - measure_after
    return seen


@pytest.mark.parametrize("share", [0.01, 0.03, 0.05])
def test_random_throttles_leave_the_rate_untouched(share: float) -> None:
    """1–5 % of answers throttled at random, whatever the rate: no cut, no limit, no platform-wide pause."""
    clock = Clock()
    throttle = Throttle(clock=clock)
    seen = simulate(throttle, clock, 60, demand=2000, noise=share)
    assert throttle.rate is None
    assert (throttle.cuts, throttle.pauses) == (0, 0)
    assert seen.accepted_rate >= 0.99 * (1 - share) * 2000


def test_a_cap_is_found_and_held() -> None:
    """Against a 300 requests/s cap the limit settles just under it: ≥ 90 % of the cap, ≤ 5 % of answers 429."""
    clock = Clock()
    throttle = Throttle(clock=clock)
    seen = simulate(throttle, clock, 90, demand=3200, cap=300, measure_after=10)
    assert seen.accepted_rate >= 0.9 * 300
    assert seen.capped_share <= 0.05
    assert throttle.rate is not None
    assert 250 <= throttle.rate <= 340


def test_a_cap_is_found_through_random_throttles() -> None:
    """A 300/s cap with 3 % random throttles on top: the cap is still found, ≤ 5 % of answers its 429s."""
    clock = Clock()
    throttle = Throttle(clock=clock)
    seen = simulate(throttle, clock, 90, demand=3200, cap=300, noise=0.03, measure_after=10)
    assert seen.accepted_rate >= 0.85 * 300
    assert seen.capped_share <= 0.05


def test_a_cap_that_rises_is_followed() -> None:
    """After the cap moves from 200 to 400 requests/s, probing (slow near the old cap, then faster) finds it."""
    clock = Clock()
    throttle = Throttle(clock=clock)
    simulate(throttle, clock, 30, demand=3200, cap=200)
    assert throttle.rate is not None
    assert throttle.rate < 230
    seen = simulate(throttle, clock, 120, demand=3200, cap=400, measure_after=90)
    assert seen.accepted_rate >= 0.85 * 400


def test_a_cut_that_does_not_lower_the_throttle_share_is_undone() -> None:
    """15 % random throttles pass for a cap at first; sending slower does not lower the share, so the cut is undone."""
    clock = Clock()
    throttle = Throttle(clock=clock)
    seen = simulate(throttle, clock, 60, demand=2000, noise=0.15, measure_after=20)
    assert throttle.rate is None, "the cut should have been taken back"
    assert seen.accepted_rate >= 0.8 * 2000


def test_a_lone_retry_after_pauses_nobody() -> None:
    """One 429 with Retry-After among successes is that row's business: no sender has to wait."""
    clock = Clock()
    throttle = Throttle(clock=clock)
    for _ in range(50):
        throttle.on_success()
    throttle.on_throttle(429, 30.0)
    assert not throttle.holding
    assert throttle.pauses == 0
    assert throttle.throttled == 1


def test_most_answers_throttled_pauses_everyone_for_the_retry_after() -> None:
    """When most of the last answers are throttles the platform as a whole refuses: every sender waits it out."""
    clock = Clock(100.0)
    throttle = Throttle(clock=clock)
    for _ in range(PAUSE_ANSWERS):
        clock.now += 0.001
        throttle.sent()
        throttle.on_throttle(429, 2.0)
    assert throttle.pauses == 1
    assert throttle.paused_until == pytest.approx(102.02)
    assert throttle.holding
    clock.now = 102.5
    assert throttle.rate is not None  # the same evidence set a rate limit ...
    assert throttle.rate < 10_000  # ... from what got through


async def test_a_pause_makes_senders_wait_in_real_time() -> None:
    """before_send sleeps until a platform-wide pause has passed."""
    throttle = Throttle()
    for _ in range(PAUSE_ANSWERS):
        throttle.on_throttle(503, 0.2)
    started = time.monotonic()
    await asyncio.gather(*(throttle.before_send() for _ in range(4)))
    assert time.monotonic() - started >= 0.18


async def test_max_rps_caps_the_send_rate() -> None:
    """With max_rps=40, eight eager senders get about 40 sends a second through, not hundreds."""
    throttle = Throttle(max_rps=40)
    sends: list[float] = []
    started = time.monotonic()

    async def sender() -> None:
        while time.monotonic() - started < 0.5:
            await throttle.before_send()
            sends.append(time.monotonic())

    await asyncio.gather(*(sender() for _ in range(8)))
    in_window = [t for t in sends if t - started <= 0.5]
    assert 14 <= len(in_window) <= 30  # 40/s for 0.5 s is 20, plus a small burst
    assert throttle.rate == 40


def test_adaptive_rate_never_exceeds_max_rps() -> None:
    """A hard cap bounds the adaptive rate too."""
    clock = Clock()
    throttle = Throttle(max_rps=50, clock=clock)
    simulate(throttle, clock, 20, demand=3200, cap=300)
    assert throttle.rate is not None
    assert throttle.rate <= 50


def test_health_follows_the_share_of_failed_attempts() -> None:
    """10 % of attempts failing is a healthy platform (retry soon); half of them failing is not."""
    throttle = Throttle()
    rng = random.Random(3)
    for _ in range(2000):
        if rng.random() < 0.1:
            throttle.on_fault(RetryableStatus("HTTP 500", status=500), outage=False)
        else:
            throttle.on_success()
    assert throttle.healthy()
    for _ in range(200):
        throttle.on_fault(RetryableStatus("HTTP 500", status=500), outage=False)
        throttle.on_success()
    assert not throttle.healthy()


# -- outages ----------------------------------------------------------------------------------------------


def reset() -> TransportError:
    return TransportError("cannot connect to 127.0.0.1:1: refused", connect=True)


def go_dark(throttle: Throttle, clock: Clock) -> None:
    """The platform answered, then every connection fails for longer than OUTAGE_SILENCE."""
    throttle.on_success()
    for _ in range(OUTAGE_FAILURES):
        clock.now += OUTAGE_SILENCE / OUTAGE_FAILURES + 0.01
        throttle.on_fault(reset(), outage=True)


def test_failures_after_answers_start_an_outage_that_rows_are_not_charged_for() -> None:
    """Connections failing for a while after the platform answered is an outage: failures stop counting."""
    clock = Clock()
    throttle = Throttle(clock=clock)
    throttle.on_success()
    assert throttle.on_fault(reset(), outage=True)  # the first failure counts against its row
    go_dark(throttle, clock)
    assert throttle.unreachable_for is not None
    assert throttle.outages == 1
    assert not throttle.on_fault(reset(), outage=True)  # during the outage, failures are not the row's
    assert throttle.holding
    clock.now += 3
    throttle.on_success()
    assert throttle.unreachable_for is None
    assert not throttle.holding
    assert throttle.outage_seconds() >= 3


def test_a_platform_never_reached_is_no_outage() -> None:
    """Failing from the very start is not an outage to ride out: the rows' attempts run out and the run stops."""
    clock = Clock()
    throttle = Throttle(clock=clock)
    for _ in range(3 * OUTAGE_FAILURES):
        clock.now += 1
        assert throttle.on_fault(reset(), outage=True)
    assert throttle.unreachable_for is None


def test_random_resets_among_answers_are_no_outage() -> None:
    """Resets between successes reset the count: a flaky platform is not a gone one."""
    clock = Clock()
    throttle = Throttle(clock=clock)
    for _ in range(100):
        clock.now += 0.2
        throttle.on_fault(reset(), outage=True)
        throttle.on_success()
    assert throttle.unreachable_for is None


async def test_one_probe_at_a_time_during_an_outage() -> None:
    """While the platform is out one sender probes, after the backoff; the rest wait until an answer comes."""
    clock = Clock()
    throttle = Throttle(clock=clock)
    go_dark(throttle, clock)
    clock.now += PROBE_BACKOFF[0]  # the first probe is due
    probe = asyncio.create_task(throttle.before_send())
    others = [asyncio.create_task(throttle.before_send()) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert probe.done()
    assert not any(task.done() for task in others)
    throttle.on_success()  # the probe was answered
    await asyncio.wait_for(asyncio.gather(*others), 1)


async def test_an_outage_that_ends_while_the_probe_waits_lets_it_send() -> None:
    """An answer to a request sent before the outage may end it while the next probe waits: that one just sends."""
    clock = Clock()
    throttle = Throttle(clock=clock)
    go_dark(throttle, clock)
    probe = asyncio.create_task(throttle.before_send())  # its turn is PROBE_BACKOFF[0] away
    await asyncio.sleep(0.01)
    assert not probe.done()
    throttle.on_success()  # a late answer: the platform is back
    await asyncio.wait_for(probe, 2)
    assert not throttle.holding


async def test_an_outage_longer_than_the_tolerance_stops_the_run() -> None:
    """When the outage outlasts the tolerance the next probe raises HostUnreachable (exit 4), naming the fix."""
    clock = Clock()
    throttle = Throttle(clock=clock, outage_tolerance=30)
    go_dark(throttle, clock)
    clock.now += 31
    with pytest.raises(HostUnreachable, match="outage tolerance of 30 s") as caught:
        await throttle.before_send()
    assert "--outage-tolerance" in str(caught.value)
    assert caught.value.exit_code == 4


# -- the retry budget -------------------------------------------------------------------------------------


def test_retry_budget_spends_and_refunds() -> None:
    """A retry costs retry_cost, a timeout costs more, and each success refunds one unit up to capacity."""
    budget = RetryBudget(capacity=20, retry_cost=5, timeout_cost=10)
    budget.spend(RetryableStatus("HTTP 503", status=503))
    assert budget.available == 15
    budget.spend(TransportError("slow", timeout=True))
    assert budget.available == 5
    budget.refund()
    assert budget.available == 6
    for _ in range(100):
        budget.refund()
    assert budget.available == 20


def test_paced_retries_cost_little() -> None:
    """A retry the server timed (Retry-After) or one during an outage costs the paced cost, not a full retry."""
    budget = RetryBudget(capacity=20, retry_cost=5, paced_cost=1)
    budget.spend(RetryableStatus("HTTP 429", status=429, retry_after=1.0))
    outage = TransportError("refused", connect=True)
    outage.counted = False
    budget.spend(outage)
    assert budget.available == 18


def test_the_budget_follows_the_concurrency() -> None:
    """More slots in flight get a larger budget (one failed burst must not drain it); fewer, a smaller one."""
    budget = RetryBudget.for_concurrency(16)
    assert budget.capacity == 500
    budget.spend(RetryableStatus("HTTP 500", status=500))
    budget.resize(100)
    assert (budget.capacity, budget.available) == (2000, 1995)
    budget.resize(16)
    assert (budget.capacity, budget.available) == (500, 495)


def test_empty_retry_budget_stops_the_run() -> None:
    """When the budget cannot pay for a retry, PlatformUnavailable (exit 4) is raised naming the last failure."""
    budget = RetryBudget(capacity=10, retry_cost=5)
    budget.spend(RetryableStatus("HTTP 500 #1", status=500))
    budget.spend(RetryableStatus("HTTP 500 #2", status=500))
    with pytest.raises(PlatformUnavailable, match="HTTP 500 #3") as caught:
        budget.spend(RetryableStatus("HTTP 500 #3", status=500))
    assert caught.value.exit_code == 4
    assert "HINT" in str(caught.value)
    budget.refund()
    with pytest.raises(PlatformUnavailable):
        budget.spend(RetryableStatus("HTTP 500 #4", status=500))


def test_throttle_charges_retries_to_the_shared_budget() -> None:
    """on_retry (tenacity's before_sleep hook) counts the retry and charges the budget."""
    budget = RetryBudget(capacity=12, retry_cost=5)
    throttle = Throttle(budget=budget)
    failure = RetryableStatus("HTTP 502", status=502)
    state = SimpleNamespace(outcome=SimpleNamespace(exception=lambda: failure))
    throttle.on_retry(state)
    throttle.on_retry(state)
    assert (throttle.retries, budget.available) == (2, 2)
    with pytest.raises(PlatformUnavailable):
        throttle.on_retry(state)
    throttle.on_success()
    assert budget.available == 3
