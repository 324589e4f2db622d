"""The platform client: one aiohttp session, the conversationexists call, and the error mapping.

:func:`mapped_error` is the only place where aiohttp and asyncio errors become reconcile's own.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from reconcile._version import __version__
from reconcile.config import Route, Settings, redact
from reconcile.errors import (
    AuthorizationError,
    BadResponse,
    ConfigError,
    EndpointNotFound,
    HostUnreachable,
    ProxyError,
    ReconcileError,
    RequestRejected,
    RetryableStatus,
    RowError,
    RunStopped,
    TransportError,
)
from reconcile.input import Record

from ._auth import Reply, Token, TokenProvider
from ._concurrency import INITIAL, Change, ConcurrencyController, Slots
from ._retry import RETRYABLE_STATUSES, Attempts, RetryPolicy, call_with_retries, retry_after_from_headers
from ._throttle import RetryBudget, Throttle

log = logging.getLogger("reconcile.platform._client")

USER_AGENT = f"reconcile/{__version__}"
THROTTLES = frozenset({429, 503})  # answers that say "too much": the rate controller's evidence
MAX_REFRESHES = 10  # per attempt; then the attempt fails as a passing error and the retry policy backs off


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the platform said about one record, or why it could not say."""

    exists: bool | None  # None: the row could not be checked
    call_id: str
    detail: str
    attempts: int


@contextmanager
def mapped_errors(url: str, route: Route | None = None) -> Iterator[None]:
    """Translate aiohttp/asyncio failures inside the block into reconcile errors (see :func:`mapped_error`)."""
    try:
        yield
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise mapped_error(exc, url, route) from None


def proxy_arguments(route: Route | None) -> dict[str, Any]:
    """aiohttp's ``proxy`` for a request along ``route`` (direct when None).

    Credentials go in the URL, which aiohttp turns into ``Proxy-Authorization`` (its ``BasicAuth`` is deprecated).
    """
    return {} if route is None else {"proxy": route.authenticated_url}


def proxy_refused(route: Route, url: str, status: int, message: str = "") -> ProxyError:
    """The error for a proxy that answered ``status`` instead of passing the request to ``url`` on."""
    target = urlsplit(url).netloc
    if status == 407:
        fix = (
            f"the proxy wants credentials: give them in the proxy URL, http://USER:PASSWORD@host:port, in "
            f"{route.source}" + (" (the ones given were refused)" if route.username else "")
        )
    else:
        fix = (
            f"ask the proxy's administrators to allow {target}, or add the host to NO_PROXY if this machine "
            "reaches it directly"
        )
    said = f"{status} {message}".strip()
    return ProxyError(
        f"the proxy {route.shown} (from {route.source}) refused the request to {target}: {said}. HINT: {fix}"
    )


def mapped_error(exc: aiohttp.ClientError | TimeoutError, url: str, route: Route | None = None) -> ReconcileError:
    """The reconcile error for an aiohttp or asyncio failure talking to ``url`` (through the proxy ``route``).

    A proxy that refuses is fatal at once: no retry of a row makes a proxy accept it.
    """
    if route is not None and isinstance(exc, aiohttp.ClientHttpProxyError):
        return proxy_refused(route, url, exc.status, exc.message)
    if route is not None and isinstance(exc, aiohttp.ClientProxyConnectionError):
        return ProxyError(
            f"cannot connect to the proxy {route.shown} (from {route.source}): {exc.os_error}. "
            f"HINT: check the proxy's address and port in {route.source}"
        )
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return ConfigError(
            f"the TLS certificate of {url} is not trusted: {exc.certificate_error}. "
            "HINT: pass --ca-bundle with the CA that signed it (verification stays on)"
        )
    if isinstance(exc, aiohttp.ClientConnectorSSLError):
        return ConfigError(f"TLS handshake with {url} failed: {exc}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return TransportError(f"cannot connect to {exc.host}:{exc.port}: {exc.os_error}", connect=True)
    if isinstance(exc, aiohttp.InvalidURL):
        return ConfigError(f"invalid URL {exc.url}")
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | aiohttp.ClientOSError):
        return TransportError(f"connection failed: {type(exc).__name__}: {exc}")
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        # A host that silently drops connection attempts is unreachable, not slow to answer.
        return TransportError(f"no connection to {url} within the timeout", connect=True, timeout=True)
    if isinstance(exc, TimeoutError):
        return TransportError("no answer within the timeout", timeout=True)
    return TransportError(f"{type(exc).__name__}: {exc}")


class PlatformClient:
    """Checks records against the platform.  Use as an async context manager."""

    def __init__(
        self,
        settings: Settings,
        *,
        policy: RetryPolicy | None = None,
        throttle: Throttle | None = None,
        token_policy: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy or RetryPolicy(max_attempts=settings.max_attempts, max_time=settings.max_retry_time)
        self.throttle = throttle or Throttle(
            max_rps=settings.max_rps,
            budget=RetryBudget.for_concurrency(settings.concurrency or INITIAL),
            outage_tolerance=settings.outage_tolerance,
        )
        # A fixed --concurrency sizes the slots once; otherwise the controller moves them.
        self.concurrency = (
            ConcurrencyController(ceiling=settings.max_concurrency) if settings.concurrency is None else None
        )
        self.slots: Slots | None = None
        self.stopped = False
        self._url = settings.endpoint_url
        self._route = settings.proxy_for(self._url)
        self._timeout = aiohttp.ClientTimeout(total=settings.timeout if timeout is None else timeout)
        self._session: aiohttp.ClientSession | None = None
        self.tokens = TokenProvider(settings, self, policy=token_policy or self.policy)

    def __repr__(self) -> str:
        return f"PlatformClient(url={self._url!r})"

    async def __aenter__(self) -> PlatformClient:
        ssl_context: ssl.SSLContext = self.settings.ssl_context()
        self.slots = Slots(self.settings.concurrency or 1)
        if self.concurrency is not None:
            self.concurrency.attach(self.slots)
        # One connection per slot, plus room for token requests so they never queue behind API calls.
        connector = aiohttp.TCPConnector(
            limit=self.settings.concurrency_ceiling + 2,
            ssl=ssl_context,
            ttl_dns_cache=300,
            enable_cleanup_closed=True,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": USER_AGENT},
            json_serialize=lambda obj: orjson.dumps(obj).decode(),
        )
        for name, url in (("API", self._url), ("identity provider", self.settings.token_url)):
            log.info("%s: %s", name, self.settings.proxies.describe(url))
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- Transport protocol for the token provider ---------------------------------------------------

    async def post_form(self, url: str, form: Mapping[str, str]) -> Reply:
        session = self._require_session()
        return await post(session, url, self.settings.proxy_for(url), data=dict(form), timeout=self._timeout)

    # -- the API call ---------------------------------------------------------------------------------

    async def check(self, record: Record) -> Outcome:
        """Ask whether ``record`` exists.  Fatal problems raise; row-level ones come back in the outcome."""
        body = orjson.dumps(
            {
                "company": record.company,
                "organisation": record.organisation,
                "folder": record.folder,
                "filename": record.filename,
            }
        )
        attempts = Attempts()
        throttle = self.throttle
        try:
            exists, call_id = await call_with_retries(
                lambda: self._attempt(body),
                self.policy,
                attempts,
                before_sleep=throttle.on_retry,
                paused=throttle.outage_seconds,
                healthy=throttle.healthy,
            )
        except TransportError as exc:
            if exc.connect:
                raise HostUnreachable(
                    f"cannot reach the platform at {self.settings.base_url} after {attempts}: "
                    f"{exc}. HINT: check CALLJOURNEY_BASE_URL and the network"
                ) from None
            return Outcome(None, "", f"{exc} (after {attempts})", attempts.count)
        except RowError as exc:
            return Outcome(None, "", f"{exc} (after {attempts})", attempts.count)
        return Outcome(exists, call_id, "", attempts.count)

    async def ask(self, url: str, body: bytes) -> Reply:
        """POST ``body`` to ``url`` with the run's token and give back the answer whatever its status, redirects
        not followed: what ``doctor`` shows.

        A token the API refuses is replaced once, and a passing failure (a reset, a timeout, 408/429/5xx) is
        tried again under :attr:`policy`; when the attempts run out the last answer is given back, or the
        connection's error raised.
        """
        answers: list[Reply] = []

        async def attempt() -> Reply:
            token = await self.tokens.token()
            reply = await self._post_reply(url, body, token)
            if reply.status == 401 and not answers:  # revoked under our feet: a fresh token says more
                self.tokens.invalidate(token)
                reply = await self._post_reply(url, body, await self.tokens.token())
            answers.append(reply)
            if reply.status in RETRYABLE_STATUSES:
                retry_after = retry_after_from_headers(reply.headers, cap=self.policy.retry_after_cap)
                raise RetryableStatus(f"HTTP {reply.status}", status=reply.status, retry_after=retry_after)
            return reply

        try:
            return await call_with_retries(attempt, self.policy, Attempts())
        except RetryableStatus:
            return answers[-1]

    async def _post_reply(self, url: str, body: bytes, token: Token) -> Reply:
        session = self._require_session()
        route = self.settings.proxy_for(url)
        headers = _request_headers(token)
        return await post(session, url, route, data=body, headers=headers, timeout=self._timeout, allow_redirects=False)

    def stop(self) -> None:
        """Send nothing more: requests on the wire finish, rows waiting for a slot or a retry raise RunStopped."""
        self.stopped = True

    async def _attempt(self, body: bytes) -> tuple[bool, str]:
        """One attempt, holding a concurrency slot from before the send until the answer is read."""
        slots = self._require_slots()
        await slots.acquire()
        try:
            if self.stopped:
                raise RunStopped("the run is stopping; the row was not sent")
            return await self._send(body)
        finally:
            slots.release()

    async def _send(self, body: bytes) -> tuple[bool, str]:
        throttle, controller = self.throttle, self.concurrency
        sent_at = await throttle.before_send()
        refreshes = 0
        token = await self.tokens.token()
        while True:
            generation = controller.generation if controller is not None else -1
            started = time.monotonic()
            try:
                status, headers, raw = await self._post(body, token)
            except TransportError as exc:
                exc.counted = throttle.on_fault(exc, outage=True)
                raise
            if status == 200:
                throttle.on_success(sent_at)
                self.tokens.accepted(token)
                if controller is not None:
                    self._resized(controller.answered(time.monotonic() - started, generation))
                return _parse_answer(raw)
            if status != 401:
                break
            throttle.on_refused()  # an answer: a probe that meets a platform back with new tokens ends the outage
            # The token was refused: get this request a new one and try again at once.  Fatal only on evidence
            # that fresh tokens are refused as such (see TokenProvider.refused), never on a revocation race.
            refreshes += 1
            if refreshes > MAX_REFRESHES:
                # Tokens keep dying under this request while others succeed: back off like any passing failure.
                raise RetryableStatus(f"HTTP 401 {refreshes} times in a row: {server_message(raw)}", status=401)
            if self.tokens.refused(token):
                raise AuthorizationError(
                    f"the API refused a freshly issued token (401): {server_message(raw)}. "
                    "HINT: the app registration may lack the API permission, or the scope is wrong"
                )
            if self.tokens.trusted(token):
                log.info("API answered 401 to a token it accepts lately; trying again with the same token")
            else:
                log.info("API answered 401; renewing the token and trying again")
                token = await self.tokens.replacement(token)
            sent_at = await throttle.before_send()  # a re-send waits for the rate limit like any send
        raise self._failure(status, headers, raw, sent_at)

    def _resized(self, change: Change | None) -> None:
        if change is not None:
            log.info("concurrency %d: %s", change.limit, change.reason, extra={"concurrency": change.limit})
            self.throttle.budget.resize(change.limit)

    async def _post(self, body: bytes, token: Token) -> tuple[int, Mapping[str, str], bytes]:
        headers = _request_headers(token)
        reply = await post(
            self._require_session(), self._url, self._route, data=body, headers=headers, timeout=self._timeout
        )
        return reply.status, reply.headers, reply.body

    def _failure(self, status: int, headers: Mapping[str, str], raw: bytes, sent_at: float) -> Exception:
        message = server_message(raw)
        if status == 404:
            return EndpointNotFound(
                f"the API answered 404 for {self._url}: the endpoint path does not exist on this platform. "
                "This is a configuration error, not a missing recording; no row was called missing. "
                "HINT: check CALLJOURNEY_BASE_URL and --endpoint-path (the guide names both "
                "/api/v1/search/conversationexists and /api/v1/search/callexists)"
            )
        if status == 403:
            return AuthorizationError(
                f"the API answered 403 (forbidden): {message}. HINT: grant the app registration access to the API"
            )
        if status in RETRYABLE_STATUSES or status >= 500:
            retry_after = retry_after_from_headers(headers, cap=self.policy.retry_after_cap)
            error = RetryableStatus(f"HTTP {status}: {message}", status=status, retry_after=retry_after)
            if status in THROTTLES:
                self.throttle.on_throttle(status, retry_after, sent_at)
                # "Too much, come back later" is pacing, not a failure of the row's: max_time and the budget
                # bound it, not max_attempts (load shed with 503s ended rows in error otherwise).
                error.counted = False
            else:
                # A gateway's 502/504 may mean the platform behind it is gone; a 500 or 408 is an answer.
                error.counted = self.throttle.on_fault(error, outage=status in (502, 504))
            return error
        self.throttle.on_success(sent_at)  # an answer, if not the one hoped for
        if status == 400:
            return RequestRejected(f"HTTP 400: {message}", status=status)
        return RowError(f"HTTP {status}: {message}", status=status)

    def _require_slots(self) -> Slots:
        if self.slots is None:
            raise RuntimeError("PlatformClient is not open; use 'async with PlatformClient(...)'")
        return self.slots

    def _require_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("PlatformClient is not open; use 'async with PlatformClient(...)'")
        return self._session


async def post(session: aiohttp.ClientSession, url: str, route: Route | None, **request: Any) -> Reply:
    """POST to ``url`` along ``route``, errors mapped: API calls, token requests, and doctor's API calls."""
    with mapped_errors(url, route):
        async with session.post(url, **request, **proxy_arguments(route)) as response:
            if response.status == 407 and route is not None:  # a plain-http target: the proxy itself said no
                raise proxy_refused(route, url, 407, response.reason or "")
            return Reply(response.status, response.headers, await response.read())


def _request_headers(token: Token) -> dict[str, str]:
    """An API request's headers: the bearer token, and the JSON body's type."""
    return {"Authorization": f"Bearer {token.value}", "Content-Type": "application/json"}


def _parse_answer(raw: bytes) -> tuple[bool, str]:
    try:
        answer: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadResponse(f"HTTP 200 with a body that is not JSON: {raw[:120]!r}", status=200) from None
    if isinstance(answer, dict):
        exists, call_id = answer.get("exists"), answer.get("callId")
        if isinstance(exists, bool) and isinstance(call_id, str):
            if exists and not call_id:
                raise BadResponse("HTTP 200 says exists=true but the callId is empty", status=200)
            return exists, call_id if exists else ""
    raise BadResponse(
        f'HTTP 200 with a body not of the form {{"exists": bool, "callId": str}}: {raw[:120]!r}', status=200
    )


def server_message(raw: bytes) -> str:
    """The server's message from a JSON error body (``message`` or ``error``) or plain text, redacted."""
    return redact(_raw_message(raw))


def _raw_message(raw: bytes) -> str:
    text = raw[:500].decode("utf-8", "replace").strip()
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return text or "(empty body)"
    if isinstance(payload, dict):
        for name in ("message", "error", "error_description", "title"):
            if isinstance(payload.get(name), str) and payload[name]:
                return str(payload[name])
    return text or "(empty body)"
