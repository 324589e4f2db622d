"""Proxies and trust: a real forward proxy (proxy.py) on loopback, CONNECT tunnels to the TLS emulator with
verification on, NO_PROXY, refusing proxies, 407s, and the trust stores (SSL_CERT_FILE, truststore)."""

from __future__ import annotations

import json
import re
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from click.testing import Result

import reconcile
from reconcile.config._proxies import Proxies
from reconcile.config._redact import redact
from reconcile.config._settings import Settings
from reconcile.emulator import Dataset, Emulator, EmulatorConfig
from reconcile.errors import ConfigError, ProxyError
from reconcile.ops._doctor import diagnose, render
from reconcile.report._build import Report
from tests.conftest import (
    ForwardProxy,
    cli_env,
    closed_port,
    forward_proxy,
    read_results,
    settings_for,
    tls_emulator_process,
    write_manifest,
)
from tests.conftest import (
    invoke_cli as invoke,
)

PRESENT = list(Dataset.demo())[:3]
PROXY_PASSWORD = "pr0xy-pa55word"


# -- which proxy each URL takes ----------------------------------------------------------------------------------


def test_https_targets_take_https_proxy_and_http_targets_http_proxy() -> None:
    """HTTPS_PROXY is for https:// URLs, HTTP_PROXY for http:// ones; lower-case names win, as urllib reads them."""
    proxies = Proxies.from_environment(
        {"HTTPS_PROXY": "http://upper:3128", "https_proxy": "http://lower:3128", "HTTP_PROXY": "http://plain:8080"}
    )
    assert proxies.route("https://platform-ca.calljourney.com/x").url == "http://lower:3128"  # type: ignore[union-attr]
    assert proxies.route("http://127.0.0.1:8080/x").url == "http://plain:8080"  # type: ignore[union-attr]
    assert Proxies.from_environment({}).route("https://example.com") is None


def test_no_proxy_sends_named_hosts_direct_whatever_the_proxy() -> None:
    """NO_PROXY matches a host, its subdomains and host:port, and applies to an explicit proxy as well."""
    proxies = Proxies.from_environment(
        {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "calljourney.com, localhost:8443"}, explicit="http://mine:1"
    )
    assert proxies.route("https://platform-ca.calljourney.com/api") is None
    assert proxies.route("https://localhost:8443/") is None
    assert proxies.route("https://localhost:9443/").url == "http://mine:1"  # type: ignore[union-attr]
    assert proxies.route("https://login.microsoftonline.com/t").source == "--proxy (CALLJOURNEY_PROXY)"  # type: ignore[union-attr]
    assert Proxies.from_environment({"https_proxy": "http://p:1", "no_proxy": "*"}).route("https://a.b") is None


def test_proxy_credentials_are_split_off_and_never_shown() -> None:
    """user:password in a proxy URL becomes Basic credentials; repr, describe and redact never show the password."""
    proxies = Proxies.from_environment({"HTTPS_PROXY": f"http://alice:{PROXY_PASSWORD}@proxy.corp:3128"})
    route = proxies.route("https://platform-ca.calljourney.com")
    assert route is not None
    assert (route.url, route.username, route.password) == ("http://proxy.corp:3128", "alice", PROXY_PASSWORD)
    shown = [repr(proxies), repr(route), route.shown, proxies.describe("https://x.y")]
    assert not [text for text in shown if PROXY_PASSWORD in text]
    assert route.shown == "http://alice:[REDACTED]@proxy.corp:3128"
    assert PROXY_PASSWORD not in redact(
        f"failed via http://alice:{PROXY_PASSWORD}@proxy.corp:3128 and {PROXY_PASSWORD}"
    )
    assert "http://bob:[REDACTED]@elsewhere:1" in redact("http://bob:other-password@elsewhere:1")


def test_the_explicit_proxy_wins_and_a_scheme_less_one_is_http() -> None:
    """CALLJOURNEY_PROXY beats HTTPS_PROXY; "host:port" means http://host:port, as curl and pip read it."""
    environ = {
        "CALLJOURNEY_TENANT_ID": "t",
        "CALLJOURNEY_CLIENT_ID": "c",
        "CALLJOURNEY_CLIENT_SECRET": "s3cret-value",
        "HTTPS_PROXY": "http://env:3128",
        "CALLJOURNEY_PROXY": "proxy.corp:8080",
    }
    settings = Settings.load({}, environ=environ, dotenv=None)
    assert settings.proxy_for(settings.token_url).url == "http://proxy.corp:8080"  # type: ignore[union-attr]
    assert (
        Settings.load({"proxy": "http://flag:1"}, environ=environ, dotenv=None).proxy_for(settings.endpoint_url).url
        == "http://flag:1"
    )  # type: ignore[union-attr]


@pytest.mark.parametrize("url", ["https://proxy.corp:3128", "socks5://proxy.corp:1080"])
def test_a_proxy_that_is_not_http_is_a_configuration_error(url: str) -> None:
    """An https:// or SOCKS proxy URL is refused with the fix, instead of being silently ignored."""
    environ = {"CALLJOURNEY_TENANT_ID": "t", "CALLJOURNEY_CLIENT_ID": "c", "CALLJOURNEY_CLIENT_SECRET": "s3cret!"}
    with pytest.raises(ConfigError, match=r"not an http:// proxy URL\. HINT: write http://host:port"):
        Settings.load({"proxy": url}, environ=environ, dotenv=None)


# -- end to end through proxy.py ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def open_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForwardProxy]:
    """proxy.py without authentication."""
    with forward_proxy(tmp_path_factory.mktemp("open-proxy")) as running:
        yield running


@pytest.fixture(scope="module")
def auth_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForwardProxy]:
    """proxy.py that wants Basic credentials alice:PROXY_PASSWORD (answers 407 otherwise)."""
    with forward_proxy(tmp_path_factory.mktemp("auth-proxy"), "--basic-auth", f"alice:{PROXY_PASSWORD}") as running:
        yield running


@pytest.fixture(scope="module")
def tls_url(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The emulator over HTTPS (a trustme certificate for localhost), in a subprocess."""
    with tls_emulator_process(ca, tmp_path_factory.mktemp("tls-emulator")) as url:
        yield url


def fatal(summary: Report) -> str:
    """The message of the fatal error that stopped a run."""
    message: str = summary.summary.to_dict()["error"]["message"]
    return message


def tunnels_to(url: str) -> str:
    return "CONNECT " + url.removeprefix("https://")


@pytest.mark.slow
async def test_a_run_goes_through_the_proxy_in_a_verified_tls_tunnel(
    open_proxy: ForwardProxy, server_ssl: ssl.SSLContext, ca_bundle: Path, tmp_path: Path
) -> None:
    """HTTPS_PROXY: token and API requests go through CONNECT tunnels of the proxy, TLS verified against the CA."""
    manifest = write_manifest(tmp_path / "m.csv", PRESENT)
    async with Emulator(EmulatorConfig(), ssl_context=server_ssl) as emulator:
        settings = settings_for(emulator, ca_bundle=ca_bundle, proxies=Proxies(https=open_proxy.url))
        summary = await reconcile.run([manifest], tmp_path / "out", settings=settings)
        assert emulator.stats.token_requests == 1
    assert summary.counts["present"] == len(PRESENT)
    via = f"via {open_proxy.url} (from HTTPS_PROXY)"
    assert summary.summary.to_dict()["proxy"] == {"api": via, "identity_provider": via}
    open_proxy.wait_for(lambda lines: tunnels_to(emulator.base_url) in lines)


@pytest.mark.slow
async def test_tls_through_the_proxy_is_still_verified_end_to_end(
    open_proxy: ForwardProxy, server_ssl: ssl.SSLContext, tmp_path: Path
) -> None:
    """Without the CA, the platform's certificate is refused inside the tunnel: the proxy does not vouch for it."""
    manifest = write_manifest(tmp_path / "m.csv", PRESENT)
    async with Emulator(EmulatorConfig(), ssl_context=server_ssl) as emulator:
        settings = settings_for(emulator, proxies=Proxies(https=open_proxy.url))
        summary = await reconcile.run([manifest], tmp_path / "out", settings=settings)
        assert emulator.stats.token_requests == 0
    assert summary.exit_code == 4
    assert "is not trusted" in fatal(summary)


@pytest.mark.slow
def test_the_cli_honours_https_proxy(
    open_proxy: ForwardProxy, tls_url: str, ca_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`reconcile run` with HTTPS_PROXY set (as curl and pip read it) reaches the platform through the proxy."""
    env = {
        **cli_env(tls_url, tmp_path, monkeypatch),
        "HTTPS_PROXY": open_proxy.url,
        "CALLJOURNEY_CA_BUNDLE": str(ca_bundle),
    }
    write_manifest(tmp_path / "m.csv", PRESENT)
    result = invoke(["run", "m.csv", "--out", "out", "-q"], env)
    assert result.exit_code == 0, result.output
    open_proxy.wait_for(lambda lines: lines.count(tunnels_to(tls_url)) >= 1)


@pytest.mark.slow
def test_no_proxy_bypasses_the_proxy(
    open_proxy: ForwardProxy, tls_url: str, ca_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the platform's host in NO_PROXY the proxy sees no request at all (a later marker request proves it)."""
    env = {
        **cli_env(tls_url, tmp_path, monkeypatch),
        "HTTPS_PROXY": open_proxy.url,
        "NO_PROXY": "localhost",
        "CALLJOURNEY_CA_BUNDLE": str(ca_bundle),
    }
    write_manifest(tmp_path / "m.csv", PRESENT)
    before = len(open_proxy.requests())
    result = invoke(["run", "m.csv", "--out", "out", "-q"], env)
    assert result.exit_code == 0, result.output
    # A marker through the proxy: once it is logged, anything the run had sent would be logged before it.
    marker = "CONNECT 127.0.0.1:" + tls_url.rsplit(":", 1)[1]
    _connect(open_proxy, marker.removeprefix("CONNECT "))
    after = open_proxy.wait_for(lambda lines: marker in lines[before:])[before:]
    assert after == [marker]


def _connect(proxy: ForwardProxy, where: str) -> None:
    import socket

    host, port = proxy.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"CONNECT {where} HTTP/1.1\r\nHost: {where}\r\n\r\n".encode())
        assert sock.recv(100).startswith(b"HTTP/1.1 200")


def _outputs(result: Result, out: Path, *files: Path) -> str:
    texts = [result.output, *(p.read_text(encoding="utf-8") for p in out.glob("*") if p.suffix in {".csv", ".json"})]
    return "\n".join(texts + [f.read_text(encoding="utf-8") for f in files if f.exists()])


@pytest.mark.slow
def test_a_refusing_proxy_stops_the_run_naming_it_and_no_row_is_an_error(
    tls_url: str, ca_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing listens at the proxy: exit 4, the proxy named (its password redacted), every row unchecked."""
    proxy = f"http://alice:{PROXY_PASSWORD}@127.0.0.1:{closed_port()}"
    env = {**cli_env(tls_url, tmp_path, monkeypatch), "HTTPS_PROXY": proxy, "CALLJOURNEY_CA_BUNDLE": str(ca_bundle)}
    write_manifest(tmp_path / "m.csv", PRESENT)
    result = invoke(["run", "m.csv", "--out", "out", "-q", "-vv", "--log-file", "run.log"], env)
    assert result.exit_code == 4, result.output
    shown = proxy.replace(PROXY_PASSWORD, "[REDACTED]")
    assert f"cannot connect to the proxy {shown} (from HTTPS_PROXY)" in result.output
    assert "HINT: check the proxy's address and port in HTTPS_PROXY" in result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert summary["counts"]["error"] == 0
    assert summary["counts"]["unchecked"] == len(PRESENT)
    assert "cannot connect to the proxy" in summary["error"]["message"]
    assert {row["status"] for row in read_results(tmp_path / "out" / "results.csv")} == {"unchecked"}
    assert PROXY_PASSWORD not in _outputs(result, tmp_path / "out", tmp_path / "run.log")


@pytest.mark.slow
@pytest.mark.parametrize("credentials", ["", "alice:wrong-password@"])
def test_a_407_stops_the_run_asking_for_proxy_credentials(
    credentials: str,
    auth_proxy: ForwardProxy,
    tls_url: str,
    ca_bundle: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The proxy wants credentials (none, or wrong ones): exit 4, 407 and the fix named, no row an error."""
    proxy = auth_proxy.url.replace("://", f"://{credentials}")
    env = {**cli_env(tls_url, tmp_path, monkeypatch), "HTTPS_PROXY": proxy, "CALLJOURNEY_CA_BUNDLE": str(ca_bundle)}
    write_manifest(tmp_path / "m.csv", PRESENT)
    result = invoke(["run", "m.csv", "--out", "out", "-q"], env)
    assert result.exit_code == 4, result.output
    assert "refused the request to localhost" in result.output
    assert ": 407" in result.output
    assert (
        "HINT: the proxy wants credentials: give them in the proxy URL, http://USER:PASSWORD@host:port" in result.output
    )
    assert ("(the ones given were refused)" in result.output) == bool(credentials)
    assert "wrong-password" not in result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert (summary["counts"]["error"], summary["counts"]["unchecked"]) == (0, len(PRESENT))


@pytest.mark.slow
def test_proxy_credentials_in_the_url_are_sent_and_never_written(
    auth_proxy: ForwardProxy, tls_url: str, ca_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the right credentials the run passes; the password is in no output, log line, report or summary."""
    proxy = auth_proxy.url.replace("://", f"://alice:{PROXY_PASSWORD}@")
    env = {
        **cli_env(tls_url, tmp_path, monkeypatch),
        "CALLJOURNEY_PROXY": proxy,
        "CALLJOURNEY_CA_BUNDLE": str(ca_bundle),
    }
    write_manifest(tmp_path / "m.csv", PRESENT)
    result = invoke(["run", "m.csv", "--out", "out", "-vv", "--log-file", "run.log", "--log-format", "json"], env)
    assert result.exit_code == 0, result.output
    log = (tmp_path / "run.log").read_text(encoding="utf-8")
    assert "API: via http://alice:[REDACTED]@127.0.0.1" in log
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert summary["proxy"]["api"].startswith("via http://alice:[REDACTED]@127.0.0.1:")
    assert PROXY_PASSWORD not in _outputs(result, tmp_path / "out", tmp_path / "run.log")
    auth_proxy.wait_for(lambda lines: tunnels_to(tls_url) in lines)


@pytest.mark.slow
async def test_a_plain_http_loopback_target_goes_through_http_proxy(open_proxy: ForwardProxy, tmp_path: Path) -> None:
    """HTTP_PROXY carries plain-http (loopback) requests as absolute-URI requests, which the proxy forwards."""
    manifest = write_manifest(tmp_path / "m.csv", PRESENT)
    async with Emulator(EmulatorConfig()) as emulator:
        settings = settings_for(emulator, proxies=Proxies(http=open_proxy.url))
        summary = await reconcile.run([manifest], tmp_path / "out", settings=settings)
    assert summary.counts["present"] == len(PRESENT)
    api = "POST " + emulator.api_url.removeprefix("http://")
    open_proxy.wait_for(lambda lines: api in lines)


@pytest.mark.slow
async def test_a_407_for_a_plain_http_target_is_a_proxy_error_too(auth_proxy: ForwardProxy, tmp_path: Path) -> None:
    """Where the proxy answers 407 as an ordinary response (no tunnel), it is still fatal, never a row's error."""
    manifest = write_manifest(tmp_path / "m.csv", PRESENT)
    async with Emulator(EmulatorConfig()) as emulator:
        settings = settings_for(emulator, proxies=Proxies(http=auth_proxy.url))
        summary = await reconcile.run([manifest], tmp_path / "out", settings=settings)
    assert summary.exit_code == 4
    assert summary.summary.to_dict()["error"]["type"] == ProxyError.__name__
    assert re.search(r"refused the request to 127\.0\.0\.1:\d+: 407", fatal(summary))
    assert (summary.counts["error"], summary.counts["unchecked"]) == (0, len(PRESENT))


# -- doctor -----------------------------------------------------------------------------------------------------


def _settings_loader(url: str, ca_bundle: Path, **environ: str) -> Settings:
    from reconcile.emulator import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TENANT_ID

    env = {
        "CALLJOURNEY_TENANT_ID": DEMO_TENANT_ID,
        "CALLJOURNEY_CLIENT_ID": DEMO_CLIENT_ID,
        "CALLJOURNEY_CLIENT_SECRET": DEMO_CLIENT_SECRET,
        "CALLJOURNEY_BASE_URL": url,
        "CALLJOURNEY_AUTHORITY": url,
        "CALLJOURNEY_CA_BUNDLE": str(ca_bundle),
        **environ,
    }
    return Settings.load({}, environ=env, dotenv=None)


@pytest.mark.slow
async def test_doctor_shows_the_proxy_of_each_host_and_checks_connect_through_it(
    open_proxy: ForwardProxy, tls_url: str, ca_bundle: Path
) -> None:
    """Every step passes through the proxy; settings show it per host, the authority step the tunnel it opened."""
    checks = await diagnose(lambda: _settings_loader(tls_url, ca_bundle, HTTPS_PROXY=open_proxy.url))
    text = render(checks)
    assert [c.status for c in checks] == ["pass"] * 4, text
    assert f"proxy (token)  via {open_proxy.url} (from HTTPS_PROXY)" in text
    assert f"through the proxy {open_proxy.url} (from HTTPS_PROXY)" in checks[1].details[0]
    assert "certificate verified" in checks[1].details[1]


@pytest.mark.slow
async def test_doctor_says_direct_when_no_proxy_applies(tls_url: str, ca_bundle: Path) -> None:
    """No proxy configured, or the host in NO_PROXY: the settings and the reach step say "direct"."""
    checks = await diagnose(
        lambda: _settings_loader(tls_url, ca_bundle, HTTPS_PROXY="http://127.0.0.1:9", NO_PROXY="localhost")
    )
    assert [c.status for c in checks] == ["pass"] * 4, render(checks)
    assert "proxy (API)    direct" in checks[0].details
    assert checks[1].details[0] == "direct (no proxy)"


@pytest.mark.slow
async def test_doctor_names_the_fix_for_a_407(auth_proxy: ForwardProxy, tls_url: str, ca_bundle: Path) -> None:
    """A 407 to the CONNECT fails the authority step with "credentials" as the fix."""
    checks = await diagnose(lambda: _settings_loader(tls_url, ca_bundle, HTTPS_PROXY=auth_proxy.url))
    authority = checks[1]
    assert authority.status == "fail"
    assert "refused to open a tunnel" in authority.summary
    assert "407" in authority.summary
    assert authority.fix.startswith("the proxy wants credentials: put them in the proxy URL")


@pytest.mark.slow
async def test_doctor_names_the_fix_for_a_refusing_proxy(tls_url: str, ca_bundle: Path) -> None:
    """Nothing listens at the proxy: the authority step fails naming the proxy and its address as the fix."""
    proxy = f"http://alice:{PROXY_PASSWORD}@127.0.0.1:{closed_port()}"
    checks = await diagnose(lambda: _settings_loader(tls_url, ca_bundle, HTTPS_PROXY=proxy))
    authority = checks[1]
    assert authority.status == "fail"
    assert authority.summary.startswith("cannot connect to the proxy http://alice:[REDACTED]@127.0.0.1:")
    assert "connection refused" in authority.summary
    assert authority.fix.startswith("check the proxy's address and port in HTTPS_PROXY")
    assert PROXY_PASSWORD not in render(checks)


# -- trust stores -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("trust_store", ["openssl", "system"])
async def test_ssl_cert_file_is_honoured(
    trust_store: str, server_ssl: ssl.SSLContext, ca_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SSL_CERT_FILE names the trusted CAs, as OpenSSL reads it, for the default store and for truststore's (Linux)."""
    manifest = write_manifest(tmp_path / "m.csv", PRESENT)
    async with Emulator(EmulatorConfig(), ssl_context=server_ssl) as emulator:
        settings = settings_for(emulator, trust_store=trust_store)
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_bundle))
        summary = await reconcile.run([manifest], tmp_path / "out", settings=settings)
        assert summary.counts["present"] == len(PRESENT)
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "none.pem"))
        monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
        refused = await reconcile.run([manifest], tmp_path / "out2", settings=settings)
    assert "is not trusted" in fatal(refused)


async def test_the_system_store_takes_a_ca_bundle_too(
    server_ssl: ssl.SSLContext, ca_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--trust-store system with --ca-bundle trusts the bundle's CA; the context is truststore's."""
    import truststore

    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "none.pem"))
    manifest = write_manifest(tmp_path / "m.csv", PRESENT)
    async with Emulator(EmulatorConfig(), ssl_context=server_ssl) as emulator:
        settings = settings_for(emulator, trust_store="system", ca_bundle=ca_bundle)
        assert isinstance(settings.ssl_context(), truststore.SSLContext)
        summary = await reconcile.run([manifest], tmp_path / "out", settings=settings)
    assert summary.counts["present"] == len(PRESENT)


@pytest.mark.slow
def test_the_demo_ignores_the_shells_proxies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`reconcile demo` talks to its own loopback emulator: proxies in the environment (here a dead one) don't apply."""
    monkeypatch.chdir(tmp_path)
    dead = f"http://127.0.0.1:{closed_port()}"
    result = invoke(["demo", "--out", "demo", "-q"], {"HTTP_PROXY": dead, "HTTPS_PROXY": dead})
    assert result.exit_code == 3, result.output  # the samples hold invalid rows on purpose
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text(encoding="utf-8"))
    assert summary["counts"]["error"] == summary["counts"]["unchecked"] == 0
    assert summary["proxy"]["api"] == "direct"
