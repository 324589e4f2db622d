"""Settings: where to connect, with which credentials, how hard to push.

Settings come from, in order of precedence: explicit overrides (the CLI's flags), the process environment,
a ``.env`` file in the working directory, a configuration profile (``defaults``, see :mod:`reconcile.cli._profiles`),
then the defaults below.  The client secret never comes from a flag (it would show in ``ps`` and in shell
history) nor from a profile (config files get copied and shared): only the environment, ``.env`` or a file;
the same goes for a PFX certificate's password.

Exactly one credential is configured: a client secret, a client certificate, or a federated token file (AKS
workload identity, whose ``AZURE_*`` variables are read as well).  Proxies come from ``--proxy`` or the
environment (see :mod:`reconcile.config._proxies`).
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from reconcile.errors import ConfigError, CredentialConflict

from ._proxies import Proxies, Route
from ._redact import Secret

DEFAULT_BASE_URL = "https://platform-ca.calljourney.com"
DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
DEFAULT_ENDPOINT_PATH = "/api/v1/search/conversationexists"
# The platform publishes no rate limit, so by default the concurrency finds itself (reconcile.platform._concurrency),
# from 16 up to this ceiling: 2,560 rows/s at 100 ms per answer, if the platform keeps up.
DEFAULT_MAX_CONCURRENCY = 256
DEFAULT_OUTAGE_TOLERANCE = 180.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_MAX_RETRY_TIME = 120.0

ENV_PREFIX = "CALLJOURNEY_"
TRUST_STORES = ("openssl", "system")
ASSERTION_ALGS = ("PS256", "RS256")
#: What AKS workload identity's webhook injects; read when the CALLJOURNEY_ variables do not say.
AZURE_FEDERATED_TOKEN_FILE = "AZURE_FEDERATED_TOKEN_FILE"
AZURE_FALLBACKS = {"tenant_id": "AZURE_TENANT_ID", "client_id": "AZURE_CLIENT_ID", "authority": "AZURE_AUTHORITY_HOST"}
#: How each credential kind is configured, for messages.
CREDENTIAL_SOURCES = {
    "secret": "a client secret (CALLJOURNEY_CLIENT_SECRET, CALLJOURNEY_CLIENT_SECRET_FILE or --client-secret-file)",
    "certificate": "a client certificate (--client-certificate or CALLJOURNEY_CLIENT_CERTIFICATE)",
    "federated": "a federated token file (--federated-token-file, CALLJOURNEY_FEDERATED_TOKEN_FILE or "
    "AZURE_FEDERATED_TOKEN_FILE)",
}


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a run needs to reach the platform.  Build with :meth:`load` to get validation."""

    tenant_id: str
    client_id: str
    client_secret: Secret = field(default_factory=lambda: Secret(""), repr=False)
    base_url: str = DEFAULT_BASE_URL
    authority: str = DEFAULT_AUTHORITY
    scope: str = ""
    endpoint_path: str = DEFAULT_ENDPOINT_PATH
    concurrency: int | None = None  # requests in flight; None: automatic, up to max_concurrency
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    timeout: float = DEFAULT_TIMEOUT
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_retry_time: float = DEFAULT_MAX_RETRY_TIME
    max_rps: float | None = None
    ca_bundle: Path | None = None
    outage_tolerance: float = DEFAULT_OUTAGE_TOLERANCE  # seconds the platform may be gone before the run stops
    trust_store: str = "openssl"  # or "system": the operating system's store, through truststore
    proxies: Proxies = field(default_factory=Proxies)
    client_certificate: Path | None = None
    client_certificate_password: Secret = field(default_factory=lambda: Secret(""), repr=False)
    assertion_alg: str = "PS256"  # RS256 (with x5t) for tenants that predate PS256
    federated_token_file: Path | None = None

    def __post_init__(self) -> None:
        if not self.scope:
            object.__setattr__(self, "scope", f"api://{self.client_id}/.default")

    @property
    def concurrency_ceiling(self) -> int:
        """The most requests that can ever be in flight: the fixed concurrency, or the automatic one's ceiling."""
        return self.concurrency if self.concurrency is not None else self.max_concurrency

    @property
    def token_url(self) -> str:
        return f"{self.authority.rstrip('/')}/{self.tenant_id}/oauth2/v2.0/token"

    @property
    def endpoint_url(self) -> str:
        return self.base_url.rstrip("/") + self.endpoint_path

    @property
    def credential_kinds(self) -> tuple[str, ...]:
        """Every credential kind configured: valid settings have exactly one."""
        configured = {
            "secret": bool(self.client_secret),
            "certificate": self.client_certificate is not None,
            "federated": self.federated_token_file is not None,
        }
        return tuple(kind for kind, given in configured.items() if given)

    @property
    def credential_kind(self) -> str:
        """``secret``, ``certificate`` or ``federated``."""
        kinds = self.credential_kinds
        return kinds[0] if kinds else "secret"

    def proxy_for(self, url: str) -> Route | None:
        """The proxy a request to ``url`` goes through, or None for direct (see :mod:`reconcile.config._proxies`)."""
        return self.proxies.route(url)

    @classmethod
    def load(
        cls,
        overrides: Mapping[str, Any] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        dotenv: Path | None = Path(".env"),
        client_secret_file: Path | None = None,
        defaults: Mapping[str, Any] | None = None,
    ) -> Settings:
        """Merge overrides > environment > ``.env`` > ``defaults`` (a profile) > built-in defaults, then validate."""
        env = _environment(environ, dotenv)
        given = {k: v for k, v in (overrides or {}).items() if v is not None}
        layer = {k: v for k, v in (defaults or {}).items() if v is not None}
        federated = _path_setting(given, env, layer, "federated_token_file") or _env_path(
            env, AZURE_FEDERATED_TOKEN_FILE, prefix=""
        )

        def pick(name: str, default: str = "") -> str:
            if name in given:
                return str(given[name])
            value = env.get(ENV_PREFIX + name.upper(), "").strip()
            if not value and federated is not None and name in AZURE_FALLBACKS:
                value = env.get(AZURE_FALLBACKS[name], "").strip()
            return value or str(layer.get(name, default)).strip()

        secret = _read_secret(client_secret_file, env, layer.get("client_secret_file"))
        settings = cls(
            tenant_id=pick("tenant_id"),
            client_id=pick("client_id"),
            client_secret=Secret(secret),
            client_certificate=_path_setting(given, env, layer, "client_certificate"),
            client_certificate_password=Secret(env.get(ENV_PREFIX + "CLIENT_CERTIFICATE_PASSWORD", "")),
            assertion_alg=pick("assertion_alg", "PS256").upper(),
            federated_token_file=federated,
            proxies=Proxies.from_environment(env, pick("proxy")),
            trust_store=pick("trust_store", "openssl").lower(),
            base_url=pick("base_url", DEFAULT_BASE_URL),
            authority=pick("authority", DEFAULT_AUTHORITY),
            scope=pick("scope"),
            endpoint_path=pick("endpoint_path", DEFAULT_ENDPOINT_PATH),
            concurrency=_concurrency(
                given.get("concurrency", env.get(ENV_PREFIX + "CONCURRENCY", "").strip() or None)
                or layer.get("concurrency")
            ),
            max_concurrency=_number(
                given, env, "max_concurrency", int, layer.get("max_concurrency", DEFAULT_MAX_CONCURRENCY)
            ),
            outage_tolerance=_number(
                given, env, "outage_tolerance", float, layer.get("outage_tolerance", DEFAULT_OUTAGE_TOLERANCE)
            ),
            timeout=_number(given, env, "timeout", float, layer.get("timeout", DEFAULT_TIMEOUT)),
            max_attempts=_number(given, env, "max_attempts", int, layer.get("max_attempts", DEFAULT_MAX_ATTEMPTS)),
            max_retry_time=_number(
                given, env, "max_retry_time", float, layer.get("max_retry_time", DEFAULT_MAX_RETRY_TIME)
            ),
            max_rps=_optional_number(given, env, "max_rps", layer.get("max_rps")),
            ca_bundle=_path_setting(given, env, layer, "ca_bundle"),
        )
        settings.validate()
        if settings.client_certificate is not None:
            from reconcile.config._certificates import load_certificate

            load_certificate(settings.client_certificate, settings.client_certificate_password)  # fails early
        return settings

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming every problem, with the fix (:class:`CredentialConflict` for two
        credentials at once)."""
        kinds = self.credential_kinds
        if len(kinds) > 1:
            named = " and ".join(CREDENTIAL_SOURCES[kind] for kind in kinds)
            raise CredentialConflict(
                f"two kinds of credential are configured: {named}. HINT: configure exactly one; unset the other"
            )
        problems = []
        for name in ("tenant_id", "client_id"):
            if not getattr(self, name):
                problems.append(f"{ENV_PREFIX}{name.upper()} is not set")
        if not kinds:
            problems.append(
                f"no credential: {ENV_PREFIX}CLIENT_SECRET is not set (set it in the environment or .env, "
                "or pass --client-secret-file; or use --client-certificate or --federated-token-file)"
            )
        for name in ("client_certificate", "federated_token_file"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                problems.append(f"{name.replace('_', ' ')} {path} does not exist")
        if self.assertion_alg not in ASSERTION_ALGS:
            problems.append(f"assertion alg must be one of {', '.join(ASSERTION_ALGS)}, got {self.assertion_alg!r}")
        if self.trust_store not in TRUST_STORES:
            problems.append(f"trust store must be one of {', '.join(TRUST_STORES)}, got {self.trust_store!r}")
        problems += self.proxies.problems()
        for name in ("base_url", "authority"):
            problem = check_url(getattr(self, name))
            if problem:
                problems.append(f"{name.replace('_', ' ')}: {problem}")
        if not self.endpoint_path.startswith("/"):
            problems.append(f"endpoint path {self.endpoint_path!r} must start with '/'")
        if self.concurrency is not None and self.concurrency < 1:
            problems.append("concurrency must be at least 1 (or auto)")
        if self.max_concurrency < 1:
            problems.append("max concurrency must be at least 1")
        if self.outage_tolerance < 0:
            problems.append("outage tolerance must not be negative")
        if self.timeout <= 0:
            problems.append("timeout must be positive")
        if self.max_attempts < 1:
            problems.append("max attempts must be at least 1")
        if self.max_rps is not None and self.max_rps <= 0:
            problems.append("max rps must be positive")
        if self.ca_bundle is not None and not self.ca_bundle.is_file():
            problems.append(f"CA bundle {self.ca_bundle} does not exist")
        if problems:
            raise ConfigError("bad configuration: " + "; ".join(problems))

    def ssl_context(self) -> ssl.SSLContext:
        """The trust store, plus ``ca_bundle`` when given.  Verification is always on.

        ``openssl``: OpenSSL's default paths, which honour ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``; ``system``:
        the operating system's verifier and store through truststore (Keychain, the Windows certificate store),
        where managed machines keep a TLS-inspecting proxy's CA.
        """
        if self.trust_store == "system":
            import truststore

            context: ssl.SSLContext = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        else:
            context = ssl.create_default_context()
        if self.ca_bundle is not None:
            try:
                context.load_verify_locations(cafile=str(self.ca_bundle))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"cannot load CA bundle {self.ca_bundle}: {exc}") from exc
        return context


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1."""
    host = host.strip("[]").lower()
    if host == "localhost":  # not *.localhost: resolvers may send those to DNS
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> str | None:
    """Why ``url`` may not be used, or None.  Plain http is for loopback hosts only."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not an http(s) URL"
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        return (
            f"{url!r} uses plain http to a remote host; credentials would cross the network unencrypted. "
            "HINT: use https:// (plain http is allowed for localhost, 127.0.0.0/8 and ::1 only)"
        )
    return None


def environment(environ: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")) -> dict[str, str]:
    """The process environment (or ``environ``) over the variables of ``dotenv``, as :meth:`Settings.load` sees them."""
    return _environment(environ, dotenv)


def _environment(environ: Mapping[str, str] | None, dotenv: Path | None) -> dict[str, str]:
    env: dict[str, str] = {}
    if dotenv is not None and dotenv.is_file():
        from dotenv import dotenv_values

        env.update({k: v for k, v in dotenv_values(dotenv).items() if v is not None})
    env.update(os.environ if environ is None else environ)
    return env


def _read_secret(path: Path | None, env: Mapping[str, str], profile_file: Any = None) -> str:
    """The flag's file > the environment's file > the environment's secret > the profile's file."""
    if path is None:
        path = _env_path(env, "CLIENT_SECRET_FILE")
    if path is None:
        secret = env.get(ENV_PREFIX + "CLIENT_SECRET", "").strip()
        if secret or not profile_file:
            return secret
        path = Path(profile_file)
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the client secret file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"the client secret file {path} is not UTF-8 text. HINT: write the secret as text") from None
    if not secret:  # else "CLIENT_SECRET is not set", as if the file had not been given
        raise ConfigError(
            f"the client secret file {path} is empty. HINT: write the client secret into it (one line), or point "
            "--client-secret-file at the file that holds it"
        )
    return secret


def _env_path(env: Mapping[str, str], name: str, *, prefix: str = ENV_PREFIX) -> Path | None:
    value = env.get(prefix + name, "").strip()
    return Path(value) if value else None


def _path_setting(given: Mapping[str, Any], env: Mapping[str, str], layer: Mapping[str, Any], name: str) -> Path | None:
    """A file path from the flag, else the environment, else the profile."""
    if given.get(name):
        return Path(given[name])
    return _env_path(env, name.upper()) or (Path(layer[name]) if layer.get(name) else None)


def _number(given: Mapping[str, Any], env: Mapping[str, str], name: str, kind: type, default: Any) -> Any:
    raw = given.get(name, env.get(ENV_PREFIX + name.upper(), "").strip() or default)
    try:
        return kind(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name.replace('_', ' ')} must be a number, got {raw!r}") from None


def _concurrency(raw: Any) -> int | None:
    """A fixed concurrency, or None for ``auto`` (and for nothing given)."""
    if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "auto")):
        return None
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"concurrency must be a number or 'auto', got {raw!r}") from None


def _optional_number(given: Mapping[str, Any], env: Mapping[str, str], name: str, default: Any = None) -> float | None:
    if name not in given and not env.get(ENV_PREFIX + name.upper(), "").strip() and default is None:
        return None
    value: float = _number(given, env, name, float, default)
    return value
