"""A local stand-in for Azure AD and the CallJourney platform API, with fault injection.

It is a real aiohttp server on loopback, so end-to-end tests and benchmarks exercise the
same sockets, TLS, keep-alive and timeouts a production run does::

    async with Emulator(EmulatorConfig(faults=Faults.uniform(0.05))) as emu:
        ...  # token endpoint: {emu.authority}/{tenant}/oauth2/v2.0/token
        ...  # API:            {emu.base_url}/api/v1/search/conversationexists
        emu.stats.summary()  # what the platform saw: statuses, faults, 429s of the cap, latency

Platform shapes: random faults (``Faults``, rate-independent), a gateway's rate cap
(``max_rps``), and a capacity-limited backend (``capacity``, ``queue_limit``) whose latency
grows with load.
"""

from __future__ import annotations

from reconcile.emulator.app import STATS_PATH, EmulatorConfig, Stats, create_app
from reconcile.emulator.assertions import FEDERATED_AUDIENCE, FederatedIssuer
from reconcile.emulator.dataset import Dataset, Key, make_call_id, synthetic_manifest_rows
from reconcile.emulator.faults import FAULT_MIXES, Faults
from reconcile.emulator.server import Emulator
from reconcile.emulator.tokens import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TENANT_ID

__all__ = [
    "DEMO_CLIENT_ID",
    "DEMO_CLIENT_SECRET",
    "DEMO_TENANT_ID",
    "FAULT_MIXES",
    "FEDERATED_AUDIENCE",
    "STATS_PATH",
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
