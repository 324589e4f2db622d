"""The token provider: single flight, expiry from send time, early renewal, Azure AD errors, no secret leaks."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import pytest
from aioresponses import aioresponses
from aioresponses.core import RequestCall
from multidict import CIMultiDict
from yarl import URL

from reconcile.config import Secret
from reconcile.config._settings import Settings
from reconcile.errors import HostUnreachable, TokenError, TransportError
from reconcile.platform._auth import ACCEPTED_LATELY, Reply, TokenProvider, jwt_claims, jwt_expiry
from reconcile.platform._client import PlatformClient
from reconcile.platform._retry import RetryPolicy

SECRET = "Zx9~client-secret-value-do-not-print"
SETTINGS = Settings(tenant_id="tenant-1", client_id="client-1", client_secret=Secret(SECRET))
FAST = RetryPolicy(max_attempts=3, backoff_initial=0.001, backoff_max=0.002)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def ok(token: str = "tok-1", expires_in: object = 3600, **extra: Any) -> Reply:
    body: dict[str, Any] = {"token_type": "Bearer", "access_token": token, **extra}
    if expires_in is not None:
        body["expires_in"] = expires_in
    return Reply(200, CIMultiDict(), json.dumps(body).encode())


def aad_error(error: str, code: int, status: int = 400, headers: Mapping[str, str] | None = None) -> Reply:
    body = {
        "error": error,
        "error_description": f"AADSTS{code}: something went wrong. Trace ID: abc Correlation ID: def",
        "error_codes": [code],
        "timestamp": "2026-11-26 10:00:00Z",
        "trace_id": f"trace-{code}",
        "correlation_id": f"corr-{code}",
    }
    return Reply(status, CIMultiDict(headers or {}), json.dumps(body).encode())


class FakeTransport:
    """Answers token requests from a script (a Reply or an exception each), recording every form it was sent."""

    def __init__(
        self, *replies: Reply | BaseException, delay: float = 0.0, clock: Clock | None = None, advance: float = 0.0
    ) -> None:
        self.replies = list(replies)
        self.forms: list[dict[str, str]] = []
        self.urls: list[str] = []
        self.delay = delay
        self.clock = clock
        self.advance = advance  # seconds the fake clock moves while a request is in flight

    @property
    def count(self) -> int:
        """Requests made so far (asserting on this keeps the secret-bearing forms out of failure messages)."""
        return len(self.forms)

    async def post_form(self, url: str, form: Mapping[str, str]) -> Reply:
        self.urls.append(url)
        self.forms.append(dict(form))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.clock is not None:
            self.clock.now += self.advance
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, BaseException):
            raise reply
        return reply


def provider(transport: FakeTransport, clock: Clock | None = None) -> TokenProvider:
    return TokenProvider(SETTINGS, transport, policy=FAST, clock=clock or Clock())


def jwt(claims: dict[str, Any]) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


# -- single flight ----------------------------------------------------------------------------------------


async def test_hundred_concurrent_callers_cause_one_fetch() -> None:
    """100 workers asking at once for a token get the same one from a single request."""
    transport = FakeTransport(ok(), delay=0.02)
    tokens = provider(transport)
    got = await asyncio.gather(*(tokens.token() for _ in range(100)))
    assert transport.count == 1
    assert tokens.fetches == 1
    assert len({id(t) for t in got}) == 1
    assert got[0].value == "tok-1"


async def test_request_is_a_client_credentials_form() -> None:
    """The provider posts client_credentials with the id, the secret and the default scope to the token URL."""
    transport = FakeTransport(ok())
    await provider(transport).token()
    assert transport.urls == [SETTINGS.token_url]
    assert transport.forms == [
        {
            "client_id": "client-1",
            "client_secret": SECRET,
            "scope": "api://client-1/.default",
            "grant_type": "client_credentials",
        }
    ]


async def test_cached_token_is_reused_without_a_request() -> None:
    """A valid token is served from memory."""
    transport = FakeTransport(ok())
    tokens = provider(transport)
    first = await tokens.token()
    assert await tokens.token() is first
    assert transport.count == 1


# -- expiry and early renewal -----------------------------------------------------------------------------


async def test_expiry_is_measured_from_when_the_request_was_sent() -> None:
    """expires_at = send time + expires_in, even when the answer took a while to come."""
    clock = Clock(1000.0)
    transport = FakeTransport(ok(expires_in=3600), clock=clock, advance=7.0)
    token = await provider(transport, clock).token()
    assert token.expires_at == 1000.0 + 3600
    assert token.lifetime == 3600


async def test_expires_in_as_a_string_is_accepted() -> None:
    """Some proxies send expires_in as a string; it still sets the lifetime."""
    clock = Clock(0.0)
    token = await provider(FakeTransport(ok(expires_in="1800")), clock).token()
    assert token.expires_at == 1800


async def test_long_token_renews_when_under_300_seconds_remain() -> None:
    """A one-hour token is served until 300 s before expiry, then replaced."""
    clock = Clock(0.0)
    transport = FakeTransport(ok("first", 3600), ok("second", 3600))
    tokens = provider(transport, clock)
    first = await tokens.token()
    assert first.refresh_at == 3300
    clock.now = 3299.0
    assert await tokens.token() is first
    clock.now = 3301.0
    assert (await tokens.token()).value == "second"
    assert transport.count == 2


async def test_short_token_renews_at_ninety_percent_of_its_life() -> None:
    """A 5-second token renews at 4.5 s (a tenth of its life), not 300 s before it was issued."""
    clock = Clock(0.0)
    transport = FakeTransport(ok("first", 5), ok("second", 5))
    tokens = provider(transport, clock)
    first = await tokens.token()
    assert first.refresh_at == pytest.approx(4.5)
    clock.now = 4.4
    assert await tokens.token() is first
    clock.now = 4.6
    assert (await tokens.token()).value == "second"


async def test_refresh_in_is_honoured_when_earlier() -> None:
    """refresh_in from Azure AD sets the renewal time when it comes before the 300 s rule."""
    clock = Clock(0.0)
    token = await provider(FakeTransport(ok(expires_in=3600, refresh_in=1800)), clock).token()
    assert token.refresh_at == 1800
    late = await provider(FakeTransport(ok(expires_in=3600, refresh_in=3500)), Clock(0.0)).token()
    assert late.refresh_at == 3300  # a refresh_in later than the early-renewal point does not delay it


async def test_failed_early_renewal_keeps_the_old_token_and_waits_30_seconds() -> None:
    """If renewal fails while the token is still valid, the old token is served and renewal waits 30 s."""
    clock = Clock(0.0)
    transport = FakeTransport(ok("first", 3600), aad_error("invalid_client", 7000215, 401), ok("second", 3600))
    tokens = provider(transport, clock)
    first = await tokens.token()
    clock.now = 3310.0  # inside the early-renewal window
    assert await tokens.token() is first
    assert transport.count == 2
    clock.now = 3330.0  # 20 s later: no new attempt yet
    assert await tokens.token() is first
    assert transport.count == 2
    clock.now = 3341.0  # more than 30 s after the failure
    assert (await tokens.token()).value == "second"
    assert transport.count == 3


async def test_failed_early_renewal_is_logged_without_the_secret(caplog: pytest.LogCaptureFixture) -> None:
    """The warning about a failed early renewal says how long the old token lasts, and nothing secret."""
    caplog.set_level(logging.DEBUG)
    clock = Clock(0.0)
    transport = FakeTransport(ok("first-token-value", 3600), aad_error("invalid_client", 7000215, 401))
    tokens = provider(transport, clock)
    await tokens.token()
    clock.now = 3400.0
    await tokens.token()
    assert any("early token renewal failed" in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        assert SECRET not in record.getMessage()
        assert "first-token-value" not in record.getMessage()


async def test_expired_token_with_failing_renewal_raises() -> None:
    """Once the token has expired, a renewal failure is the caller's error."""
    clock = Clock(0.0)
    transport = FakeTransport(ok("first", 60), aad_error("invalid_client", 7000215, 401))
    tokens = provider(transport, clock)
    await tokens.token()
    clock.now = 61.0
    with pytest.raises(TokenError, match="invalid_client"):
        await tokens.token()


async def test_invalidate_drops_only_the_current_token() -> None:
    """invalidate(t) forces a new fetch only if t is still current; a stale invalidate is ignored."""
    transport = FakeTransport(ok("first"), ok("second"), ok("third"))
    tokens = provider(transport)
    first = await tokens.token()
    tokens.invalidate(first)
    second = await tokens.token()
    assert second.value == "second"
    tokens.invalidate(first)  # a late worker still holding the old token
    assert await tokens.token() is second
    assert transport.count == 2


async def test_jwt_exp_is_the_fallback_when_expires_in_is_absent() -> None:
    """With no expires_in, the JWT's exp sets the lifetime."""
    clock = Clock(0.0)
    token = await provider(FakeTransport(ok(jwt({"exp": time.time() + 1200}), expires_in=None)), clock).token()
    assert token.lifetime == pytest.approx(1200, abs=5)
    assert token.expires_at == pytest.approx(1200, abs=5)
    assert token.refresh_at == pytest.approx(1200 - 120, abs=5)  # a tenth of 1200 s is under 300 s


async def test_opaque_token_without_expires_in_gets_a_short_assumed_life() -> None:
    """An opaque token with no expires_in is not assumed to last an hour."""
    token = await provider(FakeTransport(ok("opaque", expires_in=None)), Clock(0.0)).token()
    assert 0 < token.lifetime < 3600


# -- Azure AD errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code", "status"),
    [
        ("invalid_client", 7000215, 401),
        ("invalid_client", 7000222, 401),
        ("unauthorized_client", 700016, 400),
        ("invalid_request", 90002, 400),
        ("invalid_scope", 70011, 400),
    ],
)
async def test_permanent_azure_ad_errors_fail_at_once(error: str, code: int, status: int) -> None:
    """Permanent Azure AD errors raise TokenError after one request, with error, codes, trace and correlation ids."""
    transport = FakeTransport(aad_error(error, code, status))
    with pytest.raises(TokenError) as caught:
        await provider(transport).token()
    assert transport.count == 1
    exc = caught.value
    assert (exc.error, exc.error_codes, exc.status) == (error, [code], status)
    text = str(exc)
    for fragment in (error, str(code), f"trace-{code}", f"corr-{code}", "HINT"):
        assert fragment in text
    assert SECRET not in text


async def test_concurrent_callers_share_one_permanent_refusal() -> None:
    """Workers queued behind a fetch that Azure AD refuses get that refusal; they do not each ask again."""
    transport = FakeTransport(aad_error("invalid_client", 7000215, 401), delay=0.02)
    tokens = provider(transport)
    outcomes = await asyncio.gather(*(tokens.token() for _ in range(10)), return_exceptions=True)
    assert all(isinstance(o, TokenError) for o in outcomes)
    assert transport.count == 1


@pytest.mark.parametrize(
    "failure",
    [
        aad_error("temporarily_unavailable", 90055, 429, {"Retry-After": "0.05"}),
        Reply(503, CIMultiDict({"Retry-After": "0"}), b"Service Unavailable"),
        Reply(500, CIMultiDict(), b""),
        aad_error("temporarily_unavailable", 90033, 400),
        TransportError("connection reset"),
    ],
    ids=["429", "503", "500", "temporarily_unavailable", "reset"],
)
async def test_transient_token_failures_are_retried(failure: Reply | BaseException) -> None:
    """429, 5xx, temporarily_unavailable and connection resets are retried, then the token arrives."""
    transport = FakeTransport(failure, ok())
    token = await provider(transport).token()
    assert token.value == "tok-1"
    assert transport.count == 2


async def test_token_429_waits_for_retry_after() -> None:
    """A 429's Retry-After is waited before the next token request."""
    transport = FakeTransport(aad_error("temporarily_unavailable", 90055, 429, {"Retry-After": "0.2"}), ok())
    started = time.monotonic()
    await provider(transport).token()
    assert time.monotonic() - started >= 0.19


async def test_persistent_transient_failures_become_a_token_error() -> None:
    """When every attempt is a 503, the provider gives up with a TokenError saying how many attempts."""
    transport = FakeTransport(Reply(503, CIMultiDict(), b"busy"))
    with pytest.raises(TokenError, match=f"after {FAST.max_attempts} attempts"):
        await provider(transport).token()
    assert transport.count == FAST.max_attempts


async def test_unreachable_identity_provider_is_host_unreachable() -> None:
    """Connection refused on every attempt is HostUnreachable naming the authority."""
    transport = FakeTransport(TransportError("cannot connect", connect=True))
    with pytest.raises(HostUnreachable, match=r"login\.microsoftonline\.com"):
        await provider(transport).token()
    assert transport.count == FAST.max_attempts


async def test_non_json_error_page_is_a_token_error_with_a_hint() -> None:
    """An HTML 404 from a wrong authority is a TokenError pointing at the authority and tenant settings."""
    transport = FakeTransport(Reply(404, CIMultiDict(), b"<html>Not Found</html>"))
    with pytest.raises(TokenError, match="CALLJOURNEY_AUTHORITY") as caught:
        await provider(transport).token()
    assert caught.value.status == 404
    assert transport.count == 1


async def test_200_without_access_token_is_a_token_error() -> None:
    """A 200 whose body has no access_token is refused, not cached."""
    transport = FakeTransport(Reply(200, CIMultiDict(), b'{"token_type": "Bearer"}'))
    with pytest.raises(TokenError, match="without an access_token"):
        await provider(transport).token()


async def test_secret_never_appears_in_exceptions_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Across success, retries, early renewal and fatal refusals, no log record or error text holds the secret."""
    caplog.set_level(logging.DEBUG)
    clock = Clock(0.0)
    transport = FakeTransport(
        Reply(503, CIMultiDict({"Retry-After": "0"}), b"busy"),
        ok("the-access-token", 600),
        aad_error("temporarily_unavailable", 90033, 400),
        aad_error("invalid_client", 7000215, 401),
    )
    tokens = provider(transport, clock)
    await tokens.token()
    clock.now = 590.0  # early-renewal window: transient failure, then invalid_client; old token kept
    await tokens.token()
    clock.now = 700.0  # expired: renewal must succeed, and does not
    with pytest.raises(TokenError) as caught:
        await tokens.token()
    texts = [str(caught.value), repr(caught.value), repr(tokens)] + [r.getMessage() for r in caplog.records]
    assert len(caplog.records) >= 3
    for text in texts:
        assert SECRET not in text
        assert "the-access-token" not in text


async def test_secret_echoed_by_a_misbehaving_server_is_not_repeated() -> None:
    """A non-JSON error page that echoes the posted form must not carry the secret into the TokenError."""
    echo = f"bad request: client_id=client-1&client_secret={SECRET}&grant_type=client_credentials".encode()
    transport = FakeTransport(Reply(400, CIMultiDict(), echo))
    with pytest.raises(TokenError) as caught:
        await provider(transport).token()
    assert SECRET not in str(caught.value)


# -- over HTTP, through PlatformClient.post_form (aioresponses) ---------------------------------------


def recorded(mock: aioresponses) -> dict[tuple[str, URL], list[RequestCall]]:
    """The requests aioresponses intercepted, by (method, URL)."""
    assert mock.requests is not None
    return mock.requests


async def test_post_form_sends_the_form_and_reads_the_token() -> None:
    """Through the real aiohttp session: the form is urlencoded to the token URL and the token is read."""
    async with PlatformClient(SETTINGS, policy=FAST) as client:
        with aioresponses() as mock:
            mock.post(
                SETTINGS.token_url,
                status=200,
                payload={"token_type": "Bearer", "expires_in": 3599, "access_token": "http-token"},
            )
            token = await client.tokens.token()
            calls = next(iter(recorded(mock).values()))
    assert token.value == "http-token"
    assert len(calls) == 1
    assert calls[0].kwargs["data"]["grant_type"] == "client_credentials"
    assert calls[0].kwargs["data"]["scope"] == "api://client-1/.default"


async def test_post_form_invalid_client_is_fatal_after_one_request() -> None:
    """An Azure AD 401 invalid_client over HTTP is a TokenError at once, carrying AADSTS7000215."""
    async with PlatformClient(SETTINGS, policy=FAST) as client:
        with aioresponses() as mock:
            mock.post(
                SETTINGS.token_url,
                status=401,
                payload=json.loads(aad_error("invalid_client", 7000215).body),
                repeat=True,
            )
            with pytest.raises(TokenError) as caught:
                await client.tokens.token()
            requests = sum(len(v) for v in recorded(mock).values())
    assert requests == 1
    assert caught.value.error_codes == [7000215]
    assert SECRET not in str(caught.value)


async def test_post_form_429_then_success_over_http() -> None:
    """An HTTP 429 with Retry-After from the token endpoint is retried, then the token is served."""
    async with PlatformClient(SETTINGS, policy=FAST) as client:
        with aioresponses() as mock:
            mock.post(
                SETTINGS.token_url,
                status=429,
                headers={"Retry-After": "0"},
                payload={"error": "temporarily_unavailable", "error_codes": [90055]},
            )
            mock.post(SETTINGS.token_url, status=200, payload={"expires_in": 3599, "access_token": "after-429"})
            token = await client.tokens.token()
            requests = sum(len(v) for v in recorded(mock).values())
    assert token.value == "after-429"
    assert requests == 2


# -- 401s -----------------------------------------------------------------------------------------------


async def test_a_refused_token_is_replaced_once_while_others_keep_it() -> None:
    """After a 401 one fetch replaces the token; until then (and for late callers) the current token is served."""
    transport = FakeTransport(ok("first"), ok("second"), delay=0.02)
    tokens = provider(transport)
    first = await tokens.token()
    tokens.accepted(first)
    assert not tokens.refused(first)  # it worked before: no evidence about permissions
    replacing = asyncio.ensure_future(tokens.replacement(first))
    await asyncio.sleep(0)
    assert await tokens.token() is first  # served at once: the other workers are not stalled behind the fetch
    second = await replacing
    assert second.value == "second"
    assert await tokens.replacement(first) is second  # a late worker with the old token: no second fetch
    assert transport.count == 2


async def test_a_lately_accepted_token_is_trusted_for_one_more_try() -> None:
    """A token the API accepted within ACCEPTED_LATELY is worth retrying after a 401; an unproven or stale one not."""
    clock = Clock()
    tokens = provider(FakeTransport(ok("first"), ok("second")), clock)
    first = await tokens.token()
    assert not tokens.trusted(first)  # never accepted
    tokens.accepted(first)
    assert tokens.trusted(first)
    clock.now += ACCEPTED_LATELY + 1
    assert not tokens.trusted(first)  # accepted too long ago: a 401 now is more likely a revocation
    second = await tokens.replacement(first)
    tokens.accepted(second)
    assert not tokens.trusted(first)  # not the current token any more


def test_jwt_claims_are_read_from_the_payload_only() -> None:
    """A JWT's claims decode without its signature; an opaque or broken token has none; exp must be a number."""
    payload = base64.urlsafe_b64encode(json.dumps({"aud": "api://x", "exp": 1700000000}).encode()).rstrip(b"=")
    token = f"e30.{payload.decode()}.signature"
    claims = jwt_claims(token)
    assert claims == {"aud": "api://x", "exp": 1700000000}
    assert jwt_expiry(claims) == 1700000000.0
    assert jwt_claims("opaque-token") is None
    assert jwt_claims("a.!!!.c") is None
    assert jwt_expiry({"exp": True}) is None
    assert jwt_expiry({"exp": "soon"}) is None
