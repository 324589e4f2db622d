"""emulator/server: the emulator on loopback over HTTP and TLS, started and stopped in-process."""

from __future__ import annotations

import ssl

import aiohttp
import pytest
import trustme

import reconcile.emulator
from reconcile.emulator import (
    Emulator,
)
from tests.emulator.conftest import (
    ask,
    get_token,
)


async def test_tls_with_verification_on() -> None:
    """Over HTTPS with a trustme CA, a verifying client gets tokens and answers; an untrusting one fails."""
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    async with Emulator(ssl_context=server_ctx) as emu:
        assert emu.base_url.startswith("https://localhost:")
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ctx)) as session:
            token = await get_token(session, emu)
            status, body, _ = await ask(session, emu, token)
            assert (status, body["exists"]) == (200, True)
        async with aiohttp.ClientSession() as untrusting:
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await get_token(untrusting, emu)


def test_public_names() -> None:
    """reconcile.emulator exports exactly the documented names, and each exists."""
    assert sorted(reconcile.emulator.__all__) == sorted(
        [
            "DEMO_CLIENT_ID",
            "DEMO_CLIENT_SECRET",
            "DEMO_TENANT_ID",
            "FAULT_MIXES",
            "STATS_PATH",
            "Dataset",
            "Emulator",
            "EmulatorConfig",
            "FEDERATED_AUDIENCE",
            "Faults",
            "FederatedIssuer",
            "Key",
            "Stats",
            "create_app",
            "make_call_id",
            "synthetic_manifest_rows",
        ]
    )
    assert all(hasattr(reconcile.emulator, name) for name in reconcile.emulator.__all__)
