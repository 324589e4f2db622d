"""Watching a run: a live display on a terminal, one plain line every few seconds anywhere else.

A :class:`Watcher` task samples ``reconciler.progress`` (and the client's throttle) a few times a second on
a terminal, or every ``--progress-interval`` seconds otherwise; the engine pays nothing per row for it.
Rows done count those settled by an earlier attempt of a resumed run.  The total is the manifests' record
count, counted in a thread while the run starts (about a second per million CSV rows; it stops when the run
does); until it is known the bar is indeterminate and there is no ETA.

Not on a terminal (cron, CI, a redirected stderr), a line reads::

    2026-11-26T23:59:01Z progress 12000/50000 rows (24%) 812 rows/s eta 47s present=10000 missing=1500 \
invalid=20 error=0 retries/min=3
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TextIO

from reconcile.config import utc_stamp
from reconcile.engine import Reconciler
from reconcile.input import format_duration
from reconcile.model import Status

if TYPE_CHECKING:  # rich is imported only for the live display: a run in cron or CI never loads it (~30 ms)
    from rich.console import Console, RenderableType
    from rich.live import Live

TTY_REFRESH = 0.5  # seconds between redraws of the live display
RATE_WINDOW = 10.0  # rows/s is measured over this many seconds, so the ETA follows the recent pace
RETRY_WINDOW = 60.0
COUNT_CHECK_EVERY = 10_000  # rows between looks at the cancel flag while counting
COUNTERS = tuple(s.value for s in Status if s is not Status.UNCHECKED)  # a run in progress has no unchecked rows

log = logging.getLogger("reconcile.ops._progress")

Mode = Literal["auto", "live", "lines", "off"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The state of a run at one moment, as a display shows it."""

    elapsed: float
    done: int  # rows settled, including those an earlier attempt settled
    total: int | None
    rows_per_s: float
    eta: float | None  # seconds, when the total and a pace are known
    counts: Mapping[str, int]
    resumed: int = 0
    rate_limit: float | None = None  # the send limit (requests/s), None when nothing limits it
    concurrency: int = 0
    retries_per_min: int = 0
    throttled: int = 0  # 429/503 answers so far
    faults: int = 0  # other failed attempts so far
    unreachable_for: float | None = None  # seconds, while the platform has stopped answering

    @property
    def percent(self) -> int | None:
        if self.total is None:
            return None
        return min(100, self.done * 100 // self.total) if self.total else 100


class Sampler:
    """Turns the live counters of a run into :class:`Snapshot` values, keeping the history rates need."""

    def __init__(self, reconciler: Reconciler, clock: Callable[[], float] = time.monotonic) -> None:
        self._reconciler = reconciler
        self._clock = clock
        self._started = clock()
        self._rows: deque[tuple[float, int]] = deque()
        self._retries: deque[tuple[float, int]] = deque()
        self.counted: int | None = None  # the record count, once counted

    def sample(self) -> Snapshot:
        now = self._clock()
        reconciler = self._reconciler
        progress = reconciler.progress
        client = reconciler.client
        throttle = client.throttle if client is not None else None
        retries = throttle.retries if throttle is not None else 0
        done = progress.done + progress.skipped
        total = progress.total if progress.total is not None else self.counted
        rows_per_s = _rate(self._rows, now, progress.done, RATE_WINDOW, self._started)
        retries_per_min = _recent(self._retries, now, retries, RETRY_WINDOW)
        eta = None
        if total is not None and rows_per_s > 0:
            eta = max(0, total - done) / rows_per_s
        elif total is not None and done >= total:
            eta = 0.0
        return Snapshot(
            elapsed=now - self._started,
            done=done,
            total=total,
            rows_per_s=rows_per_s,
            eta=eta,
            counts={name: progress.counts.get(name, 0) for name in (*COUNTERS, "duplicate")},
            resumed=progress.skipped,
            rate_limit=throttle.rate if throttle is not None else reconciler.settings.max_rps,
            concurrency=_concurrency(reconciler),
            retries_per_min=retries_per_min,
            throttled=throttle.throttled if throttle is not None else 0,
            faults=throttle.faults if throttle is not None else 0,
            unreachable_for=throttle.unreachable_for if throttle is not None else None,
        )


def _concurrency(reconciler: Reconciler) -> int:
    """The slots in use now: the automatic concurrency moves, a fixed one does not."""
    client = reconciler.client
    if client is not None and client.slots is not None:
        return client.slots.total
    return reconciler.settings.concurrency or 0


def _remember(history: deque[tuple[float, int]], now: float, value: int, window: float) -> tuple[float, int]:
    """Record ``value`` at ``now``, forget what is older than needed; the sample that opens the window."""
    history.append((now, value))
    while len(history) > 1 and history[1][0] <= now - window:
        history.popleft()
    return history[0]


def _rate(history: deque[tuple[float, int]], now: float, value: int, window: float, started: float) -> float:
    """Record ``value`` at ``now``; its per-second rate of change over the last ``window`` seconds."""
    then, before = _remember(history, now, value, window)
    if now - then < 1.0:  # too little history yet: the average since the start
        then, before = started, 0
    span = now - then
    return (value - before) / span if span > 0 else 0.0


def _recent(history: deque[tuple[float, int]], now: float, value: int, window: float) -> int:
    """Record the counter ``value`` at ``now``; how much it grew in the last ``window`` seconds."""
    then, before = _remember(history, now, value, window)
    span = now - then
    # Samples are taken every few seconds, so the oldest kept may be a little older than the window.
    return value - before if span <= window else round((value - before) * window / span)


def count_records(reconciler: Reconciler, cancel: threading.Event) -> int | None:
    """How many records the run covers (this shard's only, when sharded); None if cancelled or unreadable."""
    shard = reconciler.options.shard
    total = 0
    try:
        for manifest in reconciler.manifests:
            items: Any = manifest.records() if shard is not None else manifest.rows()
            for n, item in enumerate(items, start=1):
                if shard is None or shard.holds(item.key):
                    total += 1
                if n % COUNT_CHECK_EVERY == 0 and cancel.is_set():
                    items.close()
                    return None
    except Exception:  # the engine reports an unreadable manifest properly; a display must not
        return None
    return total


# -- formatting --------------------------------------------------------------------------------------


def plain_line(snap: Snapshot, *, now: float | None = None) -> str:
    """One progress line for a log: UTC time, rows, pace, ETA, counters, retries (and limits when set)."""
    stamp = utc_stamp(time.time() if now is None else now, millis=False)
    return f"{stamp} {_plain_body(snap)}"


def _plain_body(snap: Snapshot) -> str:
    if snap.total is not None:
        parts = [
            f"progress {snap.done}/{snap.total} rows ({snap.percent or 0}%)",
            f"{snap.rows_per_s:.0f} rows/s",
            f"eta {format_duration(snap.eta) if snap.eta is not None else '?'}",
        ]
    else:
        parts = [f"progress {snap.done} rows", f"{snap.rows_per_s:.0f} rows/s"]
    parts += [f"{name}={snap.counts.get(name, 0)}" for name in COUNTERS]
    parts.append(f"retries/min={snap.retries_per_min}")
    parts.append(f"concurrency={snap.concurrency}")
    if snap.throttled or snap.faults:
        parts.append(f"throttled={snap.throttled} faults={snap.faults}")
    if snap.counts.get("duplicate"):
        parts.append(f"duplicate={snap.counts['duplicate']}")
    if snap.resumed:
        parts.append(f"resumed={snap.resumed}")
    if snap.rate_limit is not None:
        parts.append(f"limit={snap.rate_limit:.0f}/s")
    if snap.unreachable_for is not None:
        parts.append(f"platform unreachable for {snap.unreachable_for:.0f} s, retrying")
    return " ".join(parts)


def json_line(snap: Snapshot, *, now: float | None = None) -> str:
    """The progress line as a JSON log object, for ``--log-format json``."""
    entry: dict[str, Any] = {
        "ts": utc_stamp(time.time() if now is None else now),
        "level": "INFO",
        "logger": "reconcile.ops._progress",
        "message": _plain_body(snap),
        "done": snap.done,
        "total": snap.total,
        "rows_per_s": round(snap.rows_per_s, 1),
        "eta_s": None if snap.eta is None else round(snap.eta),
        **{name: snap.counts.get(name, 0) for name in (*COUNTERS, "duplicate")},
        "retries_per_min": snap.retries_per_min,
        "rate_limit": snap.rate_limit,
        "concurrency": snap.concurrency,
        "throttled": snap.throttled,
        "faults": snap.faults,
        "unreachable_s": None if snap.unreachable_for is None else round(snap.unreachable_for),
        "elapsed_s": round(snap.elapsed, 1),
    }
    return json.dumps(entry)


def render(snap: Snapshot, *, final: bool = False) -> RenderableType:
    """The live display: a bar with rows, percent, pace and ETA; below it the counters and the pacing."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    bar = ProgressBar(total=snap.total, completed=snap.done, width=36, pulse=snap.total is None and not final)
    head = Text()
    if snap.total is not None:
        head.append(f"{snap.done:,}/{snap.total:,} rows", style="bold")
        head.append(f"  {snap.percent or 0}%")
    else:
        head.append(f"{snap.done:,} rows", style="bold")
        head.append("  (counting)" if not final else "")
    head.append(f"  {snap.rows_per_s:,.0f} rows/s")
    if final:
        head.append(f"  in {format_duration(snap.elapsed)}")
    elif snap.eta is not None:
        head.append(f"  ETA {format_duration(snap.eta)}")
    top = Table.grid(padding=(0, 1))
    top.add_row(bar, head)
    counters = Text()
    styles: dict[str, str] = {
        Status.PRESENT: "green",
        Status.MISSING: "yellow",
        Status.INVALID: "magenta",
        Status.ERROR: "red",
    }
    for name in COUNTERS:
        counters.append(f"{name} ", style="dim")
        counters.append(f"{snap.counts.get(name, 0):,}", style=styles[name])
        counters.append("  ")
    if snap.counts.get("duplicate"):
        counters.append(f"duplicate {snap.counts['duplicate']:,}  ", style="dim")
    pacing = f"limit {snap.rate_limit:,.0f}/s" if snap.rate_limit is not None else "no rate limit"
    counters.append(f"· {pacing} · concurrency {snap.concurrency} · retries {snap.retries_per_min}/min", style="dim")
    if snap.throttled or snap.faults:
        counters.append(f" · throttled {snap.throttled:,} · faults {snap.faults:,}", style="dim")
    if snap.unreachable_for is not None:
        counters.append(f"\nplatform unreachable for {snap.unreachable_for:.0f} s, retrying", style="bold red")
    return Group(top, counters)


# -- views -------------------------------------------------------------------------------------------


class View(Protocol):
    """Where snapshots go."""

    interval: float

    def show(self, snap: Snapshot) -> None: ...

    def finish(self, snap: Snapshot) -> None: ...


class LiveView:
    """rich's live display on a terminal; log lines written to stderr meanwhile appear above it."""

    interval = TTY_REFRESH

    def __init__(self, console: Console | None = None) -> None:
        from rich.console import Console

        # soft_wrap: log lines printed above the display keep their length (the terminal wraps them).
        self.console = console or Console(stderr=True, soft_wrap=True)
        self._live: Live | None = None

    def show(self, snap: Snapshot) -> None:
        if self._live is None:
            from rich.live import Live

            # No refresh thread: the watcher's task redraws, so the display costs nothing between redraws.
            self._live = Live(
                render(snap), console=self.console, auto_refresh=False, redirect_stdout=False, transient=False
            )
            self._live.start(refresh=True)
        else:
            self._live.update(render(snap), refresh=True)

    def finish(self, snap: Snapshot) -> None:
        if self._live is not None:
            self._live.update(render(snap, final=True))
            self._live.stop()  # draws the final state once more and leaves it on screen
            self._live = None


class LineView:
    """A plain (or JSON) line every ``interval`` seconds; a last one at the end if any was written."""

    def __init__(self, interval: float, *, as_json: bool = False, stream: TextIO | None = None) -> None:
        self.interval = interval
        self._format = json_line if as_json else plain_line
        self._stream = stream
        self._written = 0
        self._first = True

    def show(self, snap: Snapshot) -> None:
        if self._first:  # the watcher shows a snapshot at once; a line of zeros says nothing
            self._first = False
            return
        self._write(snap)

    def finish(self, snap: Snapshot) -> None:
        if self._written:
            self._write(snap)

    def _write(self, snap: Snapshot) -> None:
        stream = self._stream or sys.stderr
        stream.write(self._format(snap) + "\n")
        stream.flush()
        self._written += 1


# -- the watcher -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DisplayOptions:
    """How a run is watched: ``auto`` picks the live display on a terminal, plain lines otherwise."""

    mode: Mode = "auto"
    interval: float = 10.0  # seconds between plain lines
    as_json: bool = False  # plain lines as JSON log objects (--log-format json)
    console: Console | None = field(default=None, compare=False)

    def view(self) -> View | None:
        mode = self.mode
        if mode == "auto":
            mode = "live" if _stderr_is_terminal() else "lines"
        if mode == "off":
            return None
        if mode == "live":
            return LiveView(self.console)
        return LineView(self.interval, as_json=self.as_json)

    def start(self, reconciler: Reconciler) -> Watcher | None:
        """Start watching ``reconciler`` (call from inside the event loop); None when there is nothing to show."""
        view = self.view()
        if view is None:
            return None
        watcher = Watcher(reconciler, view)
        watcher.start()
        return watcher


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class Watcher:
    """Samples a run on its own task and shows it; :meth:`close` stops it and shows the final state."""

    def __init__(self, reconciler: Reconciler, view: View) -> None:
        self.sampler = Sampler(reconciler)
        self.view = view
        self._reconciler = reconciler
        self._cancel = threading.Event()
        self._task: asyncio.Task[None] | None = None
        self._count: Future[int | None] | None = None
        self._closed = False
        self._broken = False

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._reconciler.progress.total is None:
            self._count = _spawn(count_records, self._reconciler, self._cancel)
        self._task = loop.create_task(self._loop(), name="reconcile-progress")

    async def _loop(self) -> None:
        try:
            while True:
                self._take_count()
                self.view.show(self.sampler.sample())
                await asyncio.sleep(self.view.interval)
        except Exception:  # a display must never disturb the run it shows
            self._broken = True
            log.warning("the progress display failed; the run goes on without it", exc_info=True)

    def _take_count(self) -> None:
        if self._count is not None and self._count.done():
            self.sampler.counted = self._count.result()
            self._count = None
            if self.sampler.counted is not None:
                log.debug("the manifests hold %d records to settle", self.sampler.counted)

    def close(self) -> None:
        """Stop sampling and show the final state; safe to call twice, and from a cancelled task."""
        if self._closed:
            return
        self._closed = True
        self._cancel.set()
        if self._task is not None:
            self._task.cancel()
        self._take_count()
        if not self._broken:
            self.view.finish(self.sampler.sample())


def _spawn(
    fn: Callable[[Reconciler, threading.Event], int | None], reconciler: Reconciler, cancel: threading.Event
) -> Future[int | None]:
    """Run ``fn`` on a daemon thread: a count still running when the run ends must not delay the exit."""
    future: Future[int | None] = Future()

    def target() -> None:
        future.set_result(fn(reconciler, cancel))

    threading.Thread(target=target, name="reconcile-count", daemon=True).start()
    return future
