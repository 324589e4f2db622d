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
    concurrency: int | None  # the engine's --concurrency; None runs the command as a user would, without it
    rows: int
    max_rps: float | None = None  # the emulator answers 429 above this rate
    fault_rate: float = 0  # share of requests the emulator fails at random, whatever the load
    fault_mix: str = "uniform"  # how fault_rate is split (reconcile.emulator.FAULT_MIXES)
    capacity: int | None = None  # the emulator's backend works on this many at once; the rest queue
    queue_limit: int | None = None  # with capacity: beyond this many waiting, the emulator sheds with 503
    fault_free_reference: bool = False  # also run the engine against the same server without its faults
    sweep: tuple[int, ...] = ()  # fixed --concurrency values the scenario's command is compared with
    bare: bool = True  # run the bare aiohttp loop beside the engine
    sequential_sample: int = 200  # rows the guide's client checks (0: skip it); the rate is extrapolated
    validate: bool = False  # also measure `reconcile validate` when the CLI has it
    max_repeats: int | None = None  # long scenarios run fewer times than --repeats
    fresh_server: bool = False  # a new emulator per run, so its counters (429s) are per run
    timeout: float = 3600.0  # seconds before an engine run is interrupted and measured on what it resolved
    description: str = ""

    def __post_init__(self) -> None:
        if self.bare and self.concurrency is None:
            raise ValueError(f"{self.name}: the bare loop needs a concurrency")
        if self.queue_limit is not None and self.capacity is None:
            raise ValueError(f"{self.name}: a queue limit needs a capacity")

    @property
    def latency_limit(self) -> float | None:
        """The rows/s no client can beat at this latency and concurrency (None at zero latency)."""
        if self.concurrency is None or self.latency_ms <= 0:
            return None
        return self.concurrency / (self.latency_ms / 1000)

    @property
    def capacity_limit(self) -> float | None:
        """The requests/s the emulator's backend can serve at all: capacity ÷ latency."""
        if self.capacity is None or self.latency_ms <= 0:
            return None
        return self.capacity / (self.latency_ms / 1000)

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
        Scenario(
            "faults10",
            10,
            32,
            8_000,
            fault_rate=0.10,
            fault_mix="flaky",  # 500, 503, 429 (Retry-After in seconds and as a date), resets, stray 401s
            fault_free_reference=True,
            bare=False,
            sequential_sample=0,
            fresh_server=True,
            timeout=60.0,  # fault-free, 8,000 rows take ~3 s; a run crawling at a few rows/s is cut off
            description="10% of answers fail at random (500, 503, 429, reset, 401), 32 in flight at 10 ms: "
            "rows/s against the same run without faults",
        ),
        Scenario(
            "ratecap-faults",
            20,
            100,
            12_000,
            max_rps=300,
            fault_rate=0.05,
            fault_mix="flaky",  # the faults of faults10: each costs its own request only
            bare=False,
            sequential_sample=0,
            fresh_server=True,
            timeout=120.0,  # 12,000 rows at the cap take ~42 s
            description="the 300 requests/s cap and 5% random faults together: the cap's 429s counted apart",
        ),
        Scenario(
            "capacity",
            40,
            None,
            5_000,
            capacity=32,
            sweep=(8, 16, 32, 48, 64, 128),
            bare=False,
            sequential_sample=0,
            fresh_server=True,
            timeout=120.0,  # 5,000 rows take 6 s at the backend's 800/s, 25 s at 8 in flight
            description="a backend of capacity 32 at 40 ms (800 rows/s at best): the default command against "
            "the best fixed --concurrency, and the latency the platform served",
        ),
        Scenario(
            "capacity-shed",
            40,
            None,
            5_000,
            capacity=32,
            queue_limit=16,
            sweep=(64,),  # more in flight than capacity and queue together: what a fixed guess costs
            bare=False,
            sequential_sample=0,
            fresh_server=True,
            timeout=120.0,
            description="the same backend shedding with 503 beyond a queue of 16: how many answers are 503",
        ),
    )
}
SCENARIOS["faults10-long"] = replace(
    SCENARIOS["faults10"],
    name="faults10-long",
    rows=40_000,
    timeout=120.0,  # fault-free, 40,000 rows take ~17 s
    description="faults10 five times as long, so the Retry-After tail (1-2 s) weighs less",
)


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
