"""The emulated identity provider's side of certificate and federated credentials.

A client assertion is checked as Entra ID checks it, and refused with its error codes:

* a **certificate assertion** (``iss`` = the client id) must name a registered certificate in ``x5t#S256``
  or ``x5t``, carry a valid PS256/RS256 signature by it, ``aud`` = the token URL, ``iss`` = ``sub`` = the
  client id, be inside its ``nbf``/``exp`` window and use a ``jti`` not seen before;
* a **federated token** (any other ``iss``) must match a federated credential of the app: its issuer,
  subject and audience (``api://AzureADTokenExchange``), signed by that issuer's key and not expired.

AADSTS700027 for a bad signature or an unknown certificate (and the other malformed assertions),
AADSTS700024 for an assertion outside its time range, AADSTS70021 for a federated token that matches no
federated credential.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
FEDERATED_AUDIENCE = "api://AzureADTokenExchange"
CLOCK_SKEW = 60  # seconds of leeway on nbf/exp


@dataclass(frozen=True, slots=True)
class FederatedIssuer:
    """A federated credential of the app: tokens from ``issuer`` about ``subject``, signed with this key."""

    issuer: str
    subject: str
    public_key_pem: bytes
    audience: str = FEDERATED_AUDIENCE


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an assertion is refused: the AADSTS code and its message."""

    code: int
    message: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class AssertionChecker:
    """Verifies client assertions for one app."""

    def __init__(
        self, client_id: str, certificates: Sequence[bytes] = (), federated: Sequence[FederatedIssuer] = ()
    ) -> None:
        self._client_id = client_id
        self._keys: dict[tuple[str, str], Any] = {}
        for pem in certificates:
            certificate = x509.load_pem_x509_certificate(pem)
            der = certificate.public_bytes(Encoding.DER)
            self._keys["x5t#S256", _b64(hashlib.sha256(der).digest())] = certificate.public_key()
            self._keys["x5t", _b64(hashlib.sha1(der).digest())] = certificate.public_key()
        self._federated = tuple(federated)
        self._seen: dict[str, float] = {}  # jti -> exp, to refuse a replay while the assertion is still valid
        self.last_kind = ""  # "certificate" or "federated": what the last accepted assertion was

    def check(self, assertion: str, token_url: str) -> Refusal | None:
        """None when ``assertion`` authenticates the app at ``token_url``, else the refusal."""
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            return Refusal(700027, "Client assertion is not a valid JWT.")
        if claims.get("iss") == self._client_id:
            refusal = self._certificate(assertion, header, claims, token_url)
            kind = "certificate"
        else:
            refusal = self._federated_token(assertion, claims)
            kind = "federated"
        if refusal is None:
            self.last_kind = kind
        return refusal

    def _certificate(self, assertion: str, header: dict[str, Any], claims: dict[str, Any], url: str) -> Refusal | None:
        key = next(
            (self._keys[name, header[name]] for name in ("x5t#S256", "x5t") if (name, header.get(name)) in self._keys),
            None,
        )
        if key is None:
            return Refusal(
                700027,
                "Client assertion failed signature validation. The certificate with identifier used to sign the "
                f"client assertion is not registered on application '{self._client_id}'.",
            )
        try:
            jwt.decode(
                assertion,
                key,
                algorithms=["PS256", "RS256"],
                audience=url,
                issuer=self._client_id,
                leeway=CLOCK_SKEW,
                options={"require": ["aud", "iss", "sub", "jti", "nbf", "exp"]},
            )
        except (jwt.ExpiredSignatureError, jwt.ImmatureSignatureError):
            return Refusal(700024, "Client assertion is not within its valid time range.")
        except jwt.InvalidSignatureError:
            return Refusal(700027, "Client assertion failed signature validation.")
        except jwt.InvalidAudienceError:
            return Refusal(700027, f"Client assertion audience claim does not match the token endpoint '{url}'.")
        except jwt.PyJWTError as exc:
            return Refusal(700027, f"Client assertion is invalid: {exc}.")
        if claims.get("sub") != self._client_id:
            return Refusal(700027, "Client assertion subject (sub) must be the client id.")
        now = time.time()
        self._seen = {jti: exp for jti, exp in self._seen.items() if exp + CLOCK_SKEW > now}
        jti = str(claims["jti"])
        if jti in self._seen:
            return Refusal(700027, f"Client assertion contains a jti that was already used: '{jti}'.")
        self._seen[jti] = float(claims["exp"])
        return None

    def _federated_token(self, assertion: str, claims: dict[str, Any]) -> Refusal | None:
        issuer, subject, audience = claims.get("iss"), claims.get("sub"), claims.get("aud")
        no_match = Refusal(
            70021,
            "No matching federated identity record found for presented assertion. "
            f"Assertion Issuer: '{issuer}'. Assertion Subject: '{subject}'. Assertion Audience: '{audience}'.",
        )
        candidates = [f for f in self._federated if f.issuer == issuer]
        if not candidates:
            return no_match
        try:
            jwt.decode(
                assertion,
                candidates[0].public_key_pem,
                algorithms=["RS256", "PS256", "ES256"],
                audience=[f.audience for f in candidates],
                issuer=str(issuer),
                leeway=CLOCK_SKEW,
                options={"require": ["aud", "iss", "sub", "exp"]},
            )
        except (jwt.ExpiredSignatureError, jwt.ImmatureSignatureError):
            return Refusal(700024, "Client assertion is not within its valid time range.")
        except jwt.InvalidSignatureError:
            return Refusal(700027, "Client assertion failed signature validation.")
        except jwt.InvalidAudienceError:
            return no_match
        except jwt.PyJWTError as exc:
            return Refusal(700027, f"Client assertion is invalid: {exc}.")
        if not any(f.subject == subject and _audience_ok(f.audience, audience) for f in candidates):
            return no_match
        return None


def _audience_ok(expected: str, audience: object) -> bool:
    return audience == expected or (isinstance(audience, list) and expected in audience)
