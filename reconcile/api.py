"""The library front door: reconcile manifests and write the report.

    summary = await reconcile.run("exports/*.csv", "reports/2026-11-26", concurrency=32)   # in async code
    summary = reconcile.run_sync("exports/", "reports/2026-11-26", formats="csv,xlsx")    # anywhere else

``paths`` is one path or several: files, directories (their manifests) and globs.  ``settings=None`` reads the
environment and ``./.env`` (:meth:`Settings.load`); keyword options are :class:`RunOptions` fields.  The CLI is a
thin layer over these functions and runs its commands on :func:`event_loop_run`, as :func:`run_sync` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from reconcile.config import Settings
from reconcile.engine import Journal, Reconciler, RunOptions, claim
from reconcile.input import ManifestInfo, ManifestPaths, expand_manifest_paths, options_record, spool_streams
from reconcile.report import Report, RunReport, check_options, supersede

from .errors import ManifestError, UsageError

T = TypeVar("T")

OnStart = Callable[[Reconciler], None]


async def run(
    paths: ManifestPaths,
    out_dir: str | Path,
    *,
    settings: Settings | None = None,
    options: RunOptions | None = None,
    on_start: OnStart | None = None,
    **changes: Any,
) -> Report:
    """Check every row of ``paths`` and write the report into ``out_dir``; the report: its summary, exit code, files.

    ``options`` is a :class:`RunOptions` to start from, ``changes`` its fields to set (``fresh=True``,
    ``concurrency=32``, ``formats="csv,xlsx"``, ...); an unknown one is a TypeError naming the valid ones.
    ``on_start`` receives the :class:`Reconciler` before any request is sent: the CLI uses it to install signal
    handlers (``reconciler.stop``) and to watch ``reconciler.progress``.  Re-running with the same ``out_dir``
    resumes an interrupted run.  ``out_dir`` is claimed first (:func:`reconcile.engine.claim`): nothing in it is
    read, cleared or opened before this run holds its lock.
    """
    run_options = RunOptions.from_keywords(options, **changes)
    manifests = expand_manifest_paths(paths)
    out = Path(out_dir)
    with claim(out, command="run", force=run_options.force):
        if settings is None:
            settings = Settings.load()  # the environment and ./.env
        else:
            settings.validate()  # built by hand, say from an Airflow connection: checked as load() checks
        return await _run_claimed(manifests, out, settings, run_options, on_start)


def run_sync(
    paths: ManifestPaths,
    out_dir: str | Path,
    *,
    settings: Settings | None = None,
    options: RunOptions | None = None,
    on_start: OnStart | None = None,
    **changes: Any,
) -> Report:
    """:func:`run` for code that is not async: a script, an Airflow task, a notebook cell.

    The run gets an event loop of its own, as ``reconcile run`` does (uvloop when installed, the collector tuned
    for a long run: :func:`event_loop_run`), so it is safe to call from any thread.  Where a loop already runs
    in the calling thread (Jupyter), the run goes to a worker thread with its own loop and the call blocks until
    the report is written; ``await reconcile.run(...)`` is the form that leaves the notebook's loop free.  An
    interrupt while waiting (the notebook's stop button) stops the run as SIGINT does the CLI's: requests in
    flight finish, the partial report is written, then KeyboardInterrupt is raised.
    """
    run_options = RunOptions.from_keywords(options, **changes)  # a bad option fails before any loop starts
    started: list[tuple[asyncio.AbstractEventLoop, Reconciler]] = []

    def start(reconciler: Reconciler) -> None:
        started.append((asyncio.get_running_loop(), reconciler))
        if on_start is not None:
            on_start(reconciler)

    def stop() -> None:
        for loop, reconciler in started:
            loop.call_soon_threadsafe(reconciler.stop, "SIGINT")

    reconciliation = run(paths, out_dir, settings=settings, options=run_options, on_start=start)
    return event_loop_run(reconciliation, on_interrupt=stop)


async def _run_claimed(
    paths: Sequence[Path],
    out_dir: Path,
    settings: Settings,
    options: RunOptions,
    on_start: OnStart | None,
) -> Report:
    paths = spool_streams(paths, out_dir)  # stdin and pipes: read once, kept in --out
    reconciler = Reconciler(paths, settings, options)
    settings = reconciler.settings  # with the run's own pacing options
    report_options = options.report
    check_options(report_options.formats, report_options.compare_to)  # a bad one fails before any request
    if options.retry_errors and not Journal.exists(out_dir):
        raise UsageError(
            f"--retry-errors: {out_dir} holds no earlier run to retry. HINT: give the --out of a finished run"
        )
    infos = [m.info() for m in reconciler.manifests]
    if options.fresh:
        supersede(out_dir)  # the journal it describes is about to go
    journal = Journal.open(
        out_dir,
        infos,
        fresh=options.fresh,
        shard=str(options.shard) if options.shard else "",
        reading=options_record(options.read),
    )
    report = RunReport(
        reconciler.manifests,
        journal,
        settings,
        run_id=journal.run_id,
        label=report_options.label,
        out_dir=out_dir,
        formats=report_options.formats,
        compare_to=report_options.compare_to,
        shard=options.shard,
    )
    try:
        # This attempt is about to change the journal: a finished report beside it would no longer describe it.
        supersede(out_dir)
        if on_start is not None:
            on_start(reconciler)
        async with report.following(reconciler.watermark):
            outcome = await reconciler.run(journal)
        _check_unchanged(infos, outcome.infos)
        return await report.finish(outcome)
    except BaseException:
        report.abort()
        raise
    finally:
        journal.close()


def _check_unchanged(before: Sequence[ManifestInfo], after: Sequence[ManifestInfo]) -> None:
    """Refuse to report on a manifest that changed during the run (an export still being written, say): the
    rows sent and the rows the report would read back could differ, so no report could be trusted."""
    for start, end in zip(before, after, strict=True):
        if start.sha256 != end.sha256:
            raise ManifestError(
                start.path,
                f"changed while it was being reconciled (SHA-256 {start.sha256[:12]}… at the start, "
                f"{end.sha256[:12]}… at the end), so no report was written: the rows checked and the rows a "
                "report would show could differ. HINT: reconcile an export once it is complete, then run again "
                "with --fresh",
            )


# --- the event loop a run gets --------------------------------------------------------------------------------

# The collector's first generation is examined after this many more container objects were made than freed
# (Python's default is 700).  A run's objects die by reference count, but the default still collected ~330
# times per 50,000 rows, 0.4–0.7 s of the event loop's time, 1.5 ms each; at 20,000 it runs a handful of times
# at start-up and then not at all in a steady run, and any cyclic garbage still goes within 20,000 objects.
GC_THRESHOLD = 20_000


def event_loop_run(coro: Coroutine[Any, Any, T], *, on_interrupt: Callable[[], None] | None = None) -> T:
    """Run ``coro`` to its end on a new event loop: uvloop when installed, the collector tuned (restored after).

    Called where a loop already runs in this thread (a notebook), ``coro`` runs in a worker thread with its own
    loop while this one waits; a KeyboardInterrupt while it waits calls ``on_interrupt`` (to stop the run
    gracefully), waits for ``coro`` to end, then propagates.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _run_here(coro)
    return _run_in_worker(coro, on_interrupt)


def _run_here(coro: Coroutine[Any, Any, T]) -> T:
    with _COLLECTOR.tuned():
        try:
            import uvloop
        except ImportError:
            return asyncio.run(coro)
        return uvloop.run(coro)


def _run_in_worker(coro: Coroutine[Any, Any, T], on_interrupt: Callable[[], None] | None) -> T:
    outcome: list[T] = []
    failure: list[BaseException] = []
    # An Event, not Thread.join: a join interrupted by KeyboardInterrupt marks the thread as ended while it runs
    # (CPython before 3.13), and a second join would return at once.
    finished = threading.Event()

    def work() -> None:
        try:
            outcome.append(_run_here(coro))
        except BaseException as exc:  # handed to the waiting thread, which raises it
            failure.append(exc)
        finally:
            finished.set()

    threading.Thread(target=work, name="reconcile-run", daemon=True).start()
    try:
        finished.wait()
    except KeyboardInterrupt:
        if on_interrupt is not None:
            on_interrupt()
        finished.wait()  # the run writes its partial report and releases out_dir before the interrupt goes on
        raise
    if failure:
        raise failure[0]
    return outcome[0]


class _Collector:
    """The collector's threshold raised while any run's loop is running, in any thread, and restored after the
    last one ends (two Airflow tasks in one worker process must not restore each other's setting early)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs = 0
        self._saved: tuple[int, int, int] = gc.get_threshold()

    @contextlib.contextmanager
    def tuned(self) -> Iterator[None]:
        with self._lock:
            if self._runs == 0:
                self._saved = gc.get_threshold()
                gc.set_threshold(max(GC_THRESHOLD, self._saved[0]), *self._saved[1:])
            self._runs += 1
        try:
            yield
        finally:
            with self._lock:
                self._runs -= 1
                if self._runs == 0:
                    gc.set_threshold(*self._saved)


_COLLECTOR = _Collector()
