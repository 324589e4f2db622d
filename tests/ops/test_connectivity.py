"""ops/_connectivity: DNS, TCP and verified TLS to a host, directly or through a CONNECT proxy, each failure with
its own fix; against real loopback servers."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from reconcile.config import Route
from reconcile.ops._connectivity import probe_connectivity
from tests.conftest import closed_port

OPTION = "--base-url (CALLJOURNEY_BASE_URL)"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _hang_up(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


@asynccontextmanager
async def server(handler: Handler = _hang_up, context: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    """A TCP (or TLS) server on a free loopback port; its port."""
    listening = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=context)
    try:
        yield listening.sockets[0].getsockname()[1]
    finally:
        listening.close()
        await listening.wait_closed()


def client_context(ca_bundle: Path | None = None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)


async def test_verified_tls_answers_with_the_certificate_it_showed(server_ssl: ssl.SSLContext, ca_bundle: Path) -> None:
    """A TLS server whose CA is trusted answers: the details name the TLS version and the verified certificate."""
    async with server(context=server_ssl) as port:
        found = await probe_connectivity(f"https://localhost:{port}/", client_context(ca_bundle), 5, option=OPTION)
    assert found.ok, found
    assert found.summary == f"localhost:{port} answers"
    assert found.details[0] == "direct (no proxy)"
    assert "certificate verified" in found.details[1]


async def test_an_untrusted_certificate_names_the_ca_bundle_fix(server_ssl: ssl.SSLContext) -> None:
    """Without the CA, verification fails (it stays on) and the fix is --ca-bundle."""
    async with server(context=server_ssl) as port:
        found = await probe_connectivity(f"https://localhost:{port}/", client_context(), 5, option=OPTION)
    assert not found.ok
    assert "is not trusted" in found.summary
    assert "--ca-bundle" in found.fix


async def test_a_closed_port_is_refused_naming_the_option_to_check() -> None:
    """Nothing listening: "connection refused", and the fix names where the URL came from."""
    port = closed_port()
    found = await probe_connectivity(f"https://127.0.0.1:{port}/", client_context(), 5, option=OPTION)
    assert (found.ok, found.summary) == (False, f"connection refused by 127.0.0.1:{port}: nothing listens there")
    assert OPTION in found.fix


async def test_plain_http_is_noted_as_allowed_only_for_loopback() -> None:
    """A plain-http loopback URL answers, and says why plain http is allowed."""
    async with server() as port:
        found = await probe_connectivity(f"http://127.0.0.1:{port}/", client_context(), 5, option=OPTION)
    assert found.ok
    assert "plain http: allowed because the host is loopback" in found.details


async def test_a_proxy_that_refuses_the_tunnel_asks_for_credentials_on_407() -> None:
    """A CONNECT answered 407 names the proxy, its source and how to give credentials."""

    async def answer_407(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    async with server(answer_407) as port:
        proxy = Route(f"http://127.0.0.1:{port}", "HTTPS_PROXY")
        found = await probe_connectivity("https://platform.example/", client_context(), 5, option=OPTION, proxy=proxy)
    assert not found.ok
    assert found.summary.startswith(f"the proxy http://127.0.0.1:{port} refused to open a tunnel to platform.example")
    assert "407" in found.summary
    assert "http://USER:PASSWORD@host:port, in HTTPS_PROXY" in found.fix


async def test_an_unreachable_proxy_is_told_apart_from_the_host() -> None:
    """A proxy nothing listens on is the proxy's problem: its address and source are what to check."""
    proxy = Route(f"http://127.0.0.1:{closed_port()}", "--proxy (CALLJOURNEY_PROXY)")
    found = await probe_connectivity("https://platform.example/", client_context(), 5, option=OPTION, proxy=proxy)
    assert not found.ok
    assert found.summary == f"cannot connect to the proxy {proxy.url}: connection refused: nothing listens there"
    assert "--proxy (CALLJOURNEY_PROXY)" in found.fix
