"""input/_table: what every reader shares: formats, the reading options a journal records, row-naming errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconcile.input._table import (
    FORMATS,
    OPTION_FLAGS,
    SUFFIXES,
    TEXT_FORMATS,
    ReadOptions,
    changed_options,
    json_text,
    manifest_error,
    options_record,
)


def test_every_suffix_names_a_known_format() -> None:
    """Each file suffix maps to one of FORMATS, and the text formats are among them."""
    assert set(SUFFIXES.values()) == set(FORMATS)
    assert set(TEXT_FORMATS) <= set(FORMATS)
    assert all(suffix.startswith(".") and suffix == suffix.lower() for suffix in SUFFIXES)


def test_options_record_is_canonical_json_of_every_field() -> None:
    """The record is sorted JSON with every ReadOptions field, so equal options give equal text."""
    record = options_record(ReadOptions(sheet="Calls"))
    assert record == options_record(ReadOptions(sheet="Calls"))
    loaded = json.loads(record)
    assert set(loaded) == set(OPTION_FLAGS)
    assert list(loaded) == sorted(loaded)
    assert loaded["sheet"] == "Calls"


def test_changed_options_names_the_flags_that_differ() -> None:
    """Only the flags whose values differ are named, by the flag a user types."""
    before = options_record(ReadOptions(encoding="latin-1", columns=(("company", "Tenant"),)))
    after = options_record(ReadOptions(encoding="latin-1", filename_template="{Sid}.mp3"))
    assert changed_options(before, after) == ["--map", "--filename-template"]
    assert changed_options(before, before) == []


@pytest.mark.parametrize(
    ("line", "unit", "sheet", "expected", "expected_line"),
    [
        (3, "line", None, "m.csv, line 3: bad", 3),
        (5, "row", "Calls", "m.csv: sheet 'Calls', row 5: bad", 5),
        (7, "row", None, "m.csv: row 7: bad", 7),
        (None, "line", None, "m.csv: bad", None),
        (0, "row", None, "m.csv: bad", None),
    ],
)
def test_manifest_errors_name_the_position_the_way_the_format_counts_it(
    line: int | None, unit: str, sheet: str | None, expected: str, expected_line: int | None
) -> None:
    """Text formats say the line, workbooks the sheet and row, Parquet the row; a header with no line says none."""
    error = manifest_error(Path("m.csv"), "bad", line, unit=unit, sheet=sheet)
    assert str(error) == expected
    assert error.line == expected_line


@pytest.mark.parametrize(
    ("value", "expected"),
    [("x", "x"), (None, ""), (True, "true"), (False, "false"), (3, "3"), (1.5, "1.5"), ([1, "a"], '[1,"a"]')],
)
def test_json_values_as_text(value: object, expected: str) -> None:
    """Strings verbatim, null empty, literals as JSON writes them, containers as compact JSON."""
    assert json_text(value) == expected
