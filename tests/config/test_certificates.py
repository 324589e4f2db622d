"""config/_certificates: PEM and PFX client certificates load, or fail with the fix; their key is redacted."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from reconcile.config import redact
from reconcile.config._certificates import load_certificate
from reconcile.config._settings import Secret
from reconcile.errors import ConfigError
from tests.conftest import CertificateFiles, make_certificate


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    """A self-signed certificate with its RSA key, as PEM and PFX."""
    return make_certificate(tmp_path_factory.mktemp("certificate"))


def test_days_left_and_the_expiry_come_from_the_certificate(tmp_path: Path) -> None:
    """not_after is the certificate's own; days_left counts from the moment given."""
    loaded = load_certificate(make_certificate(tmp_path, days=30).pem, Secret(""))
    assert loaded.not_after.tzinfo is not None
    assert loaded.days_left(loaded.not_after - dt.timedelta(days=2)) == pytest.approx(2.0)
    assert 29 < loaded.days_left() <= 30


def test_thumbprints_are_the_digests_of_the_der_certificate(certificate: CertificateFiles) -> None:
    """sha1 and sha256 thumbprints are 20 and 32 bytes of the DER encoding's digest, as Azure AD computes them."""
    import hashlib

    loaded = load_certificate(certificate.pem, Secret(""))
    assert loaded.thumbprint("sha1") == hashlib.sha1(loaded.der).digest()
    assert len(loaded.thumbprint("sha256")) == 32


def test_the_private_key_is_registered_for_redaction(certificate: CertificateFiles) -> None:
    """Loading a PEM registers every long line of its private key: none survives redact()."""
    load_certificate(certificate.pem, Secret(""))
    text = "\n".join(certificate.key_lines)
    assert not any(line in redact(text) for line in certificate.key_lines if len(line) >= 16)


def test_the_key_is_left_out_of_the_repr(certificate: CertificateFiles) -> None:
    """repr() of a loaded certificate shows the path, never the key."""
    shown = repr(load_certificate(certificate.pem, Secret("")))
    assert "client.pem" in shown
    assert "key=" not in shown


def test_an_unreadable_file_is_a_configuration_error(tmp_path: Path) -> None:
    """A path that does not exist names the file and the reason, without a traceback."""
    with pytest.raises(ConfigError, match=r"cannot read the client certificate .*absent\.pem: No such file"):
        load_certificate(tmp_path / "absent.pem", Secret(""))


def test_pem_and_pfx_load_to_the_same_certificate(certificate: CertificateFiles) -> None:
    """A PEM holding certificate and key, and a password-protected PFX, give the same certificate and thumbprint."""
    pem = load_certificate(certificate.pem, Secret(""))
    pfx = load_certificate(certificate.pfx, Secret(certificate.password))
    assert pem.thumbprint("sha1") == pfx.thumbprint("sha1")
    assert pem.subject == "CN=reconcile-test"


def test_bad_certificate_files_are_configuration_errors_with_the_fix(
    certificate: CertificateFiles, tmp_path: Path
) -> None:
    """No key in the PEM, a wrong PFX password, a key that is not the certificate's: each says what to give."""
    only_cert = tmp_path / "cert-only.pem"
    only_cert.write_bytes(certificate.certificate_pem)
    with pytest.raises(ConfigError, match=r"holds no private key\. HINT: give a PEM file holding the certificate"):
        load_certificate(only_cert, Secret(""))
    with pytest.raises(ConfigError, match=r"cannot load the client certificate .*client\.pfx: wrong password"):
        load_certificate(certificate.pfx, Secret("not-the-password"))
    with pytest.raises(ConfigError, match="it is encrypted and CALLJOURNEY_CLIENT_CERTIFICATE_PASSWORD is not set"):
        load_certificate(certificate.pfx, Secret(""))
    other = make_certificate(tmp_path / "other")
    mixed = tmp_path / "mixed.pem"
    mixed.write_bytes(certificate.certificate_pem + other.pem.read_bytes().split(b"-----END CERTIFICATE-----\n")[1])
    with pytest.raises(ConfigError, match=r"no certificate in .* matches its private key"):
        load_certificate(mixed, Secret(""))
