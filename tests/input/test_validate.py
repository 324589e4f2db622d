"""``reconcile validate``: counts, invalid rows, duplicates, expected run time and exit codes, with no network."""

from __future__ import annotations

import gzip
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconcile.cli import cli
from reconcile.input._table import ReadOptions
from reconcile.input._validate import (
    LISTED_DUPLICATES,
    LISTED_INVALID,
    DuplicateRow,
    InvalidRow,
    format_duration,
    validate,
)
from tests.conftest import write_manifest


def _clean(path: Path, count: int = 10) -> Path:
    return write_manifest(path, [("acme", "acme-ca", "2026/11/25", f"rec-{i:03d}.mp3") for i in range(count)])


def test_a_clean_manifest(tmp_path: Path) -> None:
    """Every row valid and distinct: counts add up, the SHA-256 is the file's, exit 0."""
    path = _clean(tmp_path / "clean.csv", 12)
    result = validate([path])
    (check,) = result.manifests
    assert (check.records, check.invalid, check.duplicates, check.to_send) == (12, 0, 0, 12)
    assert check.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (check.size, check.format, check.error) == (path.stat().st_size, "csv", None)
    assert result.exit_code == 0


def test_invalid_rows_are_listed_with_row_line_and_reason(tmp_path: Path) -> None:
    """The first invalid rows are listed with where they are and why; the rest are counted; exit 3."""
    rows = [("acme", "o", "" if i % 2 else "f", f"r{i}.mp3") for i in range(60)]
    path = write_manifest(tmp_path / "m.csv", rows)
    result = validate([path])
    (check,) = result.manifests
    assert (check.invalid, check.to_send) == (30, 30)
    assert len(check.invalid_rows) == LISTED_INVALID
    assert check.invalid_rows[0] == InvalidRow(row=2, line=3, reason="empty folder")
    assert result.exit_code == 3


def test_duplicates_within_and_across_manifests(tmp_path: Path) -> None:
    """A repeated key is a duplicate of its first valid occurrence, in the same manifest or an earlier one."""
    first = write_manifest(
        tmp_path / "first.csv",
        [("a", "o", "f", "1"), ("a", "o", "f", "2"), ("a", "o", "f", "1"), ("a", "o", "", "3"), ("a", "o", "", "3")],
    )
    second = write_manifest(
        tmp_path / "second.csv",
        [("a", "o", "f", "9"), ("a", "o", "f", "2"), ("a", "o", "f", "1"), ("a", "o", "f", "9")],
    )
    result = validate([first, second])
    one, two = result.manifests
    assert (one.duplicates, one.invalid, one.to_send) == (1, 2, 2)  # invalid rows are never duplicates
    assert one.duplicate_rows == (DuplicateRow(row=3, first_row=1),)
    assert two.duplicate_rows == (DuplicateRow(2, 2, str(first)), DuplicateRow(3, 1, str(first)), DuplicateRow(4, 1))
    assert (result.records, result.duplicates, result.to_send) == (9, 4, 3)


def test_many_duplicates_are_counted_and_the_first_few_listed(tmp_path: Path) -> None:
    """Thousands of duplicates: exact count, the earliest listed, each pointing at its first row."""
    rows = [("a", "o", "f", f"{i % 1000}.mp3") for i in range(5000)]
    result = validate([write_manifest(tmp_path / "m.csv", rows)])
    (check,) = result.manifests
    assert check.duplicates == 4000
    assert check.duplicate_rows == tuple(DuplicateRow(1001 + i, 1 + i) for i in range(LISTED_DUPLICATES))


def test_an_unreadable_manifest_is_reported_and_the_others_still_read(tmp_path: Path) -> None:
    """A truncated gzip is reported with its error and the rows read so far; the other manifest is checked; exit 2."""
    body = b"company,organisation,folder,filename\n" + b"".join(b"a,o,f,%06d\n" % i for i in range(50_000))
    data = gzip.compress(body)
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(data[: len(data) // 2])
    good = _clean(tmp_path / "good.csv")
    result = validate([broken, good])
    bad, fine = result.manifests
    assert "truncated" in (bad.error or "")
    assert bad.format == "csv.gz"
    assert 0 < bad.records < 50_000
    assert (fine.error, fine.records) == (None, 10)
    assert result.exit_code == 2


def test_expected_run_time_uses_the_slower_of_concurrency_and_max_rps(tmp_path: Path) -> None:
    """Time = rows to send / min(max_rps, concurrency / latency)."""
    path = _clean(tmp_path / "m.csv", 600)
    by_latency = validate([path], concurrency=4, latency_ms=200)
    assert by_latency.rate == pytest.approx(4 / 0.2)
    assert by_latency.seconds == pytest.approx(600 / 20)
    capped = validate([path], concurrency=64, latency_ms=50, max_rps=10)
    assert capped.rate == pytest.approx(10)
    assert capped.seconds == pytest.approx(60)


def test_read_options_apply(tmp_path: Path) -> None:
    """validate reads with the same mapping, constants and template a run would use."""
    path = write_manifest(tmp_path / "twilio.csv", [("RE1", "AC1"), ("", "AC1")], header=("RecordingSid", "AccountSid"))
    options = ReadOptions(
        constants=(("company", "acme"), ("organisation", "o")),
        columns=(("folder", "AccountSid"),),
        filename_template="{RecordingSid}.mp3",
    )
    (check,) = validate([path], options).manifests
    assert (check.records, check.invalid) == (2, 1)
    assert check.invalid_rows[0].reason == "empty RecordingSid (for --filename-template)"


# --- the command ------------------------------------------------------------------------------------------


def test_cli_clean_exits_0(tmp_path: Path) -> None:
    """A clean manifest prints its counts and the expected time, and exits 0."""
    path = _clean(tmp_path / "m.csv", 320)
    result = CliRunner().invoke(cli, ["validate", str(path), "--concurrency", "8", "--latency-ms", "50"])
    assert result.exit_code == 0, result.output
    assert "320 records: 320 to send, 0 invalid, 0 duplicates" in result.output
    assert "expected run time: 2.0 s at 160.0 requests/s (concurrency 8 at 50 ms a request)" in result.output
    assert "result: clean (exit 0)" in result.output


def test_cli_invalid_rows_exit_3(tmp_path: Path) -> None:
    """Invalid rows are listed by row and line, the rest counted; duplicates shown; exit 3."""
    rows = [("acme", "o", "f", "") for _ in range(25)] + [("acme", "o", "f", "x"), ("acme", "o", "f", "x")]
    path = write_manifest(tmp_path / "m.csv", rows)
    result = CliRunner().invoke(cli, ["validate", str(path), "--max-rps", "1"])
    assert result.exit_code == 3, result.output
    assert "row 1 (line 2): empty filename" in result.output
    assert "row 21 (line 22)" not in result.output
    assert "... and 5 more" in result.output
    assert "row 27 duplicates row 26" in result.output
    assert "expected run time: 1.0 s at 1.0 requests/s (--max-rps 1)" in result.output


def test_cli_unreadable_exits_2(tmp_path: Path) -> None:
    """A manifest missing its columns is reported as unreadable, and the command exits 2."""
    path = write_manifest(tmp_path / "m.csv", [("a",)], header=("Tenant",))
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert "unreadable:" in result.output
    assert "missing required column(s)" in result.output


def test_cli_reads_directories_globs_and_mapping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Directories and globs expand; --map/--company/--filename-template shape the rows."""
    exports = tmp_path / "exports"
    exports.mkdir()
    write_manifest(exports / "a.csv", [("RE1", "AC1")], header=("RecordingSid", "AccountSid"))
    write_manifest(exports / "b.csv", [("RE2", "AC1")], header=("RecordingSid", "AccountSid"))
    monkeypatch.chdir(tmp_path)
    args = [
        "validate",
        "exports",
        "exports/*.csv",
        "--company",
        "acme",
        "--organisation",
        "o",
        "--map",
        "folder=AccountSid",
        "--filename-template",
        "{RecordingSid}.mp3",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "total: 2 records in 2 manifest(s): 2 to send" in result.output


def test_cli_usage_errors_exit_2(tmp_path: Path) -> None:
    """A pattern matching nothing, or an unknown --map field, is a usage error (exit 2) without a traceback."""
    runner = CliRunner()
    nothing = runner.invoke(cli, ["validate", str(tmp_path / "*.csv")])
    assert nothing.exit_code == 2
    assert "no file matches this pattern" in nothing.output
    path = _clean(tmp_path / "m.csv")
    unknown = runner.invoke(cli, ["validate", str(path), "--map", "tenant=Company"])
    assert unknown.exit_code == 2
    assert "unknown field(s) tenant" in unknown.output
    assert "Traceback" not in nothing.output + unknown.output


@pytest.mark.slow
def test_a_million_rows_validate_under_250_mb(tmp_path: Path) -> None:
    """validate of a 1,000,000-row CSV (with duplicates) peaks under 250 MB of RSS."""
    path = tmp_path / "million.csv"
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("company,organisation,folder,filename,agent\n")
        # Rows 999,001 on repeat rows 1 to 1,000: a thousand duplicates.
        handle.writelines(
            f"acme,acme-{j % 7},2026/11/{j % 28 + 1:02d},rec-{j:07d}.mp3,Tomás\n"
            for j in (i % 999_000 for i in range(1_000_000))
        )
    returncode, stdout, stderr, peak_kb = _run_measured(
        [sys.executable, "-c", "from reconcile.cli import main; main()", "validate", str(path)], tmp_path
    )
    assert returncode == 0, stderr
    assert "1,000,000 records: 999,000 to send, 0 invalid, 1,000 duplicates" in stdout
    assert peak_kb < 250_000, f"peak RSS {peak_kb / 1000:.0f} MB"


# Starts the command and writes its peak RSS (wait4) to argv[1]: a launcher of its own, because a child's
# ru_maxrss counts the memory of the process it was forked from until it execs, and pytest's own process is
# large enough by then (~250 MB) to be all that is measured; forked from this small one, the peak is the
# command's.  RUSAGE_CHILDREN in the test process had both that and every earlier test's children in it.
_MEASURE = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
child.returncode = os.waitstatus_to_exitcode(status)
with open(sys.argv[1], "w") as handle:
    handle.write(str(usage.ru_maxrss))
sys.exit(child.returncode)
"""


def _run_measured(command: list[str], work: Path) -> tuple[int, str, str, int]:
    """Run ``command``; its exit code, stdout, stderr and its own peak RSS in KB (see _MEASURE)."""
    peak = work / "peak-kb.txt"
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(peak), *command], capture_output=True, text=True, check=False, timeout=180
    )
    return done.returncode, done.stdout, done.stderr, int(peak.read_text(encoding="utf-8"))


def test_format_duration() -> None:
    """Seconds, minutes and hours read as a person writes them."""
    assert [format_duration(s) for s in (0, 47.4, 60, 725, 3 * 3600 + 4 * 60 + 59)] == [
        "0s",
        "47s",
        "1m00s",
        "12m05s",
        "3h04m",
    ]


def test_format_duration_of_an_estimate() -> None:
    """A forecast shows tenths under ten seconds, spaced units, and days past a day."""
    shown = [format_duration(s, estimate=True) for s in (2.04, 47.4, 725, 3 * 3600 + 4 * 60 + 59, 2 * 86400 + 3 * 3600)]
    assert shown == ["2.0 s", "47 s", "12m 5s", "3h 4m", "2d 3h 0m"]
