"""End-to-end tests of the emulator over real loopback HTTP, plus its dataset and fault rules."""

from __future__ import annotations

import asyncio
import base64
import csv
import json
import logging
import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from click.testing import CliRunner
from multidict import CIMultiDictProxy

import reconcile.emulator
from reconcile.emulator import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_TENANT_ID,
    FAULT_MIXES,
    Dataset,
    Emulator,
    EmulatorConfig,
    Faults,
    Stats,
    make_call_id,
    synthetic_manifest_rows,
)
from reconcile.emulator.app import EmulatorState, _TokenBucket
from reconcile.emulator.command import emulator as emulator_command
from reconcile.emulator.faults import ApiFault, FaultPicker

FIELDS = ("company", "organisation", "folder", "filename")
ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_manifests"
PRESENT = {"company": "initech", "organisation": "initech-ca", "folder": "2026/11/24", "filename": "smoke-00.mp3"}
MISSING = {**PRESENT, "filename": "smoke-03.mp3"}
PRESENT_KEY = (PRESENT["company"], PRESENT["organisation"], PRESENT["folder"], PRESENT["filename"])


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(EmulatorConfig(token_lifetime=5)) as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def token_form(**overrides: str) -> dict[str, str]:
    form = {
        "client_id": DEMO_CLIENT_ID,
        "client_secret": DEMO_CLIENT_SECRET,
        "scope": f"api://{DEMO_CLIENT_ID}/.default",
        "grant_type": "client_credentials",
    }
    form.update(overrides)
    return form


async def get_token(session: aiohttp.ClientSession, emu: Emulator) -> str:
    async with session.post(emu.token_url, data=token_form()) as response:
        assert response.status == 200, await response.text()
        token: str = (await response.json())["access_token"]
        return token


async def ask(
    session: aiohttp.ClientSession,
    emu: Emulator,
    token: str | None,
    body: Any = PRESENT,
    **kwargs: Any,
) -> tuple[int, Any, CIMultiDictProxy[str]]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with session.post(emu.api_url, data=data, headers=headers, **kwargs) as response:
        text = await response.text()
        try:
            payload = json.loads(text)
        except ValueError:
            payload = text
        return response.status, payload, response.headers


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


# ---- token endpoint ---------------------------------------------------------------------------


async def test_token_success_shape_and_claims(emu: Emulator, session: aiohttp.ClientSession) -> None:
    """A valid client-credentials request gets an Entra-shaped body and a JWT with the expected claims."""
    before = int(time.time())
    async with session.post(emu.token_url, data=token_form()) as response:
        assert response.status == 200
        body = await response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == body["ext_expires_in"] == 5
    assert "refresh_in" not in body
    claims = claims_of(body["access_token"])
    assert claims["aud"] == f"api://{DEMO_CLIENT_ID}"
    assert claims["appid"] == DEMO_CLIENT_ID
    assert claims["tid"] == DEMO_TENANT_ID
    assert DEMO_TENANT_ID in claims["iss"]
    assert claims["roles"] == ["Conversation.Read"]
    assert before <= claims["iat"] == claims["nbf"] <= time.time()
    assert claims["iat"] + 5 <= claims["exp"] <= claims["iat"] + 6
    assert claims["jti"]
    assert emu.stats.token_requests == 1


async def test_token_refresh_in_when_configured(session: aiohttp.ClientSession) -> None:
    """refresh_in is sent only when the config asks for it."""
    async with Emulator(EmulatorConfig(refresh_in=1800)) as emu:
        body = await (await session.post(emu.token_url, data=token_form())).json()
    assert body["refresh_in"] == 1800
    assert body["expires_in"] == 3599


@pytest.mark.parametrize(
    ("tenant", "form", "status", "error", "code"),
    [
        ("00000000-0000-0000-0000-000000000000", {}, 400, "invalid_request", 90002),
        (DEMO_TENANT_ID, {"client_id": "11111111-1111-1111-1111-111111111111"}, 400, "unauthorized_client", 700016),
        (DEMO_TENANT_ID, {"client_secret": "wrong"}, 401, "invalid_client", 7000215),
        (DEMO_TENANT_ID, {"scope": "https://graph.microsoft.com/.default"}, 400, "invalid_scope", 70011),
        (DEMO_TENANT_ID, {"grant_type": "password"}, 400, "unsupported_grant_type", 70003),
        (DEMO_TENANT_ID, {"grant_type": ""}, 400, "invalid_request", 900144),
    ],
)
async def test_token_errors_are_azure_shaped(
    emu: Emulator,
    session: aiohttp.ClientSession,
    tenant: str,
    form: dict[str, str],
    status: int,
    error: str,
    code: int,
) -> None:
    """Each rejected token request carries Entra's status, error, AADSTS code, trace and correlation ids."""
    url = f"{emu.authority}/{tenant}/oauth2/v2.0/token"
    async with session.post(url, data=token_form(**form)) as response:
        assert response.status == status
        body = await response.json()
    assert body["error"] == error
    assert body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    for name in ("trace_id", "correlation_id"):
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", body[name])
        assert body[name] in body["error_description"]
    assert "Timestamp: " in body["error_description"]
    assert body["timestamp"].endswith("Z")


@pytest.mark.parametrize(
    ("faults", "status", "error", "retry_after"),
    [
        (Faults(token_rate_429=1), 429, "temporarily_unavailable", "1"),
        (Faults(token_rate_503=1), 503, None, "1"),
        (Faults(token_rate_unavailable=1), 400, "temporarily_unavailable", None),
    ],
)
async def test_token_faults(
    session: aiohttp.ClientSession, faults: Faults, status: int, error: str | None, retry_after: str | None
) -> None:
    """Token-endpoint faults answer with the transient statuses a refresher must retry."""
    async with Emulator(EmulatorConfig(faults=faults)) as emu:
        async with session.post(emu.token_url, data=token_form()) as response:
            assert response.status == status
            assert response.headers.get("Retry-After") == retry_after
            if error is not None:
                assert (await response.json())["error"] == error
        assert sum(emu.stats.faults.values()) == 1
        assert emu.stats.token_by_status == {status: 1}


# ---- API: answers, validation, auth, routing --------------------------------------------------


async def test_api_present_and_missing(emu: Emulator, session: aiohttp.ClientSession) -> None:
    """A known recording answers exists/callId; an unknown one answers exists false and an empty callId."""
    token = await get_token(session, emu)
    status, body, _ = await ask(session, emu, token, PRESENT)
    assert (status, body) == (200, {"exists": True, "callId": make_call_id(PRESENT_KEY)})
    status, body, _ = await ask(session, emu, token, MISSING)
    assert (status, body) == (200, {"exists": False, "callId": ""})


async def test_api_matches_exactly(emu: Emulator, session: aiohttp.ClientSession) -> None:
    """Lookup neither trims nor case-folds: a padded or upper-cased key is missing."""
    token = await get_token(session, emu)
    for variant in ({**PRESENT, "company": "INITECH"}, {**PRESENT, "filename": "smoke-00.mp3 "}):
        status, body, _ = await ask(session, emu, token, variant)
        assert (status, body["exists"]) == (200, False)


async def test_api_handles_unicode_keys(emu: Emulator, session: aiohttp.ClientSession) -> None:
    """Non-ASCII keys from the demo manifests round-trip through JSON and match."""
    token = await get_token(session, emu)
    key = ("acme", "acme-ca", "2026/11/25/outbound", "客户回访-0007.mp3")
    body = dict(zip(FIELDS, key, strict=True))
    status, answer, _ = await ask(session, emu, token, body)
    assert (status, answer) == (200, {"exists": True, "callId": make_call_id(key)})


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "JSON list"),
        ({k: v for k, v in PRESENT.items() if k != "folder"}, "'folder' is required"),
        ({**PRESENT, "filename": ""}, "'filename' must not be empty"),
        ({**PRESENT, "company": "  \t"}, "'company' must not be empty"),
        ({**PRESENT, "organisation": 42}, "'organisation' must be a string"),
    ],
)
async def test_api_rejects_bad_bodies(emu: Emulator, session: aiohttp.ClientSession, body: Any, fragment: str) -> None:
    """A body that is not four non-empty strings gets 400 with a message naming the problem."""
    token = await get_token(session, emu)
    status, answer, _ = await ask(session, emu, token, body)
    assert status == 400
    assert fragment in answer["message"]
    assert not emu.stats.keys_asked


@pytest.mark.parametrize(
    ("authorization", "fragment"),
    [
        (None, "missing"),
        ("Basic dXNlcjpwYXNz", "Bearer"),
        ("Bearer not-a-jwt", "malformed"),
        ("Bearer a.b.c", "malformed"),
    ],
)
async def test_api_rejects_bad_authorization(
    emu: Emulator, session: aiohttp.ClientSession, authorization: str | None, fragment: str
) -> None:
    """Missing or malformed Authorization headers get 401 with an error or message body."""
    headers = {"Authorization": authorization} if authorization else {}
    async with session.post(emu.api_url, json=PRESENT, headers=headers) as response:
        assert response.status == 401
        body = await response.json()
    assert fragment in (body.get("error") or body["message"])


async def test_api_rejects_forged_signature(emu: Emulator, session: aiohttp.ClientSession) -> None:
    """A token whose signature does not match its content gets 401."""
    token = await get_token(session, emu)
    header, payload, signature = token.split(".")
    forged = f"{header}.{payload}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    status, body, _ = await ask(session, emu, forged)
    assert (status, body) == (401, {"error": "invalid token signature"})


async def test_api_rejects_expired_token(session: aiohttp.ClientSession) -> None:
    """A token is accepted until its exp and rejected with 401 after it."""
    async with Emulator(EmulatorConfig(token_lifetime=1)) as emu:
        token = await get_token(session, emu)
        assert (await ask(session, emu, token))[0] == 200
        await asyncio.sleep(claims_of(token)["exp"] - time.time() + 0.05)
        status, body, headers = await ask(session, emu, token)
    assert (status, body) == (401, {"error": "token is expired"})
    assert "invalid_token" in headers["WWW-Authenticate"]


async def test_revoke_all_tokens(emu: Emulator, session: aiohttp.ClientSession) -> None:
    """revoke_all_tokens() turns every issued token into a 401; a freshly issued one works."""
    old = await get_token(session, emu)
    assert (await ask(session, emu, old))[0] == 200
    emu.revoke_all_tokens()
    status, body, _ = await ask(session, emu, old)
    assert (status, body) == (401, {"error": "token has been revoked"})
    new = await get_token(session, emu)
    assert (await ask(session, emu, new))[0] == 200


@pytest.mark.parametrize(
    "path", ["/api/v1/search/callexists", "/api/v1/search", "/", "/api/v2/search/conversationexists"]
)
async def test_other_paths_are_404(emu: Emulator, session: aiohttp.ClientSession, path: str) -> None:
    """Only the configured endpoint path exists; the guide's callexists is a 404 unless configured."""
    token = await get_token(session, emu)
    async with session.post(emu.base_url + path, json=PRESENT, headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 404


async def test_wrong_method_is_405(emu: Emulator, session: aiohttp.ClientSession) -> None:
    """GET on the API path is 405, not 404: the path is right, the method is not."""
    async with session.get(emu.api_url) as response:
        assert response.status == 405


async def test_endpoint_path_is_configurable(session: aiohttp.ClientSession) -> None:
    """With endpoint_path set to callexists, that path answers and conversationexists is 404."""
    async with Emulator(EmulatorConfig(endpoint_path="/api/v1/search/callexists")) as emu:
        token = await get_token(session, emu)
        assert emu.api_url.endswith("/callexists")
        assert (await ask(session, emu, token))[0] == 200
        url = emu.base_url + "/api/v1/search/conversationexists"
        async with session.post(url, json=PRESENT, headers={"Authorization": f"Bearer {token}"}) as response:
            assert response.status == 404


# ---- API faults -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("faults", "status", "check"),
    [
        (Faults(rate_500=1), 500, lambda body, headers: "error" in body),
        (Faults(rate_502=1), 502, lambda body, headers: "Bad Gateway" in body),
        (Faults(rate_503=1), 503, lambda body, headers: headers["Retry-After"] == "1"),
        (Faults(rate_malformed=1), 200, lambda body, headers: body != {"exists": True, "callId": ""}),
    ],
)
async def test_api_status_faults(session: aiohttp.ClientSession, faults: Faults, status: int, check: Any) -> None:
    """At rate 1.0 every request gets the injected status and body."""
    async with Emulator(EmulatorConfig(faults=faults)) as emu:
        token = await get_token(session, emu)
        for _ in range(3):
            answer_status, body, headers = await ask(session, emu, token)
            assert answer_status == status
            assert check(body, headers)
            if status == 200:
                assert not (isinstance(body, dict) and isinstance(body.get("exists"), bool) and "callId" in body)
    assert sum(emu.stats.faults.values()) == 3


async def test_429_retry_after_alternates_forms(session: aiohttp.ClientSession) -> None:
    """Injected 429s alternate Retry-After between delta-seconds and an HTTP-date about 1 s ahead."""
    async with Emulator(EmulatorConfig(faults=Faults(rate_429=1))) as emu:
        token = await get_token(session, emu)
        first = (await ask(session, emu, token))[2]["Retry-After"]
        second = (await ask(session, emu, token))[2]["Retry-After"]
    assert first == "1"
    assert second.endswith(" GMT")
    # Whole seconds, rounded up: never less than the second the other form says, never more than two.
    assert 0.9 <= parsedate_to_datetime(second).timestamp() - time.time() <= 2.0
    assert emu.stats.by_status[429] == 2
    assert emu.stats.rate_limited == 0


async def test_reset_drops_connection_quietly(session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture) -> None:
    """A reset fault aborts the connection (a client-side ClientError) without logging a traceback."""
    caplog.set_level(logging.DEBUG)
    async with Emulator(EmulatorConfig(faults=Faults(rate_reset=1))) as emu:
        token = await get_token(session, emu)
        for _ in range(4):
            with pytest.raises(aiohttp.ClientError):
                await ask(session, emu, token)
        emu.faults = Faults()
        assert (await ask(session, emu, token))[0] == 200
    assert emu.stats.faults["reset"] == 4
    assert emu.stats.keys_asked[PRESENT_KEY] == 5
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


async def test_revoke_fault_forces_refresh(session: aiohttp.ClientSession) -> None:
    """A revoke fault answers 401 and the presented token stays dead after faults stop."""
    async with Emulator(EmulatorConfig(faults=Faults(rate_revoke=1))) as emu:
        token = await get_token(session, emu)
        assert (await ask(session, emu, token))[:2] == (401, {"error": "token has been revoked"})
        emu.faults = Faults()
        assert (await ask(session, emu, token))[0] == 401
        assert (await ask(session, emu, await get_token(session, emu)))[0] == 200


async def test_slow_fault_delays_answer(session: aiohttp.ClientSession) -> None:
    """A slow fault answers correctly, but only after slow_seconds."""
    async with Emulator(EmulatorConfig(faults=Faults(rate_slow=1, slow_seconds=0.3))) as emu:
        token = await get_token(session, emu)
        started = time.monotonic()
        status, body, _ = await ask(session, emu, token)
    assert time.monotonic() - started >= 0.3
    assert (status, body["exists"]) == (200, True)


async def test_slow_fault_trips_client_timeout_and_shuts_down_fast(session: aiohttp.ClientSession) -> None:
    """A client timeout during a 30 s slow fault neither hangs the client nor the emulator's shutdown."""
    emu = Emulator(EmulatorConfig(faults=Faults(rate_slow=1)))
    async with emu:
        token = await get_token(session, emu)
        with pytest.raises(TimeoutError):
            await ask(session, emu, token, timeout=aiohttp.ClientTimeout(total=0.2))
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 2


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


# ---- latency, rate cap, stats -----------------------------------------------------------------


async def test_latency_and_max_in_flight(session: aiohttp.ClientSession) -> None:
    """latency_ms delays every answer, and concurrent requests show up in max_in_flight."""
    async with Emulator(EmulatorConfig(latency_ms=200)) as emu:
        token = await get_token(session, emu)
        started = time.monotonic()
        results = await asyncio.gather(*(ask(session, emu, token) for _ in range(5)))
        elapsed = time.monotonic() - started
    assert [status for status, _, _ in results] == [200] * 5
    assert 0.2 <= elapsed < 1.0
    assert emu.stats.max_in_flight == 5
    assert emu.stats.in_flight == 0


async def test_rate_cap_answers_429(session: aiohttp.ClientSession) -> None:
    """Requests above max_rps get 429 with Retry-After: 1, counted apart from injected 429s."""
    async with Emulator(EmulatorConfig(max_rps=5)) as emu:
        token = await get_token(session, emu)
        results = await asyncio.gather(*(ask(session, emu, token) for _ in range(12)))
    limited = [headers for status, _, headers in results if status == 429]
    assert len(limited) >= 8
    assert all(headers["Retry-After"] == "1" for headers in limited)
    assert emu.stats.rate_limited == len(limited) == emu.stats.by_status[429]
    assert emu.stats.by_status[200] == 12 - len(limited) >= 1
    assert not emu.stats.faults


async def test_rate_cap_burst_is_configurable(session: aiohttp.ClientSession) -> None:
    """burst_seconds sets how many requests the cap lets through at once: 1/s for 10 s admits 10 of 12."""
    async with Emulator(EmulatorConfig(max_rps=1, burst_seconds=10.0)) as emu:
        token = await get_token(session, emu)
        results = await asyncio.gather(*(ask(session, emu, token) for _ in range(12)))
    assert sorted(status for status, _, _ in results) == [200] * 10 + [429] * 2


def test_rate_cap_burst_must_be_positive() -> None:
    """A burst of no time at all would refuse every request: the config says so at once."""
    with pytest.raises(ValueError, match="burst_seconds must be > 0"):
        EmulatorConfig(max_rps=5, burst_seconds=0)


async def test_stats_count_requests(emu: Emulator, session: aiohttp.ClientSession) -> None:
    """Stats count token and API requests, statuses and each key asked."""
    assert emu.stats.first_request_at is None
    token = await get_token(session, emu)
    for body in (PRESENT, PRESENT, MISSING, {**PRESENT, "folder": ""}):
        await ask(session, emu, token, body)
    await ask(session, emu, None)
    stats = emu.stats
    assert stats.token_requests == 1
    assert stats.api_requests == 5
    assert stats.by_status == {200: 3, 400: 1, 401: 1}
    assert stats.token_by_status == {200: 1}
    assert stats.keys_asked[PRESENT_KEY] == 2
    assert sum(stats.keys_asked.values()) == 3
    assert stats.first_request_at is not None
    assert stats.first_request_at <= time.monotonic()


def test_rate_cap_retry_after_is_the_wait_for_the_next_admission() -> None:
    """Below one request a second the cap's Retry-After is the whole seconds until a request would pass."""
    bucket = _TokenBucket(0.5, burst_seconds=2.0)  # a burst of one request, then one every 2 s
    assert bucket.take()
    assert not bucket.take()
    assert bucket.retry_after() == "2"
    assert _TokenBucket(300, burst_seconds=0.1).retry_after() == "1"  # never 0: at least a second


# ---- platform shapes: a capacity-limited backend, fault mixes ---------------------------------


class Gate:
    """Holds every request the backend works on until opened, and counts how many it holds at once."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.open = asyncio.Event()
        self.running = 0
        self.max_running = 0
        answer = EmulatorState._answer

        async def held(state: EmulatorState, request: Any, arrived: float) -> Any:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            try:
                await self.open.wait()
                return await answer(state, request, arrived)
            finally:
                self.running -= 1

        monkeypatch.setattr(EmulatorState, "_answer", held)


async def until(condition: Any, what: str) -> None:
    """Wait (at most 10 s) for ``condition()`` to hold: requests take a moment to arrive."""
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


async def test_capacity_bounds_the_requests_worked_on(
    session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With capacity 3, nine requests at once: three are worked on, six wait, and all nine are answered."""
    gate = Gate(monkeypatch)
    async with Emulator(EmulatorConfig(capacity=3)) as emu:
        token = await get_token(session, emu)
        asks = [asyncio.ensure_future(ask(session, emu, token)) for _ in range(9)]
        await until(lambda: emu.stats.in_flight == 9, "nine requests in flight")
        assert (gate.running, emu.stats.in_work, emu.stats.queued) == (3, 3, 6)
        gate.open.set()
        results = await asyncio.gather(*asks)
    assert [status for status, _, _ in results] == [200] * 9
    assert gate.max_running == emu.stats.max_in_work == 3
    assert emu.stats.max_queued == 6
    assert emu.stats.max_in_flight == 9
    assert (emu.stats.queued, emu.stats.in_work, emu.stats.shed) == (0, 0, 0)


async def test_latency_grows_with_load_beyond_capacity(session: aiohttp.ClientSession) -> None:
    """At capacity 2 and 50 ms, eight requests at once are answered in four waves and the stats see the wait."""
    async with Emulator(EmulatorConfig(capacity=2, latency_ms=50)) as emu:
        token = await get_token(session, emu)
        await asyncio.gather(*(ask(session, emu, token) for _ in range(2)))
        assert emu.stats.max_queued == 0  # at the capacity nothing waits
        light = sorted(emu.stats.latencies)
        await asyncio.gather(*(ask(session, emu, token) for _ in range(8)))
    heavy = sorted(emu.stats.latencies[2:])
    assert len(light) == 2
    assert len(heavy) == 8
    assert min(light) >= 0.045
    # Lower bounds only (a loaded machine is slower, never faster): wave k is answered after k × 50 ms.
    for index, seconds in enumerate(heavy):
        assert seconds >= 0.045 * (index // 2 + 1), heavy
    assert emu.stats.max_queued == 6
    median = emu.stats.latency_ms(0.5)
    assert median is not None
    assert median >= 90


async def test_queue_limit_sheds_503_beyond_it(session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch) -> None:
    """Capacity 2 and a queue of 3: of ten requests at once five are shed with a 503 without Retry-After."""
    gate = Gate(monkeypatch)
    async with Emulator(EmulatorConfig(capacity=2, queue_limit=3)) as emu:
        token = await get_token(session, emu)
        asks = [asyncio.ensure_future(ask(session, emu, token)) for _ in range(10)]
        await until(lambda: emu.stats.api_requests == 10 and emu.stats.queued == 3, "ten requests to arrive")
        await until(lambda: emu.stats.shed == 5, "five sheds")
        gate.open.set()
        results = await asyncio.gather(*asks)
    shed = [(body, headers) for status, body, headers in results if status == 503]
    assert len(shed) == 5
    assert sorted(status for status, _, _ in results).count(200) == 5
    assert all("Retry-After" not in headers and "capacity" in body["message"] for body, headers in shed)
    assert emu.stats.by_status == {200: 5, 503: 5}
    assert (emu.stats.shed, emu.stats.max_queued, emu.stats.max_in_work) == (5, 3, 2)
    assert not emu.stats.faults  # shed 503s are not injected faults


async def test_shed_retry_after_is_sent_when_configured(
    session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With shed_retry_after, a request shed at a full queue (here of zero) carries that Retry-After."""
    gate = Gate(monkeypatch)
    async with Emulator(EmulatorConfig(capacity=1, queue_limit=0, shed_retry_after=2)) as emu:
        token = await get_token(session, emu)
        held = asyncio.ensure_future(ask(session, emu, token))
        await until(lambda: emu.stats.in_work == 1, "the first request to be worked on")
        status, _, headers = await ask(session, emu, token)
        gate.open.set()
        assert (await held)[0] == 200
    assert (status, headers["Retry-After"]) == (503, "2")


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"capacity": 0}, "capacity must be >= 1"),
        ({"queue_limit": 4}, "queue_limit needs a capacity"),
        ({"capacity": 2, "queue_limit": -1}, "queue_limit must be >= 0"),
        ({"capacity": 2, "shed_retry_after": 1}, "shed_retry_after needs a queue_limit"),
    ],
)
def test_capacity_config_validates(kwargs: dict[str, int], fragment: str) -> None:
    """A capacity below one, or a queue limit without a capacity, is refused with the reason."""
    with pytest.raises(ValueError, match=re.escape(fragment)):
        EmulatorConfig(**kwargs)


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


async def test_a_stray_401_leaves_the_token_good(session: aiohttp.ClientSession) -> None:
    """An injected stray 401 refuses that request only: the same token is accepted by the next one."""
    async with Emulator(EmulatorConfig(faults=Faults(rate_401=1.0))) as emu:
        token = await get_token(session, emu)
        status, _, _ = await ask(session, emu, token)
        assert status == 401
        emu.faults = Faults()
        status, _, _ = await ask(session, emu, token)
        assert status == 200


def test_faults_from_rates_names_kinds_by_their_fault() -> None:
    """from_rates takes {"503": 0.02, "reset": 0.01}, and an unknown kind is refused with the known ones."""
    faults = Faults.from_rates({"503": 0.02, "reset": 0.01}, slow_seconds=2)
    assert (faults.rate_503, faults.rate_reset, faults.slow_seconds) == (0.02, 0.01, 2)
    with pytest.raises(ValueError, match=r"unknown fault kind '504'\. HINT: use one of"):
        Faults.from_rates({"504": 0.1})


async def test_fault_mix_over_http_answers_every_kind(session: aiohttp.ClientSession) -> None:
    """Over HTTP a 50% uniform mix answers 500, 503, 429 (both Retry-After forms), resets and revocations."""
    async with Emulator(EmulatorConfig(faults=Faults.uniform(0.5), seed=5)) as emu:
        token = await get_token(session, emu)
        seen: Counter[str] = Counter()
        retry_afters: set[str] = set()
        for _ in range(200):
            try:
                status, _, headers = await ask(session, emu, token)
            except aiohttp.ClientError:
                seen["reset"] += 1
                continue
            seen[str(status)] += 1
            if status in (429, 503):
                after = headers["Retry-After"]
                retry_afters.add("date" if after.endswith(" GMT") else after)
                if after.endswith(" GMT"):
                    assert parsedate_to_datetime(after).timestamp() > time.time()
            if status == 401:
                token = await get_token(session, emu)
        faults = dict(emu.stats.faults)
    assert faults == {
        "500": seen["500"],
        "503": seen["503"],
        "429": seen["429"],
        "reset": seen["reset"],
        "revoke": seen["401"],
    }
    assert all(15 <= n <= 35 for n in faults.values()), faults  # 20 expected of each in 200
    assert seen["200"] == 200 - sum(faults.values())
    assert retry_afters == {"1", "date"}


async def test_stats_summary_is_served_as_json(session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch) -> None:
    """GET /_emulator/stats answers Stats.summary(): statuses, cap 429s, sheds, peaks and latency quantiles."""
    gate = Gate(monkeypatch)
    async with Emulator(EmulatorConfig(latency_ms=10, max_rps=1000, capacity=4)) as emu:
        token = await get_token(session, emu)
        asks = [asyncio.ensure_future(ask(session, emu, token)) for _ in range(6)]
        await until(lambda: emu.stats.queued == 2, "two requests to queue")
        gate.open.set()
        await asyncio.gather(*asks)
        await ask(session, emu, token, {**PRESENT, "folder": ""})  # a 400: no latency sample
        async with session.get(emu.stats_url) as response:
            assert response.status == 200
            served = await response.json()
    assert served == emu.stats.summary()
    assert served["by_status"] == {"200": 6, "400": 1}
    assert served["api_requests"] == 7
    assert served["token_requests"] == 1
    assert (served["rate_limited"], served["shed"], served["faults"]) == (0, 0, {})
    assert served["max_in_work"] == 4
    assert served["max_queued"] == 2
    latency = served["latency_ms"]
    assert latency["count"] == 6
    assert 9.5 <= latency["median"] <= latency["p90"] <= latency["p99"] <= latency["max"]


def test_latency_quantiles_are_nearest_rank() -> None:
    """latency_ms(q) is the nearest-rank quantile in ms; None with no answers; q outside 0..1 is refused."""
    stats = Stats()
    assert stats.latency_ms(0.5) is None
    assert stats.summary()["latency_ms"] == {"count": 0, "median": None, "p90": None, "p99": None, "max": None}
    stats.latencies.extend(n / 1000 for n in (40, 10, 30, 20, 50, 60, 70, 80, 90, 100))
    assert [stats.latency_ms(q) for q in (0, 0.5, 0.9, 1)] == pytest.approx([10, 50, 90, 100])
    assert stats.summary()["latency_ms"]["p90"] == pytest.approx(90)
    with pytest.raises(ValueError, match="between 0 and 1"):
        stats.latency_ms(50)


# ---- TLS and the command ----------------------------------------------------------------------


async def test_tls_with_verification_on() -> None:
    """Over HTTPS with a trustme CA, a verifying client gets tokens and answers; an untrusting one fails."""
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    async with Emulator(ssl_context=server_ctx) as emu:
        assert emu.base_url.startswith("https://localhost:")
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ctx)) as session:
            token = await get_token(session, emu)
            status, body, _ = await ask(session, emu, token)
            assert (status, body["exists"]) == (200, True)
        async with aiohttp.ClientSession() as untrusting:
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await get_token(untrusting, emu)


def test_command_serves_until_sigterm() -> None:
    """`python -m reconcile.emulator --port 0` prints its URL and exports, answers a token request, exits 0 on TERM."""
    process = subprocess.Popen(
        [sys.executable, "-m", "reconcile.emulator", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.fullmatch(r"emulator listening on (http://127\.0\.0\.1:\d+)\n", line)
        assert match, line
        # The export lines come in the same write; read here, since communicate() skips what readline buffered.
        exports = [process.stdout.readline()]
        while exports[-1] and not exports[-1].startswith("export CALLJOURNEY_AUTHORITY="):
            exports.append(process.stdout.readline())
        request = urllib.request.Request(
            f"{match[1]}/{DEMO_TENANT_ID}/oauth2/v2.0/token",
            data=urllib.parse.urlencode(token_form()).encode(),
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.load(response)["token_type"] == "Bearer"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert f"export CALLJOURNEY_CLIENT_SECRET={DEMO_CLIENT_SECRET}\n" in exports
    assert "1 token requests" in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("emulator stats: ")
    stats = json.loads(last.removeprefix("emulator stats: "))
    assert (stats["token_requests"], stats["api_requests"], stats["token_by_status"]) == (1, 0, {"200": 1})


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--queue-limit", "4"], "--queue-limit needs --capacity"),
        (["--capacity", "4", "--shed-retry-after", "1"], "--shed-retry-after needs --queue-limit"),
        (["--fault", "503"], "'503' is not KIND=RATE. HINT: e.g. --fault 503=0.02"),
        (["--fault", "504=0.1"], "unknown fault kind '504'. HINT: use one of"),
        (["--fault", "503=0.6", "--fault", "500=0.6"], "add up to 1.200"),
        (["--fault-rate", "0.1", "--fault", "503=0.1"], "alternatives. HINT: give every kind as --fault KIND=RATE"),
        (["--fault-mix", "stormy", "--fault-rate", "0.1"], "'stormy' is not one of 'uniform', 'gateway', 'flaky'"),
        (["--capacity", "0"], "x>=1"),
    ],
)
def test_command_refuses_bad_platform_options(args: list[str], fragment: str) -> None:
    """Contradictory or malformed shape options exit 2 with the reason, before anything listens."""
    result = CliRunner().invoke(emulator_command, ["--port", "0", *args])
    assert result.exit_code == 2, result.output
    assert fragment in result.output
    assert "listening" not in result.output


def test_command_help_documents_the_platform_shapes() -> None:
    """--help names every fault kind, both mixes, the cap's Retry-After, capacity, queue limit and the stats."""
    result = CliRunner().invoke(emulator_command, ["--help"], terminal_width=200)
    assert result.exit_code == 0
    for text in (
        "--fault-mix [uniform|gateway|flaky]",
        "--fault KIND=RATE",
        "HTTP-date",
        "--max-rps",
        "Retry-After",
        "--capacity",
        "--queue-limit",
        "--shed-retry-after",
        "_emulator/stats",
        "emulator stats: ",
    ):
        assert text in result.output, text
    assert all(kind.value in result.output for kind in ApiFault)


# ---- dataset and sample manifests -------------------------------------------------------------


def test_make_call_id_is_stable_and_platform_shaped() -> None:
    """callIds are 20 URL-safe base64 characters and depend only on the key."""
    call_id = make_call_id(PRESENT_KEY)
    assert re.fullmatch(r"[A-Za-z0-9_-]{20}", call_id)
    assert call_id == make_call_id(tuple(PRESENT_KEY))  # type: ignore[arg-type]
    assert call_id != make_call_id(("initech", "initech-ca", "2026/11/24", "smoke-01.mp3"))


def test_synthetic_rows_match_synthetic_dataset() -> None:
    """Exactly floor(n * ratio) synthetic rows exist, and rows beyond n do not."""
    rows = list(synthetic_manifest_rows(1000, 0.25, seed=3))
    assert len(set(rows)) == 1000
    dataset = Dataset.synthetic(1000, 0.25, seed=3)
    assert sum(row in dataset for row in rows) == 250
    assert all(dataset.lookup(row) in (None, make_call_id(row)) for row in rows)
    assert len(dataset) == 0  # nothing stored: membership is computed
    beyond = list(synthetic_manifest_rows(12, 1.0, seed=3))
    assert beyond[11] not in Dataset.synthetic(11, 1.0, seed=3)
    assert beyond[11] in Dataset.synthetic(None, 1.0, seed=3)


async def test_emulator_serves_synthetic_dataset(session: aiohttp.ClientSession) -> None:
    """Over HTTP, a synthetic-rule dataset answers present rows with their callId."""
    rows = list(synthetic_manifest_rows(20, 0.5, seed=1))
    async with Emulator(dataset=Dataset.synthetic(20, 0.5, seed=1)) as emu:
        token = await get_token(session, emu)
        answers = [(await ask(session, emu, token, dict(zip(FIELDS, row, strict=True))))[1] for row in rows]
    assert sum(answer["exists"] for answer in answers) == 10
    assert all(a["callId"] == (make_call_id(row) if a["exists"] else "") for a, row in zip(answers, rows, strict=True))


def test_dataset_from_csv(tmp_path: Path) -> None:
    """from_csv reads the five columns (BOM tolerated) and refuses a file without them."""
    path = tmp_path / "recordings.csv"
    path.write_text("\ufeffcompany,organisation,folder,filename,call_id\nco,org,f,a b.mp3,ID1\n", encoding="utf-8")
    assert Dataset.from_csv(path).lookup(("co", "org", "f", "a b.mp3")) == "ID1"
    (tmp_path / "bad.csv").write_text("company,filename\nco,x\n", encoding="utf-8")
    with pytest.raises(ValueError, match="HINT"):
        Dataset.from_csv(tmp_path / "bad.csv")


def _readme_counts() -> dict[str, tuple[int, ...]]:
    table = {}
    for line in (SAMPLES / "README.md").read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"\| `(.+\.csv)` \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \|", line)
        if match:
            table[match[1]] = tuple(int(value) for value in match.groups()[1:])
    return table


def _manifest_counts(path: Path, dataset: Dataset) -> tuple[int, ...]:
    with path.open(encoding="utf-8-sig", newline="") as stream:
        rows = list(csv.DictReader(stream))
    seen: set[tuple[str, ...]] = set()
    invalid = duplicates = present = 0
    for row in rows:
        key = tuple(row.get(name) or "" for name in ("company", "organisation", "folder", "filename"))
        if any(not value.strip() for value in key):
            invalid += 1
        elif key in seen:
            duplicates += 1
        else:
            seen.add(key)
            present += key in dataset
    return (len(rows), invalid, duplicates, len(seen), present, len(seen) - present)


def test_demo_dataset_matches_sample_manifest_readme() -> None:
    """Every sample manifest's counts, computed against Dataset.demo(), match the README table."""
    documented = _readme_counts()
    files = sorted(path.name for path in SAMPLES.glob("*.csv"))
    assert sorted(documented) == files
    dataset = Dataset.demo()
    for name in files:
        assert _manifest_counts(SAMPLES / name, dataset) == documented[name], name


def test_sample_manifests_have_the_promised_quirks() -> None:
    """One manifest has a BOM and CRLF, and the set has quoted commas, embedded newlines and Unicode."""
    raw = {path.name: path.read_bytes() for path in SAMPLES.glob("*.csv")}
    crlf = [name for name, data in raw.items() if data.startswith(b"\xef\xbb\xbf") and b"\r\n" in data]
    assert crlf == ["archive-audit-emea.csv"]
    text = "".join(data.decode("utf-8-sig") for data in raw.values())
    assert '"Call 2026-11-25, 09h14.mp3"' in text
    assert '"Customer asked for a callback\nre: invoice 4471"' in text
    assert all(char in text for char in "éüñ回🌟")


def test_public_names() -> None:
    """reconcile.emulator exports exactly the documented names, and each exists."""
    assert sorted(reconcile.emulator.__all__) == sorted(
        [
            "DEMO_CLIENT_ID",
            "DEMO_CLIENT_SECRET",
            "DEMO_TENANT_ID",
            "FAULT_MIXES",
            "STATS_PATH",
            "Dataset",
            "Emulator",
            "EmulatorConfig",
            "FEDERATED_AUDIENCE",
            "Faults",
            "FederatedIssuer",
            "Key",
            "Stats",
            "create_app",
            "make_call_id",
            "synthetic_manifest_rows",
        ]
    )
    assert all(hasattr(reconcile.emulator, name) for name in reconcile.emulator.__all__)
