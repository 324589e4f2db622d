"""The command line: parse, call the library, print, exit.  No logic lives here.

Exit codes: 0 every row present · 1 complete, some missing · 2 usage error · 3 some rows invalid, error or
unchecked · 4 fatal (credentials refused, endpoint not found, host unreachable, bad configuration) · 5 internal
error (a bug; a crash file is named) · 130/143 stopped by SIGINT/SIGTERM (a partial report is written; re-run the
same command to resume).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, ClassVar, NoReturn, TypeVar

import click

from reconcile._version import version_report
from reconcile.config import LOG_FORMATS, Settings, configure_logging, reset_logging
from reconcile.engine import Reconciler, RunOptions
from reconcile.errors import InternalError, ReconcileError, UsageError
from reconcile.input import FORMATS as INPUT_FORMATS
from reconcile.input import ReadOptions, Shard, expand_manifest_paths
from reconcile.model import ExitCode
from reconcile.ops import DisplayOptions, MetricsOptions, Watcher, export_metrics
from reconcile.report import FORMATS, Report

from ._profiles import CONSTANT_FIELDS, Profile, load_profile

T = TypeVar("T")

OUT_DIR_META = "reconcile.out_dir"  # where a crash file goes: the command's --out, beside its journal
FORCE_HELP = "Write into an --out that holds other files but no reconcile run (only reconcile's own names are written)."

PROFILE_OPTIONS = (
    click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Settings file (TOML) [env CALLJOURNEY_CONFIG; default ./reconcile.toml, then "
        "~/.config/reconcile/config.toml].",
    ),
    click.option("--profile", help="Use the config file's [profile.NAME] [env CALLJOURNEY_PROFILE]."),
)


class ConcurrencyType(click.ParamType):  # type: ignore[type-arg]
    """``auto`` or a whole number of requests in flight from 1 to 1000."""

    name = "auto|N"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int) or value is None:
            return value
        text = str(value).strip().lower()
        if text == "auto":
            return "auto"
        try:
            number = int(text)
        except ValueError:
            self.fail(f"{value!r} is neither 'auto' nor a whole number", param, ctx)
        if not 1 <= number <= 1000:
            self.fail(f"{number} is not in the range 1 to 1000", param, ctx)
        return number


CONCURRENCY = ConcurrencyType()

CONNECTION_OPTIONS = (
    *PROFILE_OPTIONS,
    click.option("--base-url", help="Platform base URL [env CALLJOURNEY_BASE_URL; default Production Canada]."),
    click.option(
        "--endpoint-path", help="API path [env CALLJOURNEY_ENDPOINT_PATH; default /api/v1/search/conversationexists]."
    ),
    click.option(
        "--authority", help="Identity provider [env CALLJOURNEY_AUTHORITY; default https://login.microsoftonline.com]."
    ),
    click.option("--tenant-id", help="Azure AD tenant [env CALLJOURNEY_TENANT_ID]."),
    click.option("--client-id", help="App registration client id [env CALLJOURNEY_CLIENT_ID]."),
    click.option("--scope", help="Token scope [env CALLJOURNEY_SCOPE; default api://{client_id}/.default]."),
    click.option(
        "--client-secret-file",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Read the client secret from this file (else CALLJOURNEY_CLIENT_SECRET).",
    ),
    click.option(
        "--client-certificate",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Authenticate with this certificate: PEM with its private key, or PFX (password in "
        "CALLJOURNEY_CLIENT_CERTIFICATE_PASSWORD) [env CALLJOURNEY_CLIENT_CERTIFICATE].",
    ),
    click.option(
        "--assertion-alg",
        type=click.Choice(["PS256", "RS256"], case_sensitive=False),
        help="Signature of the certificate's assertion: PS256 with x5t#S256 [default], or RS256 with x5t for "
        "older tenants [env CALLJOURNEY_ASSERTION_ALG].",
    ),
    click.option(
        "--federated-token-file",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Authenticate with the federated token in this file, re-read for every token (AKS workload identity) "
        "[env CALLJOURNEY_FEDERATED_TOKEN_FILE or AZURE_FEDERATED_TOKEN_FILE].",
    ),
    click.option(
        "--proxy",
        metavar="URL",
        help="HTTP proxy for the API and the identity provider, http://[USER:PASSWORD@]host:port "
        "[env CALLJOURNEY_PROXY; default HTTPS_PROXY/HTTP_PROXY; NO_PROXY hosts go direct].",
    ),
    click.option(
        "--ca-bundle",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Also trust this CA (PEM). Verification is always on.",
    ),
    click.option(
        "--trust-store",
        type=click.Choice(["openssl", "system"], case_sensitive=False),
        help="Certificates to trust: OpenSSL's defaults, honouring SSL_CERT_FILE/SSL_CERT_DIR [default], or the "
        "operating system's store [env CALLJOURNEY_TRUST_STORE].",
    ),
    click.option(
        "--concurrency",
        type=CONCURRENCY,
        help="Requests in flight: a number, or auto to find it from the platform's latency [default auto].",
    ),
    click.option(
        "--max-concurrency",
        type=click.IntRange(1, 1000),
        help="Ceiling of the automatic concurrency [default 256].",
    ),
    click.option(
        "--outage-tolerance",
        type=click.FloatRange(min=0),
        help="Seconds the platform may stop answering mid-run before the run stops [default 180].",
    ),
    click.option("--timeout", type=click.FloatRange(min=0.1), help="Seconds per attempt [default 30]."),
    click.option("--max-attempts", type=click.IntRange(1, 100), help="Attempts per row [default 5]."),
    click.option("--max-rps", type=click.FloatRange(min=0.1), help="Hard cap on requests per second."),
)


READ_OPTIONS = (
    click.option(
        "--input-format",
        type=click.Choice(INPUT_FORMATS),
        help="Manifest format [default: from the file name; .gz is decompressed].",
    ),
    click.option("--encoding", help="Manifest text encoding [default: utf-8-sig]."),
    click.option("--delimiter", help="CSV delimiter [default: detected]."),
    click.option("--sheet", help="XLSX sheet to read [default: the first]."),
    click.option(
        "--map",
        "mappings",
        multiple=True,
        metavar="FIELD=COLUMN",
        help="Read FIELD (company, organisation, folder, filename) from the export's COLUMN.",
    ),
    click.option("--company", help="Use this company for every row."),
    click.option("--organisation", help="Use this organisation for every row."),
    click.option("--folder", help="Use this folder for every row."),
    click.option(
        "--filename-template",
        metavar="TEMPLATE",
        help='Build the filename from export columns, e.g. "{RecordingSid}.mp3".',
    ),
)
READ_OPTION_NAMES = (
    "input_format",
    "encoding",
    "delimiter",
    "sheet",
    "mappings",
    "company",
    "organisation",
    "folder",
    "filename_template",
)

LOG_OPTIONS = (
    click.option(
        "-v",
        "--verbose",
        count=True,
        help="-v: retries, throttling and token renewals; -vv: debugging (also after the command).",
    ),
    click.option("--log-format", type=click.Choice(LOG_FORMATS), help="Log lines as text [default] or JSON objects."),
    click.option(
        "--log-file",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Write logs (INFO, DEBUG at -vv) to this file; stderr keeps warnings and progress.",
    ),
)
WATCH_OPTIONS = (
    click.option("-q", "--quiet", is_flag=True, help="Show no progress (warnings and the summary still print)."),
    click.option(
        "--progress-interval",
        type=click.FloatRange(min=0.5),
        default=10.0,
        show_default=True,
        help="Seconds between progress lines when stderr is not a terminal (cron, CI, a file).",
    ),
    *LOG_OPTIONS,
)
WATCH_OPTION_NAMES = ("quiet", "progress_interval", "verbose", "log_format", "log_file")


# -- metrics for the scheduler (`run`): the options, and the one call in `run` -------------------------------
METRICS_OPTIONS = (
    click.option(
        "--metrics-file",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Write Prometheus metrics to this NAME.prom file for node_exporter's textfile collector, during the "
        "run and at its end (atomically; a failed run keeps the last success).",
    ),
    click.option(
        "--pushgateway",
        metavar="URL",
        help="Push the run's metrics to this Prometheus Pushgateway at its end (push-add: a failed run does not "
        "overwrite the last success); https, or http to loopback.",
    ),
    click.option("--metrics-job", help="The Pushgateway's job label [default reconcile]."),
    click.option(
        "--metrics-label",
        "metrics_labels",
        multiple=True,
        metavar="KEY=VALUE",
        help="A label on every metric and in the Pushgateway's grouping key (repeatable); keep it the same from "
        "run to run. The profile's name and --label are labels too.",
    ),
)
METRICS_OPTION_NAMES = ("metrics_file", "pushgateway", "metrics_job", "metrics_labels")


def metrics_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(METRICS_OPTIONS):
        fn = option(fn)
    return fn


def _metrics(values: dict[str, Any], profile: Profile) -> MetricsOptions:
    """Pop the metrics options out of ``values`` into MetricsOptions, over the profile's."""
    given = {name: values.pop(name, None) for name in METRICS_OPTION_NAMES}
    labels = []
    for text in given["metrics_labels"] or ():
        key, sep, value = text.partition("=")
        if not sep or not key.strip() or not value:
            raise click.BadParameter(f"{text!r} is not KEY=VALUE, e.g. region=ca", param_hint="--metrics-label")
        labels.append((key.strip(), value))
    return profile.metrics_options(
        file=given["metrics_file"], pushgateway=given["pushgateway"], job=given["metrics_job"], labels=tuple(labels)
    )


# -- end of the metrics options ------------------------------------------------------------------------------


def connection_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(CONNECTION_OPTIONS):
        fn = option(fn)
    return fn


def read_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(READ_OPTIONS):
        fn = option(fn)
    return fn


def log_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(LOG_OPTIONS):
        fn = option(fn)
    return fn


def watch_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(WATCH_OPTIONS):
        fn = option(fn)
    return fn


def _setup_logging(verbose: int, log_format: str | None, log_file: Path | None) -> str:
    """Configure logging from the group's options merged with the command's (-v counts add up); the format."""
    root = click.get_current_context().find_root()
    if "reconcile.logging" not in root.meta:
        root.call_on_close(reset_logging)  # the log file is closed, and a caller's logging restored, at the end
    merged = root.meta.setdefault("reconcile.logging", {"verbose": 0, "log_format": None, "log_file": None})
    merged["verbose"] += verbose or 0
    merged["log_format"] = log_format or merged["log_format"]
    merged["log_file"] = log_file or merged["log_file"]
    fmt = merged["log_format"] or "text"
    _guard(lambda: configure_logging(merged["verbose"], log_format=fmt, log_file=merged["log_file"]))
    return str(fmt)


def _watch(values: dict[str, Any]) -> DisplayOptions:
    """Pop the progress and logging options out of ``values``, configure logging, and say how to show progress."""
    given = {name: values.pop(name, None) for name in WATCH_OPTION_NAMES}
    fmt = _setup_logging(given["verbose"] or 0, given["log_format"], given["log_file"])
    return DisplayOptions(
        mode="off" if given["quiet"] else "auto", interval=given["progress_interval"] or 10.0, as_json=fmt == "json"
    )


def profile_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(PROFILE_OPTIONS):
        fn = option(fn)
    return fn


def _profile(values: dict[str, Any]) -> Profile:
    """Pop --config and --profile out of ``values``; the profile they name (flag > environment > search path)."""
    config_file, name = values.pop("config_file", None), values.pop("profile", None)
    return _guard(lambda: load_profile(config_file, name))


def _shard(text: str | None, count: int | None) -> Shard | None:
    if text is not None and count is not None:
        raise UsageError("--shard and --shards are alternatives. HINT: --shard K/N, or --shards N in an Indexed Job")
    if text is not None:
        return Shard.parse(text)
    return Shard.from_environment(count) if count is not None else None


def _read_options(values: dict[str, Any], profile: Profile | None = None) -> ReadOptions:
    """Pop the manifest-reading options out of ``values`` into a ReadOptions, over the profile's."""
    given = {name: values.pop(name, None) for name in READ_OPTION_NAMES}
    columns = []
    for mapping in given["mappings"] or ():
        field, sep, column = mapping.partition("=")
        if not sep or not field.strip() or not column:
            raise click.BadParameter(
                f"{mapping!r} is not FIELD=COLUMN, e.g. --map filename=RecordingFile", param_hint="--map"
            )
        columns.append((field.strip().lower(), column))
    constants = tuple((name, given[name]) for name in CONSTANT_FIELDS if given[name])
    return (profile or Profile()).read_options(
        encoding=given["encoding"],
        delimiter=given["delimiter"],
        input_format=given["input_format"],
        sheet=given["sheet"],
        columns=tuple(columns),
        constants=constants,
        filename_template=given["filename_template"],
    )


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
        """Exit codes never lie: a reconcile error escaping a command exits with its code, Ctrl-C before a run
        with 130 (click's "Aborted!" would be 1), and anything unexpected with 5 and a crash file."""
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except ReconcileError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("stopped (SIGINT) before any row was checked", err=True)
            sys.exit(ExitCode.SIGINT)
        except Exception as exc:
            from reconcile.ops import report_crash

            click.echo(report_crash(exc, ctx.meta.get(OUT_DIR_META)), err=True)
            sys.exit(InternalError.exit_code)


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(version_report())
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
@log_options
def cli(verbose: int, log_format: str | None, log_file: Path | None) -> None:
    """Check call-recording manifests against the CallJourney platform.

    \b
    Example:
        reconcile demo
        reconcile run export.csv --out reports/2026-11-26
        reconcile doctor --probe acme/acme-ca/2026/11/25/inbound/call-0001.mp3
    """
    _setup_logging(verbose, log_format, log_file)


@cli.command()
@click.argument("manifests", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for results.csv, missing.csv, summary.json and the resume journal.",
)
@connection_options
@click.option("--fresh", is_flag=True, help="Ignore an earlier run's journal in --out and start over.")
@click.option("--force", is_flag=True, help=FORCE_HELP)
@click.option("--retry-errors", is_flag=True, help="Re-ask only the error rows of a finished run in --out.")
@click.option("--label", help="Operator label recorded in summary.json and the reports.")
@click.option("--format", "formats", help=f"Report formats, comma-separated: {', '.join(FORMATS)} [default: csv].")
@click.option(
    "--compare-to",
    type=click.Path(file_okay=False, path_type=Path),
    help="An earlier run's --out: write delta.csv of what changed since.",
)
@click.option(
    "--shard",
    "shard_text",
    metavar="K/N",
    help="Check only shard K of N (0 <= K < N); N runs with K = 0..N-1 cover every row once.",
)
@click.option(
    "--shards",
    "shard_count",
    type=click.IntRange(1, 10_000),
    metavar="N",
    help="Check shard $JOB_COMPLETION_INDEX of N (Kubernetes Indexed Jobs).",
)
@read_options
@watch_options
@metrics_options
def run(
    manifests: tuple[Path, ...],
    out_dir: Path,
    fresh: bool,
    force: bool,
    retry_errors: bool,
    label: str | None,
    formats: str | None,
    compare_to: Path | None,
    shard_text: str | None,
    shard_count: int | None,
    client_secret_file: Path | None,
    **connection: Any,
) -> None:
    """Reconcile MANIFEST files ('-' reads standard input); write the report into --out.

    Re-running the same command with the same --out resumes an interrupted run.  One command at a time per
    --out: a second one exits 2 naming the first.

    \b
    Example:
        export CALLJOURNEY_TENANT_ID=... CALLJOURNEY_CLIENT_ID=... CALLJOURNEY_CLIENT_SECRET=...
        reconcile run nightly.csv --out reports/2026-11-26 --concurrency 32
    """
    click.get_current_context().meta[OUT_DIR_META] = out_dir
    display = _watch(connection)
    profile = _profile(connection)
    settings = _guard(
        lambda: Settings.load(connection, client_secret_file=client_secret_file, defaults=profile.settings)
    )
    read = _read_options(connection, profile)
    shard = _guard(lambda: _shard(shard_text, shard_count))
    wanted = formats.split(",") if formats is not None else profile.formats or ("csv",)
    options = RunOptions(
        out_dir=out_dir,
        fresh=fresh,
        force=force,
        retry_errors=retry_errors,
        label=label if label is not None else profile.label or "",
        read=read,
        formats=tuple(f.strip().lower() for f in wanted if f.strip()),
        compare_to=compare_to,
        shard=shard,
    )
    paths = _guard(lambda: expand_manifest_paths(manifests))
    metrics = _metrics(connection, profile)
    summary = _run_async(
        lambda install: export_metrics(
            metrics, settings, options, lambda start: _reconcile(paths, settings, options, start), install
        ),
        display,
    )
    _print_summary(summary)
    sys.exit(summary.exit_code)


@cli.command()
@click.argument("manifests", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--concurrency",
    default=16,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Requests in flight the run would use.",
)
@click.option("--max-rps", type=click.FloatRange(min=0.1), help="Cap on requests per second the run would use.")
@click.option(
    "--latency-ms",
    default=100.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Expected time the platform takes to answer one request.",
)
@profile_options
@read_options
def validate(
    manifests: tuple[Path, ...], concurrency: int, max_rps: float | None, latency_ms: float, **read: Any
) -> None:
    """Read MANIFEST files (or directories, or globs) as a run would, without the network.

    Prints record counts, invalid rows with reasons, duplicates and the expected run time.  Exits 0 when
    every row can be sent, 3 when some rows are invalid, 2 when a manifest cannot be read.

    \b
    Example:
        reconcile validate exports/*.csv --concurrency 32 --max-rps 200
    """
    from reconcile.input import render
    from reconcile.input import validate as validate_manifests

    options = _read_options(read, _profile(read))
    paths = _guard(lambda: expand_manifest_paths(manifests))
    result = _guard(
        lambda: validate_manifests(paths, options, concurrency=concurrency, max_rps=max_rps, latency_ms=latency_ms)
    )
    click.echo(render(result))
    sys.exit(result.exit_code)


@cli.command()
@click.option(
    "--out",
    "out_dir",
    default=Path("reconcile-demo"),
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write the demo report.",
)
@click.option("--concurrency", default="auto", show_default=True, type=CONCURRENCY, help="Requests in flight.")
@watch_options
def demo(out_dir: Path, concurrency: int | str, **watch: Any) -> None:
    """Reconcile the bundled sample manifests against the bundled emulator (no network, no configuration).

    \b
    Example:
        reconcile demo && head reconcile-demo/missing.csv
    """
    from reconcile.ops import run_demo

    display = _watch(watch)
    fixed = concurrency if isinstance(concurrency, int) else None
    summary = _run_async(lambda install: run_demo(out_dir, fixed, install), display)
    _print_summary(summary)
    click.echo("The data came from the bundled emulator, not from the CallJourney platform.")
    sys.exit(summary.exit_code)


@cli.command()
@click.argument(
    "shard_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path), metavar="SHARD_OUT_DIR..."
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the merged report.",
)
@click.option(
    "--allow-incomplete", is_flag=True, help="Merge even if a shard did not finish (its unchecked rows stay unchecked)."
)
@click.option("--format", "formats", help="Report formats, comma-separated [default: those the shards wrote].")
@click.option(
    "--compare-to",
    type=click.Path(file_okay=False, path_type=Path),
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
    wanted = tuple(f.strip().lower() for f in formats.split(",") if f.strip()) if formats is not None else None
    summary = _guard(
        lambda: merge_reports(
            shard_dirs, out_dir, allow_incomplete=allow_incomplete, formats=wanted, compare_to=compare_to, force=force
        )
    )
    _print_summary(summary, error_logged=False)
    sys.exit(summary.exit_code)


@cli.command()
@click.argument(
    "directories", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path), metavar="DIR..."
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
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

    found = _guard(lambda: load_history(directories))
    for warning in found.warnings:
        click.echo(f"warning: {warning}", err=True)
    paths = _guard(lambda: write_history(found, out_dir or default_out_dir(directories)))
    runs = found.runs
    click.echo(f"{len(runs)} runs, {runs[0].night} to {runs[-1].night}: {len(found.failed)} failed")
    for name, path in paths.items():
        click.echo(f"{name.replace('_', ' ') + ':':19} {path}")


@cli.command()
@connection_options
@click.option(
    "--probe",
    metavar="COMPANY/ORGANISATION/FOLDER/FILENAME",
    help="Also check this one row (the folder may contain slashes).",
)
@log_options
def doctor(
    probe: str | None,
    client_secret_file: Path | None,
    verbose: int,
    log_format: str | None,
    log_file: Path | None,
    **connection: Any,
) -> None:
    """Check the configuration step by step, as on a support call: settings, the authority, a token, the API.

    Each step shows ✓ or ✗ with the fix; the token is never shown, only its claims.  Exits 0 when every
    step passes, 4 otherwise.  Takes the connection options of `run`.

    \b
    Example:
        reconcile doctor
        reconcile doctor --probe acme/acme-ca/2026/11/25/inbound/call-0001.mp3
    """
    from reconcile.ops import can_print_unicode, diagnose, exit_code, parse_probe, render

    _setup_logging(verbose, log_format, log_file)
    profile = _profile(connection)
    key = _guard(lambda: parse_probe(probe)) if probe else None
    checks = _guard(
        lambda: _event_loop_run(
            diagnose(
                lambda: Settings.load(connection, client_secret_file=client_secret_file, defaults=profile.settings),
                probe=key,
            )
        )
    )
    click.echo(render(checks, unicode=can_print_unicode(getattr(sys.stdout, "encoding", None))))
    sys.exit(exit_code(checks))


async def _reconcile(
    paths: list[Path], settings: Settings, options: RunOptions, install: Callable[[Reconciler], None]
) -> Report:
    from reconcile.api import run as run_library

    return await run_library(paths, settings, options, on_start=install)


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
            click.echo("stopped at once; the journal is consistent: re-run the same command to resume", err=True)
            sys.exit(ExitCode.SIGINT if stops[-1:] == ["SIGINT"] else ExitCode.SIGTERM)

    return _guard(lambda: _event_loop_run(main()))


# The collector's first generation is examined after this many more container objects were made than freed
# (Python's default is 700).  A run's objects die by reference count, but the default still collected ~330
# times per 50,000 rows, 0.4–0.7 s of the event loop's time, 1.5 ms each; at 20,000 it runs a handful of times
# at start-up and then not at all in a steady run, and any cyclic garbage still goes within 20,000 objects.
GC_THRESHOLD = 20_000


def _event_loop_run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on uvloop when it is installed, with the collector tuned for a long run (restored after)."""
    threshold = gc.get_threshold()
    gc.set_threshold(max(GC_THRESHOLD, threshold[0]), *threshold[1:])
    try:
        try:
            import uvloop
        except ImportError:
            return asyncio.run(coro)
        return uvloop.run(coro)
    finally:
        gc.set_threshold(*threshold)


def _guard(fn: Callable[[], T]) -> T:
    """Turn reconcile's errors into a message and an exit code: no traceback for a user's mistake."""
    try:
        return fn()
    except ReconcileError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)


def _print_summary(report: Report, *, error_logged: bool = True) -> None:
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


def main() -> None:
    """The console script.

    It leaves with ``os._exit`` once the command is done and its output flushed, as mypy does: the report is
    written and closed by then, and unwinding the interpreter's modules would add ~50–90 ms to every run.
    """
    try:
        cli()
    except SystemExit as done:
        _leave(done.code)
    _leave(0)


def _leave(code: object) -> NoReturn:
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message"): Python prints it and exits 1
        print(code, file=sys.stderr)
        status = 1
    logging.shutdown()  # flushes and closes --log-file, as the atexit hook os._exit skips would
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (| head) or a closed stream
            stream.flush()
    os._exit(status)
