"""emulator/faults: fault kinds, mixes and rates, reproducible with a seed."""

from __future__ import annotations

import re
from collections import Counter

import aiohttp
import pytest

from reconcile.emulator import (
    FAULT_MIXES,
    Emulator,
    EmulatorConfig,
    Faults,
)
from reconcile.emulator.faults import ApiFault, FaultPicker
from tests.emulator.conftest import (
    ask,
    get_token,
)


async def test_faults_are_reproducible_with_seed(session: aiohttp.ClientSession) -> None:
    """The same seed and request order inject the same faults; another seed differs."""

    async def statuses(seed: int) -> list[int]:
        config = EmulatorConfig(faults=Faults(rate_500=0.3, rate_503=0.3), seed=seed)
        async with Emulator(config) as emu:
            token = await get_token(session, emu)
            return [(await ask(session, emu, token))[0] for _ in range(30)]

    first, again, other = await statuses(7), await statuses(7), await statuses(8)
    assert first == again
    assert first != other
    assert {200, 500, 503} <= set(first)


def test_uniform_splits_over_five_kinds() -> None:
    """Faults.uniform spreads the total over 500, 503, 429, reset and revoke only."""
    faults = Faults.uniform(0.5)
    shares = [faults.rate_500, faults.rate_503, faults.rate_429, faults.rate_reset, faults.rate_revoke]
    assert shares == pytest.approx([0.1] * 5)
    assert faults.rate_502 == faults.rate_slow == faults.rate_malformed == 0
    Faults.uniform(1.0)  # five fifths must not trip the sum check


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"rate_500": 1.5}, "between 0 and 1"),
        ({"rate_500": 0.7, "rate_503": 0.7}, "HINT"),
        ({"token_rate_429": 0.6, "token_rate_503": 0.6}, "token fault rates"),
        ({"slow_seconds": -1}, ">= 0"),
    ],
)
def test_faults_validate(kwargs: dict[str, float], fragment: str) -> None:
    """Out-of-range rates and sums above 1 are refused with a message that says why."""
    with pytest.raises(ValueError, match=re.escape(fragment)):
        Faults(**kwargs)


@pytest.mark.parametrize("mix", FAULT_MIXES)
def test_fault_mixes_pick_each_kind_in_proportion(mix: str) -> None:
    """Over 20,000 seeded draws a 10% mix fails ~10% of requests, each kind near its documented share."""
    faults = Faults.mix(mix, 0.10)
    expected = {kind: getattr(faults, f"rate_{kind.value}") for kind in ApiFault}
    picker = FaultPicker(faults, seed=11)
    drawn = Counter(picker.api() for _ in range(20_000))
    assert 0.09 <= 1 - drawn[None] / 20_000 <= 0.11
    for kind, rate in expected.items():
        # Generous: within a fifth of the expected count, plus a few for the rare kinds.
        assert abs(drawn[kind] - rate * 20_000) <= 0.2 * rate * 20_000 + 6, (kind, drawn[kind])
    assert sum(expected.values()) == pytest.approx(0.10)


def test_gateway_mix_is_mostly_throttling_with_a_stray_revocation() -> None:
    """The gateway mix puts 60% of faults on 429 and 503 and 1% on revoked tokens, none on 502/slow/malformed."""
    faults = Faults.gateway(1.0)
    assert (faults.rate_429, faults.rate_503, faults.rate_500) == pytest.approx((0.3, 0.3, 0.2))
    assert (faults.rate_reset, faults.rate_revoke) == pytest.approx((0.19, 0.01))
    assert faults.rate_502 == faults.rate_slow == faults.rate_malformed == 0
    with pytest.raises(ValueError, match="HINT: use one of uniform, gateway, flaky"):
        Faults.mix("stormy", 0.1)


def test_flaky_mix_costs_each_fault_its_own_request_only() -> None:
    """The flaky mix splits evenly over 500, 503, 429, resets and stray 401s, and revokes no token."""
    faults = Faults.mix("flaky", 0.1)
    shares = (faults.rate_500, faults.rate_503, faults.rate_429, faults.rate_reset, faults.rate_401)
    assert shares == pytest.approx((0.02,) * 5)
    assert faults.rate_revoke == 0


def test_faults_from_rates_names_kinds_by_their_fault() -> None:
    """from_rates takes {"503": 0.02, "reset": 0.01}, and an unknown kind is refused with the known ones."""
    faults = Faults.from_rates({"503": 0.02, "reset": 0.01}, slow_seconds=2)
    assert (faults.rate_503, faults.rate_reset, faults.slow_seconds) == (0.02, 0.01, 2)
    with pytest.raises(ValueError, match=r"unknown fault kind '504'\. HINT: use one of"):
        Faults.from_rates({"504": 0.1})
