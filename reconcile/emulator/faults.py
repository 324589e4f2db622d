"""Fault injection: which failures to inject, how often, and the seeded per-request decision.

One uniform draw per request picks at most one fault from cumulative thresholds, so a run
with the same seed and the same request order injects the same faults.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

K = TypeVar("K")

#: How ``--fault-rate`` is split over the kinds of fault: each name is a :class:`Faults` constructor.
FAULT_MIXES = ("uniform", "gateway", "flaky")


class ApiFault(StrEnum):
    ERROR_500 = "500"
    BAD_GATEWAY_502 = "502"
    UNAVAILABLE_503 = "503"
    THROTTLED_429 = "429"
    RESET = "reset"
    REVOKE = "revoke"
    STRAY_401 = "401"  # this request is refused; the token stays good (a gateway's glitch)
    SLOW = "slow"
    MALFORMED = "malformed"


class TokenFault(StrEnum):
    THROTTLED_429 = "token_429"
    UNAVAILABLE_503 = "token_503"
    TEMPORARILY_UNAVAILABLE = "token_temporarily_unavailable"


@dataclass(frozen=True, slots=True)
class Faults:
    """Per-request probabilities (0..1) of each injected failure.

    The API rates together must not exceed 1, nor must the token rates: each request suffers
    at most one fault.
    """

    rate_500: float = 0
    rate_502: float = 0
    rate_503: float = 0
    rate_429: float = 0
    rate_reset: float = 0
    rate_revoke: float = 0
    rate_401: float = 0
    rate_slow: float = 0
    rate_malformed: float = 0
    slow_seconds: float = 30.0
    token_rate_429: float = 0
    token_rate_503: float = 0
    token_rate_unavailable: float = 0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name.endswith("_seconds"):
                if value < 0:
                    raise ValueError(f"{field.name} must be >= 0, got {value}")
            elif not 0 <= value <= 1:
                raise ValueError(f"{field.name} must be between 0 and 1, got {value}")
        for kind, table in (("API", self.api_table()), ("token", self.token_table())):
            # Small float slack: Faults.uniform(1.0) sums five fifths.
            if table and table[-1][0] > 1 + 1e-9:
                raise ValueError(
                    f"{kind} fault rates add up to {table[-1][0]:.3f}; each request gets at most one "
                    "fault, so keep the sum <= 1. HINT: Faults.uniform(rate) splits one total evenly."
                )

    @classmethod
    def uniform(cls, rate: float) -> Faults:
        """Split *rate* evenly over 500, 503, 429, connection reset and token revocation.

        502, slow and malformed answers stay off: they need a client timeout or a strict parser
        to be meaningful, so tests ask for them explicitly.
        """
        share = rate / 5
        return cls(rate_500=share, rate_503=share, rate_429=share, rate_reset=share, rate_revoke=share)

    @classmethod
    def gateway(cls, rate: float) -> Faults:
        """Split *rate* as an API gateway in front of a flaky platform does: mostly 429s and 503s.

        Of the faults: 30% 429, 30% 503, 20% 500, 19% connection resets and 1% revoked tokens (a stray
        401), so a 10% mix revokes one token in a thousand requests rather than one in fifty.
        """
        return cls(
            rate_429=rate * 0.30,
            rate_503=rate * 0.30,
            rate_500=rate * 0.20,
            rate_reset=rate * 0.19,
            rate_revoke=rate * 0.01,
        )

    @classmethod
    def flaky(cls, rate: float) -> Faults:
        """Split *rate* evenly over 500, 503, 429, connection reset and a stray 401 (no token revoked).

        A platform that is merely flaky: every fault costs its own request only, so a client can keep
        1 - *rate* of its fault-free speed.
        """
        share = rate / 5
        return cls(rate_500=share, rate_503=share, rate_429=share, rate_reset=share, rate_401=share)

    @classmethod
    def from_rates(cls, rates: Mapping[str, float], **options: float) -> Faults:
        """Faults from ``{kind: rate}`` with the kinds of :class:`ApiFault` (``"500"``, ``"reset"``, ...)."""
        known = {kind.value for kind in ApiFault}
        unknown = sorted(set(rates) - known)
        if unknown:
            raise ValueError(
                f"unknown fault kind {', '.join(map(repr, unknown))}. HINT: use one of {', '.join(sorted(known))}"
            )
        return cls(**{f"rate_{kind}": rate for kind, rate in rates.items()}, **options)

    @classmethod
    def mix(cls, name: str, rate: float) -> Faults:
        """The named split (:data:`FAULT_MIXES`) of a total *rate*."""
        if name not in FAULT_MIXES:
            raise ValueError(f"unknown fault mix {name!r}. HINT: use one of {', '.join(FAULT_MIXES)}")
        build: Callable[[float], Faults] = getattr(cls, name)
        return build(rate)

    def api_table(self) -> tuple[tuple[float, ApiFault], ...]:
        return _cumulative(
            (
                (self.rate_500, ApiFault.ERROR_500),
                (self.rate_502, ApiFault.BAD_GATEWAY_502),
                (self.rate_503, ApiFault.UNAVAILABLE_503),
                (self.rate_429, ApiFault.THROTTLED_429),
                (self.rate_reset, ApiFault.RESET),
                (self.rate_revoke, ApiFault.REVOKE),
                (self.rate_401, ApiFault.STRAY_401),
                (self.rate_slow, ApiFault.SLOW),
                (self.rate_malformed, ApiFault.MALFORMED),
            )
        )

    def token_table(self) -> tuple[tuple[float, TokenFault], ...]:
        return _cumulative(
            (
                (self.token_rate_429, TokenFault.THROTTLED_429),
                (self.token_rate_503, TokenFault.UNAVAILABLE_503),
                (self.token_rate_unavailable, TokenFault.TEMPORARILY_UNAVAILABLE),
            )
        )


def _cumulative(rates: tuple[tuple[float, K], ...]) -> tuple[tuple[float, K], ...]:
    table: list[tuple[float, K]] = []
    total = 0.0
    for rate, kind in rates:
        if rate > 0:
            total += rate
            # Five fifths sum to 0.9999999999999999; round so a total of 1 always fires.
            table.append((1.0 if abs(total - 1) < 1e-9 else total, kind))
    return tuple(table)


class FaultPicker:
    """Decides, per request, which fault (if any) to inject; swap `faults` at any time."""

    __slots__ = ("_api", "_faults", "_rng", "_token")

    def __init__(self, faults: Faults, seed: int) -> None:
        self._rng = random.Random(seed)
        self.faults = faults

    @property
    def faults(self) -> Faults:
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._faults = faults
        self._api = faults.api_table()
        self._token = faults.token_table()

    def api(self) -> ApiFault | None:
        # No table, no draw: a fault-free run pays nothing and keeps the RNG untouched.
        if not self._api:
            return None
        return _pick(self._api, self._rng.random())

    def token(self) -> TokenFault | None:
        if not self._token:
            return None
        return _pick(self._token, self._rng.random())


def _pick(table: tuple[tuple[float, K], ...], draw: float) -> K | None:
    for threshold, kind in table:
        if draw < threshold:
            return kind
    return None
