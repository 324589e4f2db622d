"""Credentials: what a token request carries to prove the app is who it says, as MSAL and azure-identity build it.

* :class:`SecretCredential`: ``client_secret``.
* :class:`CertificateCredential`: a ``client_assertion`` JWT signed with the certificate's private key (PS256
  with ``x5t#S256`` as Microsoft's certificate-credentials page describes it, or RS256 with ``x5t`` for older
  tenants); ``aud`` is the token URL, ``iss`` = ``sub`` = the client id, a fresh ``jti`` and a fresh
  assertion for every token request.
* :class:`FederatedCredential`: the content of a token file (AKS workload identity's service-account token)
  as the ``client_assertion``; re-read for every token request, since the kubelet rotates it.

Signing is PyJWT's, key loading ``cryptography``'s.  Every assertion, the federated token, the private key's
PEM lines and the PFX password are registered for redaction.
"""

from __future__ import annotations

import base64
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from .errors import ConfigError, TokenError
from .redact import register

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

    from .config import Secret, Settings

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 600  # seconds, as MSAL: a few minutes is enough for one token request
ASSERTION_ALGS = ("PS256", "RS256")
FEDERATED_AUDIENCE = "api://AzureADTokenExchange"  # what Azure AD's federated credentials expect by default
CredentialKind = Literal["secret", "certificate", "federated"]
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.S)


class Credential(Protocol):
    """What a token request sends besides ``client_id``, ``scope`` and ``grant_type``."""

    @property
    def kind(self) -> CredentialKind: ...

    def form(self, token_url: str) -> dict[str, str]: ...


@dataclass(frozen=True, slots=True)
class SecretCredential:
    """A client secret."""

    secret: Secret = field(repr=False)
    kind: CredentialKind = "secret"

    def form(self, token_url: str) -> dict[str, str]:
        return {"client_secret": self.secret.reveal()}


@dataclass(frozen=True, slots=True)
class Certificate:
    """A certificate and its private key, loaded from a PEM or PFX file."""

    path: Path
    certificate: x509.Certificate
    key: RSAPrivateKey = field(repr=False)

    @property
    def der(self) -> bytes:
        from cryptography.hazmat.primitives.serialization import Encoding

        return self.certificate.public_bytes(Encoding.DER)

    def thumbprint(self, algorithm: Literal["sha1", "sha256"]) -> bytes:
        import hashlib

        return hashlib.new(algorithm, self.der).digest()

    @property
    def subject(self) -> str:
        return self.certificate.subject.rfc4514_string()

    @property
    def not_after(self) -> datetime:
        return self.certificate.not_valid_after_utc

    def days_left(self, now: datetime | None = None) -> float:
        return (self.not_after - (now or datetime.now(UTC))).total_seconds() / 86400


def load_certificate(path: Path, password: Secret) -> Certificate:
    """The certificate and RSA key in ``path`` (PEM holding both, or PKCS#12 with ``password``); ConfigError if not."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        PublicFormat,
        load_pem_private_key,
        pkcs12,
    )

    hint = (
        "HINT: give a PEM file holding the certificate and its private key, or a PFX/PKCS#12 file with its "
        "password in CALLJOURNEY_CLIENT_CERTIFICATE_PASSWORD"
    )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the client certificate {path}: {exc.strerror}") from None
    secret = password.reveal().encode() or None
    try:
        if b"-----BEGIN" in data:
            blocks = _PEM_BLOCK.findall(data)
            for label, body in blocks:
                if b"PRIVATE KEY" in label:
                    for line in body.split():
                        if len(line) >= 16:  # a short last line ("AQAB") would mask innocent text
                            register(line.decode("ascii", "replace"))
            keys = [b for b in blocks if b"PRIVATE KEY" in b[0]]
            if not keys:
                raise ConfigError(f"the client certificate {path} holds no private key. {hint}")
            pem = b"-----BEGIN %s-----\n%s-----END %s-----\n" % (keys[0][0], keys[0][1], keys[0][0])
            key: object = load_pem_private_key(pem, secret)
            certificates = x509.load_pem_x509_certificates(data)
        else:
            key, first, extra = pkcs12.load_key_and_certificates(data, secret)
            certificates = [c for c in (first, *extra) if c is not None]
    except (ValueError, TypeError) as exc:
        if "password" not in str(exc).lower():
            reason = str(exc)
        elif secret is None:
            reason = "it is encrypted and CALLJOURNEY_CLIENT_CERTIFICATE_PASSWORD is not set"
        else:
            reason = "wrong password, or not a certificate file"
        raise ConfigError(f"cannot load the client certificate {path}: {reason}. {hint}") from None
    if not isinstance(key, RSAPrivateKey):
        raise ConfigError(
            f"the private key in {path} is not an RSA key; Azure AD certificate credentials are RSA. {hint}"
        )
    public = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    mine = [
        c
        for c in certificates
        if c.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo) == public
    ]
    if not mine:
        raise ConfigError(f"no certificate in {path} matches its private key. {hint}")
    return Certificate(path, mine[0], key)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(slots=True)
class CertificateCredential:
    """A signed client assertion, fresh for every token request."""

    certificate: Certificate = field(repr=False)
    client_id: str
    alg: str = "PS256"
    clock: Callable[[], float] = time.time
    kind: CredentialKind = "certificate"

    def assertion(self, token_url: str) -> str:
        import jwt

        now = int(self.clock())
        claims = {
            "aud": token_url,
            "iss": self.client_id,
            "sub": self.client_id,
            "jti": str(uuid.uuid4()),
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        }
        if self.alg == "PS256":
            headers = {"x5t#S256": _b64(self.certificate.thumbprint("sha256"))}
        else:
            headers = {"x5t": _b64(self.certificate.thumbprint("sha1"))}
        assertion = jwt.encode(claims, self.certificate.key, algorithm=self.alg, headers={"typ": "JWT", **headers})
        register(assertion)
        return assertion

    def form(self, token_url: str) -> dict[str, str]:
        return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": self.assertion(token_url)}


@dataclass(frozen=True, slots=True)
class FederatedCredential:
    """A federated token from a file the platform keeps fresh (AKS workload identity)."""

    path: Path
    kind: CredentialKind = "federated"

    def read(self) -> str:
        try:
            token = self.path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise TokenError(
                f"cannot read the federated token file {self.path}: {exc.strerror}. HINT: in AKS, check that the "
                'pod has the label azure.workload.identity/use: "true" and its service account the annotation '
                "azure.workload.identity/client-id"
            ) from None
        if not token:
            raise TokenError(f"the federated token file {self.path} is empty. HINT: check what writes it")
        register(token)
        return token

    def form(self, token_url: str) -> dict[str, str]:
        return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": self.read()}


def credential_for(settings: Settings) -> Credential:
    """The credential ``settings`` configure (:meth:`Settings.validate` made sure there is exactly one)."""
    if settings.client_certificate is not None:
        certificate = load_certificate(settings.client_certificate, settings.client_certificate_password)
        return CertificateCredential(certificate, settings.client_id, settings.assertion_alg)
    if settings.federated_token_file is not None:
        return FederatedCredential(settings.federated_token_file)
    return SecretCredential(settings.client_secret)
