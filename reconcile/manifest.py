"""Manifests: the exports to reconcile, read as a stream of records.

A manifest row becomes a :class:`Record` carrying the four values the platform is asked about, exactly as
written (no trimming, no case change), and the reason it cannot be sent when a value is empty.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import ManifestError
from .readers import ReadOptions, open_table

KEY_FIELDS = ("company", "organisation", "folder", "filename")

Key = tuple[str, str, str, str]


@dataclass(frozen=True, slots=True)
class Record:
    """One manifest row, as the engine sees it."""

    source: int  # index of the manifest in the run
    row: int  # 1-based record number within the manifest, header excluded
    line: int  # physical line the record starts on, for messages
    company: str
    organisation: str
    folder: str
    filename: str
    problem: str | None = None  # why the row cannot be sent; None when it can

    @property
    def key(self) -> Key:
        return (self.company, self.organisation, self.folder, self.filename)


@dataclass(frozen=True, slots=True)
class ManifestInfo:
    """What a run records about a manifest: enough to prove which file was reconciled."""

    path: str
    sha256: str
    size: int
    columns: tuple[str, ...]


class Manifest:
    """A manifest file; iterate :meth:`records` for the engine and :meth:`rows` for the report."""

    def __init__(self, path: str | Path, index: int = 0, options: ReadOptions | None = None) -> None:
        self.path = Path(path)
        self.index = index
        self.options = options or ReadOptions()
        table = open_table(self.path, self.options)
        self.columns = table.columns
        self._positions = _key_positions(self.path, self.columns)
        table.close()

    def info(self) -> ManifestInfo:
        """Path, SHA-256 and size of the file as it is now."""
        digest = hashlib.sha256()
        size = 0
        with open(self.path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
        return ManifestInfo(str(self.path), digest.hexdigest(), size, self.columns)

    def rows(self) -> Iterator[tuple[int, int, list[str]]]:
        """``(row, line, values)`` for every record, values verbatim and padded to the header's width."""
        width = len(self.columns)
        table = open_table(self.path, self.options)
        for row, (line, values) in enumerate(table.rows, start=1):
            if len(values) != width:
                values = (values + [""] * width)[:width]
            yield row, line, values

    def records(self) -> Iterator[Record]:
        """Every record in file order, validated."""
        positions = self._positions
        width = len(self.columns)
        source = self.index
        table = open_table(self.path, self.options)
        for row, (line, values) in enumerate(table.rows, start=1):
            if len(values) != width:
                yield _ragged(source, row, line, values, positions, width)
                continue
            company, organisation, folder, filename = (values[p] for p in positions)
            problem = None
            if not (company.strip() and organisation.strip() and folder.strip() and filename.strip()):
                problem = _empty_fields(company, organisation, folder, filename)
            yield Record(source, row, line, company, organisation, folder, filename, problem)


def _key_positions(path: Path, columns: Sequence[str]) -> tuple[int, int, int, int]:
    found: dict[str, list[int]] = {}
    for position, name in enumerate(columns):
        found.setdefault(name.strip().lower(), []).append(position)
    missing = [name for name in KEY_FIELDS if name not in found]
    if missing:
        raise ManifestError(
            path,
            f"missing required column(s) {', '.join(missing)}; found columns: "
            + (", ".join(repr(c) for c in columns) or "none")
            + ". HINT: the header row must name company, organisation, folder and filename",
            line=1,
        )
    repeated = [name for name in KEY_FIELDS if len(found[name]) > 1]
    if repeated:
        raise ManifestError(path, f"column(s) {', '.join(repeated)} appear more than once in the header", line=1)
    company, organisation, folder, filename = (found[name][0] for name in KEY_FIELDS)
    return company, organisation, folder, filename


def _empty_fields(*values: str) -> str:
    empty = [name for name, value in zip(KEY_FIELDS, values, strict=True) if not value.strip()]
    return "empty " + ", ".join(empty)


def _ragged(
    source: int, row: int, line: int, values: list[str], positions: tuple[int, ...], width: int
) -> Record:
    padded = values + [""] * (width - len(values))
    company, organisation, folder, filename = (padded[p] for p in positions)
    problem = f"row has {len(values)} fields but the header has {width} (line {line})"
    if len(values) > width:
        problem += "; extra values: " + repr(values[width:])[:200]
    return Record(source, row, line, company, organisation, folder, filename, problem)
