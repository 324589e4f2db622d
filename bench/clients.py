"""One measured run of each client: the engine's `reconcile run`, the bare loop, the guide's client, validate."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.exactness import check_results
from bench.processes import BenchError, EmulatorProcess, Measurement, cpu_seconds, measure

ENGINE, BARE, SEQUENTIAL, VALIDATE = "engine", "bare", "sequential", "validate"
_REPO = Path(__file__).resolve().parent.parent  # holds the bench package


@dataclass(frozen=True, slots=True)
class Run:
    """One client process: what it did and what it cost."""

    client: str
    rows: int  # rows the client checked
    wall: float
    cpu: float
    max_rss_mb: float
    emulator_cpu: float  # CPU seconds the emulator spent meanwhile: near ``wall`` means the server was the limit
    loop_seconds: float | None = None  # the client's own timing of its work, without interpreter start-up
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.wall if self.wall > 0 else 0.0

    @property
    def cpu_per_1000(self) -> float:
        return 1000 * self.cpu / self.rows if self.rows else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "rows": self.rows,
            "wall_seconds": round(self.wall, 3),
            "rows_per_second": round(self.rows_per_second, 1),
            "cpu_seconds": round(self.cpu, 3),
            "cpu_seconds_per_1000_rows": round(self.cpu_per_1000, 4),
            "peak_rss_mb": round(self.max_rss_mb, 1),
            "emulator_cpu_seconds": round(self.emulator_cpu, 3),
            "loop_seconds": None if self.loop_seconds is None else round(self.loop_seconds, 3),
            **self.extra,
        }


def reconcile_command() -> list[str]:
    """How a user starts reconcile: the console script installed beside this interpreter, when there is one."""
    script = Path(sys.executable).parent / "reconcile"
    if script.is_file():
        return [str(script)]
    found = shutil.which("reconcile")
    if found:
        return [found]
    return [sys.executable, "-c", "from reconcile.cli import main; main()"]


def _measured(
    emulator: EmulatorProcess, command: list[str], cwd: Path, timeout: float = 3600.0
) -> tuple[Measurement, float]:
    env = emulator.client_env()
    # The scratch working directory keeps a stray .env out; PYTHONPATH lets ``python -m bench.*`` run from it.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO), env.get("PYTHONPATH", "")) if p)
    before = cpu_seconds(emulator.pid)
    measurement = measure(command, env=env, cwd=cwd, timeout=timeout)
    return measurement, cpu_seconds(emulator.pid) - before


def _last_json(stdout: str, what: str) -> dict[str, Any]:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            data: dict[str, Any] = json.loads(line)
            return data
    raise BenchError(f"{what} printed no JSON result; its output: {stdout[-2000:]}")


def _check_exit(measurement: Measurement, what: str, allowed: tuple[int, ...] = (0,)) -> None:
    if measurement.exit_code not in allowed:
        raise BenchError(f"{what} exited {measurement.exit_code}: {measurement.stderr[-3000:]}")


def run_engine(
    emulator: EmulatorProcess,
    manifest: Path,
    rows: int,
    concurrency: int | None,
    work: Path,
    *,
    timeout: float = 3600.0,
    client: str = ENGINE,
) -> Run:
    """``reconcile run MANIFEST --out DIR [--concurrency N]`` in a subprocess, start-up and report included.

    Without a ``concurrency`` the command runs with the engine's default, as a user who does not know the
    right number would.  Past ``timeout`` the run is interrupted (SIGINT) and measured on the rows it
    resolved until then.  Every row of the report is checked against the emulator's dataset.
    """
    out_dir = work / "engine-out"
    shutil.rmtree(out_dir, ignore_errors=True)
    command = [*reconcile_command(), "run", str(manifest), "--out", str(out_dir)]
    if concurrency is not None:
        command += ["--concurrency", str(concurrency)]
    measurement, emulator_cpu = _measured(emulator, command, work, timeout)
    # 1: complete, some rows missing (by design); 3: some rows in error; 4: the run stopped (its retry budget
    # spent) with a partial report; 130: interrupted by the timeout, a partial report.  Each is a result to
    # show: the exactness check counts the rows in error or unchecked.
    _check_exit(measurement, "reconcile run", allowed=(0, 1, 3, 4, 130) if measurement.timed_out else (0, 1, 3, 4))
    summary = json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))
    done = summary["records"] - summary["counts"]["unchecked"]
    stopped = summary.get("error") is not None
    if summary["records"] != rows or (done != rows and not measurement.timed_out and not stopped):
        raise BenchError(f"reconcile run resolved {done} of {summary['records']} records, expected {rows}")
    extra = {key: summary[key] for key in ("counts", "requests", "retries", "throttled", "token_fetches")}
    extra["engine_rows_per_second"] = summary["rows_per_second"]
    extra["concurrency"] = "default" if concurrency is None else concurrency
    extra["exactness"] = check_results(out_dir / "results.csv", emulator.dataset).as_dict()
    if measurement.timed_out:
        extra["timed_out_after_seconds"] = timeout
    if stopped:
        extra["stopped"] = summary["error"]["type"]
    shutil.rmtree(out_dir, ignore_errors=True)
    return Run(
        client,
        done,
        measurement.wall,
        measurement.cpu,
        measurement.max_rss_mb,
        emulator_cpu,
        loop_seconds=summary["duration_seconds"],
        extra=extra,
    )


def run_bare(
    emulator: EmulatorProcess, manifest: Path, rows: int, concurrency: int, work: Path, *, uvloop: bool = False
) -> Run:
    """The bare aiohttp loop of :mod:`bench.baseline` in a subprocess."""
    out = work / "bare-results.csv"
    command = [
        sys.executable,
        "-m",
        "bench.baseline",
        str(manifest),
        "--out",
        str(out),
        "--concurrency",
        str(concurrency),
    ]
    if uvloop:
        command.append("--uvloop")
    measurement, emulator_cpu = _measured(emulator, command, work)
    _check_exit(measurement, "the bare loop")
    result = _last_json(measurement.stdout, "the bare loop")
    if result["rows"] != rows:
        raise BenchError(f"the bare loop checked {result['rows']} rows, expected {rows}")
    out.unlink(missing_ok=True)
    return Run(
        BARE,
        rows,
        measurement.wall,
        measurement.cpu,
        measurement.max_rss_mb,
        emulator_cpu,
        loop_seconds=result["seconds"],
        extra={"statuses": result["statuses"]},
    )


def run_sequential(emulator: EmulatorProcess, manifest: Path, sample: int, work: Path) -> Run:
    """The guide's client on the first ``sample`` rows.  Its rate comes from its own loop timing."""
    command = [sys.executable, "-m", "bench.sequential", str(manifest), "--limit", str(sample)]
    measurement, emulator_cpu = _measured(emulator, command, work)
    _check_exit(measurement, "the sequential client")
    result = _last_json(measurement.stdout, "the sequential client")
    if result["ok"] != result["rows"]:
        raise BenchError(f"the sequential client got {result['rows'] - result['ok']} errors")
    # Rows/s from the loop alone: extrapolated to 50,000 rows, interpreter start-up does not count.
    return Run(
        SEQUENTIAL,
        result["rows"],
        result["seconds"],
        measurement.cpu,
        measurement.max_rss_mb,
        emulator_cpu,
        loop_seconds=result["seconds"],
        extra={"process_wall_seconds": round(measurement.wall, 3)},
    )


def validate_available() -> bool:
    """Whether this reconcile has a ``validate`` command (it is being added separately)."""
    probe = subprocess.run([*reconcile_command(), "validate", "--help"], capture_output=True, text=True, check=False)
    return probe.returncode == 0


def run_validate(manifest: Path, rows: int, work: Path) -> Run:
    """``reconcile validate MANIFEST``: reads every row, sends nothing."""
    command = [*reconcile_command(), "validate", str(manifest)]
    measurement = measure(command, cwd=work)
    _check_exit(measurement, "reconcile validate", allowed=(0, 1, 3))
    return Run(
        VALIDATE,
        rows,
        measurement.wall,
        measurement.cpu,
        measurement.max_rss_mb,
        0.0,
        extra={"exit_code": measurement.exit_code},
    )
