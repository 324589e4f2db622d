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
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from reconcile.config import Certificate, load_certificate, register
from reconcile.errors import TokenError

if TYPE_CHECKING:
    from reconcile.config import Secret, Settings

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 600  # seconds, as MSAL: a few minutes is enough for one token request
ASSERTION_ALGS = ("PS256", "RS256")
FEDERATED_AUDIENCE = "api://AzureADTokenExchange"  # what Azure AD's federated credentials expect by default
CredentialKind = Literal["secret", "certificate", "federated"]


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
