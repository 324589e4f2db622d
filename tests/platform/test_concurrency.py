"""The concurrency controller on a fake clock, against simulated platforms, and the resizable slots."""

from __future__ import annotations

import asyncio
import random
import statistics
from collections.abc import Callable

import pytest

from reconcile.platform._concurrency import (
    INITIAL,
    MINIMUM,
    PROBE_EVERY,
    PROBE_SAMPLES,
    ConcurrencyController,
    Slots,
)
from tests.conftest import Clock


def drive(
    controller: ConcurrencyController,
    clock: Clock,
    seconds: float,
    latency: Callable[[int], float],
    *,
    busy: Callable[[int], int] = lambda limit: limit,
    seed: int = 5,
) -> list[tuple[int, float]]:
    """Answer requests as a platform whose latency at ``limit`` in flight is ``latency(limit)`` (±5 % noise).

    ``busy(limit)`` is how many slots the client fills (all, unless it is limited elsewhere).  Returns the
    (limit, median latency) of each simulated second.
    """
    rng = random.Random(seed)
    end, history, second, latencies = clock.now + seconds, [], clock.now + 1, []
    while clock.now < end:
        limit = controller.slots.total if controller.slots is not None else controller.limit
        in_flight = max(1, busy(limit))
        answer = latency(in_flight) * rng.uniform(0.95, 1.05)
        clock.now += answer / in_flight  # in_flight requests finish per answer time
        if controller.slots is not None:
            controller.slots.peak_on_wire = max(controller.slots.peak_on_wire, in_flight)
        controller.answered(answer, controller.generation)
        latencies.append(answer)
        if clock.now >= second:
            history.append((controller.limit, statistics.median(latencies)))
            latencies, second = [], second + 1
    return history


def capacity(k: int, service: float) -> Callable[[int], float]:
    """A backend working on at most ``k`` requests at once, each for ``service`` seconds; the rest queue."""
    return lambda in_flight: service * max(1.0, in_flight / k)


async def controller_with_slots(clock: Clock, **options: object) -> ConcurrencyController:
    controller = ConcurrencyController(clock=clock, rng=random.Random(1), **options)  # type: ignore[arg-type]
    controller.attach(Slots(INITIAL))
    return controller


async def test_flat_latency_grows_to_the_ceiling() -> None:
    """A platform whose latency does not change with load: the limit grows from 16 to the ceiling."""
    clock = Clock()
    controller = await controller_with_slots(clock, ceiling=256)
    history = drive(controller, clock, 20, lambda n: 0.1)
    assert controller.limit == 256
    assert controller.highest == 256
    assert history[3][0] > INITIAL  # it grows within seconds, not minutes


async def test_a_capacity_limited_backend_is_found_and_not_overloaded() -> None:
    """Capacity 32 at 40 ms: the limit settles at 32–48 in flight, median latency within 1.5x no-load."""
    clock = Clock()
    controller = await controller_with_slots(clock, ceiling=256)
    history = drive(controller, clock, 60, capacity(32, 0.040))
    settled = history[20:]
    limits = [limit for limit, _ in settled]
    assert 32 <= statistics.median(limits) <= 48
    assert max(median for _, median in settled) <= 1.5 * 0.040
    assert controller.no_load == pytest.approx(0.040, rel=0.1)


async def test_a_small_backend_is_not_queued_on_from_the_start() -> None:
    """Capacity 8 at 100 ms, below the initial 16: no-load is measured at a few slots first, latency stays < 2x."""
    clock = Clock()
    controller = await controller_with_slots(clock, ceiling=256)
    history = drive(controller, clock, 30, capacity(8, 0.100))
    assert controller.no_load == pytest.approx(0.100, rel=0.1)
    assert 8 <= controller.limit <= 16
    assert max(median for _, median in history[5:]) <= 2 * 0.100


async def test_latency_rising_with_load_shrinks_the_limit() -> None:
    """Started far above a backend's capacity (100 slots, capacity 20), the limit comes down to it."""
    clock = Clock()
    controller = await controller_with_slots(clock, ceiling=256, initial=100)
    controller.no_load = 0.05  # known from earlier, lighter load
    drive(controller, clock, 30, capacity(20, 0.05))
    assert 20 <= controller.limit <= 32
    assert controller.lowest < 100


async def test_an_idle_client_does_not_grow_its_slots() -> None:
    """When fewer than 80 % of the slots are in use (limited by the rate, say), the limit stays where it is."""
    clock = Clock()
    controller = await controller_with_slots(clock, ceiling=256)
    drive(controller, clock, 20, lambda n: 0.1, busy=lambda limit: 4)
    assert controller.limit == INITIAL
    assert controller.changes == 0


async def test_no_load_latency_is_re_measured_at_a_few_slots() -> None:
    """About every minute the limit drops to an eighth for a few answers to re-measure no-load, then returns."""
    clock = Clock()
    controller = await controller_with_slots(clock, ceiling=64)
    drive(controller, clock, 20, lambda n: 0.1)
    assert controller.limit == 64
    seen_totals = set()
    end = clock.now + PROBE_EVERY * 1.3
    while clock.now < end:
        assert controller.slots is not None
        seen_totals.add(controller.slots.total)
        clock.now += 0.01
        controller.answered(0.1, controller.generation)
    assert min(seen_totals) == 64 // 8
    assert controller.slots is not None
    assert controller.slots.total == 64


async def test_only_requests_sent_during_the_probe_measure_no_load() -> None:
    """Answers to requests sent before the probe began (under the old, larger limit) do not count as no-load."""
    clock = Clock()
    controller = await controller_with_slots(clock, ceiling=64)
    drive(controller, clock, PROBE_EVERY * 1.2, lambda n: 0.1)  # a probe began and ended once
    controller._next_probe = clock.now  # the next one is due now
    clock.now += 1
    controller.answered(0.1)  # closes a window: the probe begins
    old = -1
    for _ in range(5 * PROBE_SAMPLES):
        controller.answered(10.0, old)  # slow, but sent before the probe
    assert controller.generation != old
    for _ in range(PROBE_SAMPLES):
        controller.answered(0.08, controller.generation)
    assert controller.no_load == pytest.approx(0.08)


def test_the_ceiling_is_never_passed_and_the_floor_holds() -> None:
    """The limit stays between MINIMUM and the ceiling whatever it is asked to start from."""
    assert ConcurrencyController(ceiling=8, initial=100).limit == 8
    assert ConcurrencyController(ceiling=8, initial=0).limit == MINIMUM


async def test_slots_bound_concurrent_holders_and_follow_a_new_size() -> None:
    """At most ``total`` holders at once, first come first served; raising the total lets waiters through at once."""
    slots = Slots(2)
    await slots.acquire()
    await slots.acquire()
    order: list[int] = []

    async def wait(n: int) -> None:
        await slots.acquire()
        order.append(n)

    waiters = [asyncio.create_task(wait(n)) for n in range(3)]
    await asyncio.sleep(0.01)
    assert order == []
    slots.total = 3
    await asyncio.sleep(0.01)
    assert order == [0]
    assert slots.on_wire == 3
    slots.release()
    await asyncio.sleep(0.01)
    assert order == [0, 1]
    assert slots.take_peak() == 3
    slots.total = 1  # shrinking waits for holders to leave: none is taken away
    for _ in range(3):
        slots.release()
    await asyncio.sleep(0.01)
    assert order == [0, 1, 2]
    assert slots.on_wire == 1
    await asyncio.gather(*waiters)


async def test_a_cancelled_waiter_neither_takes_nor_loses_a_slot() -> None:
    """A wait cancelled before or as it is handed a slot leaves the count right for the next waiter."""
    slots = Slots(1)
    await slots.acquire()
    cancelled = asyncio.create_task(slots.acquire())
    later = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0.01)
    cancelled.cancel()
    await asyncio.sleep(0.01)
    slots.release()
    await asyncio.wait_for(later, 1)
    assert slots.on_wire == 1
    # Cancelled and, before its task runs again, passed over by a release: it must not fail or take a slot.
    passed_over = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0.01)
    passed_over.cancel()
    slots.release()
    with pytest.raises(asyncio.CancelledError):
        await passed_over
    assert slots.on_wire == 0
