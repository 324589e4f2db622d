"""The platform client: answers, row errors, fatal errors, retries, and the one place aiohttp errors are mapped."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey
from aioresponses import aioresponses
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from reconcile.config import Secret
from reconcile.config._settings import Settings
from reconcile.emulator import Emulator, EmulatorConfig, Faults
from reconcile.errors import (
    AuthorizationError,
    ConfigError,
    EndpointNotFound,
    HostUnreachable,
    ReconcileError,
    TransportError,
)
from reconcile.input._manifest import Record
from reconcile.platform._client import Outcome, PlatformClient, mapped_errors
from reconcile.platform._retry import RetryPolicy
from tests.conftest import settings_for

SETTINGS = Settings(
    tenant_id="tenant-1",
    client_id="client-1",
    client_secret=Secret("not-this-one"),
    base_url="https://api.platform.test",
    authority="https://login.idp.test",
)
API = SETTINGS.endpoint_url
FAST = RetryPolicy(max_attempts=3, backoff_initial=0.001, backoff_max=0.002)
RECORD = Record(0, 1, 2, "acme", "acme-ca", "2026/11/25", "a.mp3")
PRESENT = Record(0, 1, 2, "initech", "initech-ca", "2026/11/24", "smoke-00.mp3")  # in the demo dataset
MISSING = Record(0, 2, 3, "initech", "initech-ca", "2026/11/24", "smoke-03.mp3")  # not in it


@pytest.fixture
async def mocked() -> AsyncIterator[tuple[PlatformClient, aioresponses]]:
    """A client against a mocked platform whose token endpoint always issues tokens."""
    async with PlatformClient(SETTINGS, policy=FAST) as client:
        with aioresponses() as mock:
            mock.post(
                SETTINGS.token_url,
                status=200,
                repeat=True,
                payload={"token_type": "Bearer", "expires_in": 3599, "access_token": "tok"},
            )
            yield client, mock


def count(mock: aioresponses, url: str) -> int:
    """Requests the mock saw for ``url``."""
    assert mock.requests is not None
    return sum(len(calls) for (_, seen), calls in mock.requests.items() if str(seen) == url)


# -- answers (aioresponses) -------------------------------------------------------------------------------


async def test_200_present(mocked: tuple[PlatformClient, aioresponses]) -> None:
    """exists=true gives a present outcome with the callId, in one attempt."""
    client, mock = mocked
    mock.post(API, status=200, payload={"exists": True, "callId": "xFcLypwBMZ_pyZ-a8f3p"})
    assert await client.check(RECORD) == Outcome(True, "xFcLypwBMZ_pyZ-a8f3p", "", 1)


async def test_200_missing(mocked: tuple[PlatformClient, aioresponses]) -> None:
    """exists=false gives a missing outcome with an empty call id."""
    client, mock = mocked
    mock.post(API, status=200, payload={"exists": False, "callId": ""})
    assert await client.check(RECORD) == Outcome(False, "", "", 1)


async def test_body_is_the_four_values_verbatim(mocked: tuple[PlatformClient, aioresponses]) -> None:
    """The request body carries the record's four values exactly, spaces and Unicode included, with the token."""
    client, mock = mocked
    mock.post(API, status=200, payload={"exists": False, "callId": ""})
    record = Record(0, 1, 2, " Acme ", "acme-ça", "2026/11/25 ", "客户 回访.mp3")
    await client.check(record)
    assert mock.requests is not None
    (call,) = [c for (_, url), calls in mock.requests.items() if str(url) == API for c in calls]
    import orjson

    assert orjson.loads(call.kwargs["data"]) == {
        "company": " Acme ",
        "organisation": "acme-ça",
        "folder": "2026/11/25 ",
        "filename": "客户 回访.mp3",
    }
    assert call.kwargs["headers"]["Authorization"] == "Bearer tok"
    assert call.kwargs["headers"]["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    "body",
    [
        b'{"exists":"yes","callId":""}',
        b'{"exists":false}',
        b'{"exists":true}',
        b"not json",
        b"",
        b'{"exists":true,"callId":""}',
        b"[true]",
        b'{"exists":1,"callId":"x"}',
        b'{"exists":false,"callId":null}',
    ],
)
async def test_malformed_200_is_a_row_error_never_missing(
    mocked: tuple[PlatformClient, aioresponses], body: bytes
) -> None:
    """A 200 whose body is not {"exists": bool, "callId": str} (or says exists with no id) is a row error."""
    client, mock = mocked
    mock.post(API, status=200, body=body, content_type="application/json")
    outcome = await client.check(RECORD)
    assert outcome.exists is None
    assert outcome.call_id == ""
    assert "HTTP 200" in outcome.detail


async def test_400_is_a_row_error_with_the_servers_message(mocked: tuple[PlatformClient, aioresponses]) -> None:
    """A 400 is not retried; the row ends in error carrying the platform's message."""
    client, mock = mocked
    mock.post(API, status=400, payload={"message": "'filename' must not be empty"}, repeat=True)
    outcome = await client.check(RECORD)
    assert outcome.exists is None
    assert "HTTP 400" in outcome.detail
    assert "'filename' must not be empty" in outcome.detail
    assert outcome.detail.endswith("(after 1 attempt)")  # not "1 attempts"
    assert count(mock, API) == 1


@pytest.mark.parametrize(
    ("body", "expected"), [(b'{"error": "bad folder"}', "bad folder"), (b"plain text reason", "plain text reason")]
)
async def test_400_message_from_error_field_or_plain_text(
    mocked: tuple[PlatformClient, aioresponses], body: bytes, expected: str
) -> None:
    """Error bodies may carry `error` instead of `message`, or be plain text: the row detail shows either."""
    client, mock = mocked
    mock.post(API, status=400, body=body)
    assert expected in (await client.check(RECORD)).detail


async def test_401_refreshes_the_token_once_and_retries(mocked: tuple[PlatformClient, aioresponses]) -> None:
    """A 401 drops the token, fetches a new one, and the retried request succeeds within the same attempt."""
    client, mock = mocked
    mock.post(API, status=401, payload={"error": "token expired"})
    mock.post(API, status=200, payload={"exists": True, "callId": "id-1"})
    outcome = await client.check(RECORD)
    assert outcome == Outcome(True, "id-1", "", 1)
    assert count(mock, SETTINGS.token_url) == 2
    assert count(mock, API) == 2


async def test_401_twice_is_an_authorization_error(mocked: tuple[PlatformClient, aioresponses]) -> None:
    """A fresh token refused again is fatal: two API calls, two token fetches, no loop."""
    client, mock = mocked
    mock.post(API, status=401, payload={"error": "audience mismatch"}, repeat=True)
    with pytest.raises(AuthorizationError, match="audience mismatch"):
        await client.check(RECORD)
    assert count(mock, API) == 2
    assert count(mock, SETTINGS.token_url) == 2


async def test_403_is_an_authorization_error(mocked: tuple[PlatformClient, aioresponses]) -> None:
    """403 is fatal at once."""
    client, mock = mocked
    mock.post(API, status=403, payload={"message": "forbidden"}, repeat=True)
    with pytest.raises(AuthorizationError, match="403"):
        await client.check(RECORD)
    assert count(mock, API) == 1


async def test_404_is_endpoint_not_found(mocked: tuple[PlatformClient, aioresponses]) -> None:
    """404 is a configuration error naming the path, never a missing recording."""
    client, mock = mocked
    mock.post(API, status=404, body=b"Not Found", repeat=True)
    with pytest.raises(EndpointNotFound, match="endpoint path") as caught:
        await client.check(RECORD)
    assert caught.value.exit_code == 4
    assert count(mock, API) == 1


@pytest.mark.parametrize(("status", "retry_after"), [(500, "0"), (502, "0"), (504, "0"), (408, "0"), (500, None)])
async def test_retryable_statuses_are_retried_then_a_row_error(
    mocked: tuple[PlatformClient, aioresponses], status: int, retry_after: str | None
) -> None:
    """Faults (not throttles) are retried up to max_attempts, then the row ends in error saying how many attempts."""
    client, mock = mocked
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    mock.post(API, status=status, body=b"upstream trouble", headers=headers, repeat=True)
    outcome = await client.check(RECORD)
    assert outcome.exists is None
    assert f"HTTP {status}" in outcome.detail
    assert f"after {FAST.max_attempts} attempts" in outcome.detail
    assert outcome.attempts == FAST.max_attempts == count(mock, API)


@pytest.mark.parametrize(("status", "retry_after"), [(429, "0.05"), (503, "0.05"), (503, None), (429, None)])
async def test_throttles_are_bounded_by_time_not_attempts(status: int, retry_after: str | None) -> None:
    """A throttle (429/503, with or without Retry-After) is pacing: not charged to max_attempts, bounded by time."""
    policy = RetryPolicy(
        max_attempts=2, max_time=0.3, backoff_initial=0.05, backoff_max=0.05, healthy_backoff_initial=0.05
    )
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    async with PlatformClient(SETTINGS, policy=policy) as client:
        with aioresponses() as mock:
            mock.post(SETTINGS.token_url, status=200, repeat=True, payload={"access_token": "t", "expires_in": 3599})
            mock.post(API, status=status, body=b"slow down", headers=headers, repeat=True)
            outcome = await client.check(RECORD)
    assert outcome.exists is None
    assert f"HTTP {status}" in outcome.detail
    assert outcome.attempts > policy.max_attempts  # more than two attempts: throttles are not failures ...
    assert outcome.attempts <= 0.3 / 0.0025 + 1  # ... and the row waited between them, until max_time
    assert client.throttle.throttled == outcome.attempts


async def test_retryable_status_then_success(mocked: tuple[PlatformClient, aioresponses]) -> None:
    """A 503 then a 200: the row is resolved, with two attempts counted."""
    client, mock = mocked
    mock.post(API, status=503, headers={"Retry-After": "0"}, body=b"busy")
    mock.post(API, status=200, payload={"exists": False, "callId": ""})
    assert await client.check(RECORD) == Outcome(False, "", "", 2)


async def test_row_detail_never_echoes_the_bearer_token(mocked: tuple[PlatformClient, aioresponses]) -> None:
    """A 400 body that echoes the Authorization header must not put the token into the row's detail."""
    client, mock = mocked
    mock.post(API, status=400, body=b"bad request; headers were Authorization: Bearer tok")
    outcome = await client.check(RECORD)
    assert "Bearer tok" not in outcome.detail


async def test_client_must_be_opened() -> None:
    """Using the client outside `async with` is a clear error, not an AttributeError."""
    with pytest.raises(RuntimeError, match="async with"):
        await PlatformClient(SETTINGS).check(RECORD)


# -- through the emulator ---------------------------------------------------------------------------------


async def test_present_and_missing_through_the_emulator(emulator: Emulator) -> None:
    """Over real HTTP: a dataset row is present with its callId, another is missing."""
    async with PlatformClient(settings_for(emulator), policy=FAST) as client:
        present = await client.check(PRESENT)
        missing = await client.check(MISSING)
    assert present == Outcome(True, emulator.dataset.lookup(PRESENT.key) or "?", "", 1)
    assert missing == Outcome(False, "", "", 1)
    assert emulator.stats.token_requests == 1


async def test_revoked_token_is_renewed_once(emulator: Emulator) -> None:
    """After the platform revokes every token, the next check tries the lately accepted token once more (a 401
    may be stray), then renews once and succeeds."""
    async with PlatformClient(settings_for(emulator), policy=FAST) as client:
        await client.check(PRESENT)
        emulator.revoke_all_tokens()
        outcome = await client.check(PRESENT)
    assert outcome.exists is True
    assert emulator.stats.token_requests == 2
    assert emulator.stats.by_status[401] == 2


async def test_stray_401s_cost_no_token_fetch(make_emulator: Callable[..., Emulator]) -> None:
    """A 401 now and then to a token the API keeps accepting is tried again with that token: no fetch per 401."""
    async with make_emulator(EmulatorConfig(faults=Faults(rate_401=0.1), seed=2)) as emu:
        async with PlatformClient(settings_for(emu), policy=FAST) as client:
            await client.check(PRESENT)  # the token is accepted once
            outcomes = [await client.check(PRESENT) for _ in range(60)]
        assert all(outcome.exists is True for outcome in outcomes)
        stray = emu.stats.faults["401"]
        assert stray >= 3
        assert emu.stats.token_requests < 1 + stray  # only a 401 that struck twice in a row fetched a token


async def test_wrong_path_through_the_emulator_is_endpoint_not_found(emulator: Emulator) -> None:
    """The guide's other path (callexists) is a 404 on this platform: EndpointNotFound."""
    settings = settings_for(emulator, endpoint_path="/api/v1/search/callexists")
    async with PlatformClient(settings, policy=FAST) as client:
        with pytest.raises(EndpointNotFound, match="callexists"):
            await client.check(PRESENT)


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_connection_refused_is_host_unreachable(emulator: Emulator) -> None:
    """An API host that refuses connections ends the run with HostUnreachable after the retries."""
    settings = settings_for(emulator, base_url=f"http://127.0.0.1:{closed_port()}")
    async with PlatformClient(settings, policy=FAST) as client:
        with pytest.raises(HostUnreachable, match=f"after {FAST.max_attempts} attempts"):
            await client.check(PRESENT)


async def test_unreachable_identity_provider_is_host_unreachable(emulator: Emulator) -> None:
    """A token endpoint that refuses connections is HostUnreachable too."""
    settings = settings_for(emulator, authority=f"http://127.0.0.1:{closed_port()}")
    async with PlatformClient(settings, policy=FAST) as client:
        with pytest.raises(HostUnreachable, match="identity provider"):
            await client.check(PRESENT)


async def test_connection_resets_are_retried(make_emulator: Callable[..., Emulator]) -> None:
    """With half the answers dropped as resets (FIN or RST), every row still resolves correctly."""
    policy = RetryPolicy(max_attempts=8, backoff_initial=0.001, backoff_max=0.002)
    async with (
        make_emulator(EmulatorConfig(faults=Faults(rate_reset=0.5), seed=3)) as emu,
        PlatformClient(settings_for(emu), policy=policy) as client,
    ):
        outcomes = await asyncio.gather(*(client.check(r) for r in [PRESENT, MISSING] * 6))
    assert emu.stats.faults["reset"] >= 3
    assert [o.exists for o in outcomes] == [True, False] * 6
    assert sum(o.attempts for o in outcomes) >= 12 + 3


@pytest.mark.slow
async def test_timeouts_are_retried(make_emulator: Callable[..., Emulator]) -> None:
    """Answers slower than the timeout are retried; the rows then resolve."""
    config = EmulatorConfig(faults=Faults(rate_slow=0.5, slow_seconds=5.0), seed=1)
    async with make_emulator(config) as emu:
        settings = settings_for(emu, timeout=0.2)
        async with PlatformClient(settings, policy=RetryPolicy(max_attempts=8, backoff_initial=0.001)) as client:
            outcomes = await asyncio.gather(*(client.check(PRESENT) for _ in range(6)))
    assert emu.stats.faults["slow"] >= 2
    assert all(o.exists is True for o in outcomes)
    assert sum(o.attempts for o in outcomes) >= 6 + 2


@pytest.mark.slow
async def test_timeouts_on_every_attempt_are_a_row_error(make_emulator: Callable[..., Emulator]) -> None:
    """When every answer is too slow, the row ends in error naming the timeout and the attempts."""
    config = EmulatorConfig(faults=Faults(rate_slow=1.0, slow_seconds=5.0))
    policy = RetryPolicy(max_attempts=2, backoff_initial=0.001)
    async with make_emulator(config) as emu, PlatformClient(settings_for(emu, timeout=0.15), policy=policy) as client:
        outcome = await client.check(PRESENT)
    assert outcome.exists is None
    assert "timeout" in outcome.detail
    assert "after 2 attempts" in outcome.detail


async def test_malformed_answers_from_the_emulator_are_row_errors(make_emulator: Callable[..., Emulator]) -> None:
    """The emulator's malformed 200s (wrong type, missing callId, broken JSON) never become missing."""
    async with (
        make_emulator(EmulatorConfig(faults=Faults(rate_malformed=1.0))) as emu,
        PlatformClient(settings_for(emu), policy=FAST) as client,
    ):
        outcomes = [await client.check(MISSING) for _ in range(3)]
    assert [o.exists for o in outcomes] == [None, None, None]
    assert emu.stats.faults["malformed"] == 3


# -- mapped_errors ----------------------------------------------------------------------------------------

KEY = ConnectionKey("api.platform.test", 443, True, True, None, None, None)


def certificate_error() -> aiohttp.ClientConnectorCertificateError:
    return aiohttp.ClientConnectorCertificateError(
        KEY, ssl.SSLCertVerificationError(1, "certificate verify failed: unable to get local issuer certificate")
    )


MAPPINGS: list[tuple[Callable[[], BaseException], type[ReconcileError], dict[str, Any]]] = [
    (certificate_error, ConfigError, {}),
    (lambda: aiohttp.ClientConnectorSSLError(KEY, ssl.SSLError(1, "wrong version number")), ConfigError, {}),
    (
        lambda: aiohttp.ClientConnectorError(KEY, ConnectionRefusedError(111, "Connection refused")),
        TransportError,
        {"connect": True, "timeout": False},
    ),
    (
        lambda: aiohttp.ClientConnectorDNSError(KEY, OSError(-2, "Name or service not known")),
        TransportError,
        {"connect": True},
    ),
    (lambda: aiohttp.InvalidURL("http://[bad"), ConfigError, {}),
    (lambda: aiohttp.ServerDisconnectedError(), TransportError, {"connect": False, "timeout": False}),
    (lambda: aiohttp.ClientPayloadError("Response payload is not completed"), TransportError, {"connect": False}),
    (lambda: aiohttp.ClientOSError(104, "Connection reset by peer"), TransportError, {"connect": False}),
    (lambda: aiohttp.ClientConnectionResetError("Cannot write to closing transport"), TransportError, {}),
    (lambda: TimeoutError(), TransportError, {"timeout": True, "connect": False}),
    (lambda: aiohttp.SocketTimeoutError("Timeout on reading data from socket"), TransportError, {"timeout": True}),
    (lambda: aiohttp.ServerTimeoutError("timeout"), TransportError, {"timeout": True}),
    (lambda: aiohttp.ClientError("something else"), TransportError, {}),
    (lambda: aiohttp.ClientConnectionError("generic connection error"), TransportError, {}),
]


@pytest.mark.parametrize(
    ("make", "expected", "attributes"), MAPPINGS, ids=[type(make()).__name__ for make, _, _ in MAPPINGS]
)
def test_aiohttp_errors_are_mapped(
    make: Callable[[], BaseException], expected: type[ReconcileError], attributes: dict[str, Any]
) -> None:
    """Each aiohttp/asyncio failure becomes the right reconcile error, with no aiohttp error chained to users."""
    with pytest.raises(expected) as caught, mapped_errors(API):
        raise make()
    assert type(caught.value) is expected
    for name, value in attributes.items():
        assert getattr(caught.value, name) == value
    assert caught.value.__cause__ is None


def test_every_aiohttp_client_error_is_mapped_to_a_reconcile_error() -> None:
    """No aiohttp.ClientError subclass escapes mapped_errors untranslated (httpx's map_httpcore_exceptions test)."""
    table = {type(error): error for error in (make() for make, _, _ in MAPPINGS)}
    classes = [cls for cls in vars(aiohttp).values() if isinstance(cls, type) and issubclass(cls, aiohttp.ClientError)]
    assert len(classes) > 20  # the scan really found aiohttp's exception classes
    for cls in classes:
        instance = table.get(cls) or _build(cls)
        with pytest.raises(ReconcileError), mapped_errors(API):
            raise instance


def _build(cls: type[BaseException]) -> BaseException:
    """An instance of an aiohttp error class whose constructor the table above does not cover."""
    if issubclass(cls, aiohttp.ClientConnectorError):
        return cls(KEY, OSError(1, "x"))
    if issubclass(cls, aiohttp.ClientResponseError):
        url = URL(API)
        info = aiohttp.RequestInfo(url, "POST", CIMultiDictProxy(CIMultiDict()), url)
        return cls(info, (), status=500)
    if issubclass(cls, aiohttp.InvalidURL):
        return cls("http://[x")
    if cls is aiohttp.ServerFingerprintMismatch:
        return cls(b"a", b"b", "h", 443)
    try:
        return cls("x")
    except TypeError:
        return cls()


def test_the_certificate_message_names_the_problem_and_the_fix() -> None:
    """An untrusted certificate is a ConfigError that says so and suggests --ca-bundle (verification stays on)."""
    with pytest.raises(ConfigError) as caught, mapped_errors(API):
        raise certificate_error()
    message = str(caught.value)
    assert "certificate" in message
    assert API in message
    assert "--ca-bundle" in message


def test_a_connect_timeout_counts_as_a_connection_failure() -> None:
    """aiohttp's ConnectionTimeoutError (blackholed host) is a failure to connect, so it ends as HostUnreachable."""
    with pytest.raises(TransportError) as caught, mapped_errors(API):
        raise aiohttp.ConnectionTimeoutError("Connection timeout to host https://api.platform.test")
    assert caught.value.connect is True


@pytest.mark.parametrize("error", [ValueError("a bug"), asyncio.CancelledError(), KeyboardInterrupt()])
def test_other_exceptions_pass_through(error: BaseException) -> None:
    """Bugs, cancellation and interrupts are not disguised as network errors."""
    with pytest.raises(type(error)), mapped_errors(API):
        raise error


async def test_ask_gives_back_any_answer_and_renews_a_revoked_token(emulator: Emulator) -> None:
    """doctor's path: an empty body's 400 comes back as an answer; after a revocation one new token is fetched."""
    async with PlatformClient(settings_for(emulator), policy=FAST) as client:
        first = await client.ask(client.settings.endpoint_url, b'{"company": ""}')
        emulator.revoke_all_tokens()
        second = await client.ask(client.settings.endpoint_url, b'{"company": ""}')
    assert first.status == second.status == 400
    assert emulator.stats.token_requests == 2
    assert emulator.stats.by_status[401] == 1


async def test_ask_retries_a_passing_failure_and_returns_the_last_answer(
    make_emulator: Callable[..., Emulator],
) -> None:
    """A platform that answers 500 every time is asked max_attempts times; the last 500 is the answer."""
    async with make_emulator(EmulatorConfig(faults=Faults(rate_500=1.0))) as emu:
        async with PlatformClient(settings_for(emu), policy=FAST) as client:
            body = b'{"company": "a", "organisation": "b", "folder": "c", "filename": "d"}'
            reply = await client.ask(client.settings.endpoint_url, body)
        assert reply.status == 500
        assert emu.stats.by_status[500] == FAST.max_attempts
