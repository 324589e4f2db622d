"""Credentials beyond a secret: certificate assertions and federated tokens, against the emulator's verifying
identity provider, with real certificates (cryptography) and signed JWTs (PyJWT); exactly one credential kind;
nothing secret in any output."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from click.testing import Result
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

import reconcile
from reconcile.config import Secret
from reconcile.config._settings import Settings
from reconcile.emulator import DEMO_CLIENT_ID, DEMO_TENANT_ID, Dataset, Emulator, EmulatorConfig, FederatedIssuer
from reconcile.errors import CredentialConflict, TokenError
from reconcile.ops._doctor import diagnose, render
from reconcile.platform._client import PlatformClient
from reconcile.platform._credentials import (
    ASSERTION_TYPE,
    CertificateCredential,
    FederatedCredential,
    credential_for,
    load_certificate,
)
from tests.conftest import (
    SERVICE_ACCOUNT_ISSUER,
    SERVICE_ACCOUNT_SUBJECT,
    CertificateFiles,
    TokenIssuer,
    cli_env,
    emulator_process,
    make_certificate,
    make_token_issuer,
    settings_for,
    write_manifest,
)
from tests.conftest import (
    invoke_cli as invoke,
)

PRESENT = list(Dataset.demo())[:3]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    """A certificate registered on the emulated app."""
    return make_certificate(tmp_path_factory.mktemp("certificate"))


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    """A certificate the app does not know."""
    return make_certificate(tmp_path_factory.mktemp("stranger"))


@pytest.fixture(scope="module")
def issuer() -> TokenIssuer:
    """The cluster's service-account token issuer, trusted by the app's federated credential."""
    return make_token_issuer()


def config_for(certificate: CertificateFiles, issuer: TokenIssuer) -> EmulatorConfig:
    federated = FederatedIssuer(issuer.issuer, SERVICE_ACCOUNT_SUBJECT, issuer.public_key_pem)
    return EmulatorConfig(certificates=(certificate.certificate_pem,), federated=(federated,))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# -- the assertion -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("alg", "thumbprint", "digest"), [("PS256", "x5t#S256", "sha256"), ("RS256", "x5t", "sha1")])
def test_the_assertion_is_built_as_microsoft_documents_it(
    alg: str, thumbprint: str, digest: str, certificate: CertificateFiles
) -> None:
    """Header: alg and the DER certificate's thumbprint; aud = token URL, iss = sub = client id, jti, nbf/exp 600 s."""
    loaded = load_certificate(certificate.pem, Secret(""))
    credential = CertificateCredential(loaded, DEMO_CLIENT_ID, alg, clock=lambda: 1_800_000_000.0)
    url = f"https://login.microsoftonline.com/{DEMO_TENANT_ID}/oauth2/v2.0/token"
    form = credential.form(url)
    assert form["client_assertion_type"] == ASSERTION_TYPE
    header = jwt.get_unverified_header(form["client_assertion"])
    der = x509.load_pem_x509_certificate(certificate.certificate_pem).public_bytes(Encoding.DER)
    assert header["alg"] == alg
    assert header[thumbprint] == b64(hashlib.new(digest, der).digest())
    public = x509.load_pem_x509_certificate(certificate.certificate_pem).public_key()
    claims = jwt.decode(
        form["client_assertion"],
        public,
        algorithms=[alg],
        audience=url,
        options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
    )
    assert (claims["iss"], claims["sub"], claims["nbf"], claims["exp"]) == (
        DEMO_CLIENT_ID,
        DEMO_CLIENT_ID,
        1_800_000_000,
        1_800_000_600,
    )
    assert uuid.UUID(claims["jti"])
    assert credential.form(url)["client_assertion"] != form["client_assertion"]  # a fresh jti every time


# -- against the verifying identity provider ---------------------------------------------------------------------


async def test_a_run_authenticates_with_a_certificate(
    certificate: CertificateFiles, issuer: TokenIssuer, tmp_path: Path
) -> None:
    """PEM certificate: the emulator verifies the assertion and issues a token; every row is checked."""
    manifest = write_manifest(tmp_path / "m.csv", PRESENT)
    async with Emulator(config_for(certificate, issuer)) as emulator:
        settings = settings_for(emulator, client_secret=Secret(""), client_certificate=certificate.pem)
        summary = await reconcile.run([manifest], tmp_path / "out", settings=settings)
        assert emulator.stats.tokens_by_credential == {"certificate": 1}
    assert summary.counts["present"] == len(PRESENT)
    assert summary.summary.to_dict()["credential"] == "certificate"


async def test_every_token_request_carries_a_fresh_assertion(
    certificate: CertificateFiles, issuer: TokenIssuer
) -> None:
    """Two token requests are both accepted: the emulator refuses a replayed jti, so the second assertion is new."""
    async with Emulator(config_for(certificate, issuer)) as emulator:
        settings = settings_for(
            emulator,
            client_secret=Secret(""),
            client_certificate=certificate.pfx,
            client_certificate_password=Secret(certificate.password),
            assertion_alg="RS256",
        )
        async with PlatformClient(settings) as client:
            first = await client.tokens.token()
            client.tokens.invalidate(first)
            second = await client.tokens.token()
        assert first.value != second.value
        assert emulator.stats.tokens_by_credential == {"certificate": 2}


async def post_assertion(emulator: Emulator, assertion: str) -> dict[str, Any]:
    """A raw token request with ``assertion``; the emulator's JSON answer."""
    form = {
        "client_id": DEMO_CLIENT_ID,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
        "scope": f"api://{DEMO_CLIENT_ID}/.default",
        "grant_type": "client_credentials",
    }
    async with aiohttp.ClientSession() as session, session.post(emulator.token_url, data=form) as response:
        answer: dict[str, Any] = await response.json()
        return answer


def codes(answer: dict[str, Any]) -> tuple[str, list[int]]:
    return answer.get("error", ""), answer.get("error_codes", [])


@pytest.mark.slow
async def test_the_identity_provider_refuses_bad_assertions_with_azure_ad_errors(
    certificate: CertificateFiles, stranger: CertificateFiles, issuer: TokenIssuer
) -> None:
    """Unknown certificate, forged signature, wrong audience → 700027; expired → 700024; a replayed jti → 700027."""
    good = CertificateCredential(load_certificate(certificate.pem, Secret("")), DEMO_CLIENT_ID)
    unknown = CertificateCredential(load_certificate(stranger.pem, Secret("")), DEMO_CLIENT_ID)
    async with Emulator(config_for(certificate, issuer)) as emulator:
        url = emulator.token_url
        assert codes(await post_assertion(emulator, unknown.assertion(url))) == ("invalid_client", [700027])
        header, payload, _ = good.assertion(url).split(".")
        forged = f"{header}.{payload}.{unknown.assertion(url).split('.')[2]}"
        assert codes(await post_assertion(emulator, forged)) == ("invalid_client", [700027])
        assert codes(await post_assertion(emulator, good.assertion("https://elsewhere/t/oauth2/v2.0/token")))[1] == [
            700027
        ]
        expired = CertificateCredential(good.certificate, DEMO_CLIENT_ID, clock=lambda: 1_700_000_000.0)
        answer = await post_assertion(emulator, expired.assertion(url))
        assert codes(answer) == ("invalid_client", [700024])
        assert "valid time range" in answer["error_description"]
        once = good.assertion(url)
        assert "access_token" in await post_assertion(emulator, once)
        replay = await post_assertion(emulator, once)
        assert codes(replay) == ("invalid_client", [700027])
        assert "already used" in replay["error_description"]


@pytest.mark.slow
async def test_an_unregistered_certificate_stops_the_run_with_the_fix(
    stranger: CertificateFiles, certificate: CertificateFiles, issuer: TokenIssuer, tmp_path: Path
) -> None:
    """AADSTS700027: exit 4, the code and the fix (upload the certificate) named; no row is an error."""
    manifest = write_manifest(tmp_path / "m.csv", PRESENT)
    async with Emulator(config_for(certificate, issuer)) as emulator:
        settings = settings_for(emulator, client_secret=Secret(""), client_certificate=stranger.pem)
        summary = await reconcile.run([manifest], tmp_path / "out", settings=settings)
    assert summary.exit_code == 4
    message = summary.summary.to_dict()["error"]["message"]
    assert "error_codes=700027" in message
    assert "HINT: the app does not accept this certificate's assertion: upload the certificate" in message
    assert (summary.counts["error"], summary.counts["unchecked"]) == (0, len(PRESENT))


async def test_a_run_authenticates_with_a_federated_token_reread_every_time(
    certificate: CertificateFiles, issuer: TokenIssuer, tmp_path: Path
) -> None:
    """The file's token is the assertion, read anew for every token request: a rotated token is the one sent."""
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text(issuer.mint(), encoding="utf-8")
    async with Emulator(config_for(certificate, issuer)) as emulator:
        settings = settings_for(emulator, client_secret=Secret(""), federated_token_file=token_file)
        async with PlatformClient(settings) as client:
            first = await client.tokens.token()
            token_file.write_text(issuer.mint(subject="system:serviceaccount:other:other"), encoding="utf-8")
            client.tokens.invalidate(first)
            with pytest.raises(TokenError, match="error_codes=70021") as refused:
                await client.tokens.token()
        assert emulator.stats.tokens_by_credential == {"federated": 1}
    assert "HINT: no federated credential of the app matches the token's issuer and subject" in str(refused.value)
    manifest = write_manifest(tmp_path / "m.csv", PRESENT)
    token_file.write_text(issuer.mint(), encoding="utf-8")
    async with Emulator(config_for(certificate, issuer)) as emulator:
        summary = await reconcile.run(
            [manifest],
            tmp_path / "out",
            settings=settings_for(emulator, client_secret=Secret(""), federated_token_file=token_file),
        )
    assert summary.counts["present"] == len(PRESENT)


@pytest.mark.parametrize(
    ("mint", "code"),
    [
        (lambda issuer: issuer.mint(issued=1_700_000_000), 700024),  # the kubelet stopped refreshing it
        (lambda issuer: make_token_issuer(issuer.issuer).mint(), 700027),  # signed by another key
        (lambda issuer: make_token_issuer("https://other-cluster.example/").mint(), 70021),  # an unknown issuer
        (lambda issuer: issuer.mint(audience="api://something-else"), 70021),  # not for token exchange
    ],
)
async def test_bad_federated_tokens_get_azure_ad_errors(
    mint: Any, code: int, certificate: CertificateFiles, issuer: TokenIssuer
) -> None:
    """Expired → 700024, forged → 700027, another issuer or audience → 70021 (no matching federated credential)."""
    async with Emulator(config_for(certificate, issuer)) as emulator:
        assert codes(await post_assertion(emulator, mint(issuer))) == ("invalid_client", [code])


# -- configuration -----------------------------------------------------------------------------------------------


def test_workload_identity_variables_configure_the_federated_credential(tmp_path: Path) -> None:
    """What the AKS webhook injects is enough: AZURE_FEDERATED_TOKEN_FILE, AZURE_CLIENT_ID/TENANT_ID/AUTHORITY_HOST."""
    token_file = tmp_path / "token"
    token_file.write_text("x.y.z", encoding="utf-8")
    azure = {
        "AZURE_FEDERATED_TOKEN_FILE": str(token_file),
        "AZURE_CLIENT_ID": "azure-client",
        "AZURE_TENANT_ID": "azure-tenant",
        "AZURE_AUTHORITY_HOST": "https://login.microsoftonline.us/",
    }
    settings = Settings.load({}, environ=azure, dotenv=None)
    assert (settings.credential_kind, settings.federated_token_file) == ("federated", token_file)
    assert settings.token_url == "https://login.microsoftonline.us/azure-tenant/oauth2/v2.0/token"
    assert settings.client_id == "azure-client"
    assert isinstance(credential_for(settings), FederatedCredential)
    ours = Settings.load({}, environ={**azure, "CALLJOURNEY_CLIENT_ID": "ours"}, dotenv=None)
    assert ours.client_id == "ours"  # CALLJOURNEY_ wins over AZURE_
    with_secret = {"CALLJOURNEY_TENANT_ID": "t", "CALLJOURNEY_CLIENT_ID": "c", "CALLJOURNEY_CLIENT_SECRET": "s3cret!"}
    plain = Settings.load({}, environ={**with_secret, "AZURE_CLIENT_ID": "azure-client"}, dotenv=None)
    assert plain.client_id == "c"


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"CALLJOURNEY_CLIENT_CERTIFICATE": "CERT"}, ("a client secret", "a client certificate")),
        ({"AZURE_FEDERATED_TOKEN_FILE": "TOKEN"}, ("a client secret", "a federated token file")),
    ],
)
def test_two_credential_kinds_are_a_usage_error_naming_both(
    extra: dict[str, str], named: tuple[str, str], certificate: CertificateFiles, tmp_path: Path
) -> None:
    """A secret and a certificate (or a federated token) at once: exit 2, both named, nothing guessed."""
    (tmp_path / "token").write_text("x.y.z", encoding="utf-8")
    values = {"CERT": str(certificate.pem), "TOKEN": str(tmp_path / "token")}
    environ = {
        "CALLJOURNEY_TENANT_ID": "t",
        "CALLJOURNEY_CLIENT_ID": "c",
        "CALLJOURNEY_CLIENT_SECRET": "s3cret!",
        **{k: values[v] for k, v in extra.items()},
    }
    with pytest.raises(CredentialConflict) as conflict:
        Settings.load({}, environ=environ, dotenv=None)
    assert conflict.value.exit_code == 2
    assert all(name in str(conflict.value) for name in named)
    assert "HINT: configure exactly one" in str(conflict.value)


@pytest.fixture(scope="module")
def identity_url(
    certificate: CertificateFiles, issuer: TokenIssuer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """`reconcile emulator` accepting the certificate and the federated credential, in a subprocess."""
    key = tmp_path_factory.mktemp("issuer") / "issuer.pem"
    key.write_bytes(issuer.public_key_pem)
    args = (
        "--client-certificate",
        str(certificate.pem),
        "--federated-credential",
        issuer.issuer,
        SERVICE_ACCOUNT_SUBJECT,
        str(key),
    )
    with emulator_process(*args) as url:
        yield url


def without_secret(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != "CALLJOURNEY_CLIENT_SECRET"}


def everything_written(result: Result, directory: Path) -> str:
    """stdout, stderr and every file the run wrote (reports, summary, log file)."""
    files = [
        p for p in directory.rglob("*") if p.is_file() and p.suffix in {".csv", ".json", ".log", ".html", ".jsonl"}
    ]
    return "\n".join([result.output, *(p.read_text(encoding="utf-8", errors="replace") for p in files)])


@pytest.mark.slow
def test_the_cli_conflict_exits_2_naming_both(
    certificate: CertificateFiles, identity_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`reconcile run` with a secret in the environment and --client-certificate: exit 2, both named."""
    env = cli_env(identity_url, tmp_path, monkeypatch)
    write_manifest(tmp_path / "m.csv", PRESENT)
    result = invoke(["run", "m.csv", "--out", "out", "--client-certificate", str(certificate.pem)], env)
    assert result.exit_code == 2, result.output
    assert "a client secret (CALLJOURNEY_CLIENT_SECRET" in result.output
    assert "a client certificate (--client-certificate" in result.output


@pytest.mark.slow
def test_a_pfx_run_writes_no_key_password_or_assertion_anywhere(
    certificate: CertificateFiles, identity_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PFX + password through the CLI at -vv with a log file: no key line, password or JWT in any output."""
    env = {
        **without_secret(cli_env(identity_url, tmp_path, monkeypatch)),
        "CALLJOURNEY_CLIENT_CERTIFICATE": str(certificate.pfx),
        "CALLJOURNEY_CLIENT_CERTIFICATE_PASSWORD": certificate.password,
    }
    write_manifest(tmp_path / "m.csv", PRESENT)
    result = invoke(["run", "m.csv", "--out", "out", "-vv", "--log-file", "run.log", "--format", "csv,json"], env)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))["credential"] == "certificate"
    written = everything_written(result, tmp_path)
    assert "token issued" in (tmp_path / "run.log").read_text(encoding="utf-8")
    assert certificate.password not in written
    assert not [line for line in certificate.key_lines if line in written]
    assert "eyJ" not in written  # neither an assertion nor an access token, nor any JWT


@pytest.mark.slow
def test_a_federated_run_through_the_cli_writes_no_token(
    issuer: TokenIssuer, identity_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AZURE_FEDERATED_TOKEN_FILE as AKS sets it: the run passes and the token is in no output."""
    token = issuer.mint()
    (tmp_path / "token").write_text(token, encoding="utf-8")
    env = {
        **without_secret(cli_env(identity_url, tmp_path, monkeypatch)),
        "AZURE_FEDERATED_TOKEN_FILE": str(tmp_path / "token"),
    }
    write_manifest(tmp_path / "m.csv", PRESENT)
    result = invoke(["run", "m.csv", "--out", "out", "-vv", "--log-file", "run.log"], env)
    assert result.exit_code == 0, result.output
    written = everything_written(result, tmp_path)
    assert token.split(".")[2] not in written.replace((tmp_path / "token").read_text(encoding="utf-8"), "")
    assert "eyJ" not in written


@pytest.mark.slow
def test_secrets_stay_out_of_reprs(certificate: CertificateFiles, tmp_path: Path) -> None:
    """repr of the settings, the certificate, the credential and the token provider shows no key or password."""
    settings = Settings(
        tenant_id="t",
        client_id="c",
        client_certificate=certificate.pfx,
        client_certificate_password=Secret(certificate.password),
    )
    credential = credential_for(settings)
    assert isinstance(credential, CertificateCredential)
    from reconcile.platform._auth import TokenProvider

    texts = [repr(settings), repr(credential), repr(credential.certificate), repr(TokenProvider(settings, None))]  # type: ignore[arg-type]
    joined = "\n".join(texts)
    assert certificate.password not in joined
    assert not [line for line in certificate.key_lines if line in joined]
    assert "credential=certificate" in texts[3]


# -- doctor ------------------------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_doctor_shows_the_certificate_and_warns_before_it_expires(issuer: TokenIssuer, tmp_path: Path) -> None:
    """Thumbprint, subject and expiry are shown; under 30 days left is a warning, and every step still runs."""
    soon = make_certificate(tmp_path, days=10)
    async with Emulator(config_for(soon, issuer)) as emulator:
        checks = await diagnose(lambda: settings_for(emulator, client_secret=Secret(""), client_certificate=soon.pem))
    text = render(checks)
    thumbprint = hashlib.sha1(
        x509.load_pem_x509_certificate(soon.certificate_pem).public_bytes(Encoding.DER)
    ).hexdigest()
    assert f"thumbprint   {thumbprint.upper()}" in text
    assert "subject      CN=reconcile-test" in text
    assert [c.status for c in checks] == ["warn", "pass", "pass", "pass"], text
    assert checks[0].warnings[0].startswith("the client certificate expires in 10 days")


@pytest.mark.slow
async def test_doctor_fails_an_expired_certificate(issuer: TokenIssuer, tmp_path: Path) -> None:
    """An expired certificate fails the settings step, with the fix (create and upload a new one)."""
    old = make_certificate(tmp_path, days=-1)
    async with Emulator(config_for(old, issuer)) as emulator:
        checks = await diagnose(lambda: settings_for(emulator, client_secret=Secret(""), client_certificate=old.pem))
    assert checks[0].status == "fail"
    assert checks[0].fix.startswith("the certificate expired on ")
    assert [c.status for c in checks[1:]] == ["skip"] * 3


async def test_doctor_names_the_federated_fix(
    issuer: TokenIssuer, certificate: CertificateFiles, tmp_path: Path
) -> None:
    """A federated token that matches no federated credential: the token step names AADSTS70021 and the fix."""
    (tmp_path / "token").write_text(issuer.mint(subject="system:serviceaccount:x:y"), encoding="utf-8")
    async with Emulator(config_for(certificate, issuer)) as emulator:
        checks = await diagnose(
            lambda: settings_for(emulator, client_secret=Secret(""), federated_token_file=tmp_path / "token")
        )
    token = checks[2]
    assert token.status == "fail"
    assert "AADSTS70021" in token.summary
    assert token.fix.startswith("no federated credential of the app matches")
    assert f"credential     federated token file {tmp_path / 'token'} (read for every token)" in checks[0].details
    assert f"  issuer       {SERVICE_ACCOUNT_ISSUER}" in checks[0].details  # the claims, never the token
    assert "  subject      system:serviceaccount:x:y" in checks[0].details
    assert SERVICE_ACCOUNT_ISSUER in token.details[0]


async def test_doctor_fails_an_expired_federated_token(
    issuer: TokenIssuer, certificate: CertificateFiles, tmp_path: Path
) -> None:
    """A token file no longer refreshed: the settings step fails saying so, before any token request."""
    (tmp_path / "token").write_text(issuer.mint(issued=1_700_000_000), encoding="utf-8")
    async with Emulator(config_for(certificate, issuer)) as emulator:
        checks = await diagnose(
            lambda: settings_for(emulator, client_secret=Secret(""), federated_token_file=tmp_path / "token")
        )
        assert emulator.stats.token_requests == 0
    assert (checks[0].status, checks[0].summary) == ("fail", "the federated token cannot be used")
    assert checks[0].fix.startswith("the federated token expired at 2023-11-14T23:13:20Z")


async def test_doctor_fails_the_settings_step_naming_both_credentials(
    certificate: CertificateFiles, issuer: TokenIssuer
) -> None:
    """Two credential kinds at once: doctor's settings step fails naming both, with "configure exactly one"."""
    async with Emulator(config_for(certificate, issuer)) as emulator:
        checks = await diagnose(lambda: settings_for(emulator, client_certificate=certificate.pem))
    assert checks[0].status == "fail"
    assert checks[0].summary == "two kinds of credential are configured"
    assert "a client secret" in checks[0].details[0]
    assert "a client certificate" in checks[0].details[0]
    assert checks[0].fix.startswith("configure exactly one")
