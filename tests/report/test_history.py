"""History across nights: three real runs a night apart, compared each with the night before, put side by side."""

from __future__ import annotations

import json
import ssl
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from reconcile.config import Secret
from reconcile.errors import UsageError
from reconcile.report import load_history, write_history
from reconcile.report._delta import CHANGES
from reconcile.report._html import Views
from reconcile.report._html import render as render_report
from reconcile.report._summary import Summary
from tests.conftest import invoke_cli, read_results
from tests.report.conftest import KEYS, NIGHTS, reconcile_night
from tests.report.test_html import parse

STATUSES = ("present", "missing", "invalid", "error", "unchecked")


def summary_of(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((directory / "summary.json").read_text(encoding="utf-8"))
    return data


def history_cli(*args: str) -> tuple[int, str, str]:
    result = invoke_cli(["history", *args], env={})
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.slow
async def test_history_counts_equal_the_summaries_and_changes_the_deltas(reports: Path) -> None:
    """history.csv has one row per night, in order, with its summary's counts and its delta.csv's newly missing
    and recovered rows, which are the changes made to the platform between nights."""
    code, stdout, stderr = history_cli(str(reports))
    assert code == 0, stderr
    assert "3 runs, 2026-11-24 to 2026-11-26: 0 failed" in stdout
    assert stderr == ""  # logs/ is not a night: no warning for it
    rows = read_results(reports / "history.csv")
    assert [row["night"] for row in rows] == list(NIGHTS)
    for row, night in zip(rows, NIGHTS, strict=True):
        summary = summary_of(reports / night)
        assert {s: int(row[s]) for s in STATUSES} == summary["counts"]
        assert (row["run_id"], row["label"], row["outcome"]) == (summary["run_id"], "nightly", "complete")
        assert int(row["records"]) == summary["records"] == len(KEYS)
        assert float(row["duration_seconds"]) == summary["duration_seconds"]
        assert float(row["rows_per_second"]) == summary["rows_per_second"]
        assert row["exit_code"] == "1"  # complete, some missing
    assert [row["newly_missing"] for row in rows] == ["", "2", "1"]
    assert [row["recovered"] for row in rows] == ["", "1", "1"]
    for row, night in zip(rows[1:], NIGHTS[1:], strict=True):
        changes = Counter(r["change"] for r in read_results(reports / night / "delta.csv"))
        assert (int(row["newly_missing"]), int(row["recovered"])) == (changes["newly_missing"], changes["recovered"])
    by_company = read_results(reports / "history-by-company.csv")
    assert [(r["night"], r["company"], r["missing"]) for r in by_company] == [
        ("2026-11-24", "acme", "2"),
        ("2026-11-24", "globex", "0"),
        ("2026-11-25", "acme", "2"),
        ("2026-11-25", "globex", "1"),
        ("2026-11-26", "acme", "3"),
        ("2026-11-26", "globex", "0"),
    ]


@pytest.mark.slow
async def test_report_html_links_the_previous_night_and_shows_its_changes_at_the_top(reports: Path) -> None:
    """The second night's report.html says under its verdict what changed since the first night, and links that
    night's report relatively; the first night, compared with nothing, has neither."""
    page = parse(reports / NIGHTS[1] / "report.html")
    text = (reports / NIGHTS[1] / "report.html").read_text(encoding="utf-8")
    header = text.split("</header>", 1)[0]
    assert 'id="changes"' in header
    assert "2 newly missing, 1 recovered" in header
    assert f'<a href="../{NIGHTS[0]}/report.html">the previous run ({NIGHTS[0]})</a>' in header
    assert (reports / NIGHTS[1] / f"../{NIGHTS[0]}/report.html").is_file()
    assert f"../{NIGHTS[0]}/report.html" in page.links
    first = (reports / NIGHTS[0] / "report.html").read_text(encoding="utf-8")
    assert 'id="changes"' not in first
    assert "report.html" not in first


@pytest.mark.slow
async def test_a_failed_run_appears_as_failed(reports: Path, server_ssl: ssl.SSLContext, ca_bundle: Path) -> None:
    """A night whose credentials were refused (exit 4) and a night that left only its lock (killed) are listed
    among the runs that failed, with their outcome, exit code and error; the charts mark them."""
    await reconcile_night(
        reports, "2026-11-27", set(), NIGHTS[-1], server_ssl, ca_bundle, client_secret=Secret("wrong")
    )
    assert summary_of(reports / "2026-11-27")["outcome"] == "fatal"
    killed = reports / "2026-11-28"
    killed.mkdir()
    (killed / ".reconcile.lock").write_text("{}", encoding="utf-8")
    code, stdout, stderr = history_cli(str(reports))
    assert code == 0, stderr
    assert "5 runs, 2026-11-24 to 2026-11-28: 2 failed" in stdout
    assert f"warning: {killed}: a run without summary.json" in stderr
    rows = {row["night"]: row for row in read_results(reports / "history.csv")}
    assert (rows["2026-11-27"]["outcome"], rows["2026-11-27"]["exit_code"]) == ("fatal", "4")
    assert rows["2026-11-27"]["failure"].startswith("TokenError: ")
    assert (rows["2026-11-28"]["outcome"], rows["2026-11-28"]["exit_code"], rows["2026-11-28"]["missing"]) == (
        "unfinished",
        "",
        "",
    )
    page = parse(reports / "history.html")
    failed = page.tables["failed"][1:]
    assert [(r[0], r[2], r[3]) for r in failed] == [("2026-11-28", "unfinished", ""), ("2026-11-27", "fatal", "4")]
    assert [b["data-label"] for b in page.bars["chart-missing"]] == list(NIGHTS)  # no bar for the failed nights
    assert "2 of 5 runs did not finish" in "".join(page.text)


def fake_summary(directory: Path, **changes: Any) -> Path:
    """A minimal summary.json, as reconcile writes it, in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    counts = {"present": 3, "missing": 1, "invalid": 0, "error": 0, "unchecked": 0}
    data = {"counts": counts, "records": 4, "outcome": "complete", "run_id": directory.name, "label": ""} | changes
    (directory / "summary.json").write_text(json.dumps(data), encoding="utf-8")
    return directory


def test_a_directory_without_a_report_is_skipped_with_a_warning_naming_it(tmp_path: Path) -> None:
    """Beside a report, an empty directory and a dated one without summary.json are skipped, each named."""
    fake_summary(tmp_path / "reports" / "2026-11-25")
    (tmp_path / "reports" / "2026-11-26").mkdir()
    (tmp_path / "other").mkdir()
    code, _, stderr = history_cli(str(tmp_path / "reports"), str(tmp_path / "other"), "--out", str(tmp_path))
    assert code == 0, stderr
    assert f"warning: {tmp_path / 'reports' / '2026-11-26'}: not a report (no summary.json); skipped" in stderr
    assert f"warning: {tmp_path / 'other'}: not a report" in stderr
    assert [row["night"] for row in read_results(tmp_path / "history.csv")] == ["2026-11-25"]


def test_no_report_at_all_is_a_usage_error(tmp_path: Path) -> None:
    """Directories holding no report exit 2 with a message naming them and a hint; nothing is written."""
    (tmp_path / "empty").mkdir()
    code, _, stderr = history_cli(str(tmp_path / "empty"))
    assert code == 2
    assert f"no report (summary.json) in {tmp_path / 'empty'}" in stderr
    assert "HINT:" in stderr
    assert not (tmp_path / "empty" / "history.csv").exists()
    code, _, stderr = history_cli(str(tmp_path / "nowhere"))
    assert code == 2
    assert "nowhere: no such directory" in stderr


def test_a_corrupt_summary_names_the_file_and_where(tmp_path: Path) -> None:
    """A summary.json cut short is an error naming the file, the line and column, with a hint; no traceback."""
    night = fake_summary(tmp_path / "2026-11-25")
    (night / "summary.json").write_text('{"counts": {\n  "present": 3,', encoding="utf-8")
    code, _, stderr = history_cli(str(tmp_path))
    assert code == 2
    assert f"{night / 'summary.json'}: not valid JSON (line 2" in stderr
    assert "HINT:" in stderr
    (night / "summary.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(UsageError, match="not a reconcile summary"):
        load_history([tmp_path])


def test_run_directories_given_one_by_one_write_beside_them(tmp_path: Path) -> None:
    """Run directories named one by one are ordered by night, and without --out the history goes to their parent."""
    second = fake_summary(tmp_path / "2026-11-26", started_at="2026-11-26T02:30:00Z")
    first = fake_summary(tmp_path / "2026-11-25", started_at="2026-11-25T02:30:00Z")
    code, stdout, stderr = history_cli(str(second), str(first))
    assert code == 0, stderr
    assert f"history:            {tmp_path / 'history.csv'}" in stdout
    assert [row["run_id"] for row in read_results(tmp_path / "history.csv")] == ["2026-11-25", "2026-11-26"]


def test_the_merged_report_of_sharded_nights_is_the_nights_run(tmp_path: Path) -> None:
    """In the Kubernetes layout (RUN_ID/shard-K and RUN_ID/merged) a night is its merged report, not its shards."""
    for k in range(2):
        fake_summary(tmp_path / "2026-11-26" / f"shard-{k}")
    fake_summary(tmp_path / "2026-11-26" / "merged", records=8)
    history = load_history([tmp_path])
    assert [(run.night, run.directory.name, run.records) for run in history.runs] == [("2026-11-26", "merged", 8)]


def test_a_run_outside_a_dated_directory_takes_its_start_date_and_has_no_changes(tmp_path: Path) -> None:
    """A run directory not named after a night is dated by its start; a run compared with nothing has no changes."""
    fake_summary(tmp_path / "audit", started_at="2026-10-01T09:00:00Z", label="archive <audit>")
    (run,) = load_history([tmp_path / "audit"]).runs
    assert (run.night, run.label, run.changes, run.exit_code) == ("2026-10-01", "archive <audit>", None, 1)
    write_history(load_history([tmp_path / "audit"]), tmp_path)
    page = parse(tmp_path / "history.html")
    assert "archive <audit>" in "".join(page.text)  # escaped, shown as text
    (row,) = read_results(tmp_path / "history.csv")
    assert [row[change] for change in CHANGES] == [""] * len(CHANGES)
    assert row["compared_to"] == ""


@pytest.mark.parametrize(
    ("outcome", "counts", "expected"),
    [
        ("complete", {"missing": 0}, 0),
        ("complete", {"missing": 1}, 1),
        ("complete", {"missing": 1, "error": 1}, 3),
        ("fatal", {"missing": 0, "unchecked": 4}, 4),
        ("interrupted", {"missing": 0, "unchecked": 4}, None),  # 130 or 143: summary.json does not say which
    ],
)
def test_the_exit_code_is_the_one_run_exited_with(
    tmp_path: Path, outcome: str, counts: dict[str, int], expected: int | None
) -> None:
    """The exit code of each run is derived from its summary's outcome and counts as `run` derives it."""
    full = {"present": 0, "missing": 0, "invalid": 0, "error": 0, "unchecked": 0} | counts
    fake_summary(tmp_path / "2026-11-25", outcome=outcome, counts=full)
    (run,) = load_history([tmp_path]).runs
    assert run.exit_code == expected
    assert run.failed is (outcome != "complete")


def test_without_the_previous_report_the_changes_are_shown_unlinked(tmp_path: Path) -> None:
    """A run compared with a directory that holds no report.html (an older engine's) still shows the changes
    under its verdict, naming that run, with no link to follow."""
    delta = {"compared_to": "reports/2026-11-24", "run_id": "r1", "counts": {"newly_missing": 3, "recovered": 0}}
    summary = {"counts": {"present": 1, "missing": 3}, "records": 4, "outcome": "complete", "delta": delta}
    (tmp_path / "r.html").write_text(render_report(Summary.from_dict(summary), Views((), 0, (), ())), encoding="utf-8")
    page = parse(tmp_path / "r.html")
    assert "Since the previous run (2026-11-24): 3 newly missing (details)." in "".join(page.text)
    assert [link for link in page.links if "report.html" in link] == []
