"""Metrics for the scheduler: a Prometheus textfile for node_exporter, and a push to a Pushgateway.

Named as Prometheus's instrumentation guide asks of batch jobs: what matters is when the job last succeeded,
then when it last ran, how that ended and how long it took; every value is a gauge of the last run (counts of
one run as ``_total`` counters).  ``--metrics-file`` is rewritten atomically while the run goes and at its end;
``--pushgateway`` is pushed once, at the end, with push-add (POST): the last-success gauge is in the push only when
the run succeeded, so a failed run never overwrites the last success.  The textfile has no gateway to keep it, so
its last success is read back from the previous file and carried over.

A run succeeds when its report is complete (exit 0, 1 or 3: missing, invalid or error rows are findings).
prometheus-client writes and parses the exposition format; nothing here writes it by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import re
import signal
import ssl
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from reconcile.config import Settings, check_url, redact
from reconcile.engine import Progress, Reconciler, RunOptions
from reconcile.errors import ConfigError, ReconcileError, UsageError
from reconcile.model import ExitCode, Status
from reconcile.report import Report

if TYPE_CHECKING:  # prometheus-client is imported only by a run that exports metrics (~90 ms of start-up)
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric

log = logging.getLogger("reconcile.ops._metrics")

PREFIX = "reconcile_"
METRICS_EVERY = 5.0  # seconds between rewrites of the textfile during a run
PUSH_TIMEOUT = 10.0
DEFAULT_JOB = "reconcile"
LAST_SUCCESS = PREFIX + "last_success_timestamp_seconds"
LAST_RUN = PREFIX + "last_run_timestamp_seconds"
LAST_EXIT_CODE = PREFIX + "last_run_exit_code"
LAST_OUTCOME = PREFIX + "last_run_outcome"
# How a run ended: summary.json's outcome, "incomplete" for a report with unchecked rows, and the two ways a
# command ends without a report.
OUTCOMES = ("complete", "incomplete", "interrupted", "fatal", "usage", "internal")
OUTCOME_OF_EXIT = {2: "usage", 4: "fatal", 5: "internal"}
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
RESERVED_LABELS = frozenset({"job", "instance", "status", "outcome"})  # the scraper's, and those of our metrics


@dataclass(frozen=True, slots=True)
class MetricsOptions:
    """Where a run's metrics go: a textfile, a Pushgateway, both or neither; and the labels they carry."""

    file: Path | None = None
    pushgateway: str | None = None
    job: str = DEFAULT_JOB
    labels: tuple[tuple[str, str], ...] = ()  # on every metric and in the grouping key, with the run's label
    interval: float = METRICS_EVERY

    @property
    def enabled(self) -> bool:
        return self.file is not None or self.pushgateway is not None

    def check(self) -> None:
        """Refuse what could not work, before any request: a bad label, an unsafe URL, an unwritable file."""
        for name, _ in self.labels:
            if not _LABEL_NAME.fullmatch(name) or name.startswith("__") or name in RESERVED_LABELS:
                reserved = ", ".join(sorted(RESERVED_LABELS))
                raise UsageError(
                    f"metrics label {name!r} (--metrics-label, or the profile's metrics_labels) cannot be a label "
                    f"name (letters, digits and _, not starting with a digit or __, and not one of {reserved}). "
                    "HINT: e.g. --metrics-label region=ca"
                )
        if not self.job.strip():
            raise UsageError("--metrics-job is empty. HINT: name the job, e.g. --metrics-job reconcile-nightly")
        if self.pushgateway is not None:
            problem = check_url(self.pushgateway)
            if problem:
                raise ConfigError(f"--pushgateway: {problem}")
            if urlsplit(self.pushgateway).password is not None:
                raise UsageError(
                    f"--pushgateway: {redact(self.pushgateway)} holds a password, which would show in ps and logs. "
                    "HINT: give the URL without credentials (reach the Pushgateway over TLS on a trusted network)"
                )
        if self.file is not None:
            _check_textfile(self.file)


def _check_textfile(path: Path) -> None:
    if path.suffix != ".prom":
        raise UsageError(
            f"--metrics-file {path}: node_exporter's textfile collector reads only files named *.prom. "
            f"HINT: --metrics-file {path.with_suffix('.prom')}"
        )
    directory = path.parent
    if not directory.is_dir():
        raise UsageError(
            f"--metrics-file {path}: the directory {directory} does not exist. HINT: give the textfile collector's "
            "directory (node_exporter's --collector.textfile.directory)"
        )
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UsageError(
            f"--metrics-file {path}: {directory} is not writable by this user (the file is replaced, so its "
            "directory must be writable). HINT: grant the user write access to the directory"
        )


@dataclass(frozen=True, slots=True)
class RunMetrics:
    """One moment of a run, or its end, as the metrics show it."""

    started: float  # Unix time
    duration: float
    rows: Mapping[str, int]
    requests: int
    retries: int
    throttled: int
    faults: int
    token_fetches: int
    rows_per_second: float
    records: int | None = None  # known at the end
    finished: float | None = None  # Unix time; None while the run goes
    exit_code: int | None = None
    outcome: str | None = None

    @property
    def success(self) -> bool:
        return self.outcome == "complete"


@dataclass(frozen=True, slots=True)
class Sample:
    """A sample of an earlier file carried over: its metric's name, its own labels, its value."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float


def read_previous(path: Path, labels: Mapping[str, str]) -> tuple[Sample, ...]:
    """The "last …" samples of ``labels``' series in an earlier textfile, parsed by prometheus-client; none if
    there is no file or it cannot be read (a warning: the last success would be lost)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ()
    except OSError as exc:
        log.warning("cannot read the earlier metrics file %s (%s): its last success is not carried over", path, exc)
        return ()
    carried = {LAST_SUCCESS, LAST_RUN, LAST_EXIT_CODE, LAST_OUTCOME}
    found: list[Sample] = []
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                own = {k: v for k, v in sample.labels.items() if k not in labels}
                ours = set(own) <= {"outcome"} and all(sample.labels.get(k) == v for k, v in labels.items())
                if sample.name in carried and ours:
                    found.append(Sample(sample.name, tuple(sorted(own.items())), float(sample.value)))
    except ValueError as exc:
        log.warning("the earlier metrics file %s does not parse (%s): its last success is not carried over", path, exc)
        return ()
    return tuple(found)


class RunCollector:
    """The metric families of one run, for prometheus-client's registry (which writes them out)."""

    def __init__(
        self, run: RunMetrics, labels: Mapping[str, str], previous: Sequence[Sample], *, with_success: bool
    ) -> None:
        self._run, self._labels, self._previous, self._with_success = run, dict(labels), previous, with_success

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        run, names = self._run, list(self._labels)
        values = list(self._labels.values())

        def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(PREFIX + name, documentation, labels=names)
            family.add_metric(values, value)
            return family

        def counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(PREFIX + name, documentation, labels=names)
            family.add_metric(values, value)
            return family

        yield gauge("running", "1 while a run goes, 0 once it ended.", 0 if run.finished is not None else 1)
        yield gauge("run_start_timestamp_seconds", "When the current or last run started, in Unix time.", run.started)
        yield gauge("duration_seconds", "How long the run took (so far, while it goes).", run.duration)
        rows = GaugeMetricFamily(
            PREFIX + "rows", "Rows of the run by status (settled so far, while it goes).", labels=[*names, "status"]
        )
        for status, count in run.rows.items():
            rows.add_metric([*values, status], count)
        yield rows
        if run.records is not None:
            yield gauge("records", "Records in the manifests (this shard's, when sharded).", run.records)
        yield counter("requests", "Requests sent to the platform.", run.requests)
        yield counter("retries", "Requests retried.", run.retries)
        yield counter("throttled", "429 and 503 answers: the platform pacing the run.", run.throttled)
        yield counter("faults", "Other failed attempts: 5xx, connection resets, timeouts.", run.faults)
        yield counter("token_fetches", "Tokens fetched from the identity provider.", run.token_fetches)
        yield gauge("rows_per_second", "Rows settled per second.", run.rows_per_second)
        yield from self._last()

    def _last(self) -> Iterator[Metric]:
        """The last run's end, and the last success: this run's when it ended, else carried over."""
        from prometheus_client.core import GaugeMetricFamily

        run, names, values = self._run, list(self._labels), list(self._labels.values())
        documentation = {
            LAST_SUCCESS: "When a run last succeeded (its report complete), in Unix time.",
            LAST_RUN: "When a run last ended, however it ended, in Unix time.",
            LAST_EXIT_CODE: "The exit code of the last run.",
            LAST_OUTCOME: f"How the last run ended: 1 for its outcome ({', '.join(OUTCOMES)}), 0 for the others.",
        }
        samples = [s for s in self._previous if s.name != LAST_SUCCESS or not run.success]
        if run.finished is not None:
            samples = [s for s in samples if s.name == LAST_SUCCESS]
            samples += [Sample(LAST_RUN, (), run.finished), Sample(LAST_EXIT_CODE, (), float(run.exit_code or 0))]
            samples += [Sample(LAST_OUTCOME, (("outcome", o),), float(o == run.outcome)) for o in OUTCOMES]
            if run.success:
                samples.append(Sample(LAST_SUCCESS, (), run.finished))
        if not self._with_success:
            samples = [s for s in samples if s.name != LAST_SUCCESS]
        for name, text in documentation.items():
            mine = [s for s in samples if s.name == name]
            if not mine:
                continue
            extra = [k for k, _ in mine[0].labels]
            family = GaugeMetricFamily(name, text, labels=[*names, *extra])
            for sample in mine:
                family.add_metric([*values, *(v for _, v in sample.labels)], sample.value)
            yield family


def registry_of(collector: RunCollector) -> CollectorRegistry:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def run_labels(metrics: MetricsOptions, options: RunOptions) -> dict[str, str]:
    """The labels of a run's series: the configured ones, the run's ``--label`` and its shard."""
    labels = {name: redact(value) for name, value in metrics.labels}
    if options.report.label:
        labels.setdefault("label", redact(options.report.label))
    if options.shard is not None:
        labels.setdefault("shard", str(options.shard))
    return labels


def _timestamp(iso: str, fallback: float) -> float:
    try:
        return datetime.fromisoformat(iso).timestamp()
    except (TypeError, ValueError):
        return fallback


def summary_metrics(report: Report, started: float, now: float) -> RunMetrics:
    """A finished run's metrics, from its summary.json: the same values."""
    summary = report.summary
    outcome = summary.outcome
    if outcome == "complete" and not summary.complete:
        outcome = "incomplete"
    return RunMetrics(
        started=_timestamp(summary.started_at, started),
        duration=float(summary.duration_seconds),
        rows=summary.counts.as_dict(),
        requests=summary.requests,
        retries=summary.retries,
        throttled=summary.throttled,
        faults=summary.pacing.faults if summary.pacing is not None else 0,
        token_fetches=summary.token_fetches,
        rows_per_second=float(summary.rows_per_second),
        records=summary.records,
        finished=_timestamp(summary.finished_at, now),
        exit_code=report.exit_code,
        outcome=outcome,
    )


def _pushgateway_handler(context: ssl.SSLContext) -> Callable[..., Callable[[], None]]:
    """prometheus-client's handler interface over urllib with our TLS context (the trust store and --ca-bundle;
    verification on). Proxies come from HTTPS_PROXY/NO_PROXY, as urllib reads them."""

    def handler(
        url: str, method: str, timeout: float | None, headers: Sequence[tuple[str, str]], data: bytes
    ) -> Callable[[], None]:
        def send() -> None:
            request = urllib.request.Request(url, data=data, method=method, headers=dict(headers))
            opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
            with opener.open(request, timeout=timeout):  # an answer of 400 or more raises HTTPError
                pass

        return send

    return handler


class MetricsExporter:
    """Writes a run's textfile while it goes and at its end, and pushes its end to the Pushgateway."""

    def __init__(
        self,
        options: MetricsOptions,
        labels: Mapping[str, str],
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.options, self.labels, self.settings = options, dict(labels), settings
        self._clock, self._wall = clock, wall
        self._started, self._start_tick = wall(), clock()
        self.previous = read_previous(options.file, self.labels) if options.file is not None else ()
        self._reconciler: Reconciler | None = None
        self._task: asyncio.Task[None] | None = None

    def watch(self, reconciler: Reconciler) -> None:
        """Rewrite the textfile now and every ``interval`` seconds until :meth:`close` (call in the loop)."""
        self._reconciler = reconciler
        if self.options.file is not None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="reconcile-metrics")

    async def _loop(self) -> None:
        while True:
            self._write(self.live())
            await asyncio.sleep(self.options.interval)

    def live(self) -> RunMetrics:
        """The run's metrics so far, from its live counters (zeros before it started)."""
        elapsed = self._clock() - self._start_tick
        progress = self._reconciler.progress if self._reconciler is not None else Progress()
        client = self._reconciler.client if self._reconciler is not None else None
        throttle = client.throttle if client is not None else None
        return RunMetrics(
            started=self._started,
            duration=elapsed,
            rows={status: progress.counts.get(status, 0) for status in Status if status is not Status.UNCHECKED},
            requests=progress.sent,
            retries=throttle.retries if throttle is not None else 0,
            throttled=throttle.throttled if throttle is not None else 0,
            faults=throttle.faults if throttle is not None else 0,
            token_fetches=client.tokens.fetches if client is not None else 0,
            rows_per_second=round(progress.done / elapsed, 1) if elapsed > 0 else 0.0,
        )

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def finished(self, summary: Report) -> None:
        """The run ended with a report (complete, fatal or interrupted): write and push it."""
        await self._end(summary_metrics(summary, self._started, self._wall()), push=True)

    async def failed(self, exc: BaseException) -> None:
        """The run ended without a report: record how (a second signal's stop is not pushed: it was asked at once)."""
        stopped = isinstance(exc, asyncio.CancelledError | KeyboardInterrupt)
        if stopped:
            reason = self._reconciler.stop_reason if self._reconciler is not None else None
            number = signal.Signals.__members__.get(reason or "", signal.SIGINT)
            code, outcome = 128 + number.value, "interrupted"  # the shell's convention: 130, 143
        else:
            code = exc.exit_code if isinstance(exc, ReconcileError) else ExitCode.INTERNAL
            outcome = OUTCOME_OF_EXIT.get(code, "internal")
        end = dataclasses.replace(self.live(), finished=self._wall(), exit_code=code, outcome=outcome)
        await self._end(end, push=not stopped)

    async def _end(self, run: RunMetrics, *, push: bool) -> None:
        self.close()
        self._write(run)
        if push and self.options.pushgateway is not None:
            await asyncio.to_thread(self._push, run)

    def _write(self, run: RunMetrics) -> None:
        if self.options.file is None:
            return
        from prometheus_client import write_to_textfile

        collector = RunCollector(run, self.labels, self.previous, with_success=True)
        try:  # a temporary file beside it, then a rename: the collector never reads half a file
            write_to_textfile(str(self.options.file), registry_of(collector))
        except OSError as exc:
            log.warning("cannot write the metrics file %s: %s", self.options.file, exc)

    def _push(self, run: RunMetrics) -> None:
        """Push-add the run's end; the labels go in the grouping key (the gateway puts them on every series)."""
        from prometheus_client import pushadd_to_gateway

        assert self.options.pushgateway is not None
        collector = RunCollector(run, {}, (), with_success=run.success)
        try:
            pushadd_to_gateway(
                self.options.pushgateway,
                job=self.options.job,
                registry=registry_of(collector),
                grouping_key=self.labels,
                timeout=PUSH_TIMEOUT,
                handler=_pushgateway_handler(self.settings.ssl_context()),
            )
        except (OSError, ReconcileError) as exc:  # urllib's errors are OSErrors
            log.warning("the metrics were not pushed to %s: %s", redact(self.options.pushgateway), redact(str(exc)))


async def export_metrics(
    metrics: MetricsOptions | None,
    settings: Settings,
    options: RunOptions,
    run: Callable[[Callable[[Reconciler], None]], Awaitable[Report]],
    install: Callable[[Reconciler], None],
) -> Report:
    """``run(install)`` with its metrics exported as ``metrics`` says: during the run and at its end, however
    it ends.  ``run`` is the library's run taking ``on_start``; ``install`` is passed on to it."""
    if metrics is not None:
        metrics.check()  # a bad label is refused even where it would go nowhere
    if metrics is None or not metrics.enabled:
        return await run(install)
    exporter = MetricsExporter(metrics, run_labels(metrics, options), settings)

    def start(reconciler: Reconciler) -> None:
        install(reconciler)
        exporter.watch(reconciler)

    try:
        summary = await run(start)
    except BaseException as exc:
        with contextlib.suppress(Exception):  # the run's own error is what the user must see
            await exporter.failed(exc)
        raise
    await exporter.finished(summary)
    return summary
