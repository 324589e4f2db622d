"""Can this machine reach a host?  DNS, TCP, then TLS with verification, each failure told apart with its fix.

``reconcile doctor`` asks this of the identity provider and the platform before it asks them anything: "the
name does not resolve", "nothing listens on that port", "a firewall drops the traffic" and "the certificate
is not trusted" each call for a different person to fix something different.  Through a proxy, the same
questions are asked of the proxy, then a CONNECT tunnel is opened through it (a 407 asks for credentials, a
403 or 502 is the proxy's policy or its own reach) and TLS is verified end to end with the host.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from reconcile.config import Route, is_loopback


@dataclass(frozen=True, slots=True)
class Connectivity:
    """Whether a host answered, what was found, and the fix when it did not."""

    ok: bool
    summary: str
    details: tuple[str, ...] = ()
    fix: str = ""


class _ProxyRefused(Exception):
    """The proxy answered the CONNECT with something other than 200 (status 0: it hung up)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}".strip() if status else reason)
        self.status = status


class _ProxyUnreachable(Exception):
    def __init__(self, error: OSError | TimeoutError) -> None:
        super().__init__(str(error))
        self.error = error


async def probe_connectivity(
    url: str, context: ssl.SSLContext, seconds: float, *, option: str, proxy: Route | None = None
) -> Connectivity:
    """Open a TCP connection (and a verified TLS session for https) to the host of ``url``, through ``proxy``.

    ``option`` names where the URL came from (e.g. ``--authority (CALLJOURNEY_AUTHORITY)``) for the fix.
    """
    parts = urlsplit(url)
    host, tls = parts.hostname or "", parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    where = f"{host}:{port}"
    via = (f"through the proxy {proxy.shown} (from {proxy.source})",) if proxy else ("direct (no proxy)",)
    try:
        async with asyncio.timeout(seconds):
            if proxy is None:
                _, writer = await asyncio.open_connection(
                    host, port, ssl=context if tls else None, server_hostname=host if tls else None
                )
            else:
                writer = await _through(proxy, where, context if tls else None, host)
    except _ProxyRefused as exc:
        assert proxy is not None
        return _proxy_refused(proxy, where, exc)
    except _ProxyUnreachable as exc:
        assert proxy is not None
        return _proxy_unreachable(proxy, exc.error)
    except (OSError, TimeoutError) as exc:
        if proxy is not None and isinstance(exc, TimeoutError):
            fix = f"check the proxy's address in {proxy.source}; a slow proxy or a firewall in front of it drops this"
            return Connectivity(
                False, f"no answer from {where} through the proxy {proxy.shown} within {seconds:.0f} s", fix=fix
            )
        return _failure(exc, host, where, seconds, option)
    try:
        if tls:
            return Connectivity(True, f"{where} answers", via + _tls_details(writer))
        plain = "plain http: allowed because the host is loopback" if is_loopback(host) else "plain http"
        return Connectivity(True, f"{where} answers", (*via, plain))
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)


async def _through(proxy: Route, where: str, context: ssl.SSLContext | None, host: str) -> asyncio.StreamWriter:
    """A connection to ``where`` through a CONNECT tunnel of ``proxy``, with verified TLS inside it if asked."""
    parts = urlsplit(proxy.url)
    try:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
    except OSError as exc:
        raise _ProxyUnreachable(exc) from exc
    try:
        request = f"CONNECT {where} HTTP/1.1\r\nHost: {where}\r\n"
        if proxy.username:
            pair = base64.b64encode(f"{proxy.username}:{proxy.password}".encode()).decode()
            request += f"Proxy-Authorization: Basic {pair}\r\n"
        writer.write((request + "\r\n").encode())
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            raise _ProxyRefused(0, "it closed the connection without an answer") from None
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        status = int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else 0
        if status != 200:
            raise _ProxyRefused(status, status_line[2] if len(status_line) > 2 else "an answer that is not HTTP")
        if context is not None:
            await writer.start_tls(context, server_hostname=host)
    except BaseException:
        writer.close()
        raise
    return writer


def _proxy_refused(proxy: Route, where: str, exc: _ProxyRefused) -> Connectivity:
    summary = f"the proxy {proxy.shown} refused to open a tunnel to {where}: {exc}"
    if exc.status == 407:
        refused = " (the ones given were refused)" if proxy.username else ""
        fix = (
            f"the proxy wants credentials{refused}: put them in the proxy URL, http://USER:PASSWORD@host:port, "
            f"in {proxy.source}"
        )
    else:
        fix = f"ask the proxy's administrators to allow {where}, or add the host to NO_PROXY if it is reached directly"
    return Connectivity(False, summary, (f"proxy from {proxy.source}",), fix=fix)


def _proxy_unreachable(proxy: Route, exc: OSError | TimeoutError) -> Connectivity:
    if isinstance(exc, ConnectionRefusedError):
        reason = "connection refused: nothing listens there"
    elif isinstance(exc, socket.gaierror):
        reason = f"its name does not resolve ({exc.strerror})"
    else:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    fix = f"check the proxy's address and port in {proxy.source} (and that the proxy is running)"
    return Connectivity(
        False, f"cannot connect to the proxy {proxy.shown}: {reason}", (f"proxy from {proxy.source}",), fix=fix
    )


def _failure(exc: OSError | TimeoutError, host: str, where: str, seconds: float, option: str) -> Connectivity:
    """What a failed connection to the host itself means, and the fix."""
    if isinstance(exc, socket.gaierror):
        fix = f"check the host name in {option}; if it is right, this machine's DNS (or a proxy it must use) is "
        return Connectivity(
            False, f"cannot resolve {host} (DNS: {exc.strerror})", fix=fix + f"at fault: nslookup {host}"
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or str(exc)
        return Connectivity(
            False, f"the TLS certificate of {where} is not trusted: {reason}", fix=_certificate_fix(reason)
        )
    if isinstance(exc, ssl.SSLError):
        fix = f"check that {where} speaks HTTPS (a plain-http loopback server needs an http:// URL)"
        return Connectivity(False, f"TLS handshake with {where} failed: {exc.reason or exc}", fix=fix)
    if isinstance(exc, ConnectionRefusedError):
        fix = f"check the port in {option}, and that the service is running"
        return Connectivity(False, f"connection refused by {where}: nothing listens there", fix=fix)
    if isinstance(exc, TimeoutError):
        fix = f"a firewall may drop the traffic, or this network needs a proxy: allow outbound HTTPS to {host}"
        return Connectivity(False, f"no answer from {where} within {seconds:.0f} s", fix=fix)
    fix = "check this machine's network connection and routes"
    return Connectivity(False, f"cannot connect to {where}: {exc.strerror or exc}", fix=fix)


def _tls_details(writer: asyncio.StreamWriter) -> tuple[str, ...]:
    tls = writer.get_extra_info("ssl_object")
    if tls is None:
        return ("TLS",)
    cert = tls.getpeercert() or {}
    subject = _name(cert.get("subject", ())).get("commonName", "?")
    issuer = _name(cert.get("issuer", ()))
    issued_by = issuer.get("organizationName") or issuer.get("commonName", "?")
    details = [f"{tls.version()}, certificate verified: {subject}, issued by {issued_by}"]
    if cert.get("notAfter"):
        details.append(f"certificate valid until {cert['notAfter']}")
    return tuple(details)


def _name(rdns: Any) -> dict[str, str]:
    """``getpeercert()``'s nested subject/issuer tuples as a flat dict."""
    return {key: value for rdn in rdns for key, value in rdn}


def _certificate_fix(reason: str) -> str:
    reason = reason.lower()
    if "hostname" in reason or "ip address mismatch" in reason:
        return "the certificate names another host: check the host name in the URL"
    if "expired" in reason:
        return "the server's certificate has expired: tell the server's operator"
    return (
        "if a private CA or a TLS-inspecting proxy signed it, pass --ca-bundle with that CA's PEM "
        "(verification stays on); otherwise the server is not the one it claims to be"
    )
