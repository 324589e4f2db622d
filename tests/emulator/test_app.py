"""emulator/app: the platform API over real loopback HTTP: answers, validation, auth, faults, latency, the rate
cap, a capacity-limited backend, stats."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import Counter
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import pytest

from reconcile.emulator import (
    Emulator,
    EmulatorConfig,
    Faults,
    Stats,
    make_call_id,
)
from reconcile.emulator.app import EmulatorState, _TokenBucket
from tests.emulator.conftest import (
    FIELDS,
    MISSING,
    PRESENT,
    PRESENT_KEY,
    ask,
    get_token,
)

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
