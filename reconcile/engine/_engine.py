"""The engine: manifests in, one checked result per row out, through a bounded pool of workers.

A feeder reads manifests in batches off the event loop and hands unresolved, valid, first-seen rows to the
workers through a bounded queue (a slow platform slows reading instead of filling memory).  A worker holds one
row until it is resolved, and a concurrency slot only while a request of its is on the wire, so rows waiting out
a retry wait off-slot.  Results go to the journal, committed every quarter second; the
:class:`~reconcile.engine._watermark.CommitWatermark` tells the report how far it may follow (docs/design.md,
"The pipeline").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from reconcile.config import ROW, Settings, error_fields, utc_stamp
from reconcile.errors import FatalError, RunStopped, UsageError
from reconcile.input import Manifest, ManifestInfo, Record
from reconcile.model import Status
from reconcile.platform import Outcome, PlatformClient

from ._journal import FLUSH_EVERY, Journal, Result
from ._options import RunOptions
from ._watermark import CommitWatermark

log = logging.getLogger("reconcile.engine._engine")

BATCH = 1000  # records read per trip to the reader thread
ROWS_PER_SLOT = 8  # rows in progress per slot at the ceiling: room for rows waiting out a Retry-After
MIN_ROWS_IN_PROGRESS = 512
GRACE_PERIOD = 5.0  # seconds in-flight requests may take to finish after a stop is asked


def utc_now() -> str:
    """ISO-8601 UTC with milliseconds, e.g. ``2026-11-26T23:59:01.123Z``."""
    return utc_stamp(time.time())


@dataclass
class Progress:
    """Live counters of a run, read by progress displays; updated only by the engine."""

    total: int | None = None
    done: int = 0
    skipped: int = 0  # resolved by an earlier attempt
    sent: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True)
class Pacing:
    """How fast the run went and why: the concurrency and rate it used, and what the platform answered."""

    concurrency: int | None  # the fixed --concurrency, or None when automatic
    concurrency_final: int
    concurrency_lowest: int
    concurrency_highest: int
    concurrency_changes: int
    rate_limit: float | None  # requests/s at the end, None when nothing limited it
    rate_limit_lowest: float | None
    rate_cuts: int
    throttled: int  # 429 and 503 answers
    faults: int  # other failed attempts: 5xx, resets, timeouts
    pauses: int  # times every worker paused because most answers were throttles
    outages: int
    outage_seconds: float


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """What the engine did; :mod:`reconcile.report._build` turns it, with the journal, into files."""

    manifests: tuple[Manifest, ...]
    infos: tuple[ManifestInfo, ...]
    started_at: str
    finished_at: str
    duration: float
    checked: int  # rows resolved in this attempt
    requests: int
    token_fetches: int
    retries: int
    pacing: Pacing  # the concurrency and rate used, throttles and faults
    fatal: FatalError | None = None
    interrupted: str | None = None  # "SIGINT"/"SIGTERM" when stopped by a signal
    attempt: int = 1


class Reconciler:
    """One run over one or more manifests."""

    def __init__(
        self,
        paths: Sequence[str | Path],
        settings: Settings,
        options: RunOptions,
        *,
        flush_every: float = FLUSH_EVERY,
    ) -> None:
        if not paths:
            raise UsageError("no manifest given. HINT: name at least one manifest file, directory or glob")
        self.settings = options.settings_for(settings)  # the run's own concurrency, rate, ... over the settings'
        self.options = options
        self.flush_every = flush_every  # seconds between journal commits, each a step of the watermark
        self.manifests = tuple(Manifest(p, i, options.read) for i, p in enumerate(paths))
        self.progress = Progress()
        self.watermark = CommitWatermark()  # how far the journal holds every row's result, for the report
        self.client: PlatformClient | None = None  # the run's client, for progress displays (rate, retries)
        self._stop_reason: str | None = None
        self._stopping = asyncio.Event()

    @property
    def stop_reason(self) -> str | None:
        """What :meth:`stop` was asked with (``SIGINT``, ``SIGTERM``), or None."""
        return self._stop_reason

    def stop(self, reason: str) -> None:
        """Stop feeding rows; in-flight requests get :data:`GRACE_PERIOD` to finish."""
        if self._stop_reason is None:
            self._stop_reason = reason
            self._stopping.set()
            if self.client is not None:
                self.client.stop()
            log.warning("%s received: finishing requests in flight, then writing a partial report", reason)

    async def run(self, journal: Journal) -> RunOutcome:
        """Check every unresolved row, recording results in ``journal``."""
        started_at, started = utc_now(), time.monotonic()
        self.progress.skipped = journal.resumed_from
        attempt = await journal.begin_attempt(started_at)
        fatal: FatalError | None = None
        client = self.client = PlatformClient(self.settings)
        try:
            async with client:
                await self._pump(client, journal)
        except FatalError as exc:
            fatal = exc
            log.error("%s", exc, extra=error_fields(exc))
        finally:
            await self._flush(journal)
        outcome = "fatal" if fatal else ("interrupted" if self._stop_reason else "complete")
        finished_at = utc_now()
        await journal.end_attempt(attempt, finished_at, outcome)
        return RunOutcome(
            manifests=self.manifests,
            infos=tuple(m.info() for m in self.manifests),
            started_at=started_at,
            finished_at=finished_at,
            duration=time.monotonic() - started,
            checked=self.progress.done,
            requests=self.progress.sent,
            token_fetches=client.tokens.fetches,
            retries=client.throttle.retries,
            pacing=_pacing(client),
            fatal=fatal,
            interrupted=self._stop_reason,
            attempt=attempt,
        )

    async def _pump(self, client: PlatformClient, journal: Journal) -> None:
        ceiling = self.settings.concurrency_ceiling
        queue: asyncio.Queue[Record | None] = asyncio.Queue(maxsize=ceiling * 2)
        workers: list[asyncio.Task[None]] = []
        try:
            async with asyncio.TaskGroup() as group:
                flusher = group.create_task(self._flush_forever(journal))
                pool = max(MIN_ROWS_IN_PROGRESS, ROWS_PER_SLOT * ceiling)
                workers = [group.create_task(self._work(queue, client, journal)) for _ in range(pool)]
                await self._feed(queue, journal)
                for _ in workers:
                    await queue.put(None)
                await self._wait_for(workers)
                flusher.cancel()
        except BaseExceptionGroup as group_error:
            raise _first_of(group_error) from None

    async def _wait_for(self, workers: list[asyncio.Task[None]]) -> None:
        """Wait for the workers; after a stop, give those still busy the grace period, then cancel them."""
        pending: set[asyncio.Future[Any]] = set(workers)
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            while pending and not self._stopping.is_set():
                _, pending = await asyncio.wait(pending | {stop}, return_when=asyncio.FIRST_COMPLETED)
                pending.discard(stop)
        finally:
            stop.cancel()
        if pending:
            _, late = await asyncio.wait(pending, timeout=GRACE_PERIOD)
            for task in late:
                task.cancel()

    async def _feed(self, queue: asyncio.Queue[Record | None], journal: Journal) -> None:
        for manifest in self.manifests:
            records = manifest.records()
            while not self._stopping.is_set():
                batch = await asyncio.to_thread(lambda: list(islice(records, BATCH)))  # noqa: B023
                if not batch:
                    break
                await self._feed_batch(batch, queue, journal)
            if self._stopping.is_set():
                return
            self.watermark.fed_until((manifest.index + 1, 0))

    async def _feed_batch(self, batch: list[Record], queue: asyncio.Queue[Record | None], journal: Journal) -> None:
        source = batch[0].source
        end = (source, batch[-1].row + 1)
        resolved = await journal.resolved(source, batch[0].row, batch[-1].row)
        shard = self.options.shard
        if shard is not None:
            batch = [r for r in batch if shard.holds(r.key)]
        valid = [r for r in batch if r.problem is None]
        firsts = await journal.first_rows([r.key for r in valid], source, [r.row for r in valid])
        first_of = {r.row: first for r, first in zip(valid, firsts, strict=True)}
        now = utc_now()
        handed_out = self.watermark.handed_out
        for record in batch:
            if record.row in resolved:
                continue
            if record.problem is not None:
                handed_out((source, record.row))
                self._record(journal, Result(source, record.row, Status.INVALID, "", record.problem, 0, now))
                continue
            first = first_of[record.row]
            if first != (source, record.row):
                detail = self._duplicate_detail(source, first)
                handed_out((source, record.row))
                self._record(journal, Result(source, record.row, "", "", detail, 0, now, dup_of=first))
                continue
            if self._stopping.is_set():
                return
            handed_out((source, record.row))
            await queue.put(record)
        self.watermark.fed_until(end)

    def _duplicate_detail(self, source: int, first: tuple[int, int]) -> str:
        if first[0] == source:
            return f"duplicate of row {first[1]}"
        return f"duplicate of row {first[1]} of {self.manifests[first[0]].path}"

    async def _work(self, queue: asyncio.Queue[Record | None], client: PlatformClient, journal: Journal) -> None:
        while (record := await queue.get()) is not None:
            if self._stopping.is_set():
                continue  # drain without sending: the row stays unchecked
            self.progress.sent += 1
            ROW.set(record)  # so a retry logged inside the client names the row
            try:
                outcome = await client.check(record)
            except RunStopped:
                continue  # never sent: the row stays unchecked
            self._record(journal, _result(record, outcome))

    def _record(self, journal: Journal, result: Result) -> None:
        journal.add(result)
        self.watermark.recorded((result.source, result.row))
        progress = self.progress
        progress.done += 1
        progress.counts[result.status or "duplicate"] += 1

    async def _flush_forever(self, journal: Journal) -> None:
        while True:
            await asyncio.sleep(self.flush_every)
            await self._flush(journal)

    async def _flush(self, journal: Journal) -> None:
        """Commit what was recorded; the watermark moves up to the rows recorded before the commit began."""
        committed = self.watermark.recorded_until()
        await journal.flush()
        self.watermark.commit(committed)


def _pacing(client: PlatformClient) -> Pacing:
    throttle, controller, slots = client.throttle, client.concurrency, client.slots
    final = controller.limit if controller is not None else (slots.total if slots is not None else 0)
    return Pacing(
        concurrency=client.settings.concurrency,
        concurrency_final=final,
        concurrency_lowest=controller.lowest if controller is not None else final,
        concurrency_highest=controller.highest if controller is not None else final,
        concurrency_changes=controller.changes if controller is not None else 0,
        rate_limit=throttle.rate,
        rate_limit_lowest=throttle.lowest_rate if throttle.lowest_rate is not None else client.settings.max_rps,
        rate_cuts=throttle.cuts,
        throttled=throttle.throttled,
        faults=throttle.faults,
        pauses=throttle.pauses,
        outages=throttle.outages,
        outage_seconds=round(throttle.outage_seconds(), 3),
    )


def _result(record: Record, outcome: Outcome) -> Result:
    status = Status.ERROR if outcome.exists is None else Status.PRESENT if outcome.exists else Status.MISSING
    return Result(record.source, record.row, status, outcome.call_id, outcome.detail, outcome.attempts, utc_now())


def _first_of(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to surface from a task group: a fatal one first, else the first that is not a cancellation."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    for exc in leaves:
        if isinstance(exc, FatalError):
            return exc
    for exc in leaves:
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return leaves[0]
