"""The shared throttle (pause, adaptive rate, hard cap) and the retry budget, measured with small spies."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest

from reconcile.errors import PlatformUnavailable, RetryableStatus, TransportError
from reconcile.throttle import CEILING_SHARE, RECOVER_STEP, RetryBudget, Throttle


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def succeed(throttle: Throttle, clock: Clock, start: float, end: float, rate: float) -> None:
    """Record successes at ``rate`` per second from ``start`` to ``end`` on the fake clock, leaving it at ``end``."""
    step = 1.0 / rate
    clock.now = start
    while clock.now < end:
        throttle.on_success()
        clock.now += step
    clock.now = end


def settled(throttle: Throttle, rate: int = 1000) -> Throttle:
    """Record a second's worth of successes at ``rate``/s so a later throttle cut does not limit the test."""
    for _ in range(rate):
        throttle.on_success()
    return throttle


async def test_retry_after_pauses_every_sender() -> None:
    """After a Retry-After, all concurrent senders wait until the pause has passed, not just the one throttled."""
    throttle = settled(Throttle())
    started = time.monotonic()
    throttle.on_throttle(0.25)

    async def send() -> float:
        await throttle.before_send()
        return time.monotonic() - started

    waited = await asyncio.gather(*(send() for _ in range(6)))
    assert min(waited) >= 0.24
    assert max(waited) < 1.0
    assert throttle.pauses == 1
    assert throttle.throttled == 1


async def test_a_shorter_retry_after_does_not_shorten_a_pause() -> None:
    """A second throttle asking for less time keeps the longer pause in force."""
    throttle = settled(Throttle())
    started = time.monotonic()
    throttle.on_throttle(0.2)
    throttle.on_throttle(0.01)
    await throttle.before_send()
    assert time.monotonic() - started >= 0.19
    assert throttle.pauses == 1


async def test_no_pause_without_throttling() -> None:
    """An unthrottled, uncapped throttle lets senders through at once."""
    throttle = Throttle()
    started = time.monotonic()
    await asyncio.gather(*(throttle.before_send() for _ in range(100)))
    assert time.monotonic() - started < 0.05
    assert throttle.rate is None


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


async def test_sending_resumes_evenly_spaced_after_a_pause() -> None:
    """At the end of a pause the waiting senders leave one slot apart, not in the burst an idle limit allows.

    Against a platform with a small burst, that bunch drew the next 429 at the end of every pause.
    """
    throttle = Throttle(max_rps=200)  # 5 ms apart; an idle limit would let 0.02 s (4 sends) out at once
    await asyncio.sleep(0.05)  # idle long enough to have earned that burst
    throttle.on_throttle(0.1, too_fast=False)
    resumed = time.monotonic() + 0.1
    sends = []

    async def sender() -> None:
        await throttle.before_send()
        sends.append(time.monotonic())

    await asyncio.gather(*(sender() for _ in range(8)))
    assert min(sends) >= resumed - 0.005
    # Eight slots 5 ms apart end >= 35 ms after the pause, however the loop is delayed; a burst of four first
    # would end at 15 ms.
    assert max(sends) - resumed >= 0.03, [round(t - resumed, 4) for t in sends]


def traffic(throttle: Throttle, clock: Clock, start: float, end: float, sent: float, accepted: float) -> None:
    """Record sends at ``sent``/s and successes at ``accepted``/s from ``start`` to ``end`` (a spy's view)."""
    clock.now = start
    step = 1.0 / max(sent, accepted)
    next_send = next_success = start
    while clock.now < end:
        if clock.now >= next_send:
            throttle._sent.stamps.append(clock.now)
            next_send += 1.0 / sent
        if clock.now >= next_success:
            throttle.on_success()
            next_success += 1.0 / accepted
        clock.now += step
    clock.now = end


def overshot(clock: Clock) -> tuple[Throttle, float]:
    """A throttle whose slow start (from 100/s) just overshot, climbing back from half; returns it and the limit."""
    throttle = Throttle(clock=clock)
    succeed(throttle, clock, 0.0, 1.0, 100)
    throttle.on_throttle(None)
    traffic(throttle, clock, 2.0, 3.0, sent=100, accepted=100)
    throttle.on_throttle(None)
    halved = throttle.rate
    assert halved is not None
    return throttle, halved


def test_first_throttle_starts_slow_start_from_what_got_through() -> None:
    """With no limit yet, the first 429 limits sending to what got through in the last second."""
    clock = Clock(0.0)
    throttle = Throttle(clock=clock)
    succeed(throttle, clock, 0.0, 3.0, 100)
    throttle.on_throttle(None)
    rate = throttle.rate
    assert rate is not None
    assert 95 <= rate <= 105


def test_slow_start_overshoot_falls_back_to_the_last_step_that_worked() -> None:
    """A 429 after slow start doubled past the cap halves the limit, even when a burst made acceptance look high.

    Right after a pause the platform lets its refilled burst through: settling on that rate once left the limit
    at 1.8x a 200 requests/s cap, and every following second cost a pause of every worker.
    """
    clock = Clock(0.0)
    throttle = Throttle(clock=clock)
    succeed(throttle, clock, 0.0, 1.0, 50)
    throttle.on_throttle(None)  # slow start from ~50/s
    limit = throttle.rate
    assert limit is not None
    traffic(throttle, clock, 3.0, 3.5, sent=limit, accepted=400)  # a burst got through at 400/s
    throttle.on_throttle(None)
    assert throttle.rate == pytest.approx(limit / 2)


def test_settled_throttle_cuts_under_the_accepted_rate() -> None:
    """Once settled, a 429 while the limit binds cuts to the lower of 95 % of it and 96 % of what got through."""
    clock = Clock(0.0)
    throttle, _ = overshot(clock)  # leaves slow start
    settled_rate = throttle.rate
    assert settled_rate is not None
    traffic(throttle, clock, 10.0, 11.0, sent=settled_rate, accepted=settled_rate * 0.8)
    throttle.on_throttle(None)
    rate = throttle.rate
    assert rate is not None
    assert rate == pytest.approx(min(0.95 * settled_rate, 0.96 * settled_rate * 0.8), rel=0.05)


def test_throttle_cuts_once_per_episode() -> None:
    """Answers to requests sent before a cut, or a lone 429 within the cooldown, do not cut again; a later one does."""
    clock = Clock(0.0)
    throttle = Throttle(clock=clock)
    succeed(throttle, clock, 0.0, 3.0, 100)
    throttle.on_throttle(None, sent_at=2.99)
    first = throttle.rate
    assert first is not None
    traffic(throttle, clock, 3.0, 3.2, sent=first, accepted=first)
    throttle.on_throttle(None, sent_at=2.995)  # in flight when the first answer came
    throttle.on_throttle(None, sent_at=3.15)  # sent under the new limit, but within the cooldown
    assert throttle.rate == first
    assert throttle.throttled == 3
    traffic(throttle, clock, 3.2, 4.5, sent=first, accepted=first)
    throttle.on_throttle(None, sent_at=4.45)  # past the cooldown, and still too fast
    assert throttle.rate is not None
    assert throttle.rate < first


def test_a_throttle_while_the_limit_does_not_bind_is_not_about_our_rate() -> None:
    """A 429 while sending well below the limit pauses but does not cut: random faults must not ratchet it down."""
    clock = Clock(0.0)
    throttle = Throttle(clock=clock)
    succeed(throttle, clock, 0.0, 1.0, 100)
    throttle.on_throttle(None)
    limit = throttle.rate
    assert limit is not None
    traffic(throttle, clock, 5.0, 6.0, sent=limit * 0.3, accepted=limit * 0.3)
    throttle.on_throttle(1.0)
    assert throttle.rate == limit
    assert throttle.pauses == 1


def test_a_503_pauses_but_does_not_cut() -> None:
    """503 means unavailable, not too fast: it pauses every sender but leaves the rate alone."""
    clock = Clock(0.0)
    throttle = Throttle(clock=clock)
    succeed(throttle, clock, 0.0, 3.0, 100)
    throttle.on_throttle(2.0, too_fast=False)
    assert throttle.rate is None
    assert throttle.pauses == 1


def test_adaptive_rate_never_exceeds_max_rps() -> None:
    """The hard cap wins over a higher adaptive rate."""
    clock = Clock(0.0)
    throttle = Throttle(max_rps=10, clock=clock)
    succeed(throttle, clock, 0.0, 3.0, 100)
    throttle.on_throttle(None)
    assert throttle.rate is not None
    assert throttle.rate <= 10


def test_settled_rate_creeps_up_but_not_past_the_last_ceiling() -> None:
    """While binding, a settled limit rises, but stays under CEILING_SHARE of the lowest limit throttled."""
    clock = Clock(0.0)
    throttle, _ = overshot(clock)  # recover phase
    traffic(throttle, clock, 6.0, 7.0, sent=200, accepted=100)
    ceiling = throttle.rate
    assert ceiling is not None
    throttle.on_throttle(None)  # settled, remembering the ceiling
    settled_rate = throttle.rate
    assert settled_rate is not None
    assert settled_rate < ceiling
    seen = []
    for second in range(10, 60, 5):
        rate = throttle.rate
        assert rate is not None
        traffic(throttle, clock, second, second + 5, sent=rate, accepted=rate)
        throttle._probe(clock.now, rate)
        seen.append(throttle.rate)
    assert seen[-1] is not None
    assert seen[-1] > settled_rate
    assert max(r or 0 for r in seen) <= CEILING_SHARE * ceiling + 1e-9


def recovering(clock: Clock) -> tuple[Throttle, float]:
    """A throttle that left slow start and has just raised its limit one recover step; returns it and the limit."""
    throttle, halved = overshot(clock)
    traffic(throttle, clock, 4.0, 5.0, sent=halved, accepted=halved)
    throttle._probe(clock.now, halved)
    raised = throttle.rate
    assert raised == pytest.approx(halved * (1 + RECOVER_STEP))
    return throttle, raised


@pytest.mark.parametrize(("into_step", "steps_back"), [(0.2, 2), (0.8, 1)])
def test_a_recover_overshoot_falls_back_past_steps_the_burst_hid(into_step: float, steps_back: int) -> None:
    """Throttled late in a recover step, the limit falls back one step; early in it, two.

    Early means the step before had already spent the platform's burst, so it was over the cap too.  The limit
    then stays under the step it skipped instead of probing straight back into it.
    """
    clock = Clock(0.0)
    throttle, raised = recovering(clock)
    traffic(throttle, clock, clock.now, clock.now + into_step, sent=raised, accepted=raised)
    throttle.on_throttle(None)
    assert throttle.rate == pytest.approx(raised / (1 + RECOVER_STEP) ** steps_back)
    too_high = raised / (1 + RECOVER_STEP) ** (steps_back - 1)
    for second in range(10, 60, 5):
        rate = throttle.rate
        assert rate is not None
        traffic(throttle, clock, second, second + 5, sent=rate, accepted=rate)
        throttle._probe(clock.now, rate)
        assert throttle.rate is not None
        assert throttle.rate <= CEILING_SHARE * too_high + 1e-9


def test_a_throttle_straight_after_each_of_many_pauses_still_cuts() -> None:
    """Throttled 0.08 s after every 1 s pause, the limit is judged on the sending between pauses, and cut.

    Counting the pauses as idle time made a limit over the cap look unused: the run paused every 1.08 s for a
    quarter of an hour and never cut.
    """
    clock = Clock(0.0)
    throttle, limit = overshot(clock)
    start = 10.0
    for _ in range(15):  # a pause, then 0.08 s of sending at the limit, then the next 429
        clock.now = start
        throttle.on_throttle(1.0, sent_at=start - 0.01)
        traffic(throttle, clock, start + 1.0, start + 1.08, sent=limit, accepted=limit)
        start += 1.08
    clock.now = start
    throttle.on_throttle(1.0)
    assert throttle.rate is not None
    assert throttle.rate < limit


def test_a_throttle_early_in_the_run_does_not_collapse_the_rate() -> None:
    """0.3 s into a run, one 429 starts slow start from what got through, never from an imagined idle second.

    The clock is monotonic, so the run may start at any reading of it, here 1000 s: time before the run started
    is not evidence of a low accepted rate.
    """
    clock = Clock(1000.0)
    throttle = Throttle(clock=clock)
    succeed(throttle, clock, 1000.0, 1000.3, 100)
    throttle.on_throttle(None)
    assert throttle.rate is not None
    assert throttle.rate >= 25
    for _step in range(1, 5):  # binding traffic doubles it every quarter second
        rate = throttle.rate
        traffic(throttle, clock, clock.now, clock.now + 0.25, sent=rate, accepted=rate)
        throttle._probe(clock.now, rate)
    assert throttle.rate >= 200


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


def test_time_paused_on_the_platforms_request_does_not_count_as_low_acceptance() -> None:
    """A cut that follows a Retry-After pause is based on the rate accepted while sending, not on the idle pause.

    Random 429/503s with ``Retry-After: 1`` otherwise ratchet the rate towards 1 request/s: each cut measures
    successes over the last second, most of which was spent paused as the server asked.
    """
    clock = Clock(0.0)
    throttle = Throttle(clock=clock)

    succeed(throttle, clock, 0.0, 3.0, 100)
    throttle.on_throttle(1.0)  # first cut; pause until 4.0
    before = throttle.rate
    assert before is not None
    succeed(throttle, clock, 4.0, 4.5, before)
    throttle.on_throttle(1.0, sent_at=3.9)  # answers a request sent before the cut: no new cut; pause until 5.5
    succeed(throttle, clock, 5.5, 5.6, before)
    throttle.on_throttle(1.0)  # sent after the cut: may cut, measuring the last second, 0.9 s of which was a pause
    after = throttle.rate
    assert after is not None
    assert after >= 0.5 * before, f"one throttle cut the rate from {before:.0f}/s to {after:.0f}/s"
