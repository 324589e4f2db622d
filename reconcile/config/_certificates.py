"""The client certificate: a PEM file holding the certificate and its RSA key, or a PKCS#12 (PFX) file.

Loaded here, with the settings, so that a wrong file or password fails before a run starts; every line of the
private key's PEM is registered for redaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from reconcile.errors import ConfigError

from ._redact import Secret, register

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey


_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.S)


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
