"""`reconcile doctor`: each step against the emulator, a fake platform, closed ports, DNS and TLS problems."""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from click.testing import CliRunner

from reconcile.cli import cli
from reconcile.config import Secret
from reconcile.config._settings import Settings
from reconcile.emulator import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TENANT_ID, Dataset, Emulator, EmulatorConfig
from reconcile.emulator.tokens import TokenBook
from reconcile.errors import UsageError
from reconcile.ops._doctor import Check, can_print_unicode, diagnose, exit_code, parse_probe, render
from tests.conftest import settings_for

STEPS = ["settings", "authority", "token", "api"]


def settings_at(url: str) -> Settings:
    """Demo credentials (with a made-up secret) for a token endpoint and API both at ``url``."""
    return Settings(
        tenant_id=DEMO_TENANT_ID,
        client_id=DEMO_CLIENT_ID,
        client_secret=Secret("s3cret-x"),
        authority=url,
        base_url=url,
    )


@pytest.fixture
def issued(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every token the in-process emulator issues."""
    tokens: list[str] = []
    original = TokenBook.issue

    def spy(self: TokenBook, **kwargs: Any) -> str:
        token = original(self, **kwargs)
        tokens.append(token)
        return token

    monkeypatch.setattr(TokenBook, "issue", spy)
    return tokens


def by_step(checks: list[Check]) -> dict[str, Check]:
    return {c.step: c for c in checks}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_good_configuration_passes_and_shows_claims_not_the_token(emulator: Emulator, issued: list[str]) -> None:
    """Every step passes; the token step shows audience, app id, roles, tenant and expiry; the token is not shown."""
    checks = await diagnose(lambda: settings_for(emulator))
    assert [c.step for c in checks] == STEPS
    assert [c.status for c in checks] == ["pass"] * 4
    assert exit_code(checks) == 0
    token = by_step(checks)["token"]
    shown = "\n".join(token.details)
    for text in (
        f"audience  api://{DEMO_CLIENT_ID}",
        f"app id    {DEMO_CLIENT_ID}",
        "roles     Conversation.Read",
        f"tenant    {DEMO_TENANT_ID}",
        "(in 60 min)",
    ):
        assert text in shown, shown
    output = render(checks)
    assert issued
    assert not [t for t in issued if t in output or t.split(".")[2] in output]
    assert DEMO_CLIENT_SECRET not in output
    assert "✓ API path" in output
    assert output.endswith("all checks passed")


async def test_wrong_secret_fails_at_the_token_step_with_the_aadsts_code(emulator: Emulator) -> None:
    """A wrong secret: ✗ at the token step naming invalid_client and AADSTS7000215, the fix, later steps skipped."""
    secret = "Wr0ng~secret/value"
    checks = await diagnose(lambda: settings_for(emulator, client_secret=Secret(secret)))
    steps = by_step(checks)
    assert [steps[s].status for s in STEPS] == ["pass", "pass", "fail", "skip"]
    token = steps["token"]
    assert "invalid_client" in token.summary
    assert "AADSTS7000215" in token.summary
    assert any(d.startswith("correlation id ") for d in token.details)
    assert "Secret ID" in token.fix
    assert exit_code(checks) == 4
    output = render(checks)
    assert "✗ Token" in output
    assert secret not in output


async def test_wrong_path_fails_with_the_path_that_answers(emulator: Emulator) -> None:
    """404 at the configured path: ✗ at the API step; the fix names the guide's other path, which answers."""
    checks = await diagnose(lambda: settings_for(emulator, endpoint_path="/api/v1/search/callexists"))
    api = by_step(checks)["api"]
    assert api.status == "fail"
    assert "404" in api.summary
    assert "--endpoint-path /api/v1/search/conversationexists" in api.fix
    assert exit_code(checks) == 4


async def test_wrong_path_without_an_alternative_gives_the_guides_hint(make_emulator: Any) -> None:
    """When neither documented path answers, the fix explains the guide's callexists/conversationexists mix-up."""
    async with make_emulator(EmulatorConfig(endpoint_path="/elsewhere")) as emulator:
        checks = await diagnose(lambda: settings_for(emulator))
    api = by_step(checks)["api"]
    assert api.status == "fail"
    assert "callexists" in api.fix
    assert "conversationexists" in api.fix


async def test_closed_port_is_connection_refused(tmp_path: Path) -> None:
    """An authority on a port nobody listens on: ✗ refused, with the fix; token and API skipped."""
    settings = settings_at(f"http://127.0.0.1:{closed_port()}")
    checks = await diagnose(lambda: settings)
    steps = by_step(checks)
    assert steps["authority"].status == "fail"
    assert "refused" in steps["authority"].summary
    assert "port" in steps["authority"].fix
    assert steps["token"].status == steps["api"].status == "skip"


async def test_unresolvable_authority_is_a_dns_problem() -> None:
    """A host name that does not resolve: ✗ naming DNS, with the nslookup hint."""
    settings = Settings(
        tenant_id=DEMO_TENANT_ID,
        client_id=DEMO_CLIENT_ID,
        client_secret=Secret("s3cret-x"),
        authority="https://login.nonexistent.invalid",
    )
    authority = by_step(await diagnose(lambda: settings))["authority"]
    assert authority.status == "fail"
    assert "DNS" in authority.summary
    assert "nslookup login.nonexistent.invalid" in authority.fix


async def test_tls_with_the_ca_bundle_passes(server_ssl: ssl.SSLContext, ca_bundle: Path) -> None:
    """HTTPS with a private CA given as --ca-bundle: every step passes and the TLS session is described."""
    async with Emulator(EmulatorConfig(), ssl_context=server_ssl) as emulator:
        checks = await diagnose(lambda: settings_for(emulator, ca_bundle=ca_bundle))
    assert [c.status for c in checks] == ["pass"] * 4
    authority = by_step(checks)["authority"]
    assert any("certificate verified" in d and "TLSv1" in d for d in authority.details), authority.details


async def test_tls_without_the_ca_bundle_names_the_certificate_problem(server_ssl: ssl.SSLContext) -> None:
    """HTTPS signed by an unknown CA: ✗ 'not trusted' with the verification error and the --ca-bundle fix."""
    async with Emulator(EmulatorConfig(), ssl_context=server_ssl) as emulator:
        checks = await diagnose(lambda: settings_for(emulator))
    authority = by_step(checks)["authority"]
    assert authority.status == "fail"
    assert "not trusted" in authority.summary
    assert "issuer" in authority.summary or "self-signed" in authority.summary
    assert "--ca-bundle" in authority.fix
    assert by_step(checks)["token"].status == "skip"


async def test_probe_row_shows_exists_and_call_id(emulator: Emulator) -> None:
    """--probe of a known recording shows its callId; of an unknown one, that it would be missing."""
    key = next(iter(Dataset.demo()))
    present = by_step(await diagnose(lambda: settings_for(emulator), probe=key))["probe"]
    assert present.status == "pass"
    assert f"callId {emulator.dataset.lookup(key)}" in present.summary
    absent = by_step(await diagnose(lambda: settings_for(emulator), probe=(*key[:3], "nope.mp3")))["probe"]
    assert absent.status == "pass"
    assert "does not exist" in absent.summary


def test_parse_probe_keeps_slashes_in_the_folder() -> None:
    """company/organisation/folder/filename, the folder may hold slashes; fewer than four parts is a usage error."""
    assert parse_probe("acme/acme-ca/2026/11/25/inbound/a.mp3") == ("acme", "acme-ca", "2026/11/25/inbound", "a.mp3")
    with pytest.raises(UsageError, match="HINT"):
        parse_probe("acme/a.mp3")


async def test_missing_settings_fail_first_and_skip_the_rest() -> None:
    """No credentials at all: ✗ settings naming what is missing; nothing is contacted."""
    checks = await diagnose(lambda: Settings.load({}, environ={}, dotenv=None))
    assert [c.status for c in checks] == ["fail", "skip", "skip", "skip"]
    assert any("CALLJOURNEY_TENANT_ID" in d for d in checks[0].details)
    assert exit_code(checks) == 4


async def test_non_guid_tenant_warns_but_passes(make_emulator: Any) -> None:
    """A tenant given as a domain name is a warning, not a failure: exit 0."""
    async with make_emulator(EmulatorConfig(tenant_id="contoso.onmicrosoft.com")) as emulator:
        checks = await diagnose(lambda: settings_for(emulator, tenant_id="contoso.onmicrosoft.com"))
    assert checks[0].status == "warn"
    assert "not a GUID" in checks[0].warnings[0]
    assert exit_code(checks) == 0


@asynccontextmanager
async def fake_platform(api_status: int) -> AsyncIterator[str]:
    """An identity provider issuing an opaque token, and an API answering ``api_status``."""

    async def token(request: web.Request) -> web.Response:
        return web.json_response({"token_type": "Bearer", "expires_in": 3599, "access_token": "opaque-abc123xyz"})

    async def api(request: web.Request) -> web.Response:
        return web.json_response({"message": "Forbidden: missing role"}, status=api_status)

    app = web.Application()
    app.router.add_post("/{tenant}/oauth2/v2.0/token", token)
    app.router.add_post("/api/v1/search/conversationexists", api)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("status", [401, 403])
async def test_refused_token_at_the_api_points_at_permissions(status: int) -> None:
    """An opaque token is said to be opaque; a 401/403 from the API is about the app's permissions."""
    async with fake_platform(status) as url:
        settings = settings_at(url)
        checks = await diagnose(lambda: settings)
    steps = by_step(checks)
    assert steps["token"].status == "pass"
    assert "opaque" in steps["token"].summary
    assert steps["api"].status == "fail"
    assert str(status) in steps["api"].summary
    assert "permission" in steps["api"].fix
    assert "opaque-abc123xyz" not in render(checks)


def test_ascii_fallback_for_terminals_without_unicode() -> None:
    """On a terminal that cannot show ✓/✗ the marks are OK/WARN/FAIL/SKIP and the text is plain ASCII."""
    checks = [
        Check("settings", "warn", "present", warnings=("tenant id is not a GUID",)),
        Check("authority", "fail", "refused", fix="start it"),
        Check("token", "skip", "skipped"),
    ]
    text = render(checks, unicode=False)
    assert text.isascii()
    assert text.splitlines()[0].startswith("WARN")
    assert "FAIL Authority: refused" in text
    assert "fix: start it" in text
    assert "SKIP" in text
    assert not can_print_unicode("ascii")
    assert not can_print_unicode("latin-1")
    assert can_print_unicode("utf-8")


# -- the CLI ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_doctor_exit_codes(env: dict[str, str]) -> None:
    """`reconcile doctor` exits 0 with ✓ marks when all is well, 4 with ✗ and the fix when the secret is wrong."""
    good = CliRunner().invoke(cli, ["doctor", "--probe", "acme/acme-ca/2026/11/25/inbound/x.mp3"], env=env)
    assert good.exit_code == 0, good.output
    assert good.stdout.count("✓") == 5
    bad = CliRunner().invoke(cli, ["doctor"], env={**env, "CALLJOURNEY_CLIENT_SECRET": "Bad~secret-1"})
    assert bad.exit_code == 4, bad.output
    assert "✗ Token: Azure AD refused the credentials: invalid_client (AADSTS7000215)" in bad.stdout
    assert "Bad~secret-1" not in bad.output
    usage = CliRunner().invoke(cli, ["doctor", "--probe", "only/two"], env=env)
    assert usage.exit_code == 2
    assert "--probe" in usage.stderr


@pytest.mark.slow
def test_cli_doctor_reports_missing_settings_as_a_step(env: dict[str, str]) -> None:
    """Without a secret, doctor still runs: ✗ at the settings step naming the variable, exit 4."""
    result = CliRunner().invoke(cli, ["doctor"], env={**env, "CALLJOURNEY_CLIENT_SECRET": None})
    assert result.exit_code == 4, result.output
    assert "✗ Settings" in result.stdout
    assert "CALLJOURNEY_CLIENT_SECRET is not set" in result.stdout
