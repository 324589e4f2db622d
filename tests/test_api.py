"""runner.py: the library entry point refuses to report on a manifest that changed while it was reconciled."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import reconcile
from reconcile.emulator import Dataset, Emulator, EmulatorConfig
from reconcile.engine._engine import Reconciler
from reconcile.engine._outdir import LOCK_NAME
from reconcile.errors import JournalMismatch, ManifestError
from tests.conftest import settings_for, write_manifest

ROWS = [("acme", "acme-ca", "2026/11/25", f"call-{i:03d}.wav") for i in range(40)]


async def test_a_manifest_changed_during_the_run_gets_no_report(tmp_path: Path) -> None:
    """An export appended to while it is checked ends in a ManifestError naming it, and no report is written."""
    manifest = write_manifest(tmp_path / "export.csv", ROWS)
    out = tmp_path / "out"
    started: list[Reconciler] = []

    def append_a_row() -> None:
        with open(manifest, "a", encoding="utf-8", newline="") as handle:
            handle.write("acme,acme-ca,2026/11/25,late-arrival.wav\n")

    async with Emulator(EmulatorConfig(latency_ms=30), Dataset({ROWS[0]: "call-1"})) as emulator:
        settings = settings_for(emulator, concurrency=2)
        run = asyncio.ensure_future(reconcile.run([manifest], out, settings=settings, on_start=started.append))
        while not started or started[0].progress.done < 1:  # noqa: ASYNC110  # progress has no event to wait on
            await asyncio.sleep(0.01)
        await asyncio.to_thread(append_a_row)  # while rows are still being checked
        with pytest.raises(ManifestError, match=r"export\.csv: changed while it was being reconciled .*--fresh"):
            await run
        assert not (out / "results.csv").exists()
        assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [LOCK_NAME]  # nor any part of one
        with pytest.raises(JournalMismatch):  # the journal holds the run of the file as it was
            await reconcile.run([manifest], out, settings=settings)
        summary = await reconcile.run([manifest], out, settings=settings, fresh=True)
    assert summary.records == len(ROWS) + 1
    assert summary.counts["present"] == 1
