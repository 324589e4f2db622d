"""Watching a run: the plain progress line, the live display, rates, the record count, and the CLI wiring."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console

from reconcile.api import run
from reconcile.cli import cli
from reconcile.config import Secret
from reconcile.config._settings import Settings
from reconcile.emulator import EmulatorConfig
from reconcile.engine._engine import Progress, Reconciler, RunOptions
from reconcile.input._shard import Shard
from reconcile.ops._progress import (
    DisplayOptions,
    LineView,
    LiveView,
    Sampler,
    Watcher,
    count_records,
    json_line,
    plain_line,
)
from tests.conftest import cli_env, emulator_process, settings_for, write_manifest

LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ progress (?P<done>\d+)/(?P<total>\d+) rows \((?P<pct>\d+)%\) "
    r"(?P<rate>\d+) rows/s eta (?P<eta>\S+) present=(?P<present>\d+) missing=(?P<missing>\d+) "
    r"invalid=(?P<invalid>\d+) error=(?P<error>\d+) retries/min=(?P<retries>\d+)"
)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SETTINGS = Settings(tenant_id="t", client_id="c", client_secret=Secret("progress-test-secret"))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fake_run(total: int | None = None, rate: float | None = None) -> Any:
    """What a Sampler reads from a Reconciler: progress, the client's throttle, the settings."""
    throttle = SimpleNamespace(retries=0, rate=rate, throttled=0, faults=0, unreachable_for=None)
    return SimpleNamespace(
        progress=Progress(total=total),
        client=SimpleNamespace(throttle=throttle, slots=SimpleNamespace(total=16)),
        settings=SimpleNamespace(concurrency=16, max_rps=None),
    )


def rows(n: int, prefix: str = "rec") -> list[tuple[str, str, str, str]]:
    return [("acme", "acme-ca", "2026/11/25/inbound", f"{prefix}-{i:05d}.mp3") for i in range(n)]


def test_plain_line_has_the_documented_format() -> None:
    """Rows done of total, percent, rows/s over the window, ETA from it, the four counters, retries in the minute."""
    clock, reconciler = Clock(), fake_run(total=50_000)
    sampler = Sampler(reconciler, clock)
    reconciler.progress.done, reconciler.client.throttle.retries = 3880, 5
    sampler.sample()
    clock.now = 10.0
    progress = reconciler.progress
    progress.done = 12_000
    progress.counts.update(present=10_000, missing=1500, invalid=20, duplicate=470)
    reconciler.client.throttle.retries = 8
    moment = datetime(2026, 11, 26, 23, 59, 1, tzinfo=UTC).timestamp()
    line = plain_line(sampler.sample(), now=moment)
    assert line.startswith(
        "2026-11-26T23:59:01Z progress 12000/50000 rows (24%) 812 rows/s eta 47s present=10000 "
        "missing=1500 invalid=20 error=0 retries/min=3"
    )
    assert "duplicate=470" in line
    assert LINE.match(line)


def test_rate_follows_the_recent_pace() -> None:
    """After a slowdown, rows/s and the ETA reflect the last ten seconds, not the average since the start."""
    clock, reconciler = Clock(), fake_run(total=10_000)
    sampler = Sampler(reconciler, clock)
    for second in range(0, 31):  # 100 rows/s for 20 s, then 10 rows/s
        clock.now = float(second)
        reconciler.progress.done = 100 * min(second, 20) + 10 * max(0, second - 20)
        snap = sampler.sample()
    assert snap.rows_per_s == pytest.approx(10.0)
    assert snap.eta == pytest.approx((10_000 - 2100) / 10.0)


def test_retries_per_minute_forgets_older_retries() -> None:
    """Retries counted in the minute before the last sample only."""
    clock, reconciler = Clock(), fake_run()
    sampler = Sampler(reconciler, clock)
    throttle = reconciler.client.throttle
    for second, retries in ((0, 0), (10, 40), (20, 40), (70, 40), (80, 45)):
        clock.now, throttle.retries = float(second), retries
        snap = sampler.sample()
    assert snap.retries_per_min == 5


def test_unknown_total_shows_rows_without_percent_or_eta() -> None:
    """Before the record count is known: rows and pace, no percent, no ETA; the JSON line says total null."""
    clock, reconciler = Clock(), fake_run(total=None, rate=120.0)
    sampler = Sampler(reconciler, clock)
    clock.now, reconciler.progress.done = 5.0, 500
    snap = sampler.sample()
    line = plain_line(snap)
    assert " progress 500 rows 100 rows/s present=0" in line
    assert "%" not in line
    assert "eta" not in line
    assert line.endswith("limit=120/s")
    entry = json.loads(json_line(snap))
    assert entry["total"] is None
    assert entry["done"] == 500
    assert entry["logger"] == "reconcile.ops._progress"


def test_live_display_renders_on_a_terminal_console() -> None:
    """The rich display drawn on a terminal: bar, rows of total, percent, pace, ETA, counters, pacing; then final."""
    clock, reconciler = Clock(), fake_run(total=50_000, rate=150.0)
    sampler = Sampler(reconciler, clock)
    sampler.sample()
    clock.now = 10.0
    reconciler.progress.done = 12_000
    reconciler.progress.counts.update(present=10_000, missing=1500, invalid=20, error=3)
    reconciler.client.throttle.retries = 7
    out = io.StringIO()
    view = LiveView(Console(file=out, force_terminal=True, width=120, color_system="truecolor"))
    view.show(sampler.sample())
    drawn = ANSI.sub("", out.getvalue())
    assert "\x1b[" in out.getvalue()  # colours and cursor movement: a terminal, not a log
    assert "━" in drawn
    for text in (
        "12,000/50,000 rows",
        "24%",
        "1,200 rows/s",
        "ETA 32s",
        "present 10,000",
        "missing 1,500",
        "invalid 20",
        "error 3",
        "limit 150/s",
        "concurrency 16",
        "retries 7/min",
    ):
        assert text in drawn, text
    reconciler.progress.done = 50_000
    clock.now = 40.0
    view.finish(sampler.sample())
    final = ANSI.sub("", out.getvalue())[len(drawn) :]
    assert "50,000/50,000 rows" in final
    assert "100%" in final
    assert "in 40s" in final


def test_count_records_counts_every_row_and_each_shard(tmp_path: Path) -> None:
    """The total is the record count; sharded, each shard counts its own rows and the shards add up."""
    manifest = write_manifest(tmp_path / "m.csv", [*rows(250), ("acme", "", "", "")])
    whole = Reconciler([manifest], SETTINGS, RunOptions())
    assert count_records(whole, threading.Event()) == 251
    counts = [
        count_records(Reconciler([manifest], SETTINGS, RunOptions(shard=Shard(k, 3))), threading.Event())
        for k in range(3)
    ]
    assert sum(c or 0 for c in counts) == 251
    assert all(c and c < 251 for c in counts)


def test_count_records_stops_when_cancelled(tmp_path: Path) -> None:
    """A cancelled count gives up (None) instead of reading a large manifest to its end."""
    manifest = write_manifest(tmp_path / "m.csv", rows(25_000))
    cancel = threading.Event()
    cancel.set()
    assert count_records(Reconciler([manifest], SETTINGS, RunOptions()), cancel) is None


def test_display_options_choose_the_view() -> None:
    """auto is plain lines when stderr is not a terminal (as under pytest); off shows nothing; live is rich."""
    assert isinstance(DisplayOptions().view(), LineView)
    assert DisplayOptions(mode="off").view() is None
    assert isinstance(DisplayOptions(mode="live", console=Console(file=io.StringIO())).view(), LiveView)


@pytest.mark.slow
async def test_watcher_follows_a_real_run(make_emulator: Any, tmp_path: Path) -> None:
    """Against the emulator: periodic lines with a counted total, and a final line with every row settled."""
    manifest = write_manifest(tmp_path / "m.csv", [*rows(40), ("acme", "acme-ca", "f", "")])
    out = io.StringIO()
    watchers: list[Watcher] = []

    def install(reconciler: Reconciler) -> None:
        watcher = Watcher(reconciler, LineView(0.1, stream=out))
        watcher.start()
        watchers.append(watcher)

    async with make_emulator(EmulatorConfig(latency_ms=30)) as emulator:
        summary = await run(
            [manifest], tmp_path / "o", settings=settings_for(emulator, concurrency=2), on_start=install
        )
    watchers[0].close()
    watchers[0].close()  # twice is harmless: the CLI closes on every path out
    lines = out.getvalue().splitlines()
    assert len(lines) >= 3, lines
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    last = parsed[-1]
    assert last is not None
    assert (last["done"], last["total"], last["pct"]) == ("41", "41", "100")
    assert int(last["missing"]) == summary.counts["missing"] == 40
    assert int(last["invalid"]) == summary.counts["invalid"] == 1
    dones = [int(m["done"]) for m in parsed if m]
    assert dones == sorted(dones)
    assert dones[0] < 41


async def test_a_failing_display_does_not_disturb_the_run(caplog: pytest.LogCaptureFixture) -> None:
    """A view that raises is dropped with a warning; closing the watcher afterwards neither raises nor redraws."""

    class Broken:
        interval = 0.01

        def show(self, snap: Any) -> None:
            raise RuntimeError("no terminal after all")

        def finish(self, snap: Any) -> None:
            raise AssertionError("finish called on a broken display")

    watcher = Watcher(fake_run(total=10), Broken())
    watcher.start()
    await asyncio.sleep(0.05)
    watcher.close()
    assert "progress display failed" in caplog.text
    assert "no terminal after all" in caplog.text


# -- the CLI ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slow_emulator() -> Iterator[str]:
    """An emulator answering in 20 ms, so a run lasts long enough to be watched."""
    with emulator_process("--latency-ms", "20") as url:
        yield url


@pytest.fixture
def env(slow_emulator: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    return cli_env(slow_emulator, tmp_path, monkeypatch)


@pytest.mark.slow
def test_cli_prints_progress_lines_off_a_terminal_and_none_when_quiet(env: dict[str, str], tmp_path: Path) -> None:
    """`run` with stderr not a terminal prints plain lines every --progress-interval, the last before the summary."""
    manifest = write_manifest(tmp_path / "m.csv", rows(80))
    args = ["run", str(manifest), "--out", "out", "--concurrency", "2", "--progress-interval", "0.5"]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if " progress " in line]
    assert len(lines) >= 2, result.stderr
    assert all(LINE.match(line) for line in lines), lines
    assert "progress 80/80 rows (100%)" in lines[-1]
    assert result.output.index(lines[-1]) < result.output.index("80 records:")
    quiet = CliRunner().invoke(cli, [*args, "--fresh", "--quiet"], env=env)
    assert quiet.exit_code == 1, quiet.output
    assert " progress " not in quiet.stderr
    assert "80 records:" in quiet.stdout


@pytest.mark.slow
def test_cli_progress_lines_are_json_with_log_format_json(env: dict[str, str], tmp_path: Path) -> None:
    """With --log-format json the progress lines are JSON objects too, so stderr stays machine-readable."""
    manifest = write_manifest(tmp_path / "m.csv", rows(60))
    result = CliRunner().invoke(
        cli,
        [
            "run",
            str(manifest),
            "--out",
            "out",
            "--concurrency",
            "2",
            "--progress-interval",
            "0.5",
            "--log-format",
            "json",
        ],
        env=env,
    )
    assert result.exit_code == 1, result.output
    entries = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    progress = [e for e in entries if e["logger"] == "reconcile.ops._progress"]
    assert progress, result.stderr
    assert progress[-1]["done"] == progress[-1]["total"] == 60
    assert progress[-1]["missing"] == 60


@pytest.mark.slow
def test_sigint_stops_the_display_before_the_summary(env: dict[str, str], tmp_path: Path) -> None:
    """SIGINT mid-run: the display's last line comes before the partial summary, and the exit code is 130."""
    manifest = write_manifest(tmp_path / "m.csv", rows(400))
    timer = threading.Timer(1.2, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        result = CliRunner().invoke(
            cli, ["run", str(manifest), "--out", "out", "--concurrency", "2", "--progress-interval", "0.5"], env=env
        )
    finally:
        timer.cancel()
    assert result.exit_code == 130, result.output
    lines = [line for line in result.stderr.splitlines() if " progress " in line]
    assert lines, result.stderr
    last = LINE.match(lines[-1])
    assert last is not None
    assert 0 < int(last["done"]) < 400
    assert "SIGINT received" in result.stderr
    assert result.output.index(lines[-1]) < result.output.index("400 records:")
    assert "unchecked" in result.stdout


@pytest.mark.slow
def test_plain_line_shows_the_pacing_and_an_outage() -> None:
    """The line names the concurrency in use, throttled vs other faults, and an outage while it lasts."""
    clock, reconciler = Clock(), fake_run(total=100)
    throttle = reconciler.client.throttle
    throttle.throttled, throttle.faults, throttle.unreachable_for = 12, 3, 12.4
    reconciler.client.slots.total = 48
    sampler = Sampler(reconciler, clock)
    clock.now = 5.0
    line = plain_line(sampler.sample(), now=0)
    assert "concurrency=48 throttled=12 faults=3" in line
    assert line.endswith("platform unreachable for 12 s, retrying")
