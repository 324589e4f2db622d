"""``reconcile doctor``: check a configuration step by step, the way an administrator would on a support call.

Each step is a :class:`Check` that passes (possibly with warnings), fails with the fix, or is skipped
because an earlier one failed: settings → the authority is reachable → a token is issued → the API path
answers → one probe row.  Nothing here prints a secret or a token: the token's claims are decoded from its
payload (no signature check: only the platform can do that) and shown one by one.
"""

from __future__ import annotations

import contextlib
import re
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import orjson

from reconcile.config import DEFAULT_ENDPOINT_PATH, Settings, load_certificate, redact
from reconcile.errors import (
    ConfigError,
    CredentialConflict,
    ReconcileError,
    TokenError,
    UsageError,
)
from reconcile.model import KEY_FIELDS, ExitCode, Key
from reconcile.platform import (
    FEDERATED_AUDIENCE,
    FederatedCredential,
    PlatformClient,
    RetryPolicy,
    Token,
    TokenProvider,
    jwt_claims,
    jwt_expiry,
    refusal_fix,
    server_message,
)

from ._connectivity import Connectivity, probe_connectivity

Status = Literal["pass", "warn", "fail", "skip"]
ALTERNATIVE_PATHS = ("/api/v1/search/conversationexists", "/api/v1/search/callexists")  # both named by the guide
DOCTOR_TIMEOUT = 10.0  # seconds per step at most: someone is waiting on the phone
POST_ATTEMPTS = 3  # one passing 5xx or reset must not fail a step; a persistent one must
RETRY_WAIT = 0.5
RETRY_AFTER_CAP = 2.0  # seconds: a Retry-After is honoured, up to this
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_EMPTY_PROBE = orjson.dumps(dict.fromkeys(KEY_FIELDS, ""))


@dataclass(frozen=True, slots=True)
class Check:
    """The result of one step."""

    step: str
    status: Status
    summary: str
    details: tuple[str, ...] = ()
    fix: str = ""
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status in ("pass", "warn")


def _fail(step: str, summary: str, fix: str, details: tuple[str, ...] = ()) -> Check:
    return Check(step, "fail", summary, details, fix=fix)


def _reached(step: str, result: Connectivity) -> Check:
    return Check(step, "pass" if result.ok else "fail", result.summary, result.details, fix=result.fix)


def exit_code(checks: list[Check]) -> ExitCode:
    """0 when every step passed, 4 (fatal: configuration) otherwise."""
    return ExitCode.OK if checks and all(c.ok for c in checks) else ExitCode.FATAL


def parse_probe(text: str) -> Key:
    """``company/organisation/folder/filename``; the folder may itself contain slashes."""
    parts = text.split("/")
    if len(parts) < 4 or not all(p.strip() for p in (parts[0], parts[1], parts[-1])):
        raise UsageError(
            f"--probe {text!r} is not company/organisation/folder/filename. "
            "HINT: e.g. --probe acme/acme-ca/2026/11/25/inbound/call-0001.mp3"
        )
    return parts[0], parts[1], "/".join(parts[2:-1]), parts[-1]


async def diagnose(
    load: Callable[[], Settings], *, probe: Key | None = None, seconds: float = DOCTOR_TIMEOUT
) -> list[Check]:
    """Run every step; after a failure the remaining steps are skipped.  ``load`` builds the settings."""
    checks: list[Check] = []
    steps = ["settings", "authority", "token", "api"] + (["probe"] if probe is not None else [])

    def skip_rest() -> list[Check]:
        failed = checks[-1].step
        return checks + [Check(step, "skip", f"skipped: the {failed} step failed") for step in steps[len(checks) :]]

    settings, check = _check_settings(load)
    checks.append(check)
    if settings is None:
        return skip_rest()
    seconds = min(seconds, settings.timeout)
    context = settings.ssl_context()
    option = "--authority (CALLJOURNEY_AUTHORITY)"
    reached = await probe_connectivity(
        settings.authority, context, seconds, option=option, proxy=settings.proxy_for(settings.token_url)
    )
    checks.append(_reached("authority", reached))
    if not checks[-1].ok:
        return skip_rest()
    # The run's own client, with patience for someone waiting on the phone: a passing failure is tried again
    # soon, a persistent one fails the step.
    token_policy = RetryPolicy(max_attempts=2, max_time=seconds, backoff_initial=0.2, backoff_max=1.0)
    policy = RetryPolicy(
        max_attempts=POST_ATTEMPTS,
        max_time=seconds,
        backoff_initial=RETRY_WAIT,
        backoff_max=RETRY_WAIT,
        healthy_backoff_initial=RETRY_WAIT,
        healthy_backoff_max=RETRY_WAIT,
        retry_after_cap=RETRY_AFTER_CAP,
    )
    async with PlatformClient(settings, policy=policy, token_policy=token_policy, timeout=seconds) as client:
        token, check = await _check_token(client.tokens, settings)
        checks.append(check)
        if token is None:
            return skip_rest()
        checks.append(await _check_api(client, settings, context, seconds))
        if not checks[-1].ok:
            return skip_rest()
        if probe is not None:
            checks.append(await _check_probe(client, settings, probe))
    return checks


# -- settings ------------------------------------------------------------------------------------------


def _check_settings(load: Callable[[], Settings]) -> tuple[Settings | None, Check]:
    try:
        settings = load()
        settings.ssl_context()  # a CA bundle that does not load is a settings problem
    except CredentialConflict as exc:
        return None, _fail(
            "settings",
            "two kinds of credential are configured",
            str(exc).split("HINT: ")[-1],
            (str(exc).split(". HINT")[0],),
        )
    except ConfigError as exc:
        problems = str(exc).removeprefix("bad configuration: ").split("; ")
        fix = (
            "set the values named above in the environment, .env or on the command line "
            "(the secret in CALLJOURNEY_CLIENT_SECRET, .env or --client-secret-file; or a certificate with "
            "--client-certificate, or a federated token with --federated-token-file)"
        )
        return None, _fail("settings", "the settings are incomplete or unsafe", fix, tuple(problems))
    warnings = []
    if not _GUID.match(settings.tenant_id):
        warnings.append(
            f"tenant id {settings.tenant_id!r} is not a GUID: fine if it is a verified domain of "
            "the tenant (contoso.onmicrosoft.com), else copy the Directory (tenant) ID"
        )
    if not _GUID.match(settings.client_id):
        warnings.append(
            f"client id {settings.client_id!r} is not a GUID: copy the Application (client) ID of the app registration"
        )
    credential, problems = _describe_credential(settings, warnings)
    details = (
        f"tenant id      {settings.tenant_id}",
        f"client id      {settings.client_id}",
        *credential,
        f"authority      {settings.authority}",
        f"base URL       {settings.base_url}",
        f"endpoint path  {settings.endpoint_path}",
        f"scope          {settings.scope}",
        f"trust store    {_TRUST_STORES[settings.trust_store]}",
        *((f"CA bundle      {settings.ca_bundle}",) if settings.ca_bundle else ()),
        f"proxy (token)  {settings.proxies.describe(settings.token_url)}",
        f"proxy (API)    {settings.proxies.describe(settings.endpoint_url)}",
    )
    if problems:
        what = "the federated token" if settings.credential_kind == "federated" else "the client certificate"
        return None, _fail("settings", f"{what} cannot be used", problems[0], details)
    return settings, Check(
        "settings", "warn" if warnings else "pass", "present and well-formed", details, warnings=tuple(warnings)
    )


def _describe_federated_token(path: Path, warnings: list[str]) -> tuple[tuple[str, ...], list[str]]:
    """The federated token's issuer, subject, audience and expiry (its claims, never the token)."""
    details = [f"credential     federated token file {path} (read for every token)"]
    try:
        token = FederatedCredential(path).read()
    except TokenError as exc:
        return tuple(details), [str(exc).split(". HINT: ")[-1] if "HINT" in str(exc) else str(exc)]
    claims = jwt_claims(token)
    if claims is None:
        return tuple(details), [f"the federated token file {path} does not hold a JWT: check what writes it"]
    audience = claims.get("aud")
    audiences = [str(a) for a in audience] if isinstance(audience, list) else [str(audience)]
    details += [
        f"  issuer       {claims.get('iss', '?')}",
        f"  subject      {claims.get('sub', '?')}",
        f"  audience     {', '.join(audiences)}",
    ]
    exp = jwt_expiry(claims)
    if exp is not None:
        stamp = _stamp(exp)
        details.append(f"  expires      {stamp} (in {max(0, exp - time.time()) / 60:.0f} min)")
        if exp <= time.time():
            return tuple(details), [
                f"the federated token expired at {stamp}: whatever writes {path} (in AKS, the kubelet) has stopped "
                "refreshing it; check the pod's workload-identity label and service account"
            ]
    if FEDERATED_AUDIENCE not in audiences:
        warnings.append(
            f"the federated token's audience is not {FEDERATED_AUDIENCE}, which Azure AD's federated credentials "
            "expect by default"
        )
    details.append("  (the app's federated credential must name this issuer and subject exactly)")
    return tuple(details), []


_TRUST_STORES = {
    "openssl": "OpenSSL's default (SSL_CERT_FILE / SSL_CERT_DIR when set)",
    "system": "the operating system's (truststore)",
}
CERTIFICATE_WARN_DAYS = 30


def _describe_credential(settings: Settings, warnings: list[str]) -> tuple[tuple[str, ...], list[str]]:
    """The credential's detail lines (never a secret); appends warnings; returns problems that fail the step."""
    kind = settings.credential_kind
    if kind == "secret":
        return ("credential     client secret, set (never shown)",), []
    if kind == "federated":
        assert settings.federated_token_file is not None
        return _describe_federated_token(settings.federated_token_file, warnings)
    assert settings.client_certificate is not None
    certificate = load_certificate(settings.client_certificate, settings.client_certificate_password)
    days = certificate.days_left()
    expiry = _stamp(certificate.not_after.timestamp())
    details = (
        f"credential     client certificate {settings.client_certificate} ({settings.assertion_alg} assertions)",
        f"  thumbprint   {certificate.thumbprint('sha1').hex().upper()} (SHA-1, as the portal shows it)",
        f"  subject      {certificate.subject}",
        f"  expires      {expiry} (in {max(days, 0):.0f} days)",
    )
    if days <= 0:
        return details, [
            f"the certificate expired on {expiry}: create a new one and upload its public part to the app "
            "registration's Certificates & secrets"
        ]
    if days < CERTIFICATE_WARN_DAYS:
        warnings.append(
            f"the client certificate expires in {days:.0f} days ({expiry}): renew it and upload the new one to "
            "the app registration before then"
        )
    return details, []


# -- token ---------------------------------------------------------------------------------------------


async def _check_token(tokens: TokenProvider, settings: Settings) -> tuple[Token | None, Check]:
    try:
        token = await tokens.token()
    except TokenError as exc:
        return None, _token_refused(exc, settings)
    except ReconcileError as exc:
        return None, _fail("token", redact(str(exc)), "check CALLJOURNEY_AUTHORITY and the network to it")
    claims = jwt_claims(token.value)
    if claims is None:
        return token, Check(
            "token", "pass", f"issued; opaque (not a JWT), so no claims to show; valid for {token.lifetime:.0f} s"
        )
    details, warnings = _describe_claims(claims, settings)
    status: Status = "warn" if warnings else "pass"
    return token, Check("token", status, "issued (a JWT; its claims:)", details, warnings=warnings)


def _token_refused(exc: TokenError, settings: Settings) -> Check:
    if not exc.error:
        fix = "check CALLJOURNEY_AUTHORITY (https://login.microsoftonline.com in Azure's public cloud) and the tenant"
        return _fail("token", redact(str(exc)), fix)
    codes = ", ".join(f"AADSTS{c}" for c in exc.error_codes)
    description = exc.description.split(" Trace ID:")[0]
    details = tuple(
        line
        for line in (
            redact(description),
            f"trace id {exc.trace_id}" if exc.trace_id else "",
            f"correlation id {exc.correlation_id}" if exc.correlation_id else "",
        )
        if line
    )
    fix = refusal_fix(exc.error, exc.error_codes, settings)
    if exc.correlation_id:
        fix += "; an administrator finds this attempt in the tenant's sign-in logs by its correlation id"
    return _fail(
        "token", f"Azure AD refused the credentials: {exc.error}" + (f" ({codes})" if codes else ""), fix, details
    )


def _stamp(seconds: float) -> str:
    """ISO-8601 UTC to the second, as the rest of the output writes times."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _describe_claims(claims: Mapping[str, Any], settings: Settings) -> tuple[tuple[str, ...], tuple[str, ...]]:
    app_id = str(claims.get("appid") or claims.get("azp") or "")
    roles = claims.get("roles") or []
    roles = [str(r) for r in roles] if isinstance(roles, list) else [str(roles)]
    details = [
        f"audience  {claims.get('aud', '?')}",
        f"app id    {app_id or '?'}",
        f"roles     {', '.join(roles) if roles else '(none)'}",
        f"tenant    {claims.get('tid', '?')}",
    ]
    exp = jwt_expiry(claims)
    if exp is not None:
        details.append(f"expires   {_stamp(exp)} (in {max(0, exp - time.time()) / 60:.0f} min)")
    warnings = []
    if app_id and app_id != settings.client_id:
        warnings.append(f"the token's app id {app_id} is not the configured client id {settings.client_id}")
    tid = claims.get("tid")
    if tid and _GUID.match(settings.tenant_id) and str(tid).lower() != settings.tenant_id.lower():
        warnings.append(f"the token's tenant {tid} is not the configured tenant {settings.tenant_id}")
    if not roles:
        warnings.append(
            "the token carries no roles: the app registration may lack the platform's application "
            "permission, or an administrator has not granted consent"
        )
    return tuple(details), tuple(warnings)


# -- the API -------------------------------------------------------------------------------------------


async def _check_api(client: PlatformClient, settings: Settings, context: ssl.SSLContext, seconds: float) -> Check:
    base, authority = urlsplit(settings.base_url), urlsplit(settings.authority)
    if (base.hostname, base.port, base.scheme) != (authority.hostname, authority.port, authority.scheme):
        reached = await probe_connectivity(
            settings.base_url,
            context,
            seconds,
            option="--base-url (CALLJOURNEY_BASE_URL)",
            proxy=settings.proxy_for(settings.endpoint_url),
        )
        if not reached.ok:
            return _reached("api", reached)
    url = settings.endpoint_url
    try:
        reply = await client.ask(url, _EMPTY_PROBE)
    except ReconcileError as exc:
        return _fail("api", f"POST {url} failed: {redact(str(exc))}", "check CALLJOURNEY_BASE_URL and the network")
    status, message = reply.status, server_message(reply.body)
    said = f"POST {url} answered {status}"
    if status in (200, 400, 422):
        return Check(
            "api",
            "pass",
            f"{said}: the path exists",
            (f"an empty probe is refused as documented: {message}",) if status != 200 else (),
        )
    if status == 404:
        return _fail(
            "api", f"{said} (not found): the base URL or the endpoint path is wrong", await _path_fix(client, settings)
        )
    if status in (401, 403):
        fix = (
            "the app registration lacks the platform's API permission (application role), or an administrator "
            f"has not granted consent, or the scope names another API (scope {settings.scope}): grant it, then "
            "run doctor again"
        )
        return _fail("api", f"{said}: the platform refused a freshly issued token ({message})", fix)
    if 300 <= status < 400:
        fix = "use the final URL as CALLJOURNEY_BASE_URL (https, no trailing path)"
        return _fail("api", f"{said}: redirected to {reply.headers.get('Location', '?')}", fix)
    if status in (429, 503):
        fix = "try again in a few minutes; if it persists, ask the platform's support"
        return _fail("api", f"{said}: the platform is busy or unavailable ({message})", fix)
    return _fail("api", f"{said}: {message}", "check CALLJOURNEY_BASE_URL; a 5xx is the platform's own failure")


async def _path_fix(client: PlatformClient, settings: Settings) -> str:
    """The guide names two paths; say which one this platform answers at, if it answers at the other."""
    fix = (
        "check CALLJOURNEY_BASE_URL and --endpoint-path: the guide's reference names "
        f"{DEFAULT_ENDPOINT_PATH} but its example calls /api/v1/search/callexists"
    )
    for path in ALTERNATIVE_PATHS:
        if path == settings.endpoint_path:
            continue
        url = settings.base_url.rstrip("/") + path
        with contextlib.suppress(ReconcileError):
            reply = await client.ask(url, _EMPTY_PROBE)
            if reply.status in (200, 400, 422):
                return (
                    f"this platform answers at {path}: pass --endpoint-path {path} (or set CALLJOURNEY_ENDPOINT_PATH)"
                )
    return fix


async def _check_probe(client: PlatformClient, settings: Settings, key: Key) -> Check:
    body = orjson.dumps(dict(zip(KEY_FIELDS, key, strict=True)))
    shown = "/".join(key)
    try:
        reply = await client.ask(settings.endpoint_url, body)
    except ReconcileError as exc:
        return _fail("probe", f"{shown}: {redact(str(exc))}", "run doctor again; check the network")
    if reply.status == 200:
        try:
            answer = orjson.loads(reply.body)
        except orjson.JSONDecodeError:
            answer = None
        if isinstance(answer, dict) and isinstance(answer.get("exists"), bool):
            if answer["exists"]:
                return Check("probe", "pass", f"{shown}: exists, callId {answer.get('callId', '')}")
            return Check("probe", "pass", f"{shown}: does not exist (a run would report it missing)")
        fix = 'the platform should answer {"exists": bool, "callId": str}: check --endpoint-path'
        return _fail("probe", f"{shown}: 200 with an unexpected body {reply.body[:120]!r}", fix)
    message = server_message(reply.body)
    if reply.status == 400:
        fix = "give all four values; the filename is exact, extension included"
        return _fail("probe", f"{shown}: the platform refused the row (400: {message})", fix)
    return _fail("probe", f"{shown}: answered {reply.status} ({message})", "run doctor again; a 5xx is the platform's")


# -- output --------------------------------------------------------------------------------------------

STEP_NAMES = {
    "settings": "Settings",
    "authority": "Authority",
    "token": "Token",
    "api": "API path",
    "probe": "Probe row",
}
_MARKS = {
    True: {"pass": "✓", "warn": "✓", "fail": "✗", "skip": "–"},
    False: {"pass": "OK", "warn": "WARN", "fail": "FAIL", "skip": "SKIP"},
}


def render(checks: list[Check], *, unicode: bool = True) -> str:
    """The checks as text for a terminal: a mark and a line per step, indented details, warnings and fixes."""
    marks = _MARKS[unicode]
    width = max(len(m) for m in marks.values())
    lines = []
    for check in checks:
        lines.append(f"{marks[check.status]:<{width}} {STEP_NAMES.get(check.step, check.step)}: {check.summary}")
        pad = " " * (width + 3)
        lines += [pad + detail for detail in check.details]
        lines += [pad + ("! " if unicode else "warning: ") + warning for warning in check.warnings]
        if check.fix:
            lines.append(pad + "fix: " + check.fix)
    failed = [STEP_NAMES.get(c.step, c.step) for c in checks if c.status == "fail"]
    lines.append("all checks passed" if not failed else f"failed: {', '.join(failed)}")
    return "\n".join(lines)


def can_print_unicode(encoding: str | None) -> bool:
    """Whether a stream in ``encoding`` can show ✓ and ✗."""
    try:
        "✓✗–".encode(encoding or "ascii")
    except (LookupError, UnicodeEncodeError):
        return False
    return True
