"""emulator/assertions: certificate assertions and federated tokens are checked as Entra ID checks them, and
refused with its AADSTS codes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from reconcile.config._certificates import load_certificate
from reconcile.config._settings import Secret
from reconcile.emulator import DEMO_CLIENT_ID
from reconcile.emulator.assertions import AssertionChecker, FederatedIssuer
from reconcile.platform._credentials import CertificateCredential
from tests.conftest import SERVICE_ACCOUNT_SUBJECT, CertificateFiles, TokenIssuer, make_certificate, make_token_issuer

TOKEN_URL = "https://login.example/tenant/oauth2/v2.0/token"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    """A certificate registered on the emulated app."""
    return make_certificate(tmp_path_factory.mktemp("registered"))


@pytest.fixture(scope="module")
def issuer() -> TokenIssuer:
    """A service-account token issuer the app trusts."""
    return make_token_issuer()


def credential(files: CertificateFiles, alg: str = "PS256", issued: float | None = None) -> CertificateCredential:
    at = time.time() if issued is None else issued
    return CertificateCredential(load_certificate(files.pem, Secret("")), DEMO_CLIENT_ID, alg, clock=lambda: at)


def checker(certificate: CertificateFiles, issuer: TokenIssuer) -> AssertionChecker:
    federated = FederatedIssuer(issuer.issuer, SERVICE_ACCOUNT_SUBJECT, issuer.public_key_pem)
    return AssertionChecker(DEMO_CLIENT_ID, (certificate.certificate_pem,), (federated,))


@pytest.mark.parametrize("alg", ["PS256", "RS256"])
def test_a_registered_certificates_assertion_is_accepted_once(
    certificate: CertificateFiles, issuer: TokenIssuer, alg: str
) -> None:
    """A fresh assertion signed by a registered certificate passes (by x5t#S256 or x5t); its replay is refused."""
    check = checker(certificate, issuer)
    assertion = credential(certificate, alg).assertion(TOKEN_URL)
    assert check.check(assertion, TOKEN_URL) is None
    assert check.last_kind == "certificate"
    refusal = check.check(assertion, TOKEN_URL)
    assert refusal is not None
    assert (refusal.code, "already used" in refusal.message) == (700027, True)


def test_bad_certificate_assertions_get_their_aadsts_codes(
    certificate: CertificateFiles, issuer: TokenIssuer, tmp_path: Path
) -> None:
    """An unknown certificate and another audience are 700027; an expired assertion is 700024; not a JWT, 700027."""
    check = checker(certificate, issuer)
    stranger = credential(make_certificate(tmp_path)).assertion(TOKEN_URL)
    expired = credential(certificate, issued=time.time() - 3600).assertion(TOKEN_URL)
    elsewhere = credential(certificate).assertion("https://login.example/other/token")
    refusals = [check.check(a, TOKEN_URL) for a in (stranger, expired, elsewhere, "not-a-jwt")]
    assert [r.code if r else None for r in refusals] == [700027, 700024, 700027, 700027]
    assert refusals[0] is not None
    assert "is not registered on application" in refusals[0].message


def test_federated_tokens_must_match_a_federated_credential(certificate: CertificateFiles, issuer: TokenIssuer) -> None:
    """The trusted issuer's token for the right subject passes; another subject or an unknown issuer is 70021."""
    check = checker(certificate, issuer)
    assert check.check(issuer.mint(), TOKEN_URL) is None
    assert check.last_kind == "federated"
    other_subject = check.check(issuer.mint("system:serviceaccount:other:other"), TOKEN_URL)
    unknown = check.check(make_token_issuer("https://issuer.example/").mint(), TOKEN_URL)
    assert [r.code if r else None for r in (other_subject, unknown)] == [70021, 70021]
    expired = check.check(issuer.mint(lifetime=60, issued=time.time() - 3600), TOKEN_URL)
    assert expired is not None
    assert expired.code == 700024
