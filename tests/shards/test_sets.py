"""shards/_sets: a shard's --out is read and checked, and a set of them is checked as a whole, naming the fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reconcile.errors import UsageError
from reconcile.input._shard import Shard
from reconcile.report import OUR_COLUMNS
from reconcile.shards._sets import ShardReport, check_set, read_shard

HEADER = ["company", "organisation", "folder", "filename", *OUR_COLUMNS]


def shard_dir(base: Path, name: str, shard: str | None, **changes: Any) -> Path:
    """A directory holding what a finished shard run writes: summary.json and the header of results.csv."""
    directory = base / name
    directory.mkdir()
    summary = {
        "shard": shard,
        "counts": {"present": 1},
        "records": 1,
        "manifests": [{"path": "m.csv", "sha256": "ab" * 32, "records": 1, "bytes": 10}],
        "complete": True,
        "started_at": "2026-12-01T10:00:00.000Z",
        "endpoint": "https://platform.example/api/v1/search/conversationexists",
        **changes,
    }
    (directory / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    (directory / "results.csv").write_text(",".join(HEADER) + "\n", encoding="utf-8")
    return directory


def test_a_finished_shard_is_read_with_its_manifests_and_columns(tmp_path: Path) -> None:
    """read_shard gives the shard, the (path, SHA-256) of each manifest and the results.csv header."""
    report = read_shard(shard_dir(tmp_path, "s0", "0/2"))
    assert report.shard == Shard(0, 2)
    assert report.manifests == [("m.csv", "ab" * 32)]
    assert report.columns == tuple(HEADER)
    assert report.results == tmp_path / "s0" / "results.csv"


@pytest.mark.parametrize(
    ("prepare", "message"),
    [
        (lambda base: base / "absent", "no such directory"),
        (lambda base: (base / "empty").mkdir() or base / "empty", "holds no summary.json"),
        (lambda base: shard_dir(base, "whole", None), "report of an unsharded run"),
        (lambda base: shard_dir(base, "odd", "two of three"), "is not K/N"),
    ],
)
def test_what_is_not_a_shard_report_is_refused(tmp_path: Path, prepare: Any, message: str) -> None:
    """A missing directory, no summary, an unsharded run, a shard that is not K/N: each a UsageError."""
    with pytest.raises(UsageError, match=message):
        read_shard(prepare(tmp_path))


def test_a_summary_lacking_what_merge_reads_is_refused(tmp_path: Path) -> None:
    """A summary.json without its counts is not a reconcile summary: the HINT says to re-run that shard."""
    directory = shard_dir(tmp_path, "old", "0/2")
    summary = json.loads((directory / "summary.json").read_text(encoding="utf-8"))
    del summary["counts"]
    (directory / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    with pytest.raises(UsageError, match=r"is not a reconcile summary .*HINT: re-run that shard"):
        read_shard(directory)


def test_a_results_file_of_another_tool_is_refused(tmp_path: Path) -> None:
    """A results.csv whose last columns are not reconcile's is named as not ours."""
    directory = shard_dir(tmp_path, "s0", "0/1")
    (directory / "results.csv").write_text("a,b\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"is not a reconcile results\.csv"):
        read_shard(directory)


def reports(base: Path, *shards: tuple[str, dict[str, Any]]) -> list[ShardReport]:
    return [read_shard(shard_dir(base, f"d{i}", text, **changes)) for i, (text, changes) in enumerate(shards)]


def test_a_whole_set_comes_back_in_shard_order(tmp_path: Path) -> None:
    """Shards given out of order are returned 0, 1, 2."""
    given = reports(tmp_path, ("2/3", {}), ("0/3", {}), ("1/3", {}))
    assert [r.shard.index for r in check_set(given, tmp_path / "merged")] == [0, 1, 2]


@pytest.mark.parametrize(
    ("shards", "message"),
    [
        ((("0/2", {}), ("1/3", {})), "split the rows differently"),
        ((("0/3", {}), ("2/3", {})), "shard 1/3 is missing"),
        ((("0/2", {}), ("0/2", {}), ("1/2", {})), "shard 0/2 is given 2 times"),
        (
            (("0/2", {}), ("1/2", {"manifests": [{"path": "m.csv", "sha256": "cd" * 32, "records": 1, "bytes": 10}]})),
            "different manifests",
        ),
        ((("0/2", {}), ("1/2", {"endpoint": "https://other.example/x"})), "asked different platforms: endpoint"),
        ((("0/2", {}), ("1/2", {"complete": False, "outcome": "fatal"})), "cannot merge unfinished shards"),
    ],
)
def test_a_set_that_does_not_fit_together_is_refused(
    tmp_path: Path, shards: tuple[tuple[str, dict[str, Any]], ...], message: str
) -> None:
    """Another N, a gap, a repeat, another manifest, another platform, an unfinished shard: each named, with a HINT."""
    with pytest.raises(UsageError, match=message) as caught:
        check_set(reports(tmp_path, *shards), tmp_path / "merged")
    assert "HINT" in str(caught.value)


def test_unfinished_shards_merge_when_allowed_but_never_into_a_shard(tmp_path: Path) -> None:
    """allow_incomplete lets an unfinished shard in; an --out that is one of the shards is refused."""
    given = reports(tmp_path, ("0/2", {}), ("1/2", {"complete": False}))
    assert len(check_set(given, tmp_path / "merged", allow_incomplete=True)) == 2
    with pytest.raises(UsageError, match="is one of the shards"):
        check_set(given, tmp_path / "d0", allow_incomplete=True)
