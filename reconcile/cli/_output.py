"""What the commands print: summaries and reports on stdout, errors and stops on stderr."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import click

from reconcile._version import version_report
from reconcile.errors import ReconcileError
from reconcile.report import Report

if TYPE_CHECKING:
    from reconcile.report import History

DEMO_NOTE = "The data came from the bundled emulator, not from the CallJourney platform."
STOPPED_BEFORE_RUN = "stopped (SIGINT) before any row was checked"
STOPPED_AT_ONCE = "stopped at once; the journal is consistent: re-run the same command to resume"


def print_summary(report: Report, *, error_logged: bool = True) -> None:
    """The counts, what to do next, and the report's files, on stdout.  ``error_logged``: a fatal error was
    logged to stderr as it happened (a run's), so it is not printed again (a merge reports its shards')."""
    counts = report.summary.counts
    line = (
        f"{report.records} records: {counts.present} present, {counts.missing} missing, "
        f"{counts.invalid} invalid, {counts.error} error"
    )
    if counts.unchecked:
        line += f", {counts.unchecked} unchecked"
    if report.summary.duplicates:
        line += f" ({report.summary.duplicates} duplicates)"
    click.echo(line)
    error = report.summary.error
    if error and not error_logged:
        click.echo(f"error: {error.message}", err=True)
    if error and error_logged:
        click.echo(
            f"stopped by a fatal error ({error.type}, on stderr): the rows not reached are unchecked; once it is "
            "fixed, re-run the same command to resume"
        )
    elif not report.complete:
        click.echo("incomplete: re-run the same command to resume")
    for name, path in report.paths.items():
        click.echo(f"{name.replace('_', ' ') + ':':17} {path}")


def print_history(found: History, paths: Mapping[str, Path]) -> None:
    """How many nights ``reconcile history`` found, and the files it wrote."""
    runs = found.runs
    click.echo(f"{len(runs)} runs, {runs[0].night} to {runs[-1].night}: {len(found.failed)} failed")
    for name, path in paths.items():
        click.echo(f"{name.replace('_', ' ') + ':':19} {path}")


def print_warnings(warnings: Iterable[str]) -> None:
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)


def print_text(text: str) -> None:
    """A rendered report (validate's, doctor's) on stdout."""
    click.echo(text)


def print_version() -> None:
    click.echo(version_report())


def print_error(error: ReconcileError) -> None:
    click.echo(f"error: {error}", err=True)


def print_stop(message: str) -> None:
    click.echo(message, err=True)


def stdout_encoding() -> str | None:
    """The encoding stdout prints in, for a report that uses ✓ and ✗ where it can."""
    return getattr(sys.stdout, "encoding", None)
