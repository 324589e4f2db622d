"""Run scenarios: start the emulator, alternate engine and bare loop, and reduce the runs to medians.

The machine is shared and noisy, so each pairing runs several times in alternating order and the numbers
reported are medians; the engine ÷ bare ratio is taken per pair (same server, back to back) before the
median, which cancels most of the noise both runs share.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
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


def run_scenario(
    scenario: Scenario, *, repeats: int, work: Path, bare_uvloop: bool = False, log: Log = print
) -> dict[str, Any]:
    """Every run of ``scenario`` and their medians, as a JSON-ready dict."""
    repeats = min(repeats, scenario.max_repeats or repeats)
    manifest = manifest_for(scenario.rows, work)
    runs: list[Run] = []
    notes: list[str] = []
    emulator_counts: list[dict[str, int]] = []

    @contextmanager
    def server() -> Iterator[EmulatorProcess]:
        emulator = EmulatorProcess(
            latency_ms=scenario.latency_ms, max_rps=scenario.max_rps, present_ratio=PRESENT_RATIO, seed=SEED
        )
        with emulator:
            yield emulator
        if emulator.counts is not None:
            emulator_counts.append(
                {
                    "api_requests": emulator.counts.api_requests,
                    "token_requests": emulator.counts.token_requests,
                    "rate_limited": emulator.counts.rate_limited,
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
        shared = None if scenario.fresh_server else stack.enter_context(server())

        def server_for_run() -> AbstractContextManager[EmulatorProcess]:
            return nullcontext(shared) if shared is not None else server()

        for index in range(repeats):
            order = [ENGINE, BARE] if index % 2 == 0 else [BARE, ENGINE]
            for client in order:
                if client == BARE and not scenario.bare:
                    continue
                with server_for_run() as emulator:
                    if client == ENGINE:
                        step(
                            run_engine(
                                emulator, manifest, scenario.rows, scenario.concurrency, work, timeout=scenario.timeout
                            )
                        )
                    else:
                        step(
                            run_bare(emulator, manifest, scenario.rows, scenario.concurrency, work, uvloop=bare_uvloop)
                        )
        if scenario.sequential_sample:
            with server_for_run() as emulator:
                step(run_sequential(emulator, manifest, min(scenario.sequential_sample, scenario.rows), work))
    result = {
        "scenario": scenario.name,
        "description": scenario.description,
        "config": {
            "latency_ms": scenario.latency_ms,
            "concurrency": scenario.concurrency,
            "rows": scenario.rows,
            "max_rps": scenario.max_rps,
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


def summarise(scenario: Scenario, runs: list[Run], emulator_counts: list[dict[str, int]]) -> dict[str, Any]:
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
        if scenario.latency_limit and not scenario.max_rps and client != "validate":  # a cap binds first
            summary[client]["share_of_latency_limit"] = _median(
                r.rows_per_second / scenario.latency_limit for r in group
            )
    engines, bares = by_client.get(ENGINE, []), by_client.get(BARE, [])
    if engines and bares:
        pairs = list(zip(engines, bares, strict=False))
        ratios = [e.rows_per_second / b.rows_per_second for e, b in pairs]
        summary["engine_over_bare_rows_per_second"] = _median(ratios)
        summary["engine_over_bare_rows_per_second_range"] = [round(min(ratios), 4), round(max(ratios), 4)]
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
        if emulator_counts:
            summary["share_429_emulator"] = _median(
                c["rate_limited"] / max(c["api_requests"], 1) for c in emulator_counts
            )
        summary["share_429_engine"] = _median(
            int(e.extra["throttled"]) / max(int(e.extra["requests"]) + int(e.extra["retries"]), 1) for e in engines
        )
    return summary


def _median(values: Iterable[float]) -> float:
    return round(float(statistics.median(list(values))), 4)
