"""``reconcile validate``: read manifests as a run would, without the network, and say what a run would do.

Every manifest is parsed in full (streaming), its rows checked as the engine checks them: invalid rows are
listed with their reasons, duplicates (of a valid row anywhere earlier in the run, as the engine settles them
without a request) with the row they repeat, and the time a run would take at the given rate.

Duplicates are found with a 16-byte digest per valid row in one growing byte array, sorted once at the end
with numpy: 24 bytes a row (docs/design.md, "Validate's duplicate search", says what else was measured).
"""

from __future__ import annotations

import tempfile
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reconcile.errors import ManifestError
from reconcile.model import ExitCode, Key, key_digest

from ._manifest import Manifest, spool_streams
from ._readers import table_format
from ._table import ReadOptions

LISTED_INVALID = 20
LISTED_DUPLICATES = 5


@dataclass(frozen=True, slots=True)
class InvalidRow:
    """A row a run would mark invalid without sending it."""

    row: int
    line: int
    reason: str


@dataclass(frozen=True, slots=True)
class DuplicateRow:
    """A row that repeats an earlier valid row's key (company, organisation, folder, filename)."""

    row: int
    first_row: int
    first_path: str | None = None  # the earlier row's manifest when it is another one


@dataclass(frozen=True, slots=True)
class ManifestCheck:
    """What validation found in one manifest."""

    path: str
    format: str
    sha256: str
    size: int
    columns: tuple[str, ...]
    records: int
    invalid: int
    invalid_rows: tuple[InvalidRow, ...]  # the first LISTED_INVALID
    duplicates: int
    duplicate_rows: tuple[DuplicateRow, ...]  # the first LISTED_DUPLICATES
    error: str | None = None  # why the manifest could not be read (to the end); counts are up to there

    @property
    def to_send(self) -> int:
        return self.records - self.invalid - self.duplicates


@dataclass(frozen=True, slots=True)
class Validation:
    """What a run over these manifests would do, and how long it would take."""

    manifests: tuple[ManifestCheck, ...]
    concurrency: int
    max_rps: float | None
    latency_ms: float

    @property
    def records(self) -> int:
        return sum(m.records for m in self.manifests)

    @property
    def invalid(self) -> int:
        return sum(m.invalid for m in self.manifests)

    @property
    def duplicates(self) -> int:
        return sum(m.duplicates for m in self.manifests)

    @property
    def to_send(self) -> int:
        return sum(m.to_send for m in self.manifests)

    @property
    def rate(self) -> float:
        """Requests per second: what the concurrency sustains at the latency, capped by ``max_rps``."""
        sustained = self.concurrency / (self.latency_ms / 1000)
        return min(sustained, self.max_rps) if self.max_rps else sustained

    @property
    def seconds(self) -> float:
        return self.to_send / self.rate

    @property
    def exit_code(self) -> ExitCode:
        if any(m.error for m in self.manifests):
            return ExitCode.USAGE
        return ExitCode.ROW_PROBLEMS if self.invalid else ExitCode.OK


def validate(
    paths: Sequence[str | Path],
    options: ReadOptions | None = None,
    *,
    concurrency: int = 16,
    max_rps: float | None = None,
    latency_ms: float = 100.0,
) -> Validation:
    """Read every manifest in ``paths`` as a run would; no request is sent.

    An unreadable manifest is reported (``error``) and the others are still read.  A command-line mistake
    shared by all of them (an unknown ``--map`` field, say) raises :class:`UsageError`.
    """
    options = options or ReadOptions()
    digests = _Digests()
    partial: list[_Partial] = []
    with tempfile.TemporaryDirectory(prefix="reconcile-validate-") as spool:
        readable = spool_streams([Path(p) for p in paths], Path(spool))
        for index, (given, path) in enumerate(zip(paths, readable, strict=True)):
            partial.append(_read(path, index, options, digests, shown=str(given)))
    duplicates = digests.duplicates(len(partial))
    checks = []
    for index, part in enumerate(partial):
        count, examples = duplicates[index]
        listed = tuple(
            DuplicateRow(row, first_row, None if source == index else partial[source].path)
            for row, source, first_row in examples
        )
        checks.append(
            ManifestCheck(
                part.path,
                part.format,
                part.sha256,
                part.size,
                part.columns,
                part.records,
                part.invalid,
                tuple(part.invalid_rows),
                count,
                listed,
                part.error,
            )
        )
    return Validation(tuple(checks), concurrency, max_rps, latency_ms)


@dataclass(slots=True)
class _Partial:
    """A manifest's counts while it is read."""

    path: str
    format: str = ""
    sha256: str = ""
    size: int = 0
    columns: tuple[str, ...] = ()
    records: int = 0
    invalid: int = 0
    invalid_rows: list[InvalidRow] = field(default_factory=list)
    error: str | None = None


def _read(path: Path, index: int, options: ReadOptions, digests: _Digests, *, shown: str) -> _Partial:
    part = _Partial(shown)
    try:
        fmt, gzipped = table_format(path, options)
        part.format = fmt + (".gz" if gzipped else "")
        manifest = Manifest(path, index, options)
        part.columns = manifest.columns
        info = manifest.info()
        part.sha256, part.size = info.sha256, info.size
        add = digests.add
        for record in manifest.records():
            part.records += 1
            if record.problem is None:
                add(index, record.row, record.key)
                continue
            part.invalid += 1
            if len(part.invalid_rows) < LISTED_INVALID:
                part.invalid_rows.append(InvalidRow(record.row, record.line, record.problem))
    except ManifestError as exc:
        part.error = str(exc)
    return part


class _Digests:
    """Every valid row's key digest in run order, to find duplicates with one sort at the end."""

    def __init__(self) -> None:
        self.digests = bytearray()
        self.sources = array("I")
        self.rows = array("I")

    def add(self, source: int, row: int, key: Key) -> None:
        self.digests += key_digest(key)
        self.sources.append(source)
        self.rows.append(row)

    def duplicates(self, manifests: int) -> list[tuple[int, list[tuple[int, int, int]]]]:
        """Per manifest: how many rows repeat an earlier one, and the first few as (row, first source, first row)."""
        import numpy as np

        result: list[tuple[int, list[tuple[int, int, int]]]] = [(0, []) for _ in range(manifests)]
        if len(self.rows) < 2:
            return result
        halves = np.frombuffer(self.digests, dtype=">u8").reshape(-1, 2)
        order = np.lexsort((halves[:, 1], halves[:, 0]))  # stable: within a key, run order
        ordered = halves[order]
        repeat = np.empty(len(order), dtype=bool)
        repeat[0] = False
        np.logical_and(ordered[1:, 0] == ordered[:-1, 0], ordered[1:, 1] == ordered[:-1, 1], out=repeat[1:])
        del ordered
        # Each repeat's first occurrence: the start of its run of equal digests in sorted order.
        starts = np.where(repeat, 0, np.arange(len(order)))
        np.maximum.accumulate(starts, out=starts)
        repeats = np.flatnonzero(repeat)
        later = order[repeats]
        first = order[starts[repeats]]
        sort = np.argsort(later, kind="stable")
        later, first = later[sort], first[sort]
        sources = np.frombuffer(self.sources, dtype=np.uint32)
        rows = np.frombuffer(self.rows, dtype=np.uint32)
        counts = np.bincount(sources[later], minlength=manifests)
        for source in range(manifests):
            mine = later[sources[later] == source][:LISTED_DUPLICATES]
            firsts = first[sources[later] == source][:LISTED_DUPLICATES]
            examples = [(int(rows[i]), int(sources[j]), int(rows[j])) for i, j in zip(mine, firsts, strict=True)]
            result[source] = (int(counts[source]), examples)
        return result


def render(validation: Validation) -> str:
    """The report ``reconcile validate`` prints."""
    lines: list[str] = []
    for check in validation.manifests:
        lines.append(
            f"{check.path} ({check.format or 'unknown format'}, {check.size:,} bytes, sha256 {check.sha256 or '-'})"
        )
        if check.error:
            lines.append(f"  unreadable: {check.error}")
        lines.append(
            f"  {check.records:,} records: {check.to_send:,} to send, {check.invalid:,} invalid, "
            f"{check.duplicates:,} duplicates" + (" (up to the error)" if check.error else "")
        )
        if check.invalid:
            lines.append("  invalid rows:")
            lines += [f"    row {r.row} (line {r.line}): {r.reason}" for r in check.invalid_rows]
            if check.invalid > len(check.invalid_rows):
                lines.append(f"    ... and {check.invalid - len(check.invalid_rows):,} more")
        if check.duplicates:
            lines.append("  duplicates (settled without a request):")
            lines += [
                f"    row {d.row} duplicates row {d.first_row}" + (f" of {d.first_path}" if d.first_path else "")
                for d in check.duplicate_rows
            ]
            if check.duplicates > len(check.duplicate_rows):
                lines.append(f"    ... and {check.duplicates - len(check.duplicate_rows):,} more")
    v = validation
    lines.append(
        f"total: {v.records:,} records in {len(v.manifests)} manifest(s): {v.to_send:,} to send, "
        f"{v.invalid:,} invalid, {v.duplicates:,} duplicates"
    )
    why = f"concurrency {v.concurrency} at {v.latency_ms:g} ms a request"
    if v.max_rps and v.max_rps < v.concurrency / (v.latency_ms / 1000):
        why = f"--max-rps {v.max_rps:g}"
    lines.append(f"expected run time: {format_duration(v.seconds, estimate=True)} at {v.rate:,.1f} requests/s ({why})")
    if any(m.error for m in v.manifests):
        lines.append(f"result: some manifests could not be read (exit {ExitCode.USAGE:d})")
    elif v.invalid:
        lines.append(f"result: some rows are invalid and would not be checked (exit {ExitCode.ROW_PROBLEMS:d})")
    else:
        lines.append(f"result: clean (exit {ExitCode.OK:d})")
    return "\n".join(lines)


def format_duration(seconds: float, *, estimate: bool = False) -> str:
    """A duration as a person writes it: ``47s``, ``12m05s``, ``3h04m`` (progress: elapsed time and ETA).

    ``estimate`` writes a forecast (validate's run time): tenths under 10 s and spaced units (``4.5 s``,
    ``47 s``, ``12m 5s``, ``3h 4m``), with days past a day (``2d 3h 4m``).
    """
    if estimate and seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(max(0, round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if not estimate:
        return (
            f"{secs}s"
            if not (minutes or hours)
            else f"{minutes}m{secs:02d}s"
            if not hours
            else f"{hours}h{minutes:02d}m"
        )
    days, hours = divmod(hours, 24)
    parts = [f"{days}d"] if days else []
    if days or hours:
        parts.append(f"{hours}h")
    parts.append(f"{minutes}m")
    if not days and not hours:
        parts.append(f"{secs}s")
    return " ".join(parts)
