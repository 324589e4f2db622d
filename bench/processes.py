"""Processes the benchmark starts: the emulator, and measured client runs.

A client run is measured with ``os.wait4``, which gives the child's own user+system CPU time and peak RSS
(``ru_maxrss``, kilobytes on Linux) without polling, so the measurement costs the client nothing.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from reconcile.emulator import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TENANT_ID, Dataset
from reconcile.emulator.command import STATS_LINE

_LISTENING = "emulator listening on "
_STOPPED = re.compile(
    r"emulator stopped: (?P<api>\d+) API requests, (?P<token>\d+) token requests, "
    r"(?P<faults>\d+) faults injected, (?P<limited>\d+) rate-limited"
)
START_TIMEOUT = 30.0
KILL_AFTER = 30.0  # seconds between the timeout's SIGINT and SIGKILL


class BenchError(RuntimeError):
    """A benchmark step failed: a process did not start, or a client exited badly."""


@dataclass(frozen=True, slots=True)
class Measurement:
    """One client process, start to exit."""

    wall: float  # seconds, including interpreter start-up
    user: float  # CPU seconds
    system: float
    max_rss_mb: float  # peak resident set size
    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool = False  # stopped by SIGINT after the timeout

    @property
    def cpu(self) -> float:
        return self.user + self.system


@dataclass(frozen=True, slots=True)
class EmulatorCounts:
    """What the emulator said it answered, from its last stderr line."""

    api_requests: int
    token_requests: int
    rate_limited: int


def measure(
    command: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None, timeout: float = 3600.0
) -> Measurement:
    """Run ``command`` to completion and measure it.  Output goes to files so a chatty child never blocks.

    After ``timeout`` seconds the child gets SIGINT (reconcile then writes a partial report), and SIGKILL
    :data:`KILL_AFTER` seconds later.
    """
    work = Path(cwd) if cwd is not None else Path.cwd()
    out_path, err_path = work / ".bench-stdout", work / ".bench-stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        started = time.perf_counter()
        process = subprocess.Popen(
            list(command),
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
        )
        # A blocking wait4 costs the measured child nothing; the timers only fire for a slow or hung child.
        timers = [
            threading.Timer(timeout, process.send_signal, (signal.SIGINT,)),
            threading.Timer(timeout + KILL_AFTER, process.kill),
        ]
        for timer in timers:
            timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            for timer in timers:
                timer.cancel()
        wall = time.perf_counter() - started
    # Popen must not wait on a pid already reaped.
    process.returncode = os.waitstatus_to_exitcode(status)
    stdout = out_path.read_text(encoding="utf-8", errors="replace")
    stderr = err_path.read_text(encoding="utf-8", errors="replace")
    out_path.unlink()
    err_path.unlink()
    return Measurement(
        wall=wall,
        user=usage.ru_utime,
        system=usage.ru_stime,
        max_rss_mb=usage.ru_maxrss / 1024,
        exit_code=process.returncode,
        stdout=stdout,
        stderr=stderr,
        timed_out=wall >= timeout,
    )


class EmulatorProcess:
    """``python -m reconcile.emulator`` in its own process for the length of a ``with`` block."""

    def __init__(
        self,
        *,
        latency_ms: float = 0,
        max_rps: float | None = None,
        present_ratio: float = 0.9,
        seed: int = 0,
        fault_rate: float = 0,
        fault_mix: str = "uniform",
        capacity: int | None = None,
        queue_limit: int | None = None,
    ) -> None:
        self.command = [
            sys.executable,
            "-m",
            "reconcile.emulator",
            "--port",
            "0",
            "--latency-ms",
            f"{latency_ms:g}",
            "--synthetic-present-ratio",
            f"{present_ratio:g}",
            "--seed",
            str(seed),
        ]
        if max_rps is not None:
            self.command += ["--max-rps", f"{max_rps:g}"]
        if fault_rate:
            self.command += ["--fault-rate", f"{fault_rate:g}", "--fault-mix", fault_mix]
        if capacity is not None:
            self.command += ["--capacity", str(capacity)]
        if queue_limit is not None:
            self.command += ["--queue-limit", str(queue_limit)]
        self.dataset = Dataset.synthetic(None, present_ratio, seed)  # what it serves, to check reports against
        self.url = ""
        self.counts: EmulatorCounts | None = None
        self.stats: dict[str, Any] | None = None  # Stats.summary() of the emulator, once it has stopped
        self._process: subprocess.Popen[str] | None = None
        self.stderr = ""  # what the emulator wrote on stderr, once it has stopped
        self._stderr: IO[str] | None = None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise BenchError("the emulator is not running")
        return self._process.pid

    def __enter__(self) -> EmulatorProcess:
        # stderr goes to a file: a pipe nobody reads would block the emulator once it filled up.
        # Append mode, so the child's writes never depend on where this side's file offset is.
        self._stderr = tempfile.TemporaryFile(mode="a+", encoding="utf-8")
        self._process = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=self._stderr, stdin=subprocess.DEVNULL, text=True
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()  # the emulator prints this line first, flushed
        if not line.startswith(_LISTENING):
            self._stop()
            raise BenchError(f"the emulator did not start: {line!r}; stderr: {self.stderr[-2000:]}")
        self.url = line[len(_LISTENING) :].strip()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop()

    def _stop(self) -> None:
        process, self._process = self._process, None
        log, self._stderr = self._stderr, None
        if process is None or log is None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
        log.seek(0)
        self.stderr = log.read()
        log.close()
        match = _STOPPED.search(self.stderr)
        if match:
            self.counts = EmulatorCounts(int(match["api"]), int(match["token"]), int(match["limited"]))
        for line in reversed(self.stderr.splitlines()):
            if line.startswith(STATS_LINE):
                self.stats = json.loads(line.removeprefix(STATS_LINE))
                break

    def client_env(self) -> dict[str, str]:
        """The environment a client needs to reach this emulator with the demo credentials."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALLJOURNEY_")}
        env.update(
            {
                "CALLJOURNEY_BASE_URL": self.url,
                "CALLJOURNEY_AUTHORITY": self.url,
                "CALLJOURNEY_TENANT_ID": DEMO_TENANT_ID,
                "CALLJOURNEY_CLIENT_ID": DEMO_CLIENT_ID,
                "CALLJOURNEY_CLIENT_SECRET": DEMO_CLIENT_SECRET,
            }
        )
        return env


def cpu_seconds(pid: int) -> float:
    """User+system CPU seconds a running process has used so far (Linux /proc; 0.0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    # utime and stime are fields 14 and 15 of stat; after the ")" the list starts at field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
