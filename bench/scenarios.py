"""The benchmark's scenarios, and the manifests they read."""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from pathlib import Path

from reconcile.emulator import synthetic_manifest_rows

PRESENT_RATIO = 0.9  # share of manifest rows the emulator's synthetic dataset knows
SEED = 0


@dataclass(frozen=True, slots=True)
class Scenario:
    """One server setting, one manifest size, and which clients run against it."""

    name: str
    latency_ms: float
    concurrency: int
    rows: int
    max_rps: float | None = None  # the emulator answers 429 above this rate
    bare: bool = True  # run the bare aiohttp loop beside the engine
    sequential_sample: int = 200  # rows the guide's client checks (0: skip it); the rate is extrapolated
    validate: bool = False  # also measure `reconcile validate` when the CLI has it
    max_repeats: int | None = None  # long scenarios run fewer times than --repeats
    fresh_server: bool = False  # a new emulator per run, so its counters (429s) are per run
    timeout: float = 3600.0  # seconds before an engine run is interrupted and measured on what it resolved
    description: str = ""

    @property
    def latency_limit(self) -> float | None:
        """The rows/s no client can beat at this latency and concurrency (None at zero latency)."""
        return self.concurrency / (self.latency_ms / 1000) if self.latency_ms > 0 else None

    def quick(self) -> Scenario:
        """A tenth of the rows and a smaller sequential sample: a minute, not a quarter hour."""
        return replace(self, rows=max(self.rows // 10, 100), sequential_sample=min(self.sequential_sample, 50))


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "latency20",
            20,
            100,
            50_000,
            description="20 ms per answer, 100 in flight: can the engine reach the latency limit?",
        ),
        Scenario("latency0", 0, 100, 50_000, description="no added latency: the client's CPU per row decides"),
        Scenario(
            "memory1m",
            0,
            100,
            1_000_000,
            bare=False,
            sequential_sample=0,
            validate=True,
            max_repeats=1,
            description="a million rows: peak memory of validate and of a full run",
        ),
        Scenario(
            "ratecap",
            20,
            100,
            20_000,
            max_rps=300,
            bare=False,
            sequential_sample=0,
            fresh_server=True,
            timeout=300.0,  # 20,000 rows at the cap take ~67 s; a run stuck far below it is cut off and reported
            description="the server answers 429 above 300 requests/s: settle near the cap, few 429s",
        ),
    )
}


def manifest_for(rows: int, directory: Path) -> Path:
    """A CSV manifest of ``rows`` synthetic rows (PRESENT_RATIO of them known to the emulator), made once."""
    path = directory / f"manifest-{rows}.csv"
    if path.exists():
        return path
    partial = path.with_suffix(".partial")
    with open(partial, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["company", "organisation", "folder", "filename"])
        writer.writerows(synthetic_manifest_rows(rows, PRESENT_RATIO, SEED))
    partial.rename(path)
    return path
