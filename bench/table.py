"""The readable table printed at the end of a benchmark."""

from __future__ import annotations

from typing import Any

CLIENT_ORDER = ("engine", "bare", "sequential", "validate")  # then the rest, in the order they ran
NAME, CLIENT = 14, 10  # column widths: "ratecap-faults", "fault-free"


def clients_of(summary: dict[str, Any]) -> list[str]:
    """The clients a summary has a block for: the usual four first, then fault-free and fixed-N as they ran."""
    found = [key for key, value in summary.items() if isinstance(value, dict) and "rows_per_second" in value]
    return sorted(found, key=lambda c: CLIENT_ORDER.index(c) if c in CLIENT_ORDER else len(CLIENT_ORDER))


def render(results: list[dict[str, Any]]) -> str:
    """One block per scenario: a line per client, then the scenario's ratios."""
    header = (
        f"{'scenario':<{NAME}} {'client':<{CLIENT}} {'rows':>9} {'rows/s':>9} {'of limit':>8} "
        f"{'CPU s/1k':>8} {'RSS MB':>7} {'emu CPU s/1k':>12}"
    )
    lines = [header, "-" * len(header)]
    for result in results:
        summary = result["summary"]
        name = result["scenario"]
        clients = clients_of(summary)
        for client in clients:
            row = summary[client]
            limit = row.get("share_of_latency_limit", row.get("share_of_capacity_limit"))
            rows = f"{row['rows']:,}"
            if client == "sequential":
                rows = f"{row['rows']:,}*"
            lines.append(
                f"{name:<{NAME}} {client:<{CLIENT}} {rows:>9} {row['rows_per_second']:>9,.0f} "
                f"{_percent(limit):>8} {row['cpu_seconds_per_1000_rows']:>8.3f} {row['peak_rss_mb']:>7.1f} "
                f"{row['emulator_cpu_seconds_per_1000_rows']:>12.3f}"
            )
            name = ""
        facts = []
        if "engine_over_bare_rows_per_second" in summary:
            facts.append(
                f"engine ÷ bare: {_pairs(summary, 'engine_over_bare_rows_per_second')}, "
                f"{summary['engine_over_bare_cpu_per_row']:.2f}× CPU/row"
            )
        if "engine_over_bare_own_timing" in summary:
            facts.append(
                f"over each one's own timing of its work: {summary['engine_over_bare_own_timing']:.2f}×; "
                f"seconds outside it: engine {summary['engine']['outside_own_timing_seconds']:.2f}, "
                f"bare {summary['bare']['outside_own_timing_seconds']:.2f}"
            )
        if "engine_over_sequential" in summary:
            facts.append(
                f"engine ÷ sequential: {summary['engine_over_sequential']:,.0f}× "
                f"(sequential would take {summary['sequential_extrapolated_seconds']:,.0f} s "
                f"for {result['config']['rows']:,} rows)"
            )
        if "share_of_cap" in summary:
            fact = (
                f"{summary['share_of_cap']:.1%} of the {result['config']['max_rps']:g} req/s cap "
                f"({summary['share_of_cap_whole_command']:.1%} counting start-up and report); 429s: "
            )
            if "share_429_emulator" in summary:
                fact += f"{summary['share_429_emulator']:.2%} of answers the cap's"
                if summary.get("share_429_injected"):
                    fact += f", {summary['share_429_injected']:.2%} injected"
                fact += " (emulator's count); "
            fact += f"{summary['share_429_engine']:.2%} all (engine's count)"
            facts.append(fact)
        if "faulted_over_fault_free_rows_per_second" in summary:
            facts.append(
                f"with {result['config']['fault_rate']:.0%} faults ÷ without: "
                f"{_pairs(summary, 'faulted_over_fault_free_rows_per_second')}"
            )
        if "engine_over_best_fixed_rows_per_second" in summary:
            best = summary["best_fixed"]
            command = "the default command" if result["config"]["concurrency"] == "default" else "engine"
            facts.append(
                f"{command} ÷ the best fixed --concurrency ({best}, {summary[best]['rows_per_second']:,.0f} rows/s): "
                f"{summary['engine_over_best_fixed_rows_per_second']:.2f}× rows/s"
            )
        if "engine_latency_over_no_load" in summary:
            facts.append(
                f"platform median latency under engine: {summary['engine']['platform']['latency_median_ms']:.1f} ms "
                f"= {summary['engine_latency_over_no_load']:.2f}× the {result['config']['latency_ms']:g} ms no-load"
            )
        facts.extend(_platform_fact(client, summary[client]) for client in clients if "platform" in summary[client])
        checked = [(c, summary[c]) for c in clients if "exact_runs" in summary[c]]
        inexact = [(c, row) for c, row in checked if row["exact_runs"] < row["runs"]]
        if checked and not inexact:
            runs = sum(row["runs"] for _, row in checked)
            facts.append(f"reports exact: all {runs} runs (every row right, none in error)")
        elif inexact:
            facts.append("reports NOT exact: " + ", ".join(_exact_fact(client, row) for client, row in inexact))
        for client in clients:
            if summary[client].get("timed_out_runs"):
                facts.append(
                    f"note: {summary[client]['timed_out_runs']} {client} run(s) did not finish within "
                    f"{result['config']['timeout_seconds']:g} s and were interrupted: rates are over the rows resolved"
                )
            if summary[client].get("stopped_runs"):
                facts.append(
                    f"note: {summary[client]['stopped_runs']} {client} run(s) stopped early "
                    f"({', '.join(summary[client]['stopped_by'])}): rates are over the rows resolved"
                )
        facts.extend(f"note: {note}" for note in result.get("notes", ()))
        lines.extend(f"{'':<{NAME}} {fact}" for fact in facts)
        lines.append("")
    lines.append("rows/s: whole process (start-up, reading, report included); * sequential: a sample, its rate")
    lines.append("from its own loop, extrapolated. of limit: rows/s ÷ (concurrency ÷ latency), or ÷ (capacity ÷")
    lines.append("latency) where the backend has one. platform: what the emulator saw. Medians of repeats.")
    return "\n".join(lines)


def _pairs(summary: dict[str, Any], key: str) -> str:
    low, high = summary[f"{key}_range"]
    return f"{summary[key]:.2f}× rows/s (pairs {low:.2f}–{high:.2f}×)"


def _platform_fact(client: str, row: dict[str, Any]) -> str:
    seen = row["platform"]
    median, p90 = seen["latency_median_ms"], seen["latency_p90_ms"]
    latency = "no answers" if median is None else f"median {median:.1f} ms, p90 {p90:.1f} ms"
    fact = f"platform, {client}: {latency}, {seen['max_in_flight']} in flight at most"
    if seen["max_queued"]:
        fact += f", {seen['max_queued']} queued"
    for key, what in (
        ("share_faults_injected", "faults injected"),
        ("share_429_cap", "429 of the cap"),
        ("share_503_shed", "503 shed"),
    ):
        if seen[key]:
            fact += f"; {seen[key]:.2%} {what}"
    return fact


def _exact_fact(client: str, row: dict[str, Any]) -> str:
    fact = f"{client} {row['exact_runs']} of {row['runs']} runs exact"
    kinds = (("wrong_rows", "wrong"), ("error_rows", "in error"), ("unchecked_rows", "unchecked"))
    problems = [f"{row[key]:,} rows {what}" for key, what in kinds if row[key]]
    return fact + (f" ({', '.join(problems)})" if problems else "")


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"
