"""The emulated identity provider: demo credentials, HS256 JWTs, and Azure-AD-shaped errors.

Real Entra ID signs with RS256 and publishes keys; clients must treat access tokens as opaque,
so HS256 with a per-process secret is enough here and needs only the standard library.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

# Public on purpose: the emulator is a demo and test tool, never a real identity provider.
DEMO_TENANT_ID = "8f6b1c2e-4d3a-4b7e-9c1f-0a2b3c4d5e6f"
DEMO_CLIENT_ID = "3c9e7a51-2f84-4d06-b5a9-6e1d0c7f8a42"
DEMO_CLIENT_SECRET = "demo-secret-not-for-production"

_HEADER = base64.urlsafe_b64encode(orjson.dumps({"alg": "HS256", "typ": "JWT"})).rstrip(b"=")


class InvalidToken(Exception):
    """The bearer token cannot be trusted; the message says why and goes into the 401 body."""


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _unb64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def sign(claims: dict[str, Any], key: bytes) -> str:
    """Encode *claims* as a compact HS256 JWT."""
    signing_input = _HEADER + b"." + _b64(orjson.dumps(claims))
    signature = hmac.new(key, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + _b64(signature)).decode("ascii")


def verify(token: str, key: bytes) -> dict[str, Any]:
    """Return the claims of *token* if its signature is ours; expiry is the caller's business."""
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken("malformed token: expected three dot-separated parts")
    header_b64, payload_b64, signature_b64 = parts
    try:
        signature = _unb64(signature_b64)
        claims = orjson.loads(_unb64(payload_b64))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise InvalidToken("malformed token: not base64url-encoded JSON") from exc
    expected = hmac.new(key, f"{header_b64}.{payload_b64}".encode("ascii"), hashlib.sha256).digest()
    if not hmac.compare_digest(signature, expected):
        raise InvalidToken("invalid token signature")
    if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int | float):
        raise InvalidToken("malformed token: claims carry no exp")
    return claims


def aad_error(error: str, code: int, message: str) -> dict[str, Any]:
    """Build the JSON body Entra ID sends with a failed token request."""
    trace_id = str(uuid.uuid4())
    correlation_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    # Entra formats the timestamp with 7 fractional digits in the description and a plain
    # "YYYY-MM-DD HH:MM:SSZ" in the field; clients must not parse either, so close is enough.
    stamp = now.strftime("%Y-%m-%d %H:%M:%S.%f") + "0Z"
    return {
        "error": error,
        "error_description": (
            f"AADSTS{code}: {message} Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {stamp}"
        ),
        "error_codes": [code],
        "timestamp": now.strftime("%Y-%m-%d %H:%M:%SZ"),
        "trace_id": trace_id,
        "correlation_id": correlation_id,
    }


class TokenBook:
    """Issues tokens and answers "is this bearer token good right now?" cheaply.

    The API hot path is one dict lookup and one float compare: a token's signature is checked
    once, then its expiry is cached. Revoking removes the token from the cache and remembers
    its jti, so only the (rare) cache-miss path consults the revocation set.
    """

    __slots__ = ("_clock", "_issued", "_key", "_revoked", "_valid", "issuer")

    def __init__(self, tenant_id: str, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        # A fresh key per emulator: tokens from an earlier run fail the signature check, as
        # tokens from another tenant would.
        self._key = uuid.uuid4().bytes + uuid.uuid4().bytes
        self._valid: dict[str, float] = {}
        self._issued: set[str] = set()
        self._revoked: set[str] = set()
        self.issuer = f"https://sts.windows.net/{tenant_id}/"

    def issue(self, *, tenant_id: str, client_id: str, lifetime: int) -> str:
        now = self._clock()
        iat = int(now)
        # Round exp up, never down: a client that trusts `time_sent + expires_in` must not meet
        # a 401 before its own clock says the token is stale.
        exp = math.ceil(now) + lifetime
        jti = uuid.uuid4().hex
        claims = {
            "aud": f"api://{client_id}",
            "iss": self.issuer,
            "iat": iat,
            "nbf": iat,
            "exp": exp,
            "appid": client_id,
            "tid": tenant_id,
            "roles": ["Conversation.Read"],
            "jti": jti,
        }
        token = sign(claims, self._key)
        self._issued.add(jti)
        self._valid[token] = float(exp)
        return token

    def check(self, token: str) -> str | None:
        """Return why *token* is rejected, or None when it is good."""
        exp = self._valid.get(token)
        if exp is None:
            try:
                claims = verify(token, self._key)
            except InvalidToken as exc:
                return str(exc)
            if claims.get("jti") in self._revoked:
                return "token has been revoked"
            exp = float(claims["exp"])
            self._valid[token] = exp
        if exp <= self._clock():
            return "token is expired"
        return None

    def revoke(self, token: str) -> None:
        try:
            jti = verify(token, self._key).get("jti")
        except InvalidToken:
            return
        self._valid.pop(token, None)
        if isinstance(jti, str):
            self._revoked.add(jti)

    def revoke_all(self) -> None:
        self._revoked |= self._issued
        self._valid.clear()

    def decode(self, token: str) -> dict[str, Any]:
        """Verify and return the claims, for tests that inspect what was issued."""
        return verify(token, self._key)
