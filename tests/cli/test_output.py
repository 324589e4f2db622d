"""cli/_output: what the commands print for a report, on which stream, and what they tell the user to do next."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconcile.cli._output import print_error, print_summary
from reconcile.errors import UsageError
from reconcile.model import ExitCode
from reconcile.report import Report, Summary


def report(**changes: Any) -> Report:
    """A report of 10 records whose summary says what ``changes`` give."""
    data = {
        "counts": {"present": 6, "missing": 2, "invalid": 1, "error": 1, "unchecked": 0},
        "records": 10,
        "complete": True,
        **changes,
    }
    paths = {"results_csv": Path("out/results.csv"), "missing_csv": Path("out/missing.csv")}
    return Report(Summary.from_dict(data), ExitCode.ROW_PROBLEMS, paths)


def test_a_finished_report_prints_its_counts_and_files_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    """The counts line, then each file under its name, aligned; nothing on stderr and no advice to resume."""
    print_summary(report())
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "10 records: 6 present, 2 missing, 1 invalid, 1 error",
        "results csv:      out/results.csv",
        "missing csv:      out/missing.csv",
    ]
    assert err == ""


def test_unchecked_rows_and_duplicates_are_counted_and_an_unfinished_run_says_resume(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Unchecked rows and duplicates join the counts line; an incomplete report says to re-run the command."""
    counts = {"present": 3, "missing": 0, "invalid": 0, "error": 0, "unchecked": 7}
    print_summary(report(counts=counts, complete=False, duplicates=2))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "10 records: 3 present, 0 missing, 0 invalid, 0 error, 7 unchecked (2 duplicates)"
    assert lines[1] == "incomplete: re-run the same command to resume"


def test_a_fatal_error_is_named_once(capsys: pytest.CaptureFixture[str]) -> None:
    """A run's fatal error was logged already: stdout names its type and says resume; a merge's goes to stderr."""
    error = {"type": "TokenError", "message": "AADSTS7000215: invalid client secret"}
    print_summary(report(error=error, complete=False))
    out, err = capsys.readouterr()
    assert "stopped by a fatal error (TokenError, on stderr)" in out
    assert "AADSTS7000215" not in out + err
    print_summary(report(error=error, complete=False), error_logged=False)
    out, err = capsys.readouterr()
    assert err == "error: AADSTS7000215: invalid client secret\n"
    assert "incomplete: re-run the same command to resume" in out


def test_an_error_is_one_line_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    """A ReconcileError is printed as `error: MESSAGE` on stderr, nothing on stdout."""
    print_error(UsageError("no manifest given. HINT: reconcile run FILE"))
    assert capsys.readouterr() == ("", "error: no manifest given. HINT: reconcile run FILE\n")
