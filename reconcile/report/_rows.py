"""The run's report rows: each manifest row, its own columns verbatim, beside its result from the journal.

Rows come in manifest order, then row order, up to a position (see :mod:`reconcile.engine._watermark`): while the
run goes, up to the rows whose results are committed; once it is over, to the end. The manifests are read again, row
by row, and the journal a page at a time, so memory stays flat however long the run. The work is done in slices of
``slice_rows`` rows that hand the event loop back in between: while the run goes, the requests share it."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from reconcile.engine import PAGE, Journal, Position, ResultRow
from reconcile.input import Manifest, ReadOptions, Shard
from reconcile.model import KEY_FIELDS, Key

from ._statistics import ReportStatistics, day_reader

OUR_COLUMNS = ("row", "source", "status", "call_id", "detail", "attempts", "checked_at")
ROW, SOURCE, STATUS, CALL_ID, DETAIL, ATTEMPTS, CHECKED_AT = range(-7, 0)  # our columns, at the end of each row
CHUNK = 5_000  # rows handed to the writers at once (a Parquet row group)
SLICE = 250  # rows merged between two trips back to the event loop (1–2 ms of work)
_NO_BOUND = 1 << 62  # past any row number: SQLite's integers hold it

Unchecked = tuple[str, str, str, int, str]  # (status, call_id, detail, attempts, checked_at) of a row never resolved


class Sink(Protocol):
    """Where the rows go: the report's files (:class:`reconcile.report._build.ReportFiles`)."""

    statistics: ReportStatistics

    def add(self, rows: list[list[Any]], keys: list[Key]) -> None: ...


class MissingResult(RuntimeError):
    """A row before the commit watermark has no result: the watermark was wrong (never expected)."""


CHECKED = " (checked)"  # the suffix of an added key column named like a manifest column


def rename_clash(name: str) -> str:
    return f"{name} (manifest)" if name in OUR_COLUMNS else name


@dataclass(frozen=True, slots=True)
class Layout:
    """results.csv's columns: every manifest column in order of first appearance (renamed when it clashes with
    ours), then a column for each of the four checked values that no column shows as checked, then ours.

    A value read through ``--map``, ``--filename-template`` or a constant is shown in a column of its own,
    named after the field ("company (checked)" when the manifest already has a column "company"), so that
    results.csv always says what was asked and a later ``--compare-to`` or ``merge`` can match rows by it.
    """

    own: tuple[str, ...]  # the manifests' columns, renamed
    added: tuple[tuple[int, str], ...]  # the added key columns, as (index in KEY_FIELDS, column name)

    @classmethod
    def of_manifests(cls, manifests: Sequence[Manifest]) -> Layout:
        """The layout a run writes for ``manifests`` read as they are."""
        own = cls._own([m.columns for m in manifests])
        options = manifests[0].options if manifests else ReadOptions()
        derived = {name for name, column in options.columns if column.strip().lower() != name}
        derived |= {name for name, _ in options.constants}
        if options.filename_template is not None:
            derived.add("filename")
        named = {c.strip().lower() for c in own}
        added = tuple(
            (index, f"{field}{CHECKED}" if field in named else field)
            for index, field in enumerate(KEY_FIELDS)
            if field in derived or field not in named
        )
        return cls(own, added)

    @classmethod
    def of_header(cls, header: Sequence[str], manifest_columns: Sequence[Sequence[str]]) -> Layout:
        """The layout of a results.csv with ``header``, written for manifests of ``manifest_columns``."""
        own = cls._own(manifest_columns)
        between = header[len(own) : len(header) - len(OUR_COLUMNS)]
        added = tuple((KEY_FIELDS.index(name.removesuffix(CHECKED)), name) for name in between)
        return cls(own, added)

    @property
    def columns(self) -> list[str]:
        return [*self.own, *(name for _, name in self.added), *OUR_COLUMNS]

    def positions(self, manifest_columns: Sequence[str]) -> list[int]:
        """Where each of a manifest's columns is in a report row."""
        return [self.own.index(rename_clash(c)) for c in manifest_columns]

    def key_positions(self, manifest_columns: Sequence[str]) -> list[int]:
        """Where each of the four checked values of a manifest's row is in a report row: its added column, else
        the manifest's column that holds it.  A KeyError names a field that neither holds."""
        added = {KEY_FIELDS[index]: len(self.own) + n for n, (index, _) in enumerate(self.added)}
        positions = []
        for field in KEY_FIELDS:
            if field in added:
                positions.append(added[field])
                continue
            matches = [c for c in manifest_columns if c.strip().lower() == field]
            if not matches:
                raise KeyError(field)
            positions.append(self.own.index(rename_clash(field if field in matches else matches[0])))
        return positions

    @staticmethod
    def _own(manifest_columns: Sequence[Sequence[str]]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(rename_clash(c) for columns in manifest_columns for c in columns))


class ReportRows:
    """The run's report rows, merged from the manifests and the journal, produced with :meth:`advance`."""

    def __init__(
        self,
        manifests: Sequence[Manifest],
        journal: Journal,
        shard: Shard | None = None,
        *,
        page: int = PAGE,
        chunk: int = CHUNK,
        slice_rows: int = SLICE,
    ) -> None:
        self.layout = Layout.of_manifests(manifests)
        self.columns = self.layout.columns
        self._page, self._chunk_rows, self._slice_rows = page, chunk, slice_rows
        self._manifests = manifests
        self._journal = journal
        self._shard = shard
        self._chunk: list[list[Any]] = []
        self._keys: list[Key] = []
        # The manifest being read: its index, rows (the next one read ahead), how to make its lines.
        self._source = -1
        self._rows: Iterator[tuple[int, int, list[str]]] = iter(())
        self._next: tuple[int, int, list[str]] | None = None
        self._count = 0  # its rows in the report so far
        self._place: Callable[[list[str], Key], list[Any]] = _unset
        self._key_of: Callable[[list[str]], Key] = _unset
        self._day_of: Callable[[list[str], str], str] = _unset
        self._name = ""
        # Its results: those read and not yet merged, the bound below which all are read, the next page.
        self._results: deque[ResultRow] = deque()
        self._fetched = 0
        self._ahead: asyncio.Future[list[ResultRow]] | None = None
        self._ahead_before = 0

    async def advance(self, until: Position, sink: Sink, unchecked: Unchecked | None = None) -> None:
        """Give ``sink`` every row before ``until``.

        ``unchecked`` is what a row without a result shows; without it (while the run goes, when every row
        before ``until`` must have one) such a row raises :class:`MissingResult`.
        """
        while (bound := await self._ready(until, sink)) is not None:
            self._take(min(bound, self._fetched), sink, unchecked)
            await asyncio.sleep(0)  # the requests' turn

    def close(self) -> None:
        """Let go of the manifest being read and of a page being read ahead."""
        close = getattr(self._rows, "close", None)
        if close is not None:
            close()
        if self._ahead is not None:
            self._ahead.cancel()
            self._ahead = None

    async def _ready(self, until: Position, sink: Sink) -> int | None:
        """Move on to the next manifest when one is done, and read results as far as the next row needs.

        Returns the bound on this manifest's row numbers that ``until`` sets, or None when no row before
        ``until`` is left.
        """
        while True:
            if self._next is None:
                if not self._next_manifest(sink):
                    return None
                continue
            row = self._next[0]
            if (self._source, row) >= until:
                return None
            bound = until[1] if until[0] == self._source else _NO_BOUND
            if row < self._fetched:
                return bound
            await self._fetch(bound)

    def _next_manifest(self, sink: Sink) -> bool:
        if self._source >= len(self._manifests):
            return False
        if self._source >= 0:
            if self._chunk:  # a manifest's last rows are a chunk of their own, streamed or not
                self._hand_over(sink)
            sink.statistics.end_manifest(self._count)
        self.close()
        self._source += 1
        if self._source >= len(self._manifests):
            return False
        manifest = self._manifests[self._source]
        self._rows = manifest.rows()
        self._next = next(self._rows, None)
        self._count = 0
        self._place = _placer(manifest, self.layout)
        self._key_of, self._day_of, self._name = manifest.key_of, day_reader(manifest.columns), str(manifest.path)
        self._results.clear()
        self._fetched = 0
        return True

    async def _fetch(self, bound: int) -> None:
        """Read the next page of this manifest's results before ``bound``, and start reading the one after."""
        page = await (self._ahead or self._read(self._fetched - 1, bound))
        self._ahead = None
        self._results.extend(page)
        if len(page) >= self._page:  # a full page: more may follow before the bound
            self._fetched = page[-1][0] + 1
            self._read(page[-1][0], bound)  # on the journal thread, while this page is merged
        else:
            self._fetched = self._ahead_before

    def _read(self, after: int, before: int) -> asyncio.Future[list[ResultRow]]:
        self._ahead = self._journal.read_page(self._source, after, before, self._page)
        self._ahead_before = before
        return self._ahead

    def _take(self, stop: int, sink: Sink, unchecked: Unchecked | None) -> None:
        """Merge up to ``slice_rows`` rows of this manifest numbered below ``stop``."""
        results, chunk, keys, add = self._results, self._chunk, self._keys, sink.statistics.add
        rows, place, key_of, day_of, name, shard = (
            self._rows,
            self._place,
            self._key_of,
            self._day_of,
            self._name,
            self._shard,
        )
        current, count = self._next, self._count
        for _ in range(self._slice_rows):
            if current is None or current[0] >= stop:
                break
            row, _line, values = current
            current = next(rows, None)
            key = key_of(values)
            if shard is not None and not shard.holds(key):
                continue  # another shard's row: that shard reports it
            while results and results[0][0] < row:
                results.popleft()
            if results and results[0][0] == row:
                status, call_id, detail, attempts, checked_at = results.popleft()[1:]
                if unchecked is not None and status == unchecked[0]:
                    detail = f"{detail}; {unchecked[2]}"  # a duplicate of a row never checked: say why
            elif unchecked is not None:
                status, call_id, detail, attempts, checked_at = unchecked
            else:
                raise MissingResult(f"row {row} of {name} has no committed result")
            count += 1
            line = place(values, key)
            line += (row, name, status, call_id, detail, attempts, checked_at)
            chunk.append(line)
            keys.append(key)
            add(status, key, day_of(values, key[2]), name, row, detail.startswith("duplicate of row"))
            if len(chunk) >= self._chunk_rows:
                self._hand_over(sink)
                chunk, keys = self._chunk, self._keys
        self._next, self._count = current, count

    def _hand_over(self, sink: Sink) -> None:
        sink.add(self._chunk, self._keys)
        self._chunk, self._keys = [], []


def _unset(*_: Any) -> Any:
    raise AssertionError("no manifest is being read")


def _placer(manifest: Manifest, layout: Layout) -> Callable[[list[str], Key], list[Any]]:
    """A function giving a row's report line up to our columns: its values in the report's manifest columns,
    then the added key columns.

    With one manifest (or several with the same header) its columns are the report's first ones, in order, and
    the line is a copy of its values, extended: only a manifest whose columns sit elsewhere in a wider report
    needs them placed one by one.  Always a new list: the caller appends our columns to it.
    """
    positions = layout.positions(manifest.columns)
    manifest_width = len(layout.own)
    fills = [index for index, _ in layout.added]
    gap = [""] * (manifest_width - len(positions))
    if positions == list(range(len(positions))):
        if not fills:
            return lambda values, key: values + gap
        return lambda values, key: [*values, *gap, *(key[index] for index in fills)]

    def place(values: list[str], key: Key) -> list[Any]:
        line: list[Any] = [""] * manifest_width
        for position, value in zip(positions, values, strict=True):
            line[position] = value
        line.extend(key[index] for index in fills)
        return line

    return place
