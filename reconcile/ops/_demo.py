"""``reconcile demo``: the whole pipe, against the bundled emulator, with the bundled sample manifests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconcile.api import run
from reconcile.config import Secret, Settings
from reconcile.engine import Reconciler
from reconcile.errors import FatalError
from reconcile.report import Report

if TYPE_CHECKING:
    from reconcile.emulator import Emulator


# Package data, copies of the checkout's sample_manifests/: the demo works from any installed copy, anywhere.
# A plain path, not importlib.resources: the reader needs real files, and pip never installs a zipped package.
DEMO_MANIFESTS = Path(__file__).resolve().parent / "demo_manifests"
DEMO_LABEL = "demo (bundled emulator)"


def sample_manifests(directory: Path | None = None) -> list[Path]:
    """The sample manifests in ``directory``: by default those shipped inside the package."""
    directory = directory or DEMO_MANIFESTS  # not a default argument: the CLI test of a broken install patches it
    found = sorted(directory.glob("*.csv"))
    if not found:
        raise FatalError(
            f"no sample manifests in {directory}: this installation is incomplete. "
            "HINT: reinstall calljourney-reconcile from its wheel"
        )
    return found


def demo_settings(emulator: Emulator, **changes: Any) -> Settings:
    """Settings that reach a running ``emulator`` with its demo credentials; ``changes`` override fields."""
    from reconcile.emulator import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TENANT_ID

    settings = Settings(
        tenant_id=DEMO_TENANT_ID,
        client_id=DEMO_CLIENT_ID,
        client_secret=Secret(DEMO_CLIENT_SECRET),
        base_url=emulator.base_url,
        authority=emulator.authority,
    ).with_(**changes)
    settings.validate()
    return settings


async def run_demo(out_dir: Path, concurrency: int | str | None, install: Callable[[Reconciler], None]) -> Report:
    """Start the emulator on a free loopback port, reconcile the samples, write the report.  ``concurrency``:
    a number, or ``"auto"`` (or None) to find it."""
    from reconcile.emulator import Emulator

    manifests = sample_manifests()
    async with Emulator() as emulator:
        return await run(
            manifests,
            out_dir,
            settings=demo_settings(emulator),
            on_start=install,
            fresh=True,
            label=DEMO_LABEL,
            concurrency=concurrency,
        )
