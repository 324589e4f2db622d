"""Tokens: one Azure AD client-credentials token per run, shared by every worker.

The token request proves the app with a :class:`~reconcile.platform._credentials.Credential` (a secret, a signed
certificate assertion, or a federated token), built afresh for every request.

The provider follows azure-core's ``BearerTokenCredentialPolicy`` and MSAL:

* check → lock → re-check, so a hundred workers finding the token stale cause one fetch;
* expiry is the time the request was *sent* plus ``expires_in`` (the JWT's ``exp`` only as a fallback:
  Microsoft says access tokens may be opaque to clients), never an assumed 3600 s;
* renew early, when less than five minutes (a tenth of the lifetime for short-lived tokens) remain, or at
  ``refresh_in`` when the identity provider sends it;
* a failed early renewal keeps serving the still-valid token and is tried again no sooner than 30 s later;
  once the token has expired, renewal must succeed or the run stops;
* after a 401 the API caller drops the token (only if it is still the current one) and asks again.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from reconcile.config import Settings, redact, register
from reconcile.errors import FatalError, HostUnreachable, RetryableStatus, TokenError, TransientError, TransportError

from ._credentials import Credential, credential_for
from ._retry import Attempts, RetryPolicy, call_with_retries, retry_after_from_headers

log = logging.getLogger("reconcile.platform._auth")

EARLY_REFRESH = 300.0  # seconds before expiry to renew, as azure-core and MSAL do
EARLY_REFRESH_SHARE = 0.1  # ... but never more than this share of a short token's lifetime
RETRY_FAILED_REFRESH_AFTER = 30.0
ACCEPTED_LATELY = 10.0  # seconds: while the API accepted a token this recently, a 401 is not about permissions
FALLBACK_LIFETIME = 300.0  # when a response carries neither expires_in nor a readable exp

TRANSIENT_ERRORS = frozenset({"temporarily_unavailable", "server_error"})


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer, reduced to what callers read."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class Transport(Protocol):
    """What the provider needs from an HTTP client: post a form, get a reply (errors already mapped)."""

    async def post_form(self, url: str, form: Mapping[str, str]) -> Reply: ...


@dataclass(frozen=True, slots=True)
class Token:
    """An access token and when to renew it (``time.monotonic`` seconds)."""

    value: str = field(repr=False)
    expires_at: float
    refresh_at: float
    lifetime: float
    generation: int = 0  # 1 for the run's first token, 2 for the next, ...


class TokenProvider:
    """Single-flight, early-renewing source of bearer tokens."""

    def __init__(
        self,
        settings: Settings,
        transport: Transport,
        *,
        policy: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        credential: Credential | None = None,
    ) -> None:
        self._settings = settings
        self._credential = credential or credential_for(settings)
        self._transport = transport
        self._policy = policy or RetryPolicy()
        self._clock = clock
        self._token: Token | None = None
        self._lock = asyncio.Lock()
        self._next_early_try = 0.0
        self._worked = 0  # generation of the newest token the API accepted
        self._strikes = 0  # current, never-accepted tokens refused since the API last accepted one
        self._last_accepted: float | None = None
        self._refusals = 0  # 401s to the current token since the API last accepted it
        self._refused: FatalError | None = None  # a permanent refusal, re-raised to every later caller
        self.fetches = 0  # tokens issued by the identity provider, for run metadata

    def __repr__(self) -> str:
        return (
            f"TokenProvider(token_url={self._settings.token_url!r}, credential={self._credential.kind}, "
            f"fetches={self.fetches})"
        )

    async def token(self) -> Token:
        """A token that is valid now."""
        token = self._token
        if token is not None and self._clock() < token.refresh_at:
            return token
        async with self._lock:
            if self._refused is not None:
                raise self._refused
            token = self._token
            now = self._clock()
            if token is not None and now < token.refresh_at:
                return token
            if token is not None and now < token.expires_at:
                return await self._renew_early(token, now)
            return await self._replace()

    async def replacement(self, refused: Token) -> Token:
        """A new token for a request the API answered 401 with ``refused``; single-flight.

        Until it arrives the other workers go on with the current token, so a stray 401 stalls nobody; a
        second refusal with no acceptance between drops it (:meth:`refused`), so a revoked token is not sent on.
        """
        async with self._lock:
            if self._refused is not None:
                raise self._refused
            current = self._token
            if current is not None and current is not refused and self._clock() < current.refresh_at:
                return current  # another worker replaced it meanwhile
            return await self._replace()

    async def _replace(self) -> Token:
        """Fetch the next token (holding the lock); a permanent refusal is kept for every later caller."""
        try:
            self._token = await self._fetch()
            self._refusals = 0
        except FatalError as exc:
            # Waiters on the lock would each ask again; a refused secret stays refused.
            self._refused = exc
            raise
        return self._token

    def invalidate(self, token: Token) -> None:
        """Forget ``token`` after the API refused it, unless another worker already replaced it."""
        if self._token is token:
            self._token = None

    def accepted(self, token: Token) -> None:
        """The API accepted ``token``: tokens of this generation demonstrably carry the right permissions."""
        self._strikes = 0
        if token is self._token:
            self._refusals = 0
        self._last_accepted = self._clock()
        if token.generation > self._worked:
            self._worked = token.generation

    def trusted(self, token: Token) -> bool:
        """Whether a 401 to ``token`` may be a stray one, worth one more try with the same token before fetching
        another (Azure AD throttles clients that fetch often): it is current, the API accepted it lately, and
        this is its first refusal since."""
        if token is not self._token or self._worked != token.generation or self._last_accepted is None:
            return False
        return self._refusals <= 1 and self._clock() - self._last_accepted < ACCEPTED_LATELY

    def refused(self, token: Token) -> bool:
        """The API answered 401 to ``token``; True when that is evidence the app is not authorised.

        The caller then asks :meth:`replacement` for the token to try next.

        Evidence is a refusal of the *current* token that the API never accepted, twice in a row, while the API
        has accepted no token for :data:`ACCEPTED_LATELY` seconds.  A token another worker already saw refused,
        one that worked before (revoked or expired under our feet), or any refusal while other requests still
        succeed says nothing about permissions: with revocations those are common, while an app without the API
        permission fails with its first two tokens, and one that loses it mid-run soon after.
        """
        if token is not self._token:
            return False
        self._refusals += 1
        if self._refusals >= 2:
            # Refused twice with no acceptance between: revoked, not a stray 401.  Nobody may take it now;
            # the next caller fetches the replacement for all.
            self._token = None
        if self._worked >= token.generation:
            return False
        if self._last_accepted is not None and self._clock() - self._last_accepted < ACCEPTED_LATELY:
            return False
        self._strikes += 1
        return self._strikes >= 2

    async def _renew_early(self, token: Token, now: float) -> Token:
        if now < self._next_early_try:
            return token
        try:
            self._token = await self._fetch()
        except FatalError as exc:
            self._next_early_try = now + RETRY_FAILED_REFRESH_AFTER
            log.warning(
                "early token renewal failed (%s); still using the current token for %.0f s, next try in %.0f s",
                exc,
                token.expires_at - now,
                RETRY_FAILED_REFRESH_AFTER,
            )
            return token
        return self._token

    async def _fetch(self) -> Token:
        attempts = Attempts()
        try:
            token = await call_with_retries(self._fetch_once, self._policy, attempts, before_sleep=_log_retry)
        except TransportError as exc:
            if exc.connect:
                raise HostUnreachable(
                    f"cannot reach the identity provider at {self._settings.authority} after "
                    f"{attempts}: {exc}. HINT: check CALLJOURNEY_AUTHORITY and the network"
                ) from None
            raise TokenError(f"token request failed after {attempts}: {exc}") from None
        except TransientError as exc:
            raise TokenError(f"token request failed after {attempts}: {exc}") from None
        self.fetches += 1
        register(token.value)
        token = replace(token, generation=self.fetches)
        renew_in = token.refresh_at - self._clock()
        log.info(
            "token issued (%s credential); valid for %.0f s, renewing after %.0f s",
            self._credential.kind,
            token.lifetime,
            renew_in,
        )
        return token

    async def _fetch_once(self) -> Token:
        settings = self._settings
        form = {
            "client_id": settings.client_id,
            **self._credential.form(settings.token_url),
            "scope": settings.scope,
            "grant_type": "client_credentials",
        }
        sent = self._clock()
        reply = await self._transport.post_form(settings.token_url, form)
        payload = _json_object(reply.body)
        if reply.status == 200 and isinstance(payload.get("access_token"), str) and payload["access_token"]:
            return _token_from(payload, sent)
        raise _token_failure(reply, payload, settings)


def _token_from(payload: Mapping[str, Any], sent: float) -> Token:
    value = str(payload["access_token"])
    lifetime = _number(payload.get("expires_in"))
    if lifetime is None:
        claims = jwt_claims(value)
        exp = jwt_expiry(claims) if claims is not None else None
        lifetime = exp - time.time() if exp is not None else None
    if lifetime is None or lifetime <= 0:
        log.warning("token response has no usable expires_in or exp; assuming %.0f s", FALLBACK_LIFETIME)
        lifetime = FALLBACK_LIFETIME
    margin = min(EARLY_REFRESH, lifetime * EARLY_REFRESH_SHARE)
    refresh_after = lifetime - margin
    refresh_in = _number(payload.get("refresh_in"))
    if refresh_in is not None and 0 < refresh_in < refresh_after:
        refresh_after = refresh_in
    return Token(value=value, expires_at=sent + lifetime, refresh_at=sent + refresh_after, lifetime=lifetime)


def _token_failure(reply: Reply, payload: Mapping[str, Any], settings: Settings) -> Exception:
    error = str(payload.get("error", ""))
    status = reply.status
    if status == 429 or status >= 500 or error in TRANSIENT_ERRORS:
        retry_after = retry_after_from_headers(reply.headers)
        return RetryableStatus(
            f"identity provider answered {status} {error}".strip(), status=status, retry_after=retry_after
        )
    if status == 200:
        return TokenError("identity provider answered 200 without an access_token", status=status)
    if not error:
        snippet = redact(reply.body[:200].decode("utf-8", "replace").strip())
        return TokenError(
            f"identity provider answered {status} at {settings.token_url}: {snippet!r}. "
            "HINT: check CALLJOURNEY_AUTHORITY and CALLJOURNEY_TENANT_ID",
            status=status,
        )
    codes = payload.get("error_codes")
    hint = refusal_fix(error, codes if isinstance(codes, list) else [], settings)
    return TokenError(
        f"identity provider refused the credentials ({status})" + (f". HINT: {hint}" if hint else ""),
        status=status,
        details=payload,
    )


#: What to do about Azure AD's error codes, by code (the ``error`` is the fallback).
AAD_FIXES = {
    7000215: "the client secret is wrong: copy the secret's Value (not its Secret ID) from the app registration's "
    "Certificates & secrets",
    7000222: "the client secret has expired: create a new one in the app registration's Certificates & secrets",
    700016: "no app with this client id in this tenant: check CALLJOURNEY_CLIENT_ID and CALLJOURNEY_TENANT_ID",
    90002: "the tenant does not exist: check CALLJOURNEY_TENANT_ID (the Directory (tenant) ID)",
    70011: "the scope is not valid: the default is api://{client_id}/.default; check --scope",
    700027: "the app does not accept this certificate's assertion: upload the certificate (its public part, .cer "
    "or .pem) to the app registration's Certificates & secrets, or use the certificate registered there",
    700024: "the client assertion is outside its valid time range: check this machine's clock (NTP), and that the "
    "federated token file is being refreshed",
    70021: "no federated credential of the app matches the token's issuer and subject: add one under the app "
    "registration's Certificates & secrets > Federated credentials (for AKS: the cluster's OIDC issuer and "
    "system:serviceaccount:NAMESPACE:SERVICE_ACCOUNT)",
}
_ERROR_FIXES: dict[str, str | dict[str, str]] = {
    "invalid_client": {
        "secret": "the client secret is wrong or expired: create a new one in the app registration",
        "certificate": "the certificate is not registered on the app, or has expired: upload it to the app "
        "registration's Certificates & secrets",
        "federated": "the app has no federated credential for this token: check its issuer and subject",
    },
    "unauthorized_client": "the client id is not registered in this tenant",
    "invalid_request": "check CALLJOURNEY_TENANT_ID and CALLJOURNEY_AUTHORITY",
    "invalid_scope": "check --scope (default api://{client_id}/.default)",
}


def refusal_fix(error: str, codes: list[Any], settings: Settings) -> str:
    """The fix for an Azure AD refusal: by error code when one is known, else by ``error`` and credential kind."""
    fix: str | None = next((AAD_FIXES[c] for c in codes if c in AAD_FIXES), None)
    if fix is None:
        by_error = _ERROR_FIXES.get(error, "")
        fix = by_error.get(settings.credential_kind, "") if isinstance(by_error, dict) else by_error
    return fix.replace("{client_id}", settings.client_id)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return payload if isinstance(payload, dict) else {}


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def jwt_claims(token: str) -> dict[str, Any] | None:
    """The claims of a JWT, decoded from its payload only (the signature is the platform's business); None when
    the token is opaque."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, UnicodeDecodeError):
        return None
    return claims if isinstance(claims, dict) else None


def jwt_expiry(claims: Mapping[str, Any]) -> float | None:
    """The ``exp`` claim (seconds since the epoch), or None when there is no numeric one."""
    exp = claims.get("exp")
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


def _log_retry(state: Any) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning("token request failed (%s); retrying in %.1f s", exc, state.upcoming_sleep)
