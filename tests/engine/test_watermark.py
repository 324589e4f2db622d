"""engine/_watermark: the committed bound never runs ahead of the journal, and follows a real run to its end."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from reconcile.emulator import Dataset, Emulator, EmulatorConfig, Faults
from reconcile.engine._engine import Reconciler, RunOptions
from reconcile.engine._journal import Journal
from reconcile.engine._watermark import START, CommitWatermark, Position
from reconcile.input._shard import Shard
from tests.conftest import settings_for, write_manifest


def test_the_bound_stops_at_the_first_row_not_recorded() -> None:
    """Rows recorded out of order count only once every row handed out before them is recorded too."""
    watermark = CommitWatermark()
    for row in (1, 2, 3):
        watermark.handed_out((0, row))
    watermark.fed_until((0, 4))
    watermark.recorded((0, 3))
    watermark.recorded((0, 2))
    assert watermark.recorded_until() == (0, 1)
    watermark.recorded((0, 1))
    assert watermark.recorded_until() == (0, 4)


def test_nothing_handed_out_leaves_the_bound_at_the_feed() -> None:
    """With no row outstanding the bound is where feeding got to: rows resolved earlier need nothing."""
    watermark = CommitWatermark()
    assert watermark.recorded_until() == START
    watermark.fed_until((1, 0))
    assert watermark.recorded_until() == (1, 0)


def test_commit_only_moves_forward_and_says_so() -> None:
    """commit() advances the bound and sets ``moved``; an older bound changes nothing."""
    watermark = CommitWatermark()
    watermark.commit((0, 10))
    assert watermark.committed == (0, 10)
    assert watermark.moved.is_set()
    watermark.moved.clear()
    watermark.commit((0, 5))
    assert watermark.committed == (0, 10)
    assert not watermark.moved.is_set()


def test_a_row_stuck_too_long_stops_the_tracking_and_its_memory() -> None:
    """Past ``limit`` rows outstanding behind a stuck one, the watermark forgets them and stays where it was."""
    watermark = CommitWatermark(limit=100)
    watermark.handed_out((0, 1))
    watermark.recorded((0, 1))
    watermark.fed_until((0, 2))
    watermark.commit(watermark.recorded_until())
    for row in range(2, 103):  # row 2 never comes back; 3..102 do
        watermark.handed_out((0, row))
        if row > 2:
            watermark.recorded((0, row))
    assert not watermark.tracking
    assert watermark.outstanding == 0
    watermark.recorded((0, 2))
    watermark.fed_until((0, 103))
    assert watermark.recorded_until() == (0, 2)  # never past what it last knew to be committed


def rows_for(name: str, count: int) -> list[tuple[str, str, str, str]]:
    rows = [("acme", "acme-ca", "2026/11/25", f"{name}-{i:03d}.wav") for i in range(count)]
    rows[7] = ("acme", "", "2026/11/25", "no-organisation.wav")  # invalid: settled without a request
    rows[20] = rows[3]  # a duplicate: settled at once, but reported with row 4's answer
    return rows


@pytest.mark.slow
@pytest.mark.parametrize("shard", [None, Shard(0, 2)], ids=["whole", "shard-0-of-2"])
async def test_every_row_before_the_bound_is_in_the_journal(tmp_path: Path, shard: Shard | None) -> None:
    """Throughout a run with jitter and retried 500s, each committed bound has every row before it in the journal."""
    manifests = [
        write_manifest(tmp_path / "a.csv", rows_for("a", 200)),
        write_manifest(tmp_path / "b.csv", rows_for("b", 120)),
    ]
    config = EmulatorConfig(latency_ms=2, jitter_ms=4, faults=Faults(rate_500=0.1), seed=7)
    seen: list[Position] = []
    async with Emulator(config, Dataset({})) as emulator:
        reconciler = Reconciler(
            manifests,
            settings_for(emulator, concurrency=4),
            RunOptions(shard=shard),
            flush_every=0.01,  # many commits, each a step of the bound, in a run of a fraction of a second
        )
        infos = [m.info() for m in reconciler.manifests]
        journal = Journal.open(tmp_path / "out", infos, shard=str(shard or ""))
        try:
            watcher = asyncio.ensure_future(watch(reconciler, journal, seen, shard))
            outcome = await reconciler.run(journal)
            watcher.cancel()
            (ended,) = await asyncio.gather(watcher, return_exceptions=True)
        finally:
            journal.close()
    assert isinstance(ended, asyncio.CancelledError), ended  # the watcher found nothing wrong
    assert outcome.fatal is None
    assert len(seen) >= 3  # the bound moved during the run, not once at the end
    assert seen == sorted(seen)
    assert reconciler.watermark.committed >= (2, 0)  # past the last row of the last manifest


async def watch(reconciler: Reconciler, journal: Journal, seen: list[Position], shard: Shard | None) -> None:
    watermark = reconciler.watermark
    while True:
        await watermark.moved.wait()
        watermark.moved.clear()
        bound = watermark.committed
        seen.append(bound)
        for manifest in reconciler.manifests:
            if (manifest.index, 1) >= bound:
                break
            before = bound[1] if bound[0] == manifest.index else 1 << 62
            wanted = [
                row
                for row, _line, values in manifest.rows()
                if row < before and (shard is None or shard.holds(manifest.key_of(values)))
            ]
            found = [r[0] for r in await journal.read_page(manifest.index, 0, before)]
            assert found == wanted, f"rows before {bound} of {manifest.path} missing from the journal"
