"""ops/_demo: the packaged sample manifests, reconciled against the bundled emulator on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconcile.engine import Reconciler
from reconcile.errors import FatalError
from reconcile.ops._demo import DEMO_MANIFESTS, run_demo, sample_manifests


def test_the_samples_are_the_packaged_csv_files() -> None:
    """sample_manifests() lists the package's CSV files, sorted, from inside the installed package."""
    found = sample_manifests()
    assert found == sorted(DEMO_MANIFESTS.glob("*.csv"))
    assert found


def test_an_empty_manifest_directory_is_an_incomplete_installation(tmp_path: Path) -> None:
    """No manifests where the package keeps them: a FatalError naming the directory, with the fix."""
    with pytest.raises(FatalError, match=rf"no sample manifests in {tmp_path}.*HINT: reinstall"):
        sample_manifests(tmp_path)


async def test_the_demo_reconciles_every_sample_row(tmp_path: Path) -> None:
    """run_demo starts the emulator, checks every sample row (some present, missing, invalid) and writes the report."""
    started: list[Reconciler] = []
    summary = await run_demo(tmp_path / "out", 8, started.append)
    assert len(started) == 1
    assert summary.complete
    assert min(summary.counts["present"], summary.counts["missing"], summary.counts["invalid"]) > 0
    assert (tmp_path / "out" / "results.csv").is_file()
