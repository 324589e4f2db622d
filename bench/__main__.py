"""``python -m bench``: run the benchmark scenarios, print a table, write JSON results."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.run import run_scenario
from bench.scenarios import SCENARIOS
from bench.table import render

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "latest.json"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark `reconcile run` against a bare aiohttp loop and the guide's sequential client.",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=sorted(SCENARIOS),
        help="scenario to run; repeat for several [default: all]",
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs of each pairing; medians are reported")
    parser.add_argument("--quick", action="store_true", help="a tenth of the rows, one repeat: a smoke run")
    parser.add_argument("--rows", type=int, help="override every scenario's row count")
    parser.add_argument("--bare-uvloop", action="store_true", help="run the bare loop on uvloop too")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file [%(default)s]")
    parser.add_argument("--workdir", type=Path, help="keep manifests here (reused between runs) [a temp dir]")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    names = args.scenario or list(SCENARIOS)
    repeats = 1 if args.quick and args.repeats == 3 else args.repeats
    started = time.monotonic()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="reconcile-bench-") as scratch:
        work = args.workdir or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        for name in names:
            scenario = SCENARIOS[name].quick() if args.quick else SCENARIOS[name]
            if args.rows:
                scenario = replace(scenario, rows=args.rows)
            print(f"{name}: {scenario.description} ({scenario.rows:,} rows)", flush=True)
            results.append(
                run_scenario(
                    scenario,
                    repeats=repeats,
                    work=work,
                    bare_uvloop=args.bare_uvloop,
                    log=lambda line: print(line, flush=True),
                )
            )
    print()
    print(render(results))
    document = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "revision": _revision(),
        "seconds": round(time.monotonic() - started, 1),
        "scenarios": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"\nresults: {args.out}")


def _revision() -> dict[str, Any]:
    """The commit measured, and the files under reconcile/ that differed from it (others may be editing)."""
    repo = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)
        return done.stdout if done.returncode == 0 else ""

    changed = git("status", "--porcelain", "--", "reconcile").splitlines()  # "XY path": unstripped
    return {"commit": git("rev-parse", "--short", "HEAD").strip(), "uncommitted": [line[3:] for line in changed]}


if __name__ == "__main__":
    main()
