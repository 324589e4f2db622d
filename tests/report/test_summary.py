"""summary.json's schema: a written summary round-trips through the loader, byte for byte; bad files are named."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from reconcile.api import run
from reconcile.emulator import Emulator
from reconcile.engine._engine import RunOptions
from reconcile.errors import TokenError, UsageError
from reconcile.model import Status
from reconcile.report import Counts, ErrorInfo, Proxy, Summary, load_summary
from tests.conftest import SAMPLES, settings_for


async def test_a_written_summary_round_trips_through_the_loader(emulator: Emulator, tmp_path: Path) -> None:
    """What a run wrote loads as the Summary it returned, and writes back the same bytes."""
    out = tmp_path / "out"
    report = await run(
        sorted(SAMPLES.glob("*.csv")), out, settings=settings_for(emulator), options=RunOptions(label="audit")
    )
    loaded = load_summary(out)
    assert loaded == report.summary
    assert loaded.counts.as_dict() == report.counts
    assert loaded.label == "audit"
    assert loaded.pacing is not None
    assert loaded.pacing.concurrency == 8  # settings_for fixes it
    assert loaded.manifests[0].columns  # tuples again, not lists
    loaded.write(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_bytes() == (out / "summary.json").read_bytes()


def test_keys_a_merge_leaves_out_stay_out(tmp_path: Path) -> None:
    """A summary without the platform (shards that disagreed) writes no such keys, and reads back equal."""
    summary = Summary(counts=Counts(present=2), records=2, complete=True, run_id="r", max_rps=None)
    data = summary.to_dict()
    assert "endpoint" not in data
    assert "pacing" not in data
    assert "merged_from" not in data
    assert data["max_rps"] is None  # a value that is null in every summary stays written
    assert list(data)[:4] == ["counts", "records", "duplicates", "complete"]
    assert Summary.from_dict(json.loads(json.dumps(data))) == summary


def test_an_error_keeps_only_the_details_it_has() -> None:
    """A fatal error's Azure AD details are written when the error carries them, in the file's order."""
    refused = TokenError(
        "refused",
        status=401,
        details={"error": "invalid_client", "error_codes": [7000215], "trace_id": "t", "correlation_id": "c"},
    )
    assert ErrorInfo.of(refused) == ErrorInfo("TokenError", str(refused), "invalid_client", (7000215,), "t", "c")
    data = Summary(error=ErrorInfo.of(refused)).to_dict()["error"]
    assert data == {
        "type": "TokenError",
        "message": str(refused),
        "error": "invalid_client",
        "error_codes": [7000215],
        "trace_id": "t",
        "correlation_id": "c",
    }
    assert Summary(error=ErrorInfo.of(ValueError("boom"))).to_dict()["error"] == {
        "type": "ValueError",
        "message": "boom",
    }


def test_the_counts_are_the_statuses() -> None:
    """Counts has one field per Status, in the order summary.json lists them."""
    assert [f.name for f in dataclasses.fields(Counts)] == [s.value for s in Status]
    assert Counts.of({"missing": 3, "other": 9}).as_dict() == {
        "present": 0,
        "missing": 3,
        "invalid": 0,
        "error": 0,
        "unchecked": 0,
    }


def test_an_older_summary_reads_with_defaults(tmp_path: Path) -> None:
    """Keys a summary lacks (an older reconcile's) read as their defaults; keys it does not know (a later one's), in
    the summary or in a section, are passed over."""
    (tmp_path / "summary.json").write_text(json.dumps({"run_id": "r-1", "engine_version": "0.0.9", "extra": 1}))
    summary = load_summary(tmp_path)
    assert (summary.run_id, summary.engine_version, summary.records, summary.counts) == ("r-1", "0.0.9", 0, Counts())
    later = {"counts": {"present": 1}, "records": 1, "proxy": {"api": "direct", "identity_provider": "direct", "x": 1}}
    assert Summary.from_dict(later).proxy == Proxy("direct", "direct")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "holds no summary.json"),
        ("{not json", "is not a reconcile summary"),
        ("[1, 2]", "is not a reconcile summary"),
        ('{"counts": {}}', "is not a reconcile summary .*records"),
        ('{"counts": {}, "records": "many"}', "is not a reconcile summary"),
    ],
)
def test_a_bad_summary_is_named_with_a_hint(tmp_path: Path, content: str | None, reason: str) -> None:
    """A missing, unreadable or incomplete summary.json is a UsageError naming it, ending with the fix."""
    if content is not None:
        (tmp_path / "summary.json").write_text(content, encoding="utf-8")
    with pytest.raises(UsageError, match=rf"{reason}.*HINT: give the --out directory") as caught:
        load_summary(tmp_path, required=("counts", "records"))
    assert str(tmp_path) in str(caught.value)
