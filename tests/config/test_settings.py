"""Settings: where values come from, what is refused, and that the secret never shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconcile.config import Secret
from reconcile.config._settings import (
    DEFAULT_AUTHORITY,
    DEFAULT_BASE_URL,
    DEFAULT_ENDPOINT_PATH,
    DEFAULT_MAX_CONCURRENCY,
    Settings,
    check_url,
    is_loopback,
)
from reconcile.errors import ConfigError, FatalError

TENANT = "tenant-1111"
CLIENT = "client-2222"
SECRET = "s3cr3t-value-that-must-never-leak"
REQUIRED = {
    "CALLJOURNEY_TENANT_ID": TENANT,
    "CALLJOURNEY_CLIENT_ID": CLIENT,
    "CALLJOURNEY_CLIENT_SECRET": SECRET,
}


def load(
    environ: dict[str, str] | None = None,
    overrides: dict[str, object] | None = None,
    *,
    dotenv: Path | None = None,
    client_secret_file: Path | None = None,
) -> Settings:
    """Settings.load isolated from the real environment and from any .env in the working directory."""
    return Settings.load(
        overrides,
        environ=dict(REQUIRED) if environ is None else environ,
        dotenv=dotenv,
        client_secret_file=client_secret_file,
    )


def test_defaults_apply_when_only_credentials_are_given() -> None:
    """Base URL, authority, endpoint path and concurrency default to the documented values."""
    settings = load()
    assert settings.base_url == DEFAULT_BASE_URL == "https://platform-ca.calljourney.com"
    assert settings.authority == DEFAULT_AUTHORITY == "https://login.microsoftonline.com"
    assert settings.endpoint_path == DEFAULT_ENDPOINT_PATH == "/api/v1/search/conversationexists"
    assert settings.concurrency is None  # automatic ...
    assert settings.concurrency_ceiling == settings.max_concurrency == DEFAULT_MAX_CONCURRENCY  # ... up to 256
    assert settings.client_secret.reveal() == SECRET


def test_scope_defaults_to_the_apps_default_scope() -> None:
    """With no scope configured the scope is api://{client_id}/.default."""
    assert load().scope == f"api://{CLIENT}/.default"
    assert load({**REQUIRED, "CALLJOURNEY_SCOPE": "api://other/.default"}).scope == "api://other/.default"


def test_token_url_is_authority_tenant_oauth2_v2_token() -> None:
    """The token URL is {authority}/{tenant}/oauth2/v2.0/token, whatever trailing slash the authority has."""
    assert load().token_url == f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"
    slashed = load({**REQUIRED, "CALLJOURNEY_AUTHORITY": "https://login.example.com/"})
    assert slashed.token_url == f"https://login.example.com/{TENANT}/oauth2/v2.0/token"


def test_endpoint_url_joins_base_url_and_path() -> None:
    """The API URL is the base URL (trailing slash dropped) plus the endpoint path."""
    settings = load(
        {
            **REQUIRED,
            "CALLJOURNEY_BASE_URL": "https://api.example.com/",
            "CALLJOURNEY_ENDPOINT_PATH": "/api/v1/search/callexists",
        }
    )
    assert settings.endpoint_url == "https://api.example.com/api/v1/search/callexists"


def test_environment_beats_dotenv_and_overrides_beat_environment(tmp_path: Path) -> None:
    """Precedence is overrides > environment > .env > defaults, field by field."""
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "CALLJOURNEY_TENANT_ID=from-dotenv\n"
        "CALLJOURNEY_CLIENT_ID=dotenv-client\n"
        "CALLJOURNEY_CLIENT_SECRET=dotenv-secret\n"
        "CALLJOURNEY_BASE_URL=https://dotenv.example.com\n"
        "CALLJOURNEY_CONCURRENCY=3\n",
        encoding="utf-8",
    )
    environ = {"CALLJOURNEY_TENANT_ID": "from-env", "CALLJOURNEY_BASE_URL": "https://env.example.com"}
    settings = load(environ, {"base_url": "https://flag.example.com", "concurrency": None}, dotenv=dotenv)
    assert settings.base_url == "https://flag.example.com"  # override wins
    assert settings.tenant_id == "from-env"  # environment beats .env
    assert settings.client_id == "dotenv-client"  # .env fills what nothing else gives
    assert settings.client_secret.reveal() == "dotenv-secret"
    assert settings.concurrency == 3  # a None override means "not given"
    assert settings.authority == DEFAULT_AUTHORITY  # nobody set it


def test_dotenv_in_the_working_directory_is_read_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an explicit dotenv argument, ./.env is read."""
    (tmp_path / ".env").write_text(
        "".join(f"{k}={v}\n" for k, v in REQUIRED.items()) + "CALLJOURNEY_TIMEOUT=7.5\n", encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)
    settings = Settings.load(environ={})
    assert settings.tenant_id == TENANT
    assert settings.timeout == 7.5


def test_client_secret_file_is_read_and_stripped(tmp_path: Path) -> None:
    """--client-secret-file supplies the secret (trailing newline dropped) and beats the environment."""
    path = tmp_path / "secret.txt"
    path.write_text("secret-from-file\n", encoding="utf-8")
    settings = load(client_secret_file=path)
    assert settings.client_secret.reveal() == "secret-from-file"


def test_client_secret_file_may_come_from_the_environment(tmp_path: Path) -> None:
    """CALLJOURNEY_CLIENT_SECRET_FILE names a secret file when no flag does."""
    path = tmp_path / "secret.txt"
    path.write_text("env-file-secret", encoding="utf-8")
    environ = {k: v for k, v in REQUIRED.items() if k != "CALLJOURNEY_CLIENT_SECRET"}
    settings = load({**environ, "CALLJOURNEY_CLIENT_SECRET_FILE": str(path)})
    assert settings.client_secret.reveal() == "env-file-secret"


def test_unreadable_client_secret_file_is_a_config_error(tmp_path: Path) -> None:
    """A secret file that does not exist is a ConfigError naming the file."""
    missing = tmp_path / "nope.txt"
    with pytest.raises(ConfigError, match=r"nope\.txt"):
        load(client_secret_file=missing)


def test_an_empty_client_secret_file_says_so(tmp_path: Path) -> None:
    """An empty (or blank) secret file is named as empty, not reported as "--client-secret-file not passed"."""
    empty = tmp_path / "secret.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load(client_secret_file=empty)
    assert str(caught.value) == (
        f"the client secret file {empty} is empty. HINT: write the client secret into it (one line), or point "
        "--client-secret-file at the file that holds it"
    )


def test_missing_settings_are_all_listed_in_one_error() -> None:
    """With nothing configured, one ConfigError names tenant, client id and secret (and the secret-file hint)."""
    with pytest.raises(ConfigError) as caught:
        load({})
    message = str(caught.value)
    for name in ("CALLJOURNEY_TENANT_ID", "CALLJOURNEY_CLIENT_ID", "CALLJOURNEY_CLIENT_SECRET"):
        assert name in message
    assert "--client-secret-file" in message
    assert caught.value.exit_code == 4
    assert isinstance(caught.value, FatalError)


def test_whitespace_only_secret_counts_as_missing() -> None:
    """A secret of spaces is not a secret."""
    with pytest.raises(ConfigError, match="CLIENT_SECRET is not set"):
        load({**REQUIRED, "CALLJOURNEY_CLIENT_SECRET": "   "})


@pytest.mark.parametrize("name", ["CALLJOURNEY_BASE_URL", "CALLJOURNEY_AUTHORITY"])
@pytest.mark.parametrize(
    "url",
    [
        "http://platform-ca.calljourney.com",
        "http://10.0.0.5:8080",
        "http://localhost@evil.example.com",
        "http://127.0.0.1.evil.example.com",
        "http://[2001:db8::1]:8080",
    ],
)
def test_plain_http_to_a_remote_host_is_refused(name: str, url: str) -> None:
    """Plain http to anything but loopback is refused for both the API and the authority, with a hint."""
    with pytest.raises(ConfigError) as caught:
        load({**REQUIRED, name: url})
    assert "plain http" in str(caught.value)
    assert "HINT" in str(caught.value)


@pytest.mark.parametrize("url", ["http://calljourney.localhost:8080", "http://localhost.example.com"])
def test_names_that_merely_look_local_are_refused(url: str) -> None:
    """Only the name `localhost` itself is trusted: `*.localhost` goes to DNS on most resolvers (glibc), which may
    answer with a remote address, so plain http to it could send the secret across the network."""
    with pytest.raises(ConfigError, match="plain http"):
        load({**REQUIRED, "CALLJOURNEY_AUTHORITY": url})


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080", "http://127.5.5.5:1234", "http://localhost:9", "http://[::1]:8080", "http://LOCALHOST"],
)
def test_plain_http_to_loopback_is_allowed(url: str) -> None:
    """Loopback (127.0.0.0/8, ::1, localhost) may use plain http for both URLs."""
    settings = load({**REQUIRED, "CALLJOURNEY_BASE_URL": url, "CALLJOURNEY_AUTHORITY": url})
    assert settings.base_url == url
    assert check_url(url) is None


@pytest.mark.parametrize("url", ["ftp://example.com", "platform-ca.calljourney.com", "https://"])
def test_non_http_urls_are_refused(url: str) -> None:
    """A base URL that is not http(s) with a host is a ConfigError."""
    with pytest.raises(ConfigError, match="not an http"):
        load({**REQUIRED, "CALLJOURNEY_BASE_URL": url})


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("128.0.0.1", False),
        ("0.0.0.0", False),
        ("example.com", False),
        ("::2", False),
    ],
)
def test_is_loopback(host: str, expected: bool) -> None:
    """Only 127.0.0.0/8, ::1 and localhost count as loopback."""
    assert is_loopback(host) is expected


def test_secret_never_shows_in_repr_or_str_of_settings() -> None:
    """Neither Settings nor Secret reveals the secret through repr, str or format."""
    settings = load()
    for text in (
        repr(settings),
        str(settings),
        f"{settings}",
        repr(settings.client_secret),
        str(settings.client_secret),
        f"{settings.client_secret!s}",
        repr([settings]),
    ):
        assert SECRET not in text
    assert "client_secret" not in repr(settings)


def test_secret_compares_by_value_and_is_falsy_when_empty() -> None:
    """Secrets are equal by value, hashable, and an empty one is falsy."""
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert len({Secret("a"), Secret("a")}) == 1
    assert not Secret("")
    assert Secret("x")


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("CALLJOURNEY_CONCURRENCY", "lots", "concurrency must be a number or 'auto'"),
        ("CALLJOURNEY_CONCURRENCY", "0", "concurrency must be at least 1"),
        ("CALLJOURNEY_TIMEOUT", "-1", "timeout must be positive"),
        ("CALLJOURNEY_MAX_ATTEMPTS", "0", "max attempts must be at least 1"),
        ("CALLJOURNEY_MAX_RPS", "0", "max rps must be positive"),
        ("CALLJOURNEY_ENDPOINT_PATH", "api/v1/x", "must start with '/'"),
        ("CALLJOURNEY_CA_BUNDLE", "/nonexistent/ca.pem", "does not exist"),
    ],
)
def test_bad_values_are_config_errors(variable: str, value: str, fragment: str) -> None:
    """Malformed numbers, paths and bundles are refused with a message naming the setting."""
    with pytest.raises(ConfigError, match=fragment):
        load({**REQUIRED, variable: value})


def test_numbers_from_the_environment_are_parsed() -> None:
    """Numeric settings from the environment become numbers; max_rps stays None unless set."""
    settings = load(
        {**REQUIRED, "CALLJOURNEY_CONCURRENCY": "32", "CALLJOURNEY_TIMEOUT": "2.5", "CALLJOURNEY_MAX_ATTEMPTS": "7"}
    )
    assert (settings.concurrency, settings.timeout, settings.max_attempts) == (32, 2.5, 7)
    assert settings.max_rps is None
    assert load({**REQUIRED, "CALLJOURNEY_MAX_RPS": "12.5"}).max_rps == 12.5


def test_ca_bundle_that_is_not_pem_is_a_config_error(tmp_path: Path) -> None:
    """A CA bundle file that is not a certificate fails when the TLS context is built, as a ConfigError."""
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not a certificate", encoding="utf-8")
    settings = load({**REQUIRED, "CALLJOURNEY_CA_BUNDLE": str(bundle)})
    with pytest.raises(ConfigError, match="cannot load CA bundle"):
        settings.ssl_context()


def test_ssl_context_verifies_by_default() -> None:
    """The TLS context checks certificates and host names."""
    import ssl

    context = load().ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True


@pytest.mark.parametrize(("given", "expected"), [("auto", None), ("AUTO", None), ("24", 24), (None, None)])
def test_concurrency_is_auto_or_a_number(given: str | None, expected: int | None) -> None:
    """CALLJOURNEY_CONCURRENCY takes 'auto' (the default) or a fixed number; the ceiling follows a fixed one."""
    environ = dict(REQUIRED) if given is None else {**REQUIRED, "CALLJOURNEY_CONCURRENCY": given}
    settings = load(environ)
    assert settings.concurrency == expected
    assert settings.concurrency_ceiling == (expected or DEFAULT_MAX_CONCURRENCY)


def test_max_concurrency_and_outage_tolerance_come_from_the_environment() -> None:
    """The automatic concurrency's ceiling and the outage tolerance are settings like any other."""
    settings = load({**REQUIRED, "CALLJOURNEY_MAX_CONCURRENCY": "64", "CALLJOURNEY_OUTAGE_TOLERANCE": "30"})
    assert (settings.max_concurrency, settings.concurrency_ceiling, settings.outage_tolerance) == (64, 64, 30.0)
