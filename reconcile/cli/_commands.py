"""The commands: each parses its options, calls the library, prints (:mod:`._output`) and exits with its code.

Exit codes: 0 every row present · 1 complete, some missing · 2 usage error · 3 some rows invalid, error or
unchecked · 4 fatal (credentials refused, endpoint not found, host unreachable, bad configuration) · 5 internal
error (a bug; a crash file is named) · 130/143 stopped by SIGINT/SIGTERM (a partial report is written; re-run the
same command to resume).  A :class:`ReconcileError` from anywhere in a command is turned into its message and
exit code in one place, :meth:`_Commands.invoke`.
"""

from __future__ import annotations

import asyncio
import importlib
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import click

from reconcile.api import event_loop_run
from reconcile.api import run as run_manifests
from reconcile.config import Settings, configure_logging, reset_logging
from reconcile.engine import Reconciler, RunOptions
from reconcile.errors import InternalError, ReconcileError
from reconcile.input import Shard, expand_manifest_paths
from reconcile.model import ExitCode
from reconcile.ops import DisplayOptions, MetricsOptions, Watcher, export_metrics

from . import _output as output
from ._options import (
    CONCURRENCY,
    CONNECTION,
    DIRECTORY,
    ESTIMATE,
    FORCE_HELP,
    LOG,
    METRICS,
    PROFILE,
    READ,
    REPORT,
    RUN,
    SETTINGS,
    SHARDING,
    WATCH,
)
from ._profiles import Profile, load_profile

T = TypeVar("T")

OUT_DIR_META = "reconcile.out_dir"  # where a crash file goes: the command's --out, beside its journal
LOGGING_META = "reconcile.logging"  # the group's logging options, which a command's add to


class _Commands(click.Group):
    """The command group, with ``emulator`` imported only when it is asked for.

    The emulator is an aiohttp *server*: importing it costs every ``reconcile run`` ~40 ms of start-up for a
    command it never uses.
    """

    lazy: ClassVar[dict[str, tuple[str, str]]] = {"emulator": ("reconcile.emulator.command", "emulator")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy and name not in self.commands:
            module, attribute = self.lazy[name]
            self.add_command(getattr(importlib.import_module(module), attribute), name)
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context) -> Any:
        """The one error handler.  Exit codes never lie: a reconcile error escaping a command exits with its code
        and its message (no traceback for a user's mistake), Ctrl-C before a run with 130 (click's "Aborted!"
        would be 1), and anything unexpected with 5 and a crash file."""
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except ReconcileError as exc:
            output.print_error(exc)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            output.print_stop(output.STOPPED_BEFORE_RUN)
            sys.exit(ExitCode.SIGINT)
        except Exception as exc:
            from reconcile.ops import report_crash

            output.print_stop(report_crash(exc, ctx.meta.get(OUT_DIR_META)))
            sys.exit(InternalError.exit_code)


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        output.print_version()
        ctx.exit()


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version, with Python's, aiohttp's and pandas', and exit.",
)
@LOG
def cli(**values: Any) -> None:
    """Check call-recording manifests against the CallJourney platform.

    \b
    Example:
        reconcile demo
        reconcile run export.csv --out reports/2026-11-26
        reconcile doctor --probe acme/acme-ca/2026/11/25/inbound/call-0001.mp3
    """
    _setup_logging(**LOG.take(values))


@cli.command()
@click.argument("manifests", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=DIRECTORY,
    help="Directory for results.csv, missing.csv, summary.json and the resume journal.",
)
@CONNECTION
@RUN
@REPORT
@SHARDING
@READ
@WATCH
@METRICS
def run(manifests: tuple[Path, ...], out_dir: Path, **values: Any) -> None:
    """Reconcile MANIFEST files ('-' reads standard input); write the report into --out.

    Re-running the same command with the same --out resumes an interrupted run.  One command at a time per
    --out: a second one exits 2 naming the first.

    \b
    Example:
        export CALLJOURNEY_TENANT_ID=... CALLJOURNEY_CLIENT_ID=... CALLJOURNEY_CLIENT_SECRET=...
        reconcile run nightly.csv --out reports/2026-11-26 --concurrency 32
    """
    click.get_current_context().meta[OUT_DIR_META] = out_dir
    display = _display(WATCH.take(values))
    profile = _profile(values)
    settings = _settings(SETTINGS.take(values), profile)
    options = RunOptions(
        read=profile.read_options(**READ.take(values)),
        report=profile.report_options(**REPORT.take(values)),
        shard=_shard(SHARDING.take(values)),
        **RUN.take(values),
    )
    metrics = _metrics(METRICS.take(values), profile)
    summary = _run_async(
        lambda install: export_metrics(
            metrics,
            settings,
            options,
            lambda start: run_manifests(manifests, out_dir, settings=settings, options=options, on_start=start),
            install,
        ),
        display,
    )
    output.print_summary(summary)
    sys.exit(summary.exit_code)


@cli.command()
@click.argument("manifests", nargs=-1, required=True, type=click.Path(path_type=Path))
@ESTIMATE
@PROFILE
@READ
def validate(manifests: tuple[Path, ...], **values: Any) -> None:
    """Read MANIFEST files (or directories, or globs) as a run would, without the network.

    Prints record counts, invalid rows with reasons, duplicates and the expected run time.  Exits 0 when
    every row can be sent, 3 when some rows are invalid, 2 when a manifest cannot be read.

    \b
    Example:
        reconcile validate exports/*.csv --concurrency 32 --max-rps 200
    """
    from reconcile.input import render
    from reconcile.input import validate as validate_manifests

    estimate = ESTIMATE.take(values)
    options = _profile(values).read_options(**READ.take(values))
    result = validate_manifests(expand_manifest_paths(manifests), options, **estimate)
    output.print_text(render(result))
    sys.exit(result.exit_code)


@cli.command()
@click.option(
    "--out",
    "out_dir",
    default=Path("reconcile-demo"),
    show_default=True,
    type=DIRECTORY,
    help="Where to write the demo report.",
)
@click.option("--concurrency", default="auto", show_default=True, type=CONCURRENCY, help="Requests in flight.")
@WATCH
def demo(out_dir: Path, concurrency: int | str, **values: Any) -> None:
    """Reconcile the bundled sample manifests against the bundled emulator (no network, no configuration).

    \b
    Example:
        reconcile demo && head reconcile-demo/missing.csv
    """
    from reconcile.ops import run_demo

    display = _display(WATCH.take(values))
    summary = _run_async(lambda install: run_demo(out_dir, concurrency, install), display)
    output.print_summary(summary)
    output.print_text(output.DEMO_NOTE)
    sys.exit(summary.exit_code)


@cli.command()
@click.argument("shard_dirs", nargs=-1, required=True, type=DIRECTORY, metavar="SHARD_OUT_DIR...")
@click.option("--out", "out_dir", required=True, type=DIRECTORY, help="Directory for the merged report.")
@click.option(
    "--allow-incomplete", is_flag=True, help="Merge even if a shard did not finish (its unchecked rows stay unchecked)."
)
@click.option("--format", "formats", help="Report formats, comma-separated [default: those the shards wrote].")
@click.option(
    "--compare-to",
    type=DIRECTORY,
    help="An earlier run's --out (merged or not): write delta.csv of what changed since.",
)
@click.option("--force", is_flag=True, help=FORCE_HELP)
def merge(
    shard_dirs: tuple[Path, ...],
    out_dir: Path,
    allow_incomplete: bool,
    formats: str | None,
    compare_to: Path | None,
    force: bool,
) -> None:
    """Combine the --out directories of `run --shard K/N` (K = 0..N-1) into one report.

    The merged report is the one a single unsharded run would have written: rows in manifest order,
    counts summed and checked.  Refuses a set with a shard missing or repeated, shards of different
    manifests, and unfinished shards (unless --allow-incomplete).  Exit codes are those of `run`.

    \b
    Example:
        reconcile merge reports/2026-11-26/shard-0 reports/2026-11-26/shard-1 --out reports/2026-11-26/merged
    """
    from reconcile.shards import merge_reports

    click.get_current_context().meta[OUT_DIR_META] = out_dir
    summary = merge_reports(
        shard_dirs, out_dir, allow_incomplete=allow_incomplete, formats=formats, compare_to=compare_to, force=force
    )
    output.print_summary(summary, error_logged=False)
    sys.exit(summary.exit_code)


@cli.command()
@click.argument("directories", nargs=-1, required=True, type=DIRECTORY, metavar="DIR...")
@click.option(
    "--out",
    "out_dir",
    type=DIRECTORY,
    help="Directory for history.csv, history-by-company.csv and history.html [default: the first DIR when it "
    "holds runs, else that run directory's parent].",
)
def history(directories: tuple[Path, ...], out_dir: Path | None) -> None:
    """Put the runs of many nights side by side: history.csv, history-by-company.csv and history.html.

    Each DIR is a run's --out (or merge's), or a directory holding them, such as the dated ones
    deploy/cron/nightly.sh writes.  Only each run's summary.json (and delta.csv) is read, never its results.
    A directory holding no report is skipped with a warning.  Exits 0, or 2 when no DIR holds a report.

    \b
    Example:
        reconcile history /var/lib/reconcile/reports
        reconcile history reports/2026-11-25 reports/2026-11-26 --out reports
    """
    from reconcile.report import default_out_dir, load_history, write_history

    found = load_history(directories)
    output.print_warnings(found.warnings)
    paths = write_history(found, out_dir or default_out_dir(directories))
    output.print_history(found, paths)


@cli.command()
@CONNECTION
@click.option(
    "--probe",
    metavar="COMPANY/ORGANISATION/FOLDER/FILENAME",
    help="Also check this one row (the folder may contain slashes).",
)
@LOG
def doctor(probe: str | None, **values: Any) -> None:
    """Check the configuration step by step, as on a support call: settings, the authority, a token, the API.

    Each step shows ✓ or ✗ with the fix; the token is never shown, only its claims.  Exits 0 when every
    step passes, 4 otherwise.  Takes the connection options of `run`.

    \b
    Example:
        reconcile doctor
        reconcile doctor --probe acme/acme-ca/2026/11/25/inbound/call-0001.mp3
    """
    from reconcile.ops import can_print_unicode, diagnose, exit_code, parse_probe, render

    _setup_logging(**LOG.take(values))
    profile = _profile(values)
    given = SETTINGS.take(values)
    key = parse_probe(probe) if probe else None
    checks = event_loop_run(diagnose(lambda: _settings(given, profile), probe=key))
    output.print_text(render(checks, unicode=can_print_unicode(output.stdout_encoding())))
    sys.exit(exit_code(checks))


# --- from options to the library's arguments -------------------------------------------------------------------


def _profile(values: dict[str, Any]) -> Profile:
    """The profile --config and --profile name (flag > environment > search path), taken out of ``values``."""
    given = PROFILE.take(values)
    return load_profile(given["config_file"], given["profile"])


def _shard(given: dict[str, Any]) -> Shard | None:
    """The shard --shard K/N or --shards N names, or None for every row."""
    return Shard.select(given["shard_text"], given["shard_count"])


def _metrics(given: dict[str, Any], profile: Profile) -> MetricsOptions:
    """Where the run's metrics go: the metrics flags over the profile's."""
    return profile.metrics_options(
        file=given["metrics_file"],
        pushgateway=given["pushgateway"],
        job=given["metrics_job"],
        labels=given["metrics_labels"] or (),
    )


def _settings(given: dict[str, Any], profile: Profile) -> Settings:
    """Settings from the connection flags over the environment over the profile."""
    overrides = {name: value for name, value in given.items() if name != "client_secret_file"}
    return Settings.load(overrides, client_secret_file=given["client_secret_file"], defaults=profile.settings)


def _setup_logging(verbose: int | None, log_format: str | None, log_file: Path | None) -> str:
    """Configure logging from the group's options merged with the command's (-v counts add up); the format."""
    root = click.get_current_context().find_root()
    if LOGGING_META not in root.meta:
        root.call_on_close(reset_logging)  # the log file is closed, and a caller's logging restored, at the end
    merged = root.meta.setdefault(LOGGING_META, {"verbose": 0, "log_format": None, "log_file": None})
    merged["verbose"] += verbose or 0
    merged["log_format"] = log_format or merged["log_format"]
    merged["log_file"] = log_file or merged["log_file"]
    fmt = merged["log_format"] or "text"
    configure_logging(merged["verbose"], log_format=fmt, log_file=merged["log_file"])
    return str(fmt)


def _display(given: dict[str, Any]) -> DisplayOptions:
    """Configure logging from the watch options; how to show progress."""
    fmt = _setup_logging(given["verbose"], given["log_format"], given["log_file"])
    return DisplayOptions(
        mode="off" if given["quiet"] else "auto", interval=given["progress_interval"] or 10.0, as_json=fmt == "json"
    )


def _run_async(
    make: Callable[[Callable[[Reconciler], None]], Coroutine[Any, Any, T]], display: DisplayOptions | None = None
) -> T:
    """Run the coroutine with signal handling: the first SIGINT/SIGTERM stops gracefully, a second at once.

    With ``display``, the run's progress is shown until it ends (or is stopped), before anything is printed.
    """

    async def main() -> T:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        stops: list[str] = []
        watchers: list[Watcher] = []

        def install(reconciler: Reconciler) -> None:
            def on_signal(name: str) -> None:
                stops.append(name)
                if len(stops) == 1:
                    reconciler.stop(name)
                elif task is not None:
                    task.cancel()

            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, on_signal, signum.name)
            if display is not None and (watcher := display.start(reconciler)) is not None:
                watchers.append(watcher)

        try:
            try:
                return await make(install)
            finally:
                for watcher in watchers:  # the display ends before the summary or a message is printed
                    watcher.close()
        except asyncio.CancelledError:
            output.print_stop(output.STOPPED_AT_ONCE)
            sys.exit(ExitCode.SIGINT if stops[-1:] == ["SIGINT"] else ExitCode.SIGTERM)

    return event_loop_run(main())
