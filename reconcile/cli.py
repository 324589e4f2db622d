"""The command line: parse, call the library, print, exit.  No logic lives here.

Exit codes: 0 every row present · 1 complete, some missing · 2 usage error · 3 some rows invalid, error or
unchecked · 4 fatal (credentials refused, endpoint not found, host unreachable, bad configuration) ·
130/143 stopped by SIGINT/SIGTERM (a partial report is written; re-run the same command to resume).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from . import __version__
from .config import Settings
from .engine import Reconciler, RunOptions
from .errors import ReconcileError
from .manifest import expand_manifest_paths
from .readers import ReadOptions
from .report import Summary

T = TypeVar("T")

CONNECTION_OPTIONS = (
    click.option("--base-url", help="Platform base URL [env CALLJOURNEY_BASE_URL; default Production Canada]."),
    click.option("--endpoint-path", help="API path [env CALLJOURNEY_ENDPOINT_PATH; default "
                 "/api/v1/search/conversationexists]."),
    click.option("--authority", help="Identity provider [env CALLJOURNEY_AUTHORITY; default "
                 "https://login.microsoftonline.com]."),
    click.option("--tenant-id", help="Azure AD tenant [env CALLJOURNEY_TENANT_ID]."),
    click.option("--client-id", help="App registration client id [env CALLJOURNEY_CLIENT_ID]."),
    click.option("--scope", help="Token scope [env CALLJOURNEY_SCOPE; default api://{client_id}/.default]."),
    click.option("--client-secret-file", type=click.Path(dir_okay=False, path_type=Path),
                 help="Read the client secret from this file (else CALLJOURNEY_CLIENT_SECRET)."),
    click.option("--ca-bundle", type=click.Path(dir_okay=False, path_type=Path),
                 help="Also trust this CA (PEM). Verification is always on."),
    click.option("--concurrency", type=click.IntRange(1, 1000), help="Requests in flight [default 16]."),
    click.option("--timeout", type=click.FloatRange(min=0.1), help="Seconds per attempt [default 30]."),
    click.option("--max-attempts", type=click.IntRange(1, 100), help="Attempts per row [default 5]."),
    click.option("--max-rps", type=click.FloatRange(min=0.1), help="Hard cap on requests per second."),
)


READ_OPTIONS = (
    click.option("--input-format", type=click.Choice(["csv", "tsv", "xlsx", "parquet", "jsonl"]),
                 help="Manifest format [default: from the file name; .gz is decompressed]."),
    click.option("--encoding", default="utf-8-sig", show_default=True, help="Manifest text encoding."),
    click.option("--delimiter", help="CSV delimiter [default: detected]."),
    click.option("--sheet", help="XLSX sheet to read [default: the first]."),
    click.option("--map", "mappings", multiple=True, metavar="FIELD=COLUMN",
                 help="Read FIELD (company, organisation, folder, filename) from the export's COLUMN."),
    click.option("--company", help="Use this company for every row."),
    click.option("--organisation", help="Use this organisation for every row."),
    click.option("--folder", help="Use this folder for every row."),
    click.option("--filename-template", metavar="TEMPLATE",
                 help='Build the filename from export columns, e.g. "{RecordingSid}.mp3".'),
)
READ_OPTION_NAMES = ("input_format", "encoding", "delimiter", "sheet", "mappings", "company", "organisation",
                     "folder", "filename_template")


def connection_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(CONNECTION_OPTIONS):
        fn = option(fn)
    return fn


def read_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(READ_OPTIONS):
        fn = option(fn)
    return fn


def _read_options(values: dict[str, Any]) -> ReadOptions:
    """Pop the manifest-reading options out of ``values`` into a ReadOptions."""
    given = {name: values.pop(name, None) for name in READ_OPTION_NAMES}
    columns = []
    for mapping in given["mappings"] or ():
        field, sep, column = mapping.partition("=")
        if not sep or not field.strip() or not column:
            raise click.BadParameter(f"{mapping!r} is not FIELD=COLUMN, e.g. --map filename=RecordingFile",
                                     param_hint="--map")
        columns.append((field.strip().lower(), column))
    constants = tuple((name, given[name]) for name in ("company", "organisation", "folder") if given[name])
    return ReadOptions(
        encoding=given["encoding"] or "utf-8-sig",
        delimiter=given["delimiter"],
        input_format=given["input_format"],
        sheet=given["sheet"],
        columns=tuple(columns),
        constants=constants,
        filename_template=given["filename_template"],
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="reconcile")
@click.option("-v", "--verbose", count=True, help="-v for progress details, -vv for debugging.")
def cli(verbose: int) -> None:
    """Check call-recording manifests against the CallJourney platform.

    \b
    Example:
        reconcile demo
        reconcile run export.csv --out reports/2026-11-26
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@cli.command()
@click.argument("manifests", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for results.csv, missing.csv, summary.json and the resume journal.")
@connection_options
@click.option("--fresh", is_flag=True, help="Ignore an earlier run's journal in --out and start over.")
@click.option("--retry-errors", is_flag=True, help="Re-ask only the error rows of a finished run in --out.")
@click.option("--label", default="", help="Operator label recorded in summary.json and the reports.")
@click.option("--format", "formats", default="csv", show_default=True,
              help="Report formats, comma-separated: csv, parquet, xlsx, json.")
@click.option("--compare-to", type=click.Path(file_okay=False, path_type=Path),
              help="An earlier run's --out: write delta.csv of what changed since.")
@read_options
def run(manifests: tuple[Path, ...], out_dir: Path, fresh: bool, retry_errors: bool, label: str, formats: str,
        compare_to: Path | None, client_secret_file: Path | None, **connection: Any) -> None:
    """Reconcile MANIFEST files; write the report into --out.

    Re-running the same command with the same --out resumes an interrupted run.

    \b
    Example:
        export CALLJOURNEY_TENANT_ID=... CALLJOURNEY_CLIENT_ID=... CALLJOURNEY_CLIENT_SECRET=...
        reconcile run nightly.csv --out reports/2026-11-26 --concurrency 32
    """
    settings = _guard(lambda: Settings.load(connection, client_secret_file=client_secret_file))
    read = _read_options(connection)
    options = RunOptions(out_dir=out_dir, fresh=fresh, retry_errors=retry_errors, label=label, read=read,
                         formats=tuple(f.strip().lower() for f in formats.split(",") if f.strip()),
                         compare_to=compare_to)
    paths = _guard(lambda: expand_manifest_paths(manifests))
    summary = _run_async(lambda install: _reconcile(paths, settings, options, install))
    _print_summary(summary)
    sys.exit(summary.exit_code)


@cli.command()
@click.argument("manifests", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--concurrency", default=16, show_default=True, type=click.IntRange(1, 1000),
              help="Requests in flight the run would use.")
@click.option("--max-rps", type=click.FloatRange(min=0.1), help="Cap on requests per second the run would use.")
@click.option("--latency-ms", default=100.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Expected time the platform takes to answer one request.")
@read_options
def validate(manifests: tuple[Path, ...], concurrency: int, max_rps: float | None, latency_ms: float,
             **read: Any) -> None:
    """Read MANIFEST files (or directories, or globs) as a run would, without the network.

    Prints record counts, invalid rows with reasons, duplicates and the expected run time.  Exits 0 when
    every row can be sent, 3 when some rows are invalid, 2 when a manifest cannot be read.

    \b
    Example:
        reconcile validate exports/*.csv --concurrency 32 --max-rps 200
    """
    from .validate import render
    from .validate import validate as validate_manifests

    options = _read_options(read)
    paths = _guard(lambda: expand_manifest_paths(manifests))
    result = _guard(lambda: validate_manifests(paths, options, concurrency=concurrency, max_rps=max_rps,
                                               latency_ms=latency_ms))
    click.echo(render(result))
    sys.exit(result.exit_code)


@cli.command()
@click.option("--out", "out_dir", default=Path("reconcile-demo"), show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Where to write the demo report.")
@click.option("--concurrency", default=16, show_default=True, type=click.IntRange(1, 1000))
def demo(out_dir: Path, concurrency: int) -> None:
    """Reconcile the bundled sample manifests against the bundled emulator (no network, no configuration).

    \b
    Example:
        reconcile demo && head reconcile-demo/missing.csv
    """
    from .demo import run_demo

    summary = _run_async(lambda install: run_demo(out_dir, concurrency, install))
    _print_summary(summary)
    click.echo("The data came from the bundled emulator, not from the CallJourney platform.")
    sys.exit(summary.exit_code)


def _add_emulator_command() -> None:
    from .emulator.command import emulator

    cli.add_command(emulator)


async def _reconcile(paths: list[Path], settings: Settings, options: RunOptions,
                     install: Callable[[Reconciler], None]) -> Summary:
    from .runner import run as run_library

    return await run_library(paths, settings, options, on_start=install)


def _run_async(make: Callable[[Callable[[Reconciler], None]], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine with signal handling: the first SIGINT/SIGTERM stops gracefully, a second at once."""

    async def main() -> T:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        stops: list[str] = []

        def install(reconciler: Reconciler) -> None:
            def on_signal(name: str) -> None:
                stops.append(name)
                if len(stops) == 1:
                    reconciler.stop(name)
                elif task is not None:
                    task.cancel()

            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, on_signal, signum.name)

        try:
            return await make(install)
        except asyncio.CancelledError:
            click.echo("stopped at once; the journal is consistent: re-run the same command to resume", err=True)
            sys.exit(130 if stops[-1:] == ["SIGINT"] else 143)

    return _guard(lambda: _event_loop_run(main()))


def _event_loop_run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _guard(fn: Callable[[], T]) -> T:
    """Turn reconcile's errors into a message and an exit code: no traceback for a user's mistake."""
    try:
        return fn()
    except ReconcileError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)


def _print_summary(summary: Summary) -> None:
    counts = summary.counts
    line = (f"{summary.records} records: {counts['present']} present, {counts['missing']} missing, "
            f"{counts['invalid']} invalid, {counts['error']} error")
    if counts.get("unchecked"):
        line += f", {counts['unchecked']} unchecked"
    if summary.data.get("duplicates"):
        line += f" ({summary.data['duplicates']} duplicates)"
    click.echo(line)
    if summary.data.get("error"):
        click.echo(f"error: {summary.data['error']['message']}", err=True)
    elif not summary.complete:
        click.echo("incomplete: re-run the same command to resume")
    for name, path in summary.paths.items():
        click.echo(f"{name + ':':9}{path}")


def main() -> None:
    _add_emulator_command()
    cli()
