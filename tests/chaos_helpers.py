"""Helpers for the chaos tests: emulators in a subprocess or a thread, `reconcile run` as a subprocess, reports.

Every process and thread started here belongs to a context manager that ends it, so a failing test never
leaves an emulator or a run behind.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from reconcile.emulator import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_TENANT_ID,
    Dataset,
    Emulator,
    EmulatorConfig,
    Faults,
    Key,
    synthetic_manifest_rows,
)

T = TypeVar("T")

PRESENT_RATIO = 0.9
RECONCILE = (sys.executable, "-c", "from reconcile.cli import main; main()")
START_TIMEOUT = 20.0  # seconds an emulator may take to start on a loaded machine
IGNORED_COLUMNS = ("checked_at", "attempts")  # differ between runs by nature
_STOPPED = re.compile(
    r"emulator stopped: (\d+) API requests, (\d+) token requests, (\d+) faults injected, (\d+) rate-limited"
)


# -- manifests ------------------------------------------------------------------------------------------


def chaos_manifest(path: Path, n: int, seed: int) -> list[Key]:
    """Write ``n`` synthetic rows plus invalid rows and duplicates spread through the file; return the rows.

    An invalid or duplicate row comes early (the feeder settles them before any answer) and then every few
    hundred rows, so a run stopped at any moment has some of each behind it and some ahead.
    """
    rows: list[Key] = []
    for index, key in enumerate(synthetic_manifest_rows(n, PRESENT_RATIO, seed)):
        rows.append(key)
        if index % 397 == 3:
            rows.append((key[0], key[1], key[2], "  "))  # blank filename: invalid
        if index % 311 == 5:
            rows.append(rows[len(rows) // 2])  # a duplicate of an earlier row (possibly of a duplicate)
    rows.append(("", "", "", ""))  # an all-empty row at the end
    rows.append(rows[-2])  # and the last synthetic row again
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("company", "organisation", "folder", "filename"))
        writer.writerows(rows)
    return rows


def synthetic_dataset(seed: int) -> Dataset:
    """What the emulator started with ``--synthetic-present-ratio 0.9 --seed SEED`` knows."""
    return Dataset.synthetic(None, PRESENT_RATIO, seed)


# -- emulators ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EmulatorTotals:
    """The counters a subprocess emulator prints on stderr when it stops."""

    api_requests: int
    token_requests: int
    faults: int
    rate_limited: int


class EmulatorProcess:
    """``python -m reconcile.emulator --port 0 ARGS`` in its own process; ``url`` once started."""

    def __init__(self, *args: str) -> None:
        self.args = ("--port", "0", "--no-access-log", *args)
        self.url = ""
        self.totals: EmulatorTotals | None = None
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> EmulatorProcess:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "reconcile.emulator", *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert self._process.stdout is not None
            ready, _, _ = select.select([self._process.stdout], [], [], START_TIMEOUT)
            assert ready, f"the emulator did not start within {START_TIMEOUT} s"
            line = self._process.stdout.readline().strip()
            assert line.startswith("emulator listening on "), line
            self.url = line.removeprefix("emulator listening on ")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> EmulatorTotals | None:
        """SIGTERM, then read the counters it prints; SIGKILL if it does not stop."""
        process, self._process = self._process, None
        if process is None:
            return self.totals
        process.terminate()
        try:
            _, err = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
        if match := _STOPPED.search(err or ""):
            self.totals = EmulatorTotals(*(int(g) for g in match.groups()))
        return self.totals

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def kill(self) -> None:
        """SIGKILL, as a crashed platform: connections reset, then refused."""
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.communicate(timeout=10)  # reaps it and closes its pipes

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


class ThreadedEmulator:
    """The bundled Emulator on its own event loop in a thread of the test process.

    The subprocess emulator reports only totals; in a thread the test reads its :class:`Stats` (per-key
    request counts) live and can change its faults between runs.  ``reconcile run`` still runs in its own
    process, so a ``kill -9`` hits the engine only.
    """

    def __init__(self, config: EmulatorConfig, dataset: Dataset) -> None:
        self._emulator = Emulator(config, dataset)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._chores: list[asyncio.Task[None]] = []  # background tasks on the emulator's loop
        self._thread = threading.Thread(target=self._serve, name="chaos-emulator", daemon=True)
        self.url = ""

    def __enter__(self) -> ThreadedEmulator:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT) or self._failure is not None:
            self.__exit__(None, None, None)
            raise RuntimeError(f"the threaded emulator did not start: {self._failure!r}")
        self.url = self._emulator.base_url
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=15)

    def _serve(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            async with self._emulator:
                self._ready.set()
                await self._stop.wait()

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by __enter__; a thread must not die silently
            self._failure = exc
            self._ready.set()

    def call(self, fn: Callable[[Emulator], T]) -> T:
        """Run ``fn(emulator)`` on the emulator's loop: its stats are only consistent there."""
        assert self._loop is not None

        async def on_loop() -> T:
            return fn(self._emulator)

        return asyncio.run_coroutine_threadsafe(on_loop(), self._loop).result(timeout=10)

    def keys_asked(self) -> Counter[Key]:
        return self.call(lambda emu: Counter(emu.stats.keys_asked))

    def api_requests(self) -> int:
        return self.call(lambda emu: emu.stats.api_requests)

    def revoke_tokens_every(self, period: float) -> None:
        """From now until the emulator stops, revoke every token issued so far each ``period`` seconds."""

        async def revoke() -> None:
            while True:
                await asyncio.sleep(period)
                self._emulator.revoke_all_tokens()

        self.call(lambda _: self._chores.append(asyncio.get_running_loop().create_task(revoke())))

    def set_faults(self, faults: Faults) -> None:
        def change(emu: Emulator) -> None:
            emu.faults = faults

        self.call(change)


# -- runs -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finished:
    """How a `reconcile run` process ended."""

    code: int
    stdout: str
    stderr: str
    seconds: float


class Run:
    """One `reconcile run` process; its output goes to files so a full pipe never blocks it."""

    def __init__(self, process: subprocess.Popen[bytes], stdout: Path, stderr: Path) -> None:
        self.process = process
        self.started = time.monotonic()
        self._stdout, self._stderr = stdout, stderr

    def running(self) -> bool:
        return self.process.poll() is None

    def signal(self, signum: signal.Signals) -> None:
        assert self.running(), f"the run ended (exit {self.process.returncode}) before it could get {signum.name}"
        self.process.send_signal(signum)

    def wait(self, timeout: float = 60.0) -> Finished:
        code = self.process.wait(timeout=timeout)
        return Finished(
            code,
            self._stdout.read_text(encoding="utf-8", errors="replace"),
            self._stderr.read_text(encoding="utf-8", errors="replace"),
            time.monotonic() - self.started,
        )


class Runs:
    """Starts `reconcile run` processes against an emulator; any still running at exit is killed."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._runs: list[Run] = []
        workdir.mkdir(parents=True, exist_ok=True)

    def env(self, url: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALLJOURNEY_")}
        env.update(
            CALLJOURNEY_TENANT_ID=DEMO_TENANT_ID,
            CALLJOURNEY_CLIENT_ID=DEMO_CLIENT_ID,
            CALLJOURNEY_CLIENT_SECRET=DEMO_CLIENT_SECRET,
            CALLJOURNEY_BASE_URL=url,
            CALLJOURNEY_AUTHORITY=url,
        )
        return env

    def start(self, url: str, manifest: Path, out: Path, *options: str) -> Run:
        number = len(self._runs) + 1
        stdout, stderr = self.workdir / f"run{number}.out", self.workdir / f"run{number}.err"
        with open(stdout, "wb") as out_file, open(stderr, "wb") as err_file:
            process = subprocess.Popen(
                [*RECONCILE, "run", str(manifest), "--out", str(out), *options],
                stdout=out_file,
                stderr=err_file,
                env=self.env(url),
                cwd=self.workdir,  # no stray .env is read
            )
        run = Run(process, stdout, stderr)
        self._runs.append(run)
        return run

    def run(self, url: str, manifest: Path, out: Path, *options: str, timeout: float = 60.0) -> Finished:
        """Run to the end; no traceback may reach the user, whatever the exit code."""
        finished = self.start(url, manifest, out, *options).wait(timeout)
        assert "Traceback" not in finished.stderr, finished.stderr
        return finished

    def __enter__(self) -> Runs:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for run in self._runs:
            if run.running():
                run.process.kill()
            run.process.wait(timeout=10)


def wait_until(condition: Callable[[], bool], timeout: float, what: str, run: Run | None = None) -> None:
    """Poll ``condition`` every 20 ms; fail naming ``what`` (or the run's early exit)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if run is not None and not run.running():
            raise AssertionError(f"the run ended (exit {run.process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


# -- journals and reports -------------------------------------------------------------------------------


def answered_in_journal(out: Path) -> int:
    """Rows the journal in ``out`` holds as answered by the platform (0 before it exists).

    Read-only, so the test never checkpoints or recovers the journal itself: that is the engine's job.
    """
    path = out / "journal.sqlite"
    if not path.is_file():
        return 0
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.5)
        try:
            (count,) = db.execute("SELECT count(*) FROM results WHERE status IN ('present', 'missing')").fetchone()
        finally:
            db.close()
    except sqlite3.OperationalError:  # not created yet, or busy: ask again later
        return 0
    return int(count)


def journal_integrity(out: Path) -> str:
    db = sqlite3.connect(f"file:{out / 'journal.sqlite'}?mode=ro", uri=True)
    try:
        (verdict,) = db.execute("PRAGMA integrity_check").fetchone()
    finally:
        db.close()
    return str(verdict)


@dataclass(frozen=True, slots=True)
class Report:
    """results.csv, missing.csv and summary.json of one --out."""

    results: list[dict[str, str]]
    missing: list[dict[str, str]]
    summary: dict[str, Any]

    def comparable(self) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
        """results and missing rows without the columns that differ between runs by nature."""
        return _without_ignored(self.results), _without_ignored(self.missing)

    def statuses(self) -> Counter[str]:
        return Counter(row["status"] for row in self.results)


def read_report(out: Path) -> Report:
    summary: dict[str, Any] = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return Report(_read_csv(out / "results.csv"), _read_csv(out / "missing.csv"), summary)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _without_ignored(rows: Sequence[dict[str, str]]) -> list[tuple[str, ...]]:
    return [tuple(v for k, v in row.items() if k not in IGNORED_COLUMNS) for row in rows]


def key_of(row: dict[str, str]) -> Key:
    return row["company"], row["organisation"], row["folder"], row["filename"]


def wrong_rows(rows: Sequence[dict[str, str]], dataset: Dataset) -> Iterator[str]:
    """Rows whose status or callId disagrees with ``dataset`` (unchecked and error rows are not judged)."""
    for row in rows:
        key, status = key_of(row), row["status"]
        blank = any(not value.strip() for value in key)
        expected = dataset.lookup(key)
        if status == "invalid":
            ok = blank
        elif status == "present":
            ok = not blank and row["call_id"] == expected
        elif status == "missing":
            ok = not blank and expected is None and row["call_id"] == ""
        else:
            ok = status in ("unchecked", "error")
        if not ok:
            yield f"row {row['row']}: {status} {row['call_id']!r}, expected {expected!r} for {key}"
