"""Manifests: the exports to reconcile, read as a stream of records.

A manifest row becomes a :class:`Record` carrying the four values the platform is asked about, exactly as
written (no trimming, no case change), and the reason it cannot be sent when a value is empty.  Each value
comes from a column named after it (matched case-insensitively, surrounding spaces ignored), from the column
``--map FIELD=COLUMN`` names, from a constant (``--company acme``), or, for the filename, from
``--filename-template "{RecordingSid}.mp3"``.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import stat
import string
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path

from reconcile.errors import ManifestError, UsageError
from reconcile.input._table import ReadOptions, Table, manifest_error
from reconcile.model import KEY_FIELDS, Key, written_whole

from ._paths import STDIN
from ._readers import FlawedRow, open_table

FIELD_FLAGS = {"company": "--company", "organisation": "--organisation", "folder": "--folder"}

# C0 control characters but the tab: in a key value they are corruption (a NUL byte, a stray line break), never
# part of a real name, and a platform would only answer "missing" for them.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f]")
_CONTROL_NAMES = {"\x00": "NUL", "\n": "line feed", "\r": "carriage return", "\x1b": "escape"}


@dataclass(frozen=True, slots=True)
class Record:
    """One manifest row, as the engine sees it."""

    source: int  # index of the manifest in the run
    row: int  # 1-based record number within the manifest, header excluded
    line: int  # physical line the record starts on (XLSX: sheet row; Parquet: row), for messages
    company: str
    organisation: str
    folder: str
    filename: str
    problem: str | None = None  # why the row cannot be sent; None when it can

    @property
    def key(self) -> Key:
        return (self.company, self.organisation, self.folder, self.filename)


# Kept: reading a manifest costs 2.0 µs a record this way, 2.5 µs with Record(...) (validate +8–15% CPU, issue 17).
def _record_factory() -> Callable[..., Record]:
    """A Record constructor calling the slots' own setters: same fields, same order, same object."""
    new = Record.__new__
    s_source, s_row, s_line, s_company, s_org, s_folder, s_filename, s_problem = (
        getattr(Record, name).__set__ for name in Record.__dataclass_fields__
    )

    def make(
        source: int,
        row: int,
        line: int,
        company: str,
        organisation: str,
        folder: str,
        filename: str,
        problem: str | None = None,
    ) -> Record:
        record = new(Record)
        s_source(record, source)
        s_row(record, row)
        s_line(record, line)
        s_company(record, company)
        s_org(record, organisation)
        s_folder(record, folder)
        s_filename(record, filename)
        s_problem(record, problem)
        return record

    return make


make_record = _record_factory()


@dataclass(frozen=True, slots=True)
class ManifestInfo:
    """What a run records about a manifest: enough to prove which file was reconciled."""

    path: str
    sha256: str
    size: int
    columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Field:
    """Where one of the four values comes from: a column, a constant or the filename template."""

    name: str
    get: Callable[[list[str]], str]
    label: str  # how a problem names it: "company", "company (column 'Tenant')"
    position: int | None = None  # the column read, when it is one
    template: tuple[tuple[str, int, str, str | None], ...] = ()  # (literal, column, spec, conversion)


class Manifest:
    """A manifest file; iterate :meth:`records` for the engine and :meth:`rows` for the report."""

    def __init__(self, path: str | Path, index: int = 0, options: ReadOptions | None = None) -> None:
        self.path = Path(path)
        self.index = index
        self.options = options or ReadOptions()
        table = open_table(self.path, self.options)
        try:
            self.columns = table.columns
            self._fields = _plan(table, self.options)
        finally:
            table.close()
        positions = [f.position for f in self._fields if f.position is not None]
        # The common case, all four values plain columns: one itemgetter reads a row's key (records, key_of).
        self._get_key: Callable[[list[str]], Key] | None = (
            itemgetter(*positions) if len(positions) == len(KEY_FIELDS) else None
        )

    def info(self) -> ManifestInfo:
        """Path, SHA-256 and size of the file as it is now."""
        digest = hashlib.sha256()
        size = 0
        with open(self.path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
        return ManifestInfo(str(self.path), digest.hexdigest(), size, self.columns)

    def key_of(self, values: list[str]) -> Key:
        """The four values a row of :meth:`rows` is checked with (after mapping, constants and template)."""
        width = len(self.columns)
        if self._get_key is not None and len(values) >= width:
            return self._get_key(values)  # the report's per-row path: four plain columns
        if len(values) < width:
            values = values + [""] * (width - len(values))
        company, organisation, folder, filename = (f.get(values) for f in self._fields)
        return company, organisation, folder, filename

    def rows(self) -> Iterator[tuple[int, int, list[str]]]:
        """``(row, line, values)`` for every record, values verbatim and padded to the header's width."""
        width = len(self.columns)
        table = self._open()
        try:
            for row, (line, values) in enumerate(table.rows, start=1):
                if len(values) != width:
                    values = (values + [""] * width)[:width]
                yield row, line, values
        finally:
            table.close()

    def records(self) -> Iterator[Record]:
        """Every record in file order, validated."""
        table = self._open()
        try:
            if self._get_key is not None:
                yield from self._by_position(table, self._get_key)
            else:
                yield from self._by_field(table)
        finally:
            table.close()

    def _open(self) -> Table:
        table = open_table(self.path, self.options, columns=self.columns)
        if table.columns != self.columns:
            table.close()
            raise manifest_error(
                self.path,
                "the header changed while the file was being read. HINT: do not edit a manifest during a run; "
                "start again",
                table.header_line,
                unit=table.unit,
                sheet=table.sheet,
            )
        return table

    def _by_position(self, table: Table, get: Callable[[list[str]], Key]) -> Iterator[Record]:
        # The common case: four plain columns, one itemgetter per row.
        width, source, make = len(self.columns), self.index, make_record
        for row, (line, values) in enumerate(table.rows, start=1):
            if len(values) != width or values.__class__ is not list:  # ragged, or a FlawedRow
                yield self._ragged(row, line, values)
                continue
            company, organisation, folder, filename = get(values)
            if (
                company.strip()
                and organisation.strip()
                and folder.strip()
                and filename.strip()
                # printable: no control character (nor anything else isprintable() rejects; _problem tells)
                and company.isprintable()
                and organisation.isprintable()
                and folder.isprintable()
                and filename.isprintable()
            ):
                yield make(source, row, line, company, organisation, folder, filename)
            else:
                yield make(
                    source,
                    row,
                    line,
                    company,
                    organisation,
                    folder,
                    filename,
                    self._problem(values, (company, organisation, folder, filename)),
                )

    def _by_field(self, table: Table) -> Iterator[Record]:
        width, source, make = len(self.columns), self.index, make_record
        get_company, get_org, get_folder, get_filename = (f.get for f in self._fields)
        checked = [p for f in self._fields for p in ([f.position] if f.position is not None else [])]
        checked += [p for f in self._fields for _, p, _, _ in f.template if p >= 0]
        for row, (line, values) in enumerate(table.rows, start=1):
            if len(values) != width or values.__class__ is not list:
                yield self._ragged(row, line, values)
                continue
            key = get_company(values), get_org(values), get_folder(values), get_filename(values)
            if all(values[p].strip() for p in checked) and all(v.strip() and v.isprintable() for v in key):
                yield make(source, row, line, *key)
            else:
                yield make(source, row, line, *key, self._problem(values, key))

    def _problem(self, values: list[str], key: Key) -> str | None:
        """Why a row cannot be sent: empty values, control characters; None when neither (a value isprintable()
        turned down for a no-break space, say)."""
        empty: list[str] = []
        control: list[str] = []
        for field, value in zip(self._fields, key, strict=True):
            if field.template:
                blank = [self.columns[p] for _, p, _, _ in field.template if p >= 0 and not values[p].strip()]
                if blank:
                    empty.append(f"{', '.join(blank)} (for --filename-template)")
                    continue
            if not value.strip():
                empty.append(field.label)
            elif found := _CONTROL.search(value):
                char = found.group()
                control.append(f"{field.label} (U+{ord(char):04X} {_CONTROL_NAMES.get(char, 'control character')})")
        problems = []
        if empty:
            problems.append("empty " + ", ".join(empty))
        if control:
            problems.append(
                "control character in "
                + ", ".join(control)
                + ": a value with one is never a real name. HINT: fix the export; tabs are allowed"
            )
        return "; ".join(problems) or None

    def _ragged(self, row: int, line: int, values: list[str]) -> Record:
        width = len(self.columns)
        company, organisation, folder, filename = self.key_of(values[:width])
        if isinstance(values, FlawedRow):
            return make_record(self.index, row, line, company, organisation, folder, filename, values.problem)
        problem = f"row has {len(values)} fields but the header has {width} (line {line})"
        if len(values) > width:
            problem += "; extra values: " + repr(values[width:])[:200]
        return make_record(self.index, row, line, company, organisation, folder, filename, problem)


def _plan(table: Table, options: ReadOptions) -> tuple[_Field, _Field, _Field, _Field]:
    """Where each of the four values comes from; every column asked for must be in the header."""
    mapped, constants = dict(options.columns), dict(options.constants)
    template = options.filename_template
    _check_options(mapped, constants, template)
    columns = table.columns
    missing: list[str] = []
    fields: list[_Field] = []
    for name in KEY_FIELDS:
        if name in constants:
            fields.append(_Field(name, _constant(constants[name]), name))
        elif name in mapped:
            position = _find(table, mapped[name], exact_first=True)
            if position is None:
                missing.append(f"{mapped[name]!r} (--map {name}={mapped[name]})")
            else:
                fields.append(_Field(name, itemgetter(position), f"{name} (column {mapped[name]!r})", position))
        elif name == "filename" and template is not None:
            parts = _template_parts(template)
            found = [
                (literal, _find(table, column, exact_first=True) if column is not None else -1, spec, conv)
                for literal, column, spec, conv in parts
            ]
            absent = [column for (_, column, _, _), (_, p, _, _) in zip(parts, found, strict=True) if p is None]
            if absent:
                missing.append(", ".join(repr(c) for c in absent) + f" (--filename-template {template!r})")
            else:
                compiled = tuple((lit, p if p is not None else -1, spec, conv) for lit, p, spec, conv in found)
                fields.append(_Field(name, _renderer(compiled), name, template=compiled))
        else:
            position = _find(table, name, exact_first=False)
            if position is None:
                missing.append(name)
            else:
                fields.append(_Field(name, itemgetter(position), name, position))
    if missing:
        raise manifest_error(
            table.path,
            f"missing required column(s) {', '.join(missing)}; found columns: "
            + (", ".join(repr(c) for c in columns) or "none")
            + ". HINT: the header row must name company, organisation, folder and filename, or map an export's "
            "own column with --map company=Tenant, or give a value for every row with --company acme",
            table.header_line,
            unit=table.unit,
            sheet=table.sheet,
        )
    company, organisation, folder, filename = fields
    return company, organisation, folder, filename


def _check_options(mapped: dict[str, str], constants: dict[str, str], template: str | None) -> None:
    unknown = sorted({*mapped, *constants} - set(KEY_FIELDS))
    if unknown:
        raise UsageError(
            f"unknown field(s) {', '.join(unknown)} in --map; the fields are "
            f"{', '.join(KEY_FIELDS)}. HINT: --map company=Tenant"
        )
    both = sorted(set(mapped) & set(constants))
    if both:
        raise UsageError(f"{', '.join(both)} given both with --map and as a constant. HINT: use one of them")
    if template is not None and ("filename" in mapped or "filename" in constants):
        raise UsageError(
            "the filename is given both with --filename-template and --map filename=... HINT: use one of them"
        )
    for name, value in constants.items():
        if not value.strip():
            raise UsageError(f"{FIELD_FLAGS.get(name, name)} is empty. HINT: give a value or leave the flag out")


def _find(table: Table, name: str, *, exact_first: bool) -> int | None:
    """The position of column ``name``; a name the user typed wins when it matches exactly."""
    columns = table.columns
    if exact_first and columns.count(name) == 1:
        return columns.index(name)
    wanted = name.strip().lower()
    matches = [i for i, column in enumerate(columns) if column.strip().lower() == wanted]
    if len(matches) > 1:
        raise manifest_error(
            table.path,
            f"column {name!r} appears more than once in the header "
            f"(as {', '.join(repr(columns[i]) for i in matches)}). HINT: rename one",
            table.header_line,
            unit=table.unit,
            sheet=table.sheet,
        )
    return matches[0] if matches else None


def _template_parts(template: str) -> list[tuple[str, str | None, str, str | None]]:
    """``(literal, column, spec, conversion)`` pieces of a str.format-style template; columns by name only."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise UsageError(
            f"--filename-template {template!r} is malformed ({exc}). "
            'HINT: write {Column} for a column and {{ }} for literal braces, e.g. "{RecordingSid}.mp3"'
        ) from None
    result: list[tuple[str, str | None, str, str | None]] = []
    for literal, column, spec, conversion in parts:
        if column is not None and (not column.strip() or column.isdigit()):
            raise UsageError(
                f"--filename-template {template!r} has a field without a column name. "
                'HINT: name the column, e.g. "{RecordingSid}.mp3"'
            )
        if column is not None:
            try:
                format("x", spec or "")
            except ValueError as exc:
                raise UsageError(
                    f"--filename-template: {{{column}:{spec}}} is not a text format ({exc}). "
                    "HINT: values are text; use e.g. {Column:>10} or no format"
                ) from None
        result.append((literal, column, spec or "", conversion))
    if all(column is None for _, column, _, _ in result):
        raise UsageError(f'--filename-template {template!r} names no column. HINT: e.g. "{{RecordingSid}}.mp3"')
    return result


def _constant(value: str) -> Callable[[list[str]], str]:
    return lambda _values: value


def _renderer(parts: tuple[tuple[str, int, str, str | None], ...]) -> Callable[[list[str]], str]:
    literal, position, spec, conversion = parts[0]
    if position >= 0 and not spec and conversion is None and (len(parts) == 1 or (len(parts) == 2 and parts[1][1] < 0)):
        post = parts[1][0] if len(parts) == 2 else ""  # "{Sid}.mp3" parses as ("", Sid) then (".mp3", no field)
        return lambda values: literal + values[position] + post
    convert: dict[str | None, Callable[[object], str]] = {None: str, "s": str, "r": repr, "a": ascii}

    def render(values: list[str]) -> str:
        out = []
        for literal, position, spec, conversion in parts:
            out.append(literal)
            if position >= 0:
                out.append(format(convert[conversion](values[position]), spec))
        return "".join(out)

    return render


# --- streams: standard input and pipes -------------------------------------------------------------------

SPOOL_PREFIX = "manifest-from-"


def is_stream(path: Path) -> bool:
    """Whether ``path`` can be read only once: ``-`` (standard input), a pipe such as ``<(zcat export.gz)``."""
    if str(path) == STDIN:
        return True
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def spool_streams(paths: Sequence[Path], directory: Path) -> list[Path]:
    """``paths`` with every stream (:func:`is_stream`) copied into ``directory`` first, streaming.

    A manifest is read several times (its header, its rows for the run, again for the report, its SHA-256), and a
    stream only once: read directly, every read after the first found an empty file.  In ``--out`` the copy also
    makes a resume possible: the same input piped in again has the same SHA-256.
    """
    spooled: list[Path] = []
    for number, path in enumerate(paths, start=1):
        if not is_stream(path):
            spooled.append(path)
            continue
        name = "stdin" if str(path) == STDIN else path.name
        target = (
            directory / f"{SPOOL_PREFIX}{name}" if len(paths) == 1 else directory / f"{SPOOL_PREFIX}{number}-{name}"
        )
        if str(path) == STDIN and (sys.stdin is None or sys.stdin.isatty()):
            raise UsageError(
                "- reads the manifest from standard input, which is a terminal here. "
                "HINT: pipe the export in, e.g. zcat export.csv.gz | reconcile run - --out DIR"
            )
        try:
            with written_whole(target) as temporary, open(temporary, "wb") as handle:
                if str(path) == STDIN:
                    shutil.copyfileobj(sys.stdin.buffer, handle, 1 << 20)
                else:
                    with open(path, "rb") as source:
                        shutil.copyfileobj(source, handle, 1 << 20)
        except OSError as exc:
            raise ManifestError(path, f"cannot be read: {exc.strerror or exc}") from None
        spooled.append(target)
    return spooled
