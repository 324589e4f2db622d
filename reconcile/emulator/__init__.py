"""A local stand-in for Azure AD and the CallJourney platform API, with fault injection.

It is a real aiohttp server on loopback, so end-to-end tests and benchmarks exercise the
same sockets, TLS, keep-alive and timeouts a production run does::

    async with Emulator(EmulatorConfig(faults=Faults.uniform(0.05))) as emu:
        ...  # token endpoint: {emu.authority}/{tenant}/oauth2/v2.0/token
        ...  # API:            {emu.base_url}/api/v1/search/conversationexists
"""

from __future__ import annotations

from reconcile.emulator.app import EmulatorConfig, Stats, create_app
from reconcile.emulator.assertions import FEDERATED_AUDIENCE, FederatedIssuer
from reconcile.emulator.dataset import Dataset, Key, make_call_id, synthetic_manifest_rows
from reconcile.emulator.faults import Faults
from reconcile.emulator.server import Emulator
from reconcile.emulator.tokens import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TENANT_ID

__all__ = [
    "DEMO_CLIENT_ID",
    "DEMO_CLIENT_SECRET",
    "DEMO_TENANT_ID",
    "FEDERATED_AUDIENCE",
    "Dataset",
    "Emulator",
    "EmulatorConfig",
    "Faults",
    "FederatedIssuer",
    "Key",
    "Stats",
    "create_app",
    "make_call_id",
    "synthetic_manifest_rows",
]
