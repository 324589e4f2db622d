"""``reconcile demo``: the whole pipe, against the bundled emulator, with the bundled sample manifests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Secret, Settings
from .engine import Reconciler, RunOptions
from .errors import UsageError
from .report import Summary
from .runner import run

if TYPE_CHECKING:
    from .emulator import Emulator


def sample_manifests() -> list[Path]:
    """The sample manifests: ./sample_manifests, else the ones beside the package in a source checkout."""
    for folder in (Path("sample_manifests"), Path(__file__).resolve().parent.parent / "sample_manifests"):
        found = sorted(folder.glob("*.csv"))
        if found:
            return found
    raise UsageError("no sample manifests found. HINT: run 'reconcile demo' from the project's checkout")


def demo_settings(emulator: Emulator, **changes: Any) -> Settings:
    """Settings that reach a running ``emulator`` with its demo credentials; ``changes`` override fields."""
    from .emulator import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TENANT_ID

    settings = Settings(
        tenant_id=DEMO_TENANT_ID,
        client_id=DEMO_CLIENT_ID,
        client_secret=Secret(DEMO_CLIENT_SECRET),
        base_url=emulator.base_url,
        authority=emulator.authority,
    ).with_(**changes)
    settings.validate()
    return settings


async def run_demo(out_dir: Path, concurrency: int | None, install: Callable[[Reconciler], None]) -> Summary:
    """Start the emulator on a free loopback port, reconcile the samples, write the report."""
    from .emulator import Emulator

    manifests = sample_manifests()
    async with Emulator() as emulator:
        settings = demo_settings(emulator, concurrency=concurrency)
        options = RunOptions(out_dir=out_dir, fresh=True, label="demo (bundled emulator)")
        return await run(manifests, settings, options, on_start=install)
