"""Run scenarios: start the emulator, alternate the clients, and reduce the runs to medians.

The machine is shared and noisy, so each pairing runs several times in alternating order and the numbers
reported are medians; the engine ÷ bare ratio is taken per pair (same server, back to back) before the
median, which cancels most of the noise both runs share.  The same holds for the engine against itself
without faults, and against fixed concurrencies.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.clients import (
    BARE,
    ENGINE,
    Run,
    run_bare,
    run_engine,
    run_sequential,
    run_validate,
    validate_available,
)
from bench.processes import EmulatorProcess
from bench.scenarios import PRESENT_RATIO, SEED, Scenario, manifest_for

Log = Callable[[str], None]
FAULT_FREE = "fault-free"  # the engine against the same server without its random faults


def fixed(concurrency: int) -> str:
    """The client name of the engine run with a fixed ``--concurrency``."""
    return f"fixed-{concurrency}"


@dataclass(frozen=True, slots=True)
class Arm:
    """One client a scenario runs each repeat, and the server it runs against."""

    client: str
    concurrency: int | None
    faults: bool = True  # the server injects the scenario's random faults


def arms_of(scenario: Scenario) -> list[Arm]:
    """The scenario's command (``engine``), then what it is compared with."""
    arms = [Arm(ENGINE, scenario.concurrency)]
    if scenario.bare:
        arms.append(Arm(BARE, scenario.concurrency))
    if scenario.fault_free_reference:
        arms.append(Arm(FAULT_FREE, scenario.concurrency, faults=False))
    arms.extend(Arm(fixed(n), n) for n in scenario.sweep)
    return arms


def run_scenario(
    scenario: Scenario, *, repeats: int, work: Path, bare_uvloop: bool = False, log: Log = print
) -> dict[str, Any]:
    """Every run of ``scenario`` and their medians, as a JSON-ready dict."""
    repeats = min(repeats, scenario.max_repeats or repeats)
    manifest = manifest_for(scenario.rows, work)
    runs: list[Run] = []
    notes: list[str] = []
    emulator_counts: list[dict[str, Any]] = []

    @contextmanager
    def server(faults: bool = True) -> Iterator[EmulatorProcess]:
        emulator = EmulatorProcess(
            latency_ms=scenario.latency_ms,
            max_rps=scenario.max_rps,
            present_ratio=PRESENT_RATIO,
            seed=SEED,
            fault_rate=scenario.fault_rate if faults else 0,
            fault_mix=scenario.fault_mix,
            capacity=scenario.capacity,
            queue_limit=scenario.queue_limit,
        )
        with emulator:
            yield emulator
        if emulator.counts is not None:
            emulator_counts.append(
                {
                    "api_requests": emulator.counts.api_requests,
                    "token_requests": emulator.counts.token_requests,
                    "rate_limited": emulator.counts.rate_limited,
                    "stats": emulator.stats,
                }
            )

    def step(run: Run) -> None:
        runs.append(run)
        log(
            f"  {scenario.name} {run.client:10} {run.rows:>9,} rows  {run.rows_per_second:>9,.0f} rows/s  "
            f"cpu {run.cpu:6.2f} s  rss {run.max_rss_mb:6.1f} MB  wall {run.wall:7.2f} s"
        )

    if scenario.validate:
        if validate_available():
            step(run_validate(manifest, scenario.rows, work))
        else:
            note = "`reconcile validate` does not exist in this build: its memory was not measured"
            notes.append(note)
            log(f"  {scenario.name}: note: {note}")

    with ExitStack() as stack:
        shared: dict[bool, EmulatorProcess] = {}

        @contextmanager
        def server_for_run(faults: bool = True) -> Iterator[EmulatorProcess]:
            """A server for one run: its own when the scenario counts per run, else one shared per fault setting."""
            if not scenario.fresh_server:
                if faults not in shared:
                    shared[faults] = stack.enter_context(server(faults))
                yield shared[faults]
                return
            with server(faults) as emulator:
                yield emulator

        def one_run(arm: Arm) -> Run:
            with server_for_run(arm.faults) as emulator:
                if arm.client == BARE:
                    assert arm.concurrency is not None  # Scenario refuses a bare loop without one
                    run = run_bare(emulator, manifest, scenario.rows, arm.concurrency, work, uvloop=bare_uvloop)
                else:
                    run = run_engine(
                        emulator,
                        manifest,
                        scenario.rows,
                        arm.concurrency,
                        work,
                        timeout=scenario.timeout,
                        client=arm.client,
                    )
            if scenario.fresh_server and emulator.stats is not None:  # the server saw this run only
                run = replace(run, extra={**run.extra, "platform": emulator.stats})
            return run

        arms = arms_of(scenario)
        for index in range(repeats):
            for arm in arms if index % 2 == 0 else arms[::-1]:
                step(one_run(arm))
        if scenario.sequential_sample:
            with server_for_run() as emulator:
                step(run_sequential(emulator, manifest, min(scenario.sequential_sample, scenario.rows), work))
    result = {
        "scenario": scenario.name,
        "description": scenario.description,
        "config": {
            "latency_ms": scenario.latency_ms,
            "concurrency": "default" if scenario.concurrency is None else scenario.concurrency,
            "rows": scenario.rows,
            "max_rps": scenario.max_rps,
            "fault_rate": scenario.fault_rate,
            "fault_mix": scenario.fault_mix,
            "capacity": scenario.capacity,
            "queue_limit": scenario.queue_limit,
            "sweep": list(scenario.sweep),
            "capacity_limit_rows_per_second": scenario.capacity_limit,
            "repeats": repeats,
            "bare_uvloop": bare_uvloop,
            "latency_limit_rows_per_second": scenario.latency_limit,
            "timeout_seconds": scenario.timeout,
        },
        "runs": [run.as_dict() for run in runs],
        "emulator": emulator_counts,
        "notes": notes,
    }
    result["summary"] = summarise(scenario, runs, emulator_counts if scenario.fresh_server else [])
    return result


def summarise(scenario: Scenario, runs: list[Run], emulator_counts: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per client, the per-pair engine ÷ bare ratios, and the scenario's own measures."""
    by_client: dict[str, list[Run]] = {}
    for run in runs:
        by_client.setdefault(run.client, []).append(run)
    summary: dict[str, Any] = {}
    for client, group in by_client.items():
        summary[client] = {
            "runs": len(group),
            "rows": group[0].rows,
            "rows_per_second": _median(r.rows_per_second for r in group),
            "wall_seconds": _median(r.wall for r in group),
            "cpu_seconds_per_1000_rows": _median(r.cpu_per_1000 for r in group),
            "peak_rss_mb": _median(r.max_rss_mb for r in group),
            "max_peak_rss_mb": round(max(r.max_rss_mb for r in group), 1),
            "emulator_cpu_seconds_per_1000_rows": _median(1000 * r.emulator_cpu / r.rows for r in group),
        }
        timed_out = sum(1 for r in group if "timed_out_after_seconds" in r.extra)
        if timed_out:
            summary[client]["timed_out_runs"] = timed_out
        stopped = sorted({str(r.extra["stopped"]) for r in group if "stopped" in r.extra})
        if stopped:
            summary[client]["stopped_runs"] = sum(1 for r in group if "stopped" in r.extra)
            summary[client]["stopped_by"] = stopped
        # A cap or the backend's capacity binds before the latency does.
        if scenario.latency_limit and not scenario.max_rps and not scenario.capacity and client != "validate":
            summary[client]["share_of_latency_limit"] = _median(
                r.rows_per_second / scenario.latency_limit for r in group
            )
        if scenario.capacity_limit:
            summary[client]["share_of_capacity_limit"] = _median(
                r.rows_per_second / scenario.capacity_limit for r in group
            )
        summary[client].update(_exactness(group))
        platform = _platform(group)
        if platform:
            summary[client]["platform"] = platform
    engines, bares = by_client.get(ENGINE, []), by_client.get(BARE, [])
    if engines and bares:
        pairs = list(zip(engines, bares, strict=False))
        _pair_ratios(summary, "engine_over_bare_rows_per_second", pairs)
        summary["engine_over_bare_cpu_per_row"] = _median(e.cpu_per_1000 / b.cpu_per_1000 for e, b in pairs)
        # Where a whole-command gap comes from: each client's own timing of its work (engine: summary.json's
        # duration; bare: its loop with the CSV read and write), and the seconds outside it (interpreter,
        # imports, the engine's journal set-up and report, exit).
        timed = [(e, b, e.loop_seconds, b.loop_seconds) for e, b in pairs if e.loop_seconds and b.loop_seconds]
        if timed:
            summary["engine_over_bare_own_timing"] = _median(bare / engine for _, _, engine, bare in timed)
            summary[ENGINE]["outside_own_timing_seconds"] = _median(e.wall - engine for e, _, engine, _ in timed)
            summary[BARE]["outside_own_timing_seconds"] = _median(b.wall - bare for _, b, _, bare in timed)
    if engines and "sequential" in by_client:
        summary["engine_over_sequential"] = round(
            summary[ENGINE]["rows_per_second"] / summary["sequential"]["rows_per_second"], 1
        )
        summary["sequential_extrapolated_seconds"] = round(scenario.rows / summary["sequential"]["rows_per_second"], 1)
    if engines and scenario.max_rps:
        summary["share_of_cap"] = _median(float(e.extra["engine_rows_per_second"]) / scenario.max_rps for e in engines)
        summary["share_of_cap_whole_command"] = _median(e.rows_per_second / scenario.max_rps for e in engines)
        platform = summary[ENGINE].get("platform")
        if platform:  # the cap's 429s only: injected ones are faults, not the cap
            summary["share_429_emulator"] = platform["share_429_cap"]
            summary["share_429_injected"] = platform["share_429_injected"]
        elif emulator_counts:
            summary["share_429_emulator"] = _median(
                c["rate_limited"] / max(c["api_requests"], 1) for c in emulator_counts
            )
        summary["share_429_engine"] = _median(
            int(e.extra["throttled"]) / max(int(e.extra["requests"]) + int(e.extra["retries"]), 1) for e in engines
        )
    references = by_client.get(FAULT_FREE, [])
    if engines and references:
        _pair_ratios(summary, "faulted_over_fault_free_rows_per_second", list(zip(engines, references, strict=False)))
    swept = [fixed(n) for n in scenario.sweep if fixed(n) in by_client]
    if engines and swept:
        best = max(swept, key=lambda client: float(summary[client]["rows_per_second"]))
        summary["best_fixed"] = best
        summary["engine_over_best_fixed_rows_per_second"] = round(
            summary[ENGINE]["rows_per_second"] / summary[best]["rows_per_second"], 4
        )
    median_ms = summary.get(ENGINE, {}).get("platform", {}).get("latency_median_ms")
    if median_ms is not None and scenario.latency_ms > 0:
        summary["engine_latency_over_no_load"] = round(median_ms / scenario.latency_ms, 4)
    return summary


def _pair_ratios(summary: dict[str, Any], key: str, pairs: list[tuple[Run, Run]]) -> None:
    """Per pair (back to back) the first run's rows/s ÷ the second's: their median as ``key``, and their range."""
    ratios = [first.rows_per_second / second.rows_per_second for first, second in pairs]
    summary[key] = _median(ratios)
    summary[f"{key}_range"] = [round(min(ratios), 4), round(max(ratios), 4)]


def _exactness(group: list[Run]) -> dict[str, int]:
    """How many of the runs' reports were exact, and the rows that were not right, summed over the runs."""
    checked = [r.extra["exactness"] for r in group if "exactness" in r.extra]
    if not checked:
        return {}
    return {
        "exact_runs": sum(1 for c in checked if c["exact"]),
        "wrong_rows": sum(c["wrong"] for c in checked),
        "error_rows": sum(c["errors"] for c in checked),
        "unchecked_rows": sum(c["unchecked"] for c in checked),
    }


def _platform(group: list[Run]) -> dict[str, Any]:
    """What the emulator saw during the runs (medians; peaks are the highest): latency, queue, 429s, 503s."""
    seen = [r.extra["platform"] for r in group if "platform" in r.extra]
    if not seen:
        return {}

    def share(count: Callable[[dict[str, Any]], int]) -> float:
        return _median(count(s) / max(s["api_requests"], 1) for s in seen)

    def latency(name: str) -> float | None:
        values = [s["latency_ms"][name] for s in seen if s["latency_ms"][name] is not None]
        return _median(values) if values else None

    return {
        "latency_median_ms": latency("median"),
        "latency_p90_ms": latency("p90"),
        "max_in_flight": max(s["max_in_flight"] for s in seen),
        "max_queued": max(s["max_queued"] for s in seen),
        "share_429_cap": share(lambda s: s["rate_limited"]),
        "share_429_injected": share(lambda s: s["faults"].get("429", 0)),
        "share_503_shed": share(lambda s: s["shed"]),
        "share_faults_injected": share(lambda s: sum(s["faults"].values())),
    }


def _median(values: Iterable[float]) -> float:
    return round(float(statistics.median(list(values))), 4)
