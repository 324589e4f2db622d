"""Profile the whole ``reconcile run`` command and say where the time goes.

    python -m bench.profile --rows 50000 --latency-ms 0 --tool pyinstrument   # main thread, wall time
    python -m bench.profile --rows 50000 --latency-ms 0 --tool py-spy         # every thread, CPU samples

writes ``profile-TOOL.txt`` (pyinstrument's call tree, or py-spy's collapsed stacks) and ``profile-TOOL.json``
(share of samples per area and the top functions by own time) under ``--out``, and prints the summary.
pyinstrument sees the main thread only (the journal's SQLite thread shows up as the loop waiting for it);
py-spy samples every thread but only while it runs, so it shows where the CPU goes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.clients import reconcile_command
from bench.processes import BenchError, EmulatorProcess
from bench.scenarios import PRESENT_RATIO, SEED, manifest_for

# The area a frame's file belongs to, first match wins; checked against the path with "/" separators.
AREAS = (
    ("aiohttp (+yarl, multidict)", ("/aiohttp/", "/yarl/", "/multidict/")),
    ("event loop (uvloop)", ("/uvloop/",)),
    ("asyncio (tasks, queues, locks)", ("/asyncio/",)),
    ("json (orjson, json)", ("/orjson/", "/json/", "orjson")),
    ("tenacity", ("/tenacity/",)),
    ("journal (reconcile/engine/_journal, sqlite3)", ("/reconcile/engine/_journal.py", "/sqlite3/")),
    ("report (reconcile/report/, pandas, csv)", ("/reconcile/report/", "/pandas/", "/csv.py")),
    ("reading manifests (reconcile/input/)", ("/reconcile/input/",)),
    ("platform: client, retry, throttle, auth, concurrency (reconcile/platform/)", ("/reconcile/platform/",)),
    ("engine (reconcile/engine/)", ("/reconcile/engine/",)),
    ("other reconcile", ("/reconcile/",)),
    ("imports", ("<frozen importlib", "/importlib/")),
    ("threads / executors", ("/concurrent/", "/threading.py")),
)


def _frame(identifier: str) -> tuple[str, str]:
    """(function, file) of a pyinstrument frame identifier ``function\\x00file\\x00line[\\x01attributes]``."""
    parts = identifier.split("\x01", 1)[0].split("\x00")
    return parts[0], (parts[1] if len(parts) > 1 else "")


def area_of(path: str) -> str:
    path = path.replace("\\", "/")
    for name, needles in AREAS:
        if any(needle in path for needle in needles):
            return name
    return "other (stdlib, click, start-up)"


def analyse(session_path: Path, top: int = 20) -> dict[str, Any]:
    """Own time per area and per function, and inclusive time of the areas that matter, from a pyisession."""
    from pyinstrument.session import Session

    session = Session.load(session_path)
    total = sum(seconds for _, seconds in session.frame_records) or 1.0
    own_area: defaultdict[str, float] = defaultdict(float)
    own_function: defaultdict[str, float] = defaultdict(float)
    inclusive: defaultdict[str, float] = defaultdict(float)
    for stack, seconds in session.frame_records:
        frames = [_frame(i) for i in stack if not i.startswith("\x01")]
        frames = [f for f in frames if f[0]]
        if not frames:
            continue
        function, path = frames[-1]
        own_area[area_of(path)] += seconds
        short = path.replace("\\", "/").split("/site-packages/")[-1].split("/lib/python3")[-1]
        own_function[f"{function} ({short})"] += seconds
        for name in {area_of(p) for _, p in frames}:
            inclusive[name] += seconds
    return {
        "duration_seconds": round(session.duration, 3),
        "cpu_seconds": round(session.cpu_time, 3),
        "sampled_seconds": round(total, 3),
        "own_time_by_area": _shares(own_area, total),
        "inclusive_time_by_area": _shares(inclusive, total),
        "top_functions_by_own_time": _shares(own_function, total, top),
    }


def _shares(seconds: dict[str, float], total: float, top: int | None = None) -> dict[str, float]:
    ranked = sorted(seconds.items(), key=lambda item: item[1], reverse=True)[:top]
    return {name: round(value / total, 4) for name, value in ranked}


def analyse_pyspy(raw_path: Path, top: int = 20) -> dict[str, Any]:
    """Share of CPU samples per thread, per area (main thread vs the others) and per function, from py-spy raw."""
    threads: defaultdict[str, float] = defaultdict(float)
    own_area: defaultdict[str, float] = defaultdict(float)
    own_function: defaultdict[str, float] = defaultdict(float)
    inclusive: defaultdict[str, float] = defaultdict(float)
    for line in raw_path.read_text(encoding="utf-8").splitlines():
        stack, _, count_text = line.rpartition(" ")
        thread, *frames = stack.split(";")
        if not frames or not count_text.isdigit():
            continue
        function, _, where = frames[-1].rpartition(" (")
        if function == "_worker" and "concurrent/futures/thread.py" in where:
            continue  # an idle pool thread blocked in queue.get, which py-spy cannot tell from work
        count = float(count_text)
        name = thread.partition(": ")[2] or "unnamed thread"
        side = "main" if name == "MainThread" else "other threads"
        threads[name] += count
        own_area[f"{side}: {area_of('/' + where)}"] += count
        own_function[f"{function} ({where.rstrip(')')})"] += count
        for area in {area_of("/" + frame.rpartition(" (")[2]) for frame in frames}:
            inclusive[f"{side}: {area}"] += count
    total = sum(threads.values()) or 1.0
    return {
        "samples": int(total),
        "threads": _shares(threads, total),
        "own_time_by_area": _shares(own_area, total),
        "inclusive_time_by_area": _shares(inclusive, total),
        "top_functions_by_own_time": _shares(own_function, total, top),
    }


def profile(
    rows: int, latency_ms: float, concurrency: int, out: Path, work: Path, tool: str, max_rps: float | None = None
) -> dict[str, Any]:
    """Run ``reconcile run`` under ``tool`` against a fresh emulator; write and return the analysis."""
    manifest = manifest_for(rows, work)
    out_dir = work / "profile-out"
    shutil.rmtree(out_dir, ignore_errors=True)
    script = reconcile_command()
    if len(script) != 1:  # the profilers run a script file, and the console script is the one users run
        raise BenchError("profiling needs the `reconcile` console script: pip install -e '.[bench]'")
    engine = [*script, "run", str(manifest), "--out", str(out_dir), "--concurrency", str(concurrency)]
    raw = work / ("engine.pyisession" if tool == "pyinstrument" else "engine.raw")
    if tool == "pyinstrument":
        command = [sys.executable, "-m", "pyinstrument", "-r", "pyisession", "-o", str(raw), *engine]
    else:
        spy = Path(sys.executable).parent / "py-spy"
        command = [str(spy), "record", "--format", "raw", "--threads", "--rate", "250", "-o", str(raw), "--"]
        command += [sys.executable, *engine]
    with EmulatorProcess(latency_ms=latency_ms, max_rps=max_rps, present_ratio=PRESENT_RATIO, seed=SEED) as emulator:
        done = subprocess.run(command, env=emulator.client_env(), cwd=work, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1):
        raise BenchError(f"the profiled run exited {done.returncode}: {done.stderr[-3000:]}")
    if tool == "pyinstrument":
        render = [sys.executable, "-m", "pyinstrument", "--load", str(raw), "-r", "text", "--no-color", "--unicode"]
        render += ["-p", "processor_options.filter_threshold=0.005"]
        text = subprocess.run(render, capture_output=True, text=True, check=True).stdout
        analysis = analyse(raw)
    else:
        text = raw.read_text(encoding="utf-8")
        analysis = analyse_pyspy(raw)
    analysis = {
        "tool": tool,
        "rows": rows,
        "latency_ms": latency_ms,
        "max_rps": max_rps,
        "concurrency": concurrency,
        **analysis,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / f"profile-{tool}.txt").write_text(text, encoding="utf-8")
    (out / f"profile-{tool}.json").write_text(json.dumps(analysis, indent=2) + "\n", encoding="utf-8")
    return analysis


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--latency-ms", type=float, default=0)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--max-rps", type=float, help="the emulator answers 429 above this rate")
    parser.add_argument("--tool", choices=("pyinstrument", "py-spy"), default="pyinstrument")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results",
        help="directory for profile-TOOL.txt and profile-TOOL.json [%(default)s]",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="reconcile-profile-") as scratch:
        analysis = profile(
            args.rows, args.latency_ms, args.concurrency, args.out, Path(scratch), args.tool, args.max_rps
        )
    print(f"{analysis['rows']:,} rows at {analysis['latency_ms']:g} ms, profiled with {args.tool}")
    if "duration_seconds" in analysis:
        print(f"{analysis['duration_seconds']} s wall, {analysis['cpu_seconds']} s CPU (main thread sampled)")
    for title in ("threads", "own_time_by_area", "inclusive_time_by_area", "top_functions_by_own_time"):
        if title in analysis:
            print(f"\n{title.replace('_', ' ')}:")
            for name, share in analysis[title].items():
                print(f"  {share:6.1%}  {name}")
    print(f"\ndetails: {args.out / f'profile-{args.tool}.txt'}")


if __name__ == "__main__":
    main()
