"""Smoke tests of the benchmark machinery on tiny scenarios; the benchmark itself is never a timed test."""

from __future__ import annotations

import csv
import json
import sys
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest

from bench.__main__ import main as bench_main
from bench.exactness import Exactness, check_results
from bench.processes import EmulatorProcess, measure
from bench.run import run_scenario
from bench.scenarios import PRESENT_RATIO, SCENARIOS, Scenario, manifest_for
from bench.table import render
from reconcile.emulator import synthetic_manifest_rows

ROWS = 300


def test_manifest_rows_agree_with_the_emulator_dataset(tmp_path: Path) -> None:
    """The generated manifest has the asked row count, and exactly PRESENT_RATIO of it exists on the emulator."""
    from reconcile.emulator import Dataset

    path = manifest_for(ROWS, tmp_path)
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    dataset = Dataset.synthetic(None, PRESENT_RATIO)
    present = sum(1 for r in rows if (r["company"], r["organisation"], r["folder"], r["filename"]) in dataset)
    assert len(rows) == ROWS
    assert present == int(ROWS * PRESENT_RATIO)
    assert manifest_for(ROWS, tmp_path) == path  # made once, then reused


def test_measure_reports_the_child_own_cpu_and_memory(tmp_path: Path) -> None:
    """wait4 accounting sees a child that allocates ~60 MB and burns CPU, and its exit code."""
    code = "b = bytearray(60 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); sum(range(3_000_000)); exit(3)"
    result = measure([sys.executable, "-c", code], cwd=tmp_path)
    assert result.exit_code == 3
    assert result.max_rss_mb > 60
    assert result.cpu > 0.02
    assert result.wall >= result.cpu * 0.5
    assert not list(tmp_path.iterdir())  # its output files are cleaned up


@pytest.mark.slow
def test_emulator_process_serves_and_reports_its_counts() -> None:
    """The emulator subprocess prints its URL, and on stop its request and 429 counts are parsed."""
    with EmulatorProcess(latency_ms=0, max_rps=1) as emulator:  # a burst of one request, then 429s
        assert emulator.url.startswith("http://127.0.0.1:")
        env = emulator.client_env()
        statuses = []
        for _ in range(3):
            request = urllib.request.Request(emulator.url + "/api/v1/search/conversationexists", data=b"{}")
            try:
                urllib.request.urlopen(request, timeout=5).close()
            except urllib.error.HTTPError as exc:
                statuses.append(exc.code)
                exc.close()
    assert env["CALLJOURNEY_BASE_URL"] == emulator.url
    assert env["CALLJOURNEY_CLIENT_SECRET"]
    assert emulator.counts is not None
    assert emulator.counts.api_requests == 3
    assert emulator.counts.rate_limited == statuses.count(429) >= 1


@pytest.mark.slow
def test_tiny_scenario_produces_sane_numbers(tmp_path: Path) -> None:
    """Engine, bare loop and sequential client all check the rows; rates, CPU, RSS and ratios are plausible."""
    scenario = Scenario("tiny", latency_ms=5, concurrency=20, rows=ROWS, sequential_sample=20)
    result = run_scenario(scenario, repeats=2, work=tmp_path, log=lambda _: None)
    runs = result["runs"]
    assert [r["client"] for r in runs] == ["engine", "bare", "bare", "engine", "sequential"]  # alternating order
    for run in runs:
        assert run["rows_per_second"] > 0
        assert run["cpu_seconds"] > 0
        assert 10 < run["peak_rss_mb"] < 1000
    engine = [r for r in runs if r["client"] == "engine"]
    assert all(r["counts"]["present"] == int(ROWS * PRESENT_RATIO) and r["requests"] == ROWS for r in engine)
    assert all(r["statuses"] == {"present": 270, "missing": 30} for r in runs if r["client"] == "bare")
    summary = result["summary"]
    assert summary["engine"]["runs"] == 2
    assert 0 < summary["engine"]["share_of_latency_limit"] <= 1.05
    assert 0.05 < summary["engine_over_bare_rows_per_second"] < 20
    low, high = summary["engine_over_bare_rows_per_second_range"]
    assert low <= summary["engine_over_bare_rows_per_second"] <= high
    assert 0.05 < summary["engine_over_bare_own_timing"] < 20
    for client in ("engine", "bare"):  # interpreter start-up at least; never more than the whole run
        assert 0 < summary[client]["outside_own_timing_seconds"] < summary[client]["wall_seconds"]
    # 20 rows one by one at 5 ms each cannot beat 20 in flight over 300 rows.
    assert summary["sequential"]["rows_per_second"] < summary["bare"]["rows_per_second"]
    table = render([result])
    assert "engine ÷ bare" in table
    assert f"(pairs {low:.2f}–{high:.2f}×)" in table
    assert "seconds outside it: engine" in table


@pytest.mark.slow
def test_rate_capped_scenario_reports_cap_share_and_429s(tmp_path: Path) -> None:
    """With a fresh server per run, the emulator's 429 count and the share of the cap come out per run."""
    # Two in flight at 5 ms stay near the cap without leaning on how the engine recovers from 429s.
    scenario = Scenario(
        "cap", latency_ms=5, concurrency=2, rows=ROWS, max_rps=400, bare=False, sequential_sample=0, fresh_server=True
    )
    result = run_scenario(scenario, repeats=1, work=tmp_path, log=lambda _: None)
    summary = result["summary"]
    assert len(result["emulator"]) == 1
    assert result["emulator"][0]["api_requests"] >= ROWS
    assert result["emulator"][0]["token_requests"] == 1
    assert 0 <= summary["share_429_emulator"] < 1
    assert 0 < summary["share_of_cap"] <= 1.2
    assert "of the 400 req/s cap" in render([result])


@pytest.mark.slow
def test_engine_run_past_its_timeout_is_interrupted_and_measured_on_what_it_resolved(tmp_path: Path) -> None:
    """A run slower than the scenario's timeout gets SIGINT, writes a partial report, and counts only its rows."""
    scenario = Scenario("slow", latency_ms=20, concurrency=1, rows=ROWS, bare=False, sequential_sample=0, timeout=3.0)
    result = run_scenario(scenario, repeats=1, work=tmp_path, log=lambda _: None)
    (run,) = result["runs"]
    assert run["timed_out_after_seconds"] == 3.0
    assert 0 < run["rows"] < ROWS  # one at a time at 20 ms, 300 rows cannot finish in 3 s
    assert run["counts"]["unchecked"] == ROWS - run["rows"]
    assert result["summary"]["engine"]["timed_out_runs"] == 1
    assert "were interrupted" in render([result])


@pytest.mark.slow
def test_command_line_writes_json_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m bench --rows N` runs a scenario end to end and writes a JSON document with its summary."""
    out = tmp_path / "results.json"
    bench_main(
        [
            "--scenario",
            "latency0",
            "--rows",
            "200",
            "--repeats",
            "1",
            "--out",
            str(out),
            "--workdir",
            str(tmp_path / "work"),
        ]
    )
    document = json.loads(out.read_text(encoding="utf-8"))
    (scenario,) = document["scenarios"]
    assert scenario["config"]["rows"] == 200
    assert scenario["summary"]["engine"]["rows"] == 200
    assert document["command"].startswith("python -m bench --scenario latency0")
    assert "engine ÷ bare" in capsys.readouterr().out


def test_first_429s_before_any_answer_do_not_collapse_the_send_rate() -> None:
    """429s in the first milliseconds (no 200 seen yet) pause, but must not cut the rate to MIN_RATE (1/s).

    The ratecap scenario found this: 100 requests leave at once, the server's burst admits 30, the 429s come
    back before any 200, and a rate measured from that start "measures" 0/s, so the run crawls at a few rows/s
    against a 300 requests/s cap.  No evidence should mean slow start from a floor, not zero.
    """
    from reconcile.platform._throttle import PAUSE_ANSWERS, SLOW_START_FLOOR, Throttle

    now = [10_000.0]  # a monotonic clock long past zero, as in a real process
    throttle = Throttle(clock=lambda: now[0])
    for _ in range(PAUSE_ANSWERS):
        now[0] += 0.0015  # 30 ms after start: requests sent, none answered 200
        throttle.sent()
        throttle.on_throttle(429, 1.0)
    assert throttle.pauses == 1
    assert throttle.rate is None or throttle.rate >= SLOW_START_FLOOR


def test_exactness_counts_wrong_error_and_unchecked_rows(tmp_path: Path) -> None:
    """A report is exact only if every row has the status and callId the emulator's dataset gives it."""
    from reconcile.emulator import Dataset

    dataset = Dataset.synthetic(None, PRESENT_RATIO)
    rows = list(synthetic_manifest_rows(40, PRESENT_RATIO))
    present = [key for key in rows if key in dataset][:3]
    missing = [key for key in rows if key not in dataset][:2]
    header = ["company", "organisation", "folder", "filename", "row", "source", "status", "call_id", "detail"]
    lines = [
        [*present[0], "1", "m.csv", "present", dataset.lookup(present[0]), ""],  # right
        [*missing[0], "2", "m.csv", "missing", "", ""],  # right
        [*present[1], "3", "m.csv", "present", "wrong-id", ""],  # wrong callId
        [*missing[1], "4", "m.csv", "present", "X", ""],  # wrong status
        [*present[2], "5", "m.csv", "error", "", "HTTP 503"],
        [*rows[-1], "6", "m.csv", "unchecked", "", "not checked"],
    ]
    path = tmp_path / "results.csv"
    with open(path, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([header, *lines])
    result = check_results(path, dataset)
    assert result == Exactness(rows=6, right=2, wrong=2, errors=1, unchecked=1)
    assert not result.exact
    assert result.as_dict()["exact"] is False
    with open(path, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([header, *lines[:2]])
    assert check_results(path, dataset).exact


def test_scenarios_refuse_a_bare_loop_without_concurrency() -> None:
    """The bare loop needs a number to run at, and a queue limit needs a capacity: said at definition."""
    with pytest.raises(ValueError, match="bare loop needs a concurrency"):
        Scenario("x", latency_ms=0, concurrency=None, rows=10)
    with pytest.raises(ValueError, match="queue limit needs a capacity"):
        Scenario("x", latency_ms=0, concurrency=4, rows=10, queue_limit=3, bare=False)


@pytest.mark.slow
def test_emulator_process_passes_the_platform_shape_and_reads_its_stats() -> None:
    """Faults, capacity and queue limit reach the emulator's command line; its stats JSON is read on stop."""
    shape = {"fault_rate": 0.1, "fault_mix": "gateway", "capacity": 2, "queue_limit": 1}
    with EmulatorProcess(**shape) as emulator:  # type: ignore[arg-type]
        request = urllib.request.Request(emulator.url + "/api/v1/search/conversationexists", data=b"{}")
        with pytest.raises(urllib.error.HTTPError) as caught:  # no token: 401 before any fault
            urllib.request.urlopen(request, timeout=5)
        caught.value.close()
    command = " ".join(emulator.command)
    assert "--fault-rate 0.1 --fault-mix gateway --capacity 2 --queue-limit 1" in command
    assert emulator.stats is not None
    assert emulator.stats["api_requests"] == 1
    assert emulator.stats["by_status"] == {"401": 1}
    assert set(emulator.stats["latency_ms"]) == {"count", "median", "p90", "p99", "max"}


@pytest.mark.slow
def test_faults_scenario_measures_against_the_fault_free_run(tmp_path: Path) -> None:
    """faults10 in small: the engine with faults and without, exact reports, and what the platform injected."""
    # 3% rather than 10% keeps the run short; the full 10% is the benchmark's.
    scenario = replace(SCENARIOS["faults10"], rows=150, fault_rate=0.03)
    result = run_scenario(scenario, repeats=1, work=tmp_path, log=lambda _: None)
    assert [run["client"] for run in result["runs"]] == ["engine", "fault-free"]
    assert all(run["exactness"]["exact"] for run in result["runs"])
    summary = result["summary"]
    assert summary["engine"]["exact_runs"] == summary["fault-free"]["exact_runs"] == 1
    assert summary["engine"]["platform"]["share_faults_injected"] > 0
    assert summary["fault-free"]["platform"]["share_faults_injected"] == 0
    assert summary["faulted_over_fault_free_rows_per_second"] > 0
    table = render([result])
    assert "with 3% faults ÷ without" in table
    assert "reports exact: all 2 runs" in table


@pytest.mark.slow
def test_rate_cap_with_faults_counts_the_cap_429s_apart(tmp_path: Path) -> None:
    """ratecap-faults in small: the share of the cap, and the cap's 429s apart from the injected ones."""
    scenario = replace(SCENARIOS["ratecap-faults"], rows=100, latency_ms=5, concurrency=2, max_rps=60)
    result = run_scenario(scenario, repeats=1, work=tmp_path, log=lambda _: None)
    summary = result["summary"]
    platform = summary["engine"]["platform"]
    assert summary["share_429_emulator"] == platform["share_429_cap"] > 0  # 2 in flight at 5 ms outrun 60/s
    assert summary["share_429_injected"] == platform["share_429_injected"]
    assert platform["share_faults_injected"] > 0
    assert summary["engine"]["exact_runs"] == 1
    assert "of answers the cap's" in render([result])


@pytest.mark.slow
def test_capacity_scenario_compares_the_default_command_with_fixed_concurrency(tmp_path: Path) -> None:
    """capacity in small: the default command, a sweep of fixed values, the best of them, and the latency seen."""
    scenario = replace(SCENARIOS["capacity"], rows=120, latency_ms=20, capacity=4, sweep=(2, 8))
    result = run_scenario(scenario, repeats=1, work=tmp_path, log=lambda _: None)
    assert [run["client"] for run in result["runs"]] == ["engine", "fixed-2", "fixed-8"]
    assert [run["concurrency"] for run in result["runs"]] == ["default", 2, 8]
    summary = result["summary"]
    assert summary["best_fixed"] in ("fixed-2", "fixed-8")
    assert summary["engine_over_best_fixed_rows_per_second"] > 0
    assert summary["fixed-2"]["platform"]["max_in_flight"] <= 2
    assert summary["fixed-8"]["platform"]["max_queued"] >= 1  # 8 in flight, 4 worked on: a queue
    for client in ("engine", "fixed-2", "fixed-8"):
        assert summary[client]["platform"]["latency_median_ms"] >= 19  # never faster than the backend's 20 ms
        assert summary[client]["exact_runs"] == 1
        assert 0 < summary[client]["share_of_capacity_limit"] <= 1.05
    assert summary["engine_latency_over_no_load"] >= 0.95
    table = render([result])
    assert "the default command ÷ the best fixed --concurrency" in table
    assert "platform, fixed-8: median" in table


@pytest.mark.slow
def test_shedding_scenario_reports_the_503s_shed(tmp_path: Path) -> None:
    """capacity-shed in small: a fixed concurrency beyond capacity and queue is shed, and the report stays exact."""
    scenario = replace(SCENARIOS["capacity-shed"], rows=120, latency_ms=20, capacity=2, queue_limit=1, sweep=(6,))
    result = run_scenario(scenario, repeats=1, work=tmp_path, log=lambda _: None)
    summary = result["summary"]
    assert summary["fixed-6"]["platform"]["share_503_shed"] > 0
    assert summary["fixed-6"]["platform"]["max_queued"] == 1
    assert summary["fixed-6"]["exact_runs"] == 1
    assert "503 shed" in render([result])
