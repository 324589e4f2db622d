"""A set of shard reports to merge: each shard's --out read and checked, and the set checked as a whole.

A set is refused (UsageError, exit 2, naming the problem and the directories) when a shard is missing or given
twice, when the shards split the rows differently (another N), read different manifests (paths or SHA-256), wrote
different columns or asked different platforms, and when a shard did not finish, unless ``allow_incomplete``.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reconcile.errors import UsageError
from reconcile.input import Shard
from reconcile.report import OUR_COLUMNS, SUMMARY_NAME, Summary, load_summary

HINT_SHARDS = "HINT: pass the --out directory of each shard of one run, once each"
_HINT_RERUN = "HINT: re-run that shard to rewrite it"
_SAME_PLATFORM = ("endpoint", "authority", "tenant_id", "client_id")


@dataclass(frozen=True, slots=True)
class ShardReport:
    """One shard's --out directory: its summary.json and the header of its results.csv."""

    directory: Path
    shard: Shard
    summary: Summary
    columns: tuple[str, ...]

    @property
    def manifests(self) -> list[tuple[str, str]]:
        return [(m.path, m.sha256) for m in self.summary.manifests]

    @property
    def results(self) -> Path:
        return self.directory / "results.csv"


def read_shard(directory: Path) -> ShardReport:
    """Check ``directory`` holds a shard's finished report and read what merging needs of it."""
    where = directory / SUMMARY_NAME
    if not directory.is_dir():
        raise UsageError(f"{directory}: no such directory. {HINT_SHARDS}")
    if not where.is_file():
        raise UsageError(f"{directory} holds no {SUMMARY_NAME}, so no report of a run. {HINT_SHARDS}")
    required = ("counts", "records", "manifests", "complete", "started_at")
    summary = load_summary(directory, required=required, hint=_HINT_RERUN)
    text = summary.shard
    if not text:
        raise UsageError(
            f"{directory} is the report of an unsharded run: there is nothing to merge it with. "
            "HINT: merge combines the --out directories of `reconcile run --shard K/N` (or --shards N)"
        )
    try:
        shard = Shard.parse(str(text))
    except UsageError:
        raise UsageError(f"{where}: shard {text!r} is not K/N. {_HINT_RERUN}") from None
    try:
        with open(directory / "results.csv", encoding="utf-8", newline="") as handle:
            header = next(csv.reader(handle), None)
    except OSError as exc:
        raise UsageError(f"{directory}: cannot read results.csv ({exc.strerror}). {HINT_SHARDS}") from None
    if header is None or tuple(header[-len(OUR_COLUMNS) :]) != OUR_COLUMNS:
        raise UsageError(f"{directory / 'results.csv'} is not a reconcile results.csv (its header is {header!r})")
    return ShardReport(directory, shard, summary, tuple(header))


def check_set(reports: Sequence[ShardReport], out_dir: Path, *, allow_incomplete: bool = False) -> list[ShardReport]:
    """The reports in shard order, or a UsageError naming what is wrong with the set."""
    counts = sorted({r.shard.count for r in reports})
    if len(counts) > 1:
        listed = ", ".join(f"{r.directory} is {r.shard}" for r in reports)
        raise UsageError(f"the shards split the rows differently ({listed}). {HINT_SHARDS}, all made with one N")
    count = counts[0]
    given: dict[int, list[ShardReport]] = {}
    for report in reports:
        given.setdefault(report.shard.index, []).append(report)
    problems = [
        f"shard {index}/{count} is given {len(same)} times ({', '.join(str(r.directory) for r in same)})"
        for index, same in sorted(given.items())
        if len(same) > 1
    ]
    absent = [f"{index}/{count}" for index in range(count) if index not in given]
    if absent:
        problems.append(
            f"shard{'s' if len(absent) > 1 else ''} {', '.join(absent)} {'are' if len(absent) > 1 else 'is'} missing"
        )
    if problems:
        raise UsageError(
            f"cannot merge: {'; '.join(problems)}. HINT: pass the --out of each of the {count} shards once"
        )
    ordered = [given[index][0] for index in range(count)]
    first = ordered[0]
    for other in ordered[1:]:
        if other.manifests != first.manifests:
            raise UsageError(
                f"the shards reconciled different manifests: {_manifest_difference(first, other)}. "
                "HINT: merge only the shards of one run; every shard reads the same, unchanged files"
            )
        if other.columns != first.columns:
            raise UsageError(
                f"{first.results} and {other.results} have different columns. HINT: run every shard "
                "with the same reading options (--map, --filename-template, constants)"
            )
        for key in _SAME_PLATFORM:
            if getattr(other.summary, key) != getattr(first.summary, key):
                raise UsageError(
                    f"the shards asked different platforms: {key} is {getattr(first.summary, key)!r} in "
                    f"{first.directory} but {getattr(other.summary, key)!r} in {other.directory}. "
                    "HINT: run every shard with the same settings (one profile)"
                )
    unfinished = [r for r in ordered if not r.summary.complete]
    if unfinished and not allow_incomplete:
        listed = "; ".join(f"shard {r.shard} ({r.directory}) ended {_ending(r.summary)}" for r in unfinished)
        raise UsageError(
            f"cannot merge unfinished shards: {listed}. HINT: re-run each one's command with the same "
            "--out to resume it, or pass --allow-incomplete to merge anyway (its rows stay unchecked)"
        )
    if any(out_dir.resolve() == r.directory.resolve() for r in ordered):
        raise UsageError(f"--out {out_dir} is one of the shards. HINT: merge into a directory of its own")
    return ordered


def _manifest_difference(first: ShardReport, other: ShardReport) -> str:
    if len(first.manifests) != len(other.manifests):
        return f"{first.directory} read {len(first.manifests)} manifest(s), {other.directory} {len(other.manifests)}"
    for number, ((path, digest), (other_path, other_digest)) in enumerate(
        zip(first.manifests, other.manifests, strict=True), start=1
    ):
        if (path, digest) != (other_path, other_digest):
            return (
                f"manifest {number} is {path} (SHA-256 {digest[:12]}…) in {first.directory} but {other_path} "
                f"(SHA-256 {other_digest[:12]}…) in {other.directory}"
            )
    return "their manifests differ"


def _ending(summary: Summary) -> str:
    outcome = summary.outcome or "incomplete"
    return f"{outcome} ({summary.error.type})" if summary.error is not None and summary.error.type else outcome
