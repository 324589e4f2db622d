"""report/_build: counts per company and organisation, compliance metadata, added key columns, the same report
for the same input, written while the run goes."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from reconcile import __version__
from reconcile.api import run
from reconcile.emulator import Dataset, Emulator, EmulatorConfig
from reconcile.engine._engine import Reconciler, RunOptions, RunOutcome
from reconcile.engine._journal import Journal
from reconcile.engine._outdir import LOCK_NAME
from reconcile.input._manifest import Manifest
from reconcile.input._table import ReadOptions
from reconcile.model import Key, Status
from reconcile.report._build import ReportFiles, RunReport
from reconcile.report._rows import OUR_COLUMNS, Layout, ReportRows
from tests.conftest import (
    SAMPLES,
    html_without_run_section,
    read_jsonl,
    read_parquet,
    read_results,
    read_xlsx_all,
    settings_for,
    without,
    write_manifest,
)
from tests.report.test_delta import compare

# What may differ between two runs of the same input: identity, clock, and where the files went.
VOLATILE = {"run_id", "started_at", "finished_at", "duration_seconds", "rows_per_second", "attempts", "outputs"}


async def sample_run(emulator: Emulator, out: Path, **options: Any) -> dict[str, Any]:
    summary = await run(
        sorted(SAMPLES.glob("*.csv")), out, settings=settings_for(emulator), label="nightly audit", **options
    )
    return summary.summary.to_dict()


@pytest.mark.slow
async def test_counts_per_company_and_organisation_match_results_csv(emulator: Emulator, tmp_path: Path) -> None:
    """summary.json's by_company and by_organisation are results.csv's status counts, grouped and sorted."""
    data = await sample_run(emulator, tmp_path / "out")
    rows = read_results(tmp_path / "out" / "results.csv")
    by_company: dict[str, Counter[str]] = {}
    by_org: dict[tuple[str, str], Counter[str]] = {}
    for row in rows:
        by_company.setdefault(row["company"], Counter())[row["status"]] += 1
        by_org.setdefault((row["company"], row["organisation"]), Counter())[row["status"]] += 1
    assert data["by_company"] == [{"company": c, **{s: n[s] for s in Status}} for c, n in sorted(by_company.items())]
    assert data["by_organisation"] == [
        {"company": c, "organisation": o, **{s: n[s] for s in Status}} for (c, o), n in sorted(by_org.items())
    ]
    assert sum(c["missing"] for c in data["by_company"]) == data["counts"]["missing"] > 0


@pytest.mark.slow
async def test_summary_carries_compliance_metadata(emulator: Emulator, tmp_path: Path) -> None:
    """Run id, label, engine version, endpoint, start/end and each manifest's SHA-256 are in summary.json."""
    data = await sample_run(emulator, tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert saved == json.loads(json.dumps(data))
    assert re.fullmatch(r"[0-9a-f-]{36}", saved["run_id"])
    assert saved["label"] == "nightly audit"
    assert saved["engine_version"] == __version__
    assert saved["endpoint"] == emulator.api_url
    assert saved["started_at"] <= saved["finished_at"]
    for manifest in saved["manifests"]:
        assert manifest["sha256"] == hashlib.sha256(Path(manifest["path"]).read_bytes()).hexdigest()  # noqa: ASYNC240
    assert saved["delta"] is None
    assert set(saved["outputs"]) == {"results", "missing", "report_html", "summary"}


@pytest.mark.slow
async def test_same_input_gives_the_same_report(emulator: Emulator, tmp_path: Path) -> None:
    """Two runs of the same manifests: every file has the same content in the same order, clock aside."""
    first, second = tmp_path / "one", tmp_path / "two"
    formats = ("csv", "parquet", "xlsx", "json")
    one = await sample_run(emulator, first, formats=formats)
    two = await sample_run(emulator, second, formats=formats)
    assert one["run_id"] != two["run_id"]
    assert {k: v for k, v in one.items() if k not in VOLATILE} == {k: v for k, v in two.items() if k not in VOLATILE}
    for name in ("results.csv", "missing.csv"):
        assert without(read_results(first / name), "checked_at") == without(read_results(second / name), "checked_at")
    assert html_without_run_section(first / "report.html") == html_without_run_section(second / "report.html")
    for reader in (read_parquet, read_jsonl, read_xlsx_all):
        assert reader(first).drop(columns="checked_at").equals(reader(second).drop(columns="checked_at"))
    summaries = [
        pd.read_excel(d / "results.xlsx", sheet_name="Summary", header=None, dtype=str) for d in (first, second)
    ]
    metadata = summaries[0][0].isin(["Run id", "Started at", "Finished at", "Duration (seconds)", "Rows per second"])
    assert summaries[0][~metadata].equals(summaries[1][~metadata])


@pytest.mark.slow
async def test_no_partial_or_work_file_is_left(emulator: Emulator, tmp_path: Path) -> None:
    """After a run with every format and a comparison, only final files remain in the output directory."""
    await sample_run(emulator, tmp_path / "one")
    await sample_run(emulator, tmp_path / "two", formats=("xlsx", "parquet", "json"), compare_to=tmp_path / "one")
    hidden = [p.name for p in (tmp_path / "two").iterdir() if p.name.startswith(".")]
    assert hidden == [LOCK_NAME]  # the directory's mark stays


@pytest.mark.slow
async def test_a_killed_runs_leftovers_are_removed(emulator: Emulator, tmp_path: Path) -> None:
    """Files a killed run left half-written (of other formats too) and its work files are gone after the next run;
    another program's hidden file is not touched."""
    out = tmp_path / "out"
    out.mkdir()
    leftovers = [".results.parquet.partial", ".results.csv.partial", ".report-folders-k1.sqlite", ".delta-k2.sqlite"]
    for name in [*leftovers, LOCK_NAME, ".notes.partial"]:
        (out / name).write_text("half-written by a run killed with -9")
    await sample_run(emulator, out)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [".notes.partial", LOCK_NAME]
    assert not (out / "results.parquet").exists()
    assert read_results(out / "results.csv")[0]["status"] in tuple(Status)


TELEPHONY = ("Tenant", "Queue", "Date", "RecordingSid")


async def test_mapped_values_get_columns_of_their_own(tmp_path: Path) -> None:
    """With --map and --filename-template, results.csv shows the values checked under the fields' names."""
    manifest = write_manifest(
        tmp_path / "export.csv",
        [("acme", "acme-ca", "2026/11/25", "RE1"), ("acme", "acme-ca", "2026/11/25", "RE2")],
        header=TELEPHONY,
    )
    read = ReadOptions(
        columns=(("company", "Tenant"), ("organisation", "Queue"), ("folder", "Date")),
        filename_template="{RecordingSid}.mp3",
    )
    present = {("acme", "acme-ca", "2026/11/25", "RE1.mp3"): "id-1"}
    async with Emulator(EmulatorConfig(), Dataset(present)) as emulator:
        await run([manifest], tmp_path / "out", settings=settings_for(emulator), read=read)
    rows = read_results(tmp_path / "out" / "results.csv")
    assert list(rows[0])[:8] == [*TELEPHONY, "company", "organisation", "folder", "filename"]
    assert [(r["filename"], r["status"]) for r in rows] == [("RE1.mp3", "present"), ("RE2.mp3", "missing")]


async def test_a_constant_beside_a_same_named_column_is_shown_as_checked(tmp_path: Path) -> None:
    """--company acme over a manifest's own company column adds 'company (checked)'; a delta matches on it."""
    manifest = write_manifest(tmp_path / "m.csv", [("ignored", "o", "f", "a.mp3")])
    read = ReadOptions(constants=(("company", "acme"),))
    async with Emulator(EmulatorConfig(), Dataset({("acme", "o", "f", "a.mp3"): "id"})) as emulator:
        await run([manifest], tmp_path / "one", settings=settings_for(emulator), read=read)
    async with Emulator(EmulatorConfig(), Dataset({})) as emulator:
        await run([manifest], tmp_path / "two", settings=settings_for(emulator), read=read)
    (row,) = read_results(tmp_path / "one" / "results.csv")
    assert (row["company"], row["company (checked)"]) == ("ignored", "acme")
    assert compare(tmp_path / "one", tmp_path / "two")["newly_missing"] == 1


@pytest.mark.parametrize(
    ("header", "read", "added"),
    [
        (("company", "organisation", "folder", "filename"), ReadOptions(), []),
        (("Company", "organisation", "folder", "filename"), ReadOptions(columns=(("company", "Company"),)), []),
        (("Tenant", "organisation", "folder", "filename"), ReadOptions(columns=(("company", "Tenant"),)), ["company"]),
        (
            ("organisation", "folder", "Sid"),
            ReadOptions(constants=(("company", "acme"),), filename_template="{Sid}"),
            ["company", "filename"],
        ),
        (
            ("company", "organisation", "folder", "filename"),
            ReadOptions(constants=(("company", "acme"),)),
            ["company (checked)"],
        ),
    ],
    ids=["plain", "mapped-to-itself", "mapped", "constant-and-template", "constant-over-column"],
)
def test_output_columns_add_only_values_no_column_shows(
    tmp_path: Path, header: tuple[str, ...], read: ReadOptions, added: list[str]
) -> None:
    """A key column is added only when the value checked is not what a same-named manifest column holds."""
    manifest = Manifest(write_manifest(tmp_path / "m.csv", [("x",) * len(header)], header=header), 0, read)
    assert Layout.of_manifests([manifest]).columns == [*header, *added, *OUR_COLUMNS]


def test_a_results_header_gives_back_the_layout_that_wrote_it(tmp_path: Path) -> None:
    """merge reads the layout from a results.csv header and the manifests' columns: the same layout a run wrote,
    and each checked value found where the run put it (an added column wins over the manifest's own)."""
    header = ("Company", "organisation", "folder", "status", "Sid")
    read = ReadOptions(constants=(("organisation", "support"),), filename_template="{Sid}")
    manifest = Manifest(write_manifest(tmp_path / "m.csv", [("x",) * len(header)], header=header), 0, read)
    written = Layout.of_manifests([manifest])
    assert written.columns[:5] == ["Company", "organisation", "folder", "status (manifest)", "Sid"]
    read_back = Layout.of_header(written.columns, [header])
    assert read_back == written
    # company: the manifest's "Company"; organisation and filename: the added columns; folder: the manifest's.
    assert read_back.key_positions(header) == [0, 5, 2, 6]
    assert read_back.positions(header) == [0, 1, 2, 3, 4]
    with pytest.raises(KeyError, match="company"):
        read_back.key_positions(("organisation", "folder"))


STREAM_ROWS = [("acme", "acme-ca", "2026/11/25", f"call-{i:04d}.wav") for i in range(600)]
STREAM_ROWS[5] = ("acme", "", "2026/11/25", "no-organisation.wav")
STREAM_ROWS[50] = STREAM_ROWS[10]


async def streamed_run(
    tmp_path: Path, out: Path, monkeypatch: pytest.MonkeyPatch, formats: tuple[str, ...]
) -> tuple[Reconciler, Journal, RunOutcome, list[bool]]:
    """A run written the way runner.run writes it; returns what it left open and, per chunk handed to the
    report's files, whether the run was still going then."""
    manifest = write_manifest(tmp_path / "export.csv", STREAM_ROWS)
    present = {row: f"id-{n}" for n, row in enumerate(STREAM_ROWS[::2])}
    during: list[bool] = []
    add = ReportFiles.add

    def spy(files: ReportFiles, rows: list[list[Any]], keys: list[Key]) -> None:
        during.append(not ended)
        add(files, rows, keys)

    monkeypatch.setattr(ReportFiles, "add", spy)
    ended = False
    async with Emulator(EmulatorConfig(latency_ms=5, jitter_ms=5), Dataset(present)) as emulator:
        settings = settings_for(emulator, concurrency=4)
        reconciler = Reconciler([manifest], settings, RunOptions())
        journal = Journal.open(out, [m.info() for m in reconciler.manifests])
        report = RunReport(
            reconciler.manifests,
            journal,
            settings,
            run_id=journal.run_id,
            label="",
            out_dir=out,
            formats=formats,
            chunk=50,
        )
        async with report.following(reconciler.watermark):
            outcome = await reconciler.run(journal)
        ended = True
        await report.finish(outcome)
    return reconciler, journal, outcome, during


@pytest.mark.slow
async def test_the_report_is_written_while_the_run_goes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Most chunks reach the report's files before the last answer; the report equals one written afterwards."""
    out = tmp_path / "streamed"
    reconciler, journal, outcome, spied = await streamed_run(tmp_path, out, monkeypatch, ("csv", "json", "parquet"))
    during = list(spied)
    (tmp_path / "after").mkdir()
    try:
        after = RunReport(
            reconciler.manifests,
            journal,
            reconciler.settings,
            run_id=journal.run_id,
            label="",
            out_dir=tmp_path / "after",
            formats=("csv", "json", "parquet"),
        )
        await after.finish(outcome)
    finally:
        journal.close()
    assert len(during) == len(STREAM_ROWS) // 50
    assert sum(during) >= len(during) // 2, during
    for name in ("results.csv", "missing.csv", "results.jsonl", "missing.jsonl", "report.html"):
        assert (out / name).read_bytes() == (tmp_path / "after" / name).read_bytes(), name
    assert read_parquet(out).equals(read_parquet(tmp_path / "after"))
    summaries = [json.loads((d / "summary.json").read_text()) for d in (out, tmp_path / "after")]
    assert without_keys(summaries[0], "outputs") == without_keys(summaries[1], "outputs")
    statuses = Counter(row["status"] for row in read_results(out / "results.csv"))
    assert statuses == {"present": 300, "missing": 299, "invalid": 1}


@pytest.mark.slow
async def test_with_xlsx_the_report_waits_for_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A workbook would hold the event loop too long between requests: every chunk is written after the run."""
    *_, journal_, _outcome, during = await streamed_run(tmp_path, tmp_path / "out", monkeypatch, ("xlsx",))
    journal_.close()
    assert during == [False] * (len(STREAM_ROWS) // 50)
    assert len(read_xlsx_all(tmp_path / "out")) == len(STREAM_ROWS)


@pytest.mark.slow
async def test_a_failed_stream_costs_only_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """If writing during the run fails, the report is written afterwards from the start, complete and exact."""
    advance = ReportRows.advance

    async def fail_while_running(rows: ReportRows, until: Any, sink: Any, unchecked: Any = None) -> None:
        await advance(rows, until, sink, unchecked)
        if unchecked is None:
            raise OSError("disk hiccup")

    monkeypatch.setattr(ReportRows, "advance", fail_while_running)
    out = tmp_path / "out"
    *_, journal_, _outcome, during = await streamed_run(tmp_path, out, monkeypatch, ("csv",))
    journal_.close()
    assert "writing the report during the run failed (disk hiccup)" in caplog.text
    assert not during[-1]  # the report was written again after the run
    rows = read_results(out / "results.csv")
    assert [int(row["row"]) for row in rows] == list(range(1, len(STREAM_ROWS) + 1))
    assert Counter(row["status"] for row in rows) == {"present": 300, "missing": 299, "invalid": 1}
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def without_keys(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in keys}
