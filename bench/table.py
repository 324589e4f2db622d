"""The readable table printed at the end of a benchmark."""

from __future__ import annotations

from typing import Any

CLIENT_ORDER = ("engine", "bare", "sequential", "validate")


def render(results: list[dict[str, Any]]) -> str:
    """One block per scenario: a line per client, then the scenario's ratios."""
    header = (
        f"{'scenario':<10} {'client':<10} {'rows':>9} {'rows/s':>9} {'of limit':>8} "
        f"{'CPU s/1k':>8} {'RSS MB':>7} {'emu CPU s/1k':>12}"
    )
    lines = [header, "-" * len(header)]
    for result in results:
        summary = result["summary"]
        name = result["scenario"]
        for client in CLIENT_ORDER:
            if client not in summary:
                continue
            row = summary[client]
            limit = row.get("share_of_latency_limit")
            rows = f"{row['rows']:,}"
            if client == "sequential":
                rows = f"{row['rows']:,}*"
            lines.append(
                f"{name:<10} {client:<10} {rows:>9} {row['rows_per_second']:>9,.0f} "
                f"{_percent(limit):>8} {row['cpu_seconds_per_1000_rows']:>8.3f} {row['peak_rss_mb']:>7.1f} "
                f"{row['emulator_cpu_seconds_per_1000_rows']:>12.3f}"
            )
            name = ""
        facts = []
        if "engine_over_bare_rows_per_second" in summary:
            low, high = summary["engine_over_bare_rows_per_second_range"]
            facts.append(
                f"engine ÷ bare: {summary['engine_over_bare_rows_per_second']:.2f}× rows/s "
                f"(pairs {low:.2f}–{high:.2f}×), {summary['engine_over_bare_cpu_per_row']:.2f}× CPU/row"
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
                fact += f"{summary['share_429_emulator']:.2%} of answers (emulator's count), "
            fact += f"{summary['share_429_engine']:.2%} (engine's count)"
            facts.append(fact)
        if summary.get("engine", {}).get("timed_out_runs"):
            facts.append(
                f"note: {summary['engine']['timed_out_runs']} engine run(s) did not finish within "
                f"{result['config']['timeout_seconds']:g} s and were interrupted: rates are over the rows resolved"
            )
        facts.extend(f"note: {note}" for note in result.get("notes", ()))
        lines.extend(f"{'':<10} {fact}" for fact in facts)
        lines.append("")
    lines.append("rows/s: whole process (start-up, reading, report included); * sequential: a sample, its rate")
    lines.append("from its own loop, extrapolated. of limit: rows/s ÷ (concurrency ÷ latency). Medians of repeats.")
    return "\n".join(lines)


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"
