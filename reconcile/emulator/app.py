"""The aiohttp application: the Azure AD token endpoint and the platform API, with faults.

The API handler is the benchmark hot path, so it avoids middleware, caches token checks, and
builds responses from pre-encoded bytes where it can.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import socket
import struct
import time
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import orjson
from aiohttp import web

from reconcile.emulator.assertions import JWT_BEARER, AssertionChecker, FederatedIssuer
from reconcile.emulator.dataset import Dataset, Key
from reconcile.emulator.faults import ApiFault, FaultPicker, Faults, TokenFault
from reconcile.emulator.tokens import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_TENANT_ID,
    TokenBook,
    aad_error,
)

FIELDS = ("company", "organisation", "folder", "filename")
TOKEN_PATH = "/{tenant}/oauth2/v2.0/token"
DEFAULT_ENDPOINT_PATH = "/api/v1/search/conversationexists"


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """What the emulated tenant accepts and how the emulated platform behaves."""

    tenant_id: str = DEMO_TENANT_ID
    client_id: str = DEMO_CLIENT_ID
    client_secret: str = DEMO_CLIENT_SECRET
    endpoint_path: str = DEFAULT_ENDPOINT_PATH
    token_lifetime: int = 3599
    refresh_in: int | None = None
    latency_ms: float = 0
    jitter_ms: float = 0
    max_rps: float | None = None
    burst_seconds: float = 0.1  # the rate limiter's token bucket holds this many seconds' worth of requests
    capacity: int | None = None  # requests the backend works on at once; the rest wait in arrival order
    queue_limit: int | None = None  # with capacity: a request that finds this many waiting is shed with 503
    shed_retry_after: int | None = None  # seconds of Retry-After on a shed 503; None sends none
    faults: Faults = field(default_factory=Faults)
    seed: int = 0
    # Certificate credentials: PEM certificates whose assertions authenticate the app (beside the secret).
    certificates: tuple[bytes, ...] = ()
    # Workload identity: federated credentials of the app (issuer, subject, the issuer's signing key).
    federated: tuple[FederatedIssuer, ...] = ()
    # The identity provider's wall clock (issue and expiry of tokens): tests move one by hand.
    clock: Callable[[], float] = field(default=time.time, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.endpoint_path.startswith("/"):
            raise ValueError(f"endpoint_path must start with '/', got {self.endpoint_path!r}")
        if self.token_lifetime < 1:
            raise ValueError(f"token_lifetime must be >= 1 second, got {self.token_lifetime}")
        if self.latency_ms < 0 or self.jitter_ms < 0:
            raise ValueError("latency_ms and jitter_ms must be >= 0")
        if self.max_rps is not None and self.max_rps <= 0:
            raise ValueError(f"max_rps must be > 0 (or None for no cap), got {self.max_rps}")
        if self.burst_seconds <= 0:
            raise ValueError(f"burst_seconds must be > 0, got {self.burst_seconds}")
        if self.capacity is not None and self.capacity < 1:
            raise ValueError(f"capacity must be >= 1 (or None for no limit), got {self.capacity}")
        if self.queue_limit is not None:
            if self.capacity is None:
                raise ValueError("queue_limit needs a capacity: without one nothing ever waits. HINT: set capacity")
            if self.queue_limit < 0:
                raise ValueError(f"queue_limit must be >= 0, got {self.queue_limit}")
        if self.shed_retry_after is not None:
            if self.queue_limit is None:
                raise ValueError("shed_retry_after needs a queue_limit: nothing is shed without one")
            if self.shed_retry_after < 0:
                raise ValueError(f"shed_retry_after must be >= 0, got {self.shed_retry_after}")


@dataclass(slots=True)
class Stats:
    """Counters a test or benchmark reads after (or during) a run; :meth:`summary` is their JSON form."""

    token_requests: int = 0
    api_requests: int = 0
    by_status: Counter[int] = field(default_factory=Counter)  # API answers only
    token_by_status: Counter[int] = field(default_factory=Counter)
    tokens_by_credential: Counter[str] = field(default_factory=Counter)  # secret / certificate / federated
    faults: Counter[str] = field(default_factory=Counter)  # injected, by ApiFault/TokenFault value
    rate_limited: int = 0  # 429s of the max_rps cap (injected 429s are in faults["429"])
    shed: int = 0  # 503s of the queue limit (injected 503s are in faults["503"])
    in_flight: int = 0  # API requests arrived and not yet answered, waiting ones included
    max_in_flight: int = 0
    in_work: int = 0  # API requests past the rate cap and the capacity queue, being worked on
    max_in_work: int = 0
    queued: int = 0  # API requests waiting for capacity
    max_queued: int = 0
    # Seconds from arrival to answer (queue wait included) of every correct 200 answer, in answer order.
    latencies: array[float] = field(default_factory=lambda: array("d"))
    # Every authorised, well-formed question, including those then answered by a fault.
    keys_asked: Counter[Key] = field(default_factory=Counter)
    first_request_at: float | None = None

    def latency_ms(self, quantile: float) -> float | None:
        """The *quantile* (0..1, nearest rank) of :attr:`latencies` in milliseconds; None before any answer."""
        if not 0 <= quantile <= 1:
            raise ValueError(f"quantile must be between 0 and 1, got {quantile}")
        return _nearest_rank_ms(sorted(self.latencies), quantile)

    def summary(self) -> dict[str, Any]:
        """What the platform saw, JSON-ready: what ``reconcile emulator`` prints on stop and serves at
        :data:`STATS_PATH`."""
        ordered = sorted(self.latencies)
        quantiles = {
            name: _nearest_rank_ms(ordered, q) for name, q in (("median", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1))
        }
        return {
            "api_requests": self.api_requests,
            "token_requests": self.token_requests,
            "by_status": {str(status): n for status, n in sorted(self.by_status.items())},
            "token_by_status": {str(status): n for status, n in sorted(self.token_by_status.items())},
            "faults": dict(sorted(self.faults.items())),
            "rate_limited": self.rate_limited,
            "shed": self.shed,
            "max_in_flight": self.max_in_flight,
            "max_in_work": self.max_in_work,
            "max_queued": self.max_queued,
            "latency_ms": {
                "count": len(ordered),
                **{name: None if value is None else round(value, 3) for name, value in quantiles.items()},
            },
        }


def _nearest_rank_ms(ordered: list[float], quantile: float) -> float | None:
    """The nearest-rank *quantile* of sorted seconds, in milliseconds."""
    if not ordered:
        return None
    return 1000 * ordered[max(0, math.ceil(quantile * len(ordered)) - 1)]


class _TokenBucket:
    """Admits `rate` requests per second with a burst of `burst_seconds` worth of them (at least one)."""

    __slots__ = ("_burst", "_last", "_rate", "_tokens")

    def __init__(self, rate: float, burst_seconds: float) -> None:
        self._rate = rate
        self._burst = max(1.0, rate * burst_seconds)
        self._tokens = self._burst
        self._last = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def retry_after(self) -> str:
        """Whole seconds until a request would be admitted, at least 1: what a gateway's 429 says."""
        return str(max(1, math.ceil((1 - self._tokens) / self._rate)))


_JSON = "application/json"
_MISSING = orjson.dumps({"exists": False, "callId": ""})
# Rotated so a client's parser meets a wrong type, a missing field and non-JSON.
_MALFORMED = (b'{"exists": "yes", "callId": ""}', b'{"exists": true}', b'{"exists": tr')
_BAD_BODY = "Request body must be a JSON object with string fields company, organisation, folder and filename"
# RST instead of FIN: l_onoff=1, l_linger=0.
_LINGER_RESET = struct.pack("ii", 1, 0)


class EmulatorState:
    """Everything the handlers share; `Emulator` reaches it through `STATE` to steer a run."""

    __slots__ = (
        "_alternate",
        "_api_path",
        "_assertions",
        "_backend",
        "_bucket",
        "_delay",
        "_jitter",
        "_jitter_rng",
        "config",
        "dataset",
        "picker",
        "stats",
        "tokens",
    )

    def __init__(self, config: EmulatorConfig, dataset: Dataset, stats: Stats) -> None:
        self.config = config
        self.dataset = dataset
        self.stats = stats
        self.picker = FaultPicker(config.faults, config.seed)
        self.tokens = TokenBook(config.tenant_id, config.clock)
        self._assertions = AssertionChecker(config.client_id, config.certificates, config.federated)
        self._bucket = _TokenBucket(config.max_rps, config.burst_seconds) if config.max_rps else None
        # asyncio.Semaphore queues in arrival order (a newcomer never passes a waiter), as a backend's queue does.
        self._backend = asyncio.Semaphore(config.capacity) if config.capacity is not None else None
        self._delay = config.latency_ms / 1000
        self._jitter = config.jitter_ms / 1000
        # Separate from the fault RNG so turning jitter on does not change which faults fire.
        self._jitter_rng = random.Random(config.seed + 1)
        # One counter per fault kind with two forms (429 Retry-After, reset FIN/RST).
        self._alternate: Counter[str] = Counter()

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> web.Response:
        self.stats.by_status[status] += 1
        return web.Response(status=status, body=body, content_type=_JSON, headers=headers)

    def _error(self, status: int, key: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
        return self._reply(status, orjson.dumps({key: message}), headers)

    # ---- token endpoint -------------------------------------------------------------------

    async def token(self, request: web.Request) -> web.Response:
        stats = self.stats
        stats.token_requests += 1
        if stats.first_request_at is None:
            stats.first_request_at = time.monotonic()
        fault = self.picker.token()
        if fault is not None:
            stats.faults[fault.value] += 1
            return self._token_fault(fault)
        config = self.config
        if request.match_info["tenant"] != config.tenant_id:
            return self._aad(
                400,
                "invalid_request",
                90002,
                f"Tenant '{request.match_info['tenant']}' not found. Check to make sure you have the correct "
                "tenant ID and are signing into the correct cloud.",
            )
        form = await request.post()
        values: dict[str, str] = {}
        credential = "client_assertion" if form.get("client_assertion_type") else "client_secret"
        for name in ("grant_type", "client_id", credential, "scope"):
            value = form.get(name)
            if not isinstance(value, str) or not value:
                return self._aad(
                    400,
                    "invalid_request",
                    900144,
                    f"The request body must contain the following parameter: '{name}'.",
                )
            values[name] = value
        if values["grant_type"] != "client_credentials":
            return self._aad(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{values['grant_type']}'. Use client_credentials.",
            )
        if values["client_id"] != config.client_id:
            return self._aad(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{values['client_id']}' was not found in the directory "
                f"'{config.tenant_id}'.",
            )
        if credential == "client_assertion":
            if form.get("client_assertion_type") != JWT_BEARER:
                return self._aad(400, "invalid_request", 50027, f"client_assertion_type must be '{JWT_BEARER}'.")
            refusal = self._assertions.check(values["client_assertion"], str(request.url.with_query(None)))
            if refusal is not None:
                return self._aad(401, "invalid_client", refusal.code, refusal.message)
            kind = self._assertions.last_kind
        elif values["client_secret"] != config.client_secret:
            return self._aad(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client "
                f"secret value, not the client secret ID, for a secret added to app '{config.client_id}'.",
            )
        else:
            kind = "secret"
        if values["scope"] != f"api://{config.client_id}/.default":
            return self._aad(
                400,
                "invalid_scope",
                70011,
                f"The provided request must include a 'scope' input parameter. The provided value for the "
                f"input parameter 'scope' is not valid. The scope {values['scope']} is not valid.",
            )
        self.stats.tokens_by_credential[kind] += 1
        lifetime = config.token_lifetime
        body: dict[str, Any] = {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime}
        if config.refresh_in is not None:
            body["refresh_in"] = config.refresh_in
        body["access_token"] = self.tokens.issue(
            tenant_id=config.tenant_id, client_id=config.client_id, lifetime=lifetime
        )
        return self._token_reply(200, orjson.dumps(body))

    def _token_reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> web.Response:
        self.stats.token_by_status[status] += 1
        return web.Response(status=status, body=body, content_type=_JSON, headers=headers)

    def _aad(
        self, status: int, error: str, code: int, message: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        return self._token_reply(status, orjson.dumps(aad_error(error, code, message)), headers)

    def _token_fault(self, fault: TokenFault) -> web.Response:
        if fault is TokenFault.THROTTLED_429:
            # Entra sends 60; one second keeps tests fast while still proving the header is read.
            return self._aad(429, "temporarily_unavailable", 90055, "Too many requests.", headers={"Retry-After": "1"})
        if fault is TokenFault.UNAVAILABLE_503:
            self.stats.token_by_status[503] += 1
            return web.Response(status=503, text="Service Unavailable", headers={"Retry-After": "1"})
        return self._aad(400, "temporarily_unavailable", 90033, "A transient error has occurred. Please try again.")

    # ---- platform API ---------------------------------------------------------------------

    async def stats_summary(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(self.stats.summary()), content_type=_JSON)

    async def api(self, request: web.Request) -> web.StreamResponse:
        stats = self.stats
        arrived = time.monotonic()
        stats.api_requests += 1
        if stats.first_request_at is None:
            stats.first_request_at = arrived
        stats.in_flight += 1
        if stats.in_flight > stats.max_in_flight:
            stats.max_in_flight = stats.in_flight
        try:
            # The gateway's rate cap answers at once; only what it admits reaches the backend and its queue.
            if self._bucket is not None and not self._bucket.take():
                stats.rate_limited += 1
                return self._error(429, "error", "Rate limit exceeded", {"Retry-After": self._bucket.retry_after()})
            backend = self._backend
            if backend is None:
                return await self._work(request, arrived)
            if backend.locked():
                limit = self.config.queue_limit
                if limit is not None and stats.queued >= limit:
                    return self._shed()
                stats.queued += 1
                if stats.queued > stats.max_queued:
                    stats.max_queued = stats.queued
                try:
                    await backend.acquire()
                finally:
                    stats.queued -= 1
            else:
                await backend.acquire()  # a free slot: returns without yielding
            try:
                return await self._work(request, arrived)
            finally:
                backend.release()
        finally:
            stats.in_flight -= 1

    def _shed(self) -> web.Response:
        self.stats.shed += 1
        after = self.config.shed_retry_after
        headers = None if after is None else {"Retry-After": str(after)}
        return self._error(503, "message", "Service unavailable: the backend is at capacity", headers)

    async def _work(self, request: web.Request, arrived: float) -> web.StreamResponse:
        stats = self.stats
        stats.in_work += 1
        if stats.in_work > stats.max_in_work:
            stats.max_in_work = stats.in_work
        try:
            return await self._answer(request, arrived)
        finally:
            stats.in_work -= 1

    async def _answer(self, request: web.Request, arrived: float) -> web.StreamResponse:
        if self._delay or self._jitter:
            await asyncio.sleep(self._delay + self._jitter * self._jitter_rng.random())

        header = request.headers.get("Authorization")
        if not header:
            return self._error(401, "message", "Authorization header is missing", {"WWW-Authenticate": "Bearer"})
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return self._unauthorised("Authorization header must be 'Bearer <token>'")
        reason = self.tokens.check(token)
        if reason is not None:
            return self._unauthorised(reason)

        key = _parse_key(await request.read())
        if isinstance(key, str):
            return self._error(400, "message", key)
        self.stats.keys_asked[key] += 1

        fault = self.picker.api()
        if fault is not None:
            self.stats.faults[fault.value] += 1
            if fault is ApiFault.SLOW:
                await asyncio.sleep(self.picker.faults.slow_seconds)
            else:
                return self._api_fault(fault, request, token)

        call_id = self.dataset.lookup(key)
        self.stats.latencies.append(time.monotonic() - arrived)
        if call_id is None:
            return self._reply(200, _MISSING)
        return self._reply(200, b'{"exists":true,"callId":' + orjson.dumps(call_id) + b"}")

    def _unauthorised(self, reason: str) -> web.Response:
        return self._error(
            401,
            "error",
            reason,
            {"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{reason}"'},
        )

    def _api_fault(self, fault: ApiFault, request: web.Request, token: str) -> web.StreamResponse:
        if fault is ApiFault.ERROR_500:
            return self._error(500, "error", "Internal server error (injected)")
        if fault is ApiFault.BAD_GATEWAY_502:
            # A gateway in front of the API answers in HTML, not the API's JSON.
            self.stats.by_status[502] += 1
            return web.Response(
                status=502,
                text="<html><body><h1>502 Bad Gateway</h1></body></html>",
                content_type="text/html",
            )
        if fault is ApiFault.UNAVAILABLE_503:
            return self._error(503, "message", "Service temporarily unavailable (injected)", {"Retry-After": "1"})
        if fault is ApiFault.THROTTLED_429:
            return self._error(429, "error", "Too many requests (injected)", {"Retry-After": self._retry_after()})
        if fault is ApiFault.REVOKE:
            self.tokens.revoke(token)
            return self._unauthorised("token has been revoked")
        if fault is ApiFault.STRAY_401:
            return self._unauthorised("token rejected (injected)")
        if fault is ApiFault.MALFORMED:
            self._alternate["malformed"] += 1
            body = _MALFORMED[self._alternate["malformed"] % len(_MALFORMED)]
            return self._reply(200, body)
        return self._reset(request)

    def _retry_after(self) -> str:
        # Both forms RFC 9110 allows; clients that only parse integers break on the second.
        self._alternate["429"] += 1
        if self._alternate["429"] % 2:
            return "1"
        # An HTTP-date has whole seconds: round up, so the date is never less than a second away.
        due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
        return format_datetime(due, usegmt=True)

    def _reset(self, request: web.Request) -> web.StreamResponse:
        transport = request.transport
        if transport is not None:
            self._alternate["reset"] += 1
            # Alternate a clean close (client: ServerDisconnectedError) with an RST (ClientOSError).
            if self._alternate["reset"] % 2 == 0:
                sock = transport.get_extra_info("socket")
                with contextlib.suppress(AttributeError, OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            transport.abort()
        # Never sent: aiohttp meets the closed transport, treats it as a client disconnect and
        # logs nothing, which a raised exception would not.
        return web.Response(status=500)


def _parse_key(raw: bytes) -> Key | str:
    """The four lookup values, or a message for the 400 body."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return f"{_BAD_BODY}; the body is not valid JSON"
    if not isinstance(body, dict):
        return f"{_BAD_BODY}; got a JSON {type(body).__name__}"
    values = []
    for name in FIELDS:
        value = body.get(name)
        if value is None:
            return f"'{name}' is required"
        if not isinstance(value, str):
            return f"'{name}' must be a string"
        if not value.strip():
            return f"'{name}' must not be empty"
        values.append(value)
    return (values[0], values[1], values[2], values[3])


STATE = web.AppKey("reconcile.emulator.state", EmulatorState)
STATS_PATH = "/_emulator/stats"  # GET: Stats.summary() as JSON, for whoever drives a subprocess emulator


def create_app(config: EmulatorConfig, dataset: Dataset, stats: Stats) -> web.Application:
    """Build the application; everything else (404, 405) is aiohttp's router."""
    state = EmulatorState(config, dataset, stats)
    app = web.Application()
    app[STATE] = state
    app.router.add_post(TOKEN_PATH, state.token)
    app.router.add_post(config.endpoint_path, state.api)
    app.router.add_get(STATS_PATH, state.stats_summary)
    return app
