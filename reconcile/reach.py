"""Can this machine reach a host?  DNS, TCP, then TLS with verification, each failure told apart with its fix.

``reconcile doctor`` asks this of the identity provider and the platform before it asks them anything: "the
name does not resolve", "nothing listens on that port", "a firewall drops the traffic" and "the certificate
is not trusted" each call for a different person to fix something different.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .config import is_loopback


@dataclass(frozen=True, slots=True)
class Reach:
    """Whether a host answered, what was found, and the fix when it did not."""

    ok: bool
    summary: str
    details: tuple[str, ...] = ()
    fix: str = ""


async def reach(url: str, context: ssl.SSLContext, seconds: float, *, option: str) -> Reach:
    """Open a TCP connection (and a verified TLS session for https) to the host of ``url``.

    ``option`` names where the URL came from (e.g. ``--authority (CALLJOURNEY_AUTHORITY)``) for the fix.
    """
    parts = urlsplit(url)
    host, tls = parts.hostname or "", parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    where = f"{host}:{port}"
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(seconds):
            _, writer = await asyncio.open_connection(
                host, port, ssl=context if tls else None, server_hostname=host if tls else None
            )
    except socket.gaierror as exc:
        fix = f"check the host name in {option}; if it is right, this machine's DNS (or a proxy it must use) is "
        return Reach(False, f"cannot resolve {host} (DNS: {exc.strerror})", fix=fix + f"at fault: nslookup {host}")
    except ssl.SSLCertVerificationError as exc:
        reason = exc.verify_message or str(exc)
        return Reach(False, f"the TLS certificate of {where} is not trusted: {reason}", fix=_certificate_fix(reason))
    except ssl.SSLError as exc:
        fix = f"check that {where} speaks HTTPS (a plain-http loopback server needs an http:// URL)"
        return Reach(False, f"TLS handshake with {where} failed: {exc.reason or exc}", fix=fix)
    except ConnectionRefusedError:
        fix = f"check the port in {option}, and that the service is running"
        return Reach(False, f"connection refused by {where}: nothing listens there", fix=fix)
    except TimeoutError:
        fix = f"a firewall may drop the traffic, or this network needs a proxy: allow outbound HTTPS to {host}"
        return Reach(False, f"no answer from {where} within {seconds:.0f} s", fix=fix)
    except OSError as exc:
        fix = "check this machine's network connection and routes"
        return Reach(False, f"cannot connect to {where}: {exc.strerror or exc}", fix=fix)
    try:
        if tls:
            return Reach(True, f"{where} answers", _tls_details(writer))
        plain = "plain http: allowed because the host is loopback" if is_loopback(host) else "plain http"
        return Reach(True, f"{where} answers", (plain,))
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)


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
