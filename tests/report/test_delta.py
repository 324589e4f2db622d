"""delta.py and --compare-to: rows matched by their four key values, each change listed once, memory on disk."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from reconcile.api import run
from reconcile.config._settings import Settings
from reconcile.emulator import Dataset, Emulator, EmulatorConfig
from reconcile.errors import UsageError
from reconcile.report._delta import CHANGES, COLUMNS, Comparison, open_previous
from reconcile.report._delta import read_results as read_entries
from tests.conftest import RESULTS_HEADER, read_results, settings_for, write_manifest


def compare(previous_dir: Path, current_dir: Path, out: Path | None = None) -> dict[str, int]:
    """The comparison a run with --compare-to makes, of two finished reports: delta.csv into ``current_dir``."""
    comparison = Comparison(open_previous(previous_dir), current_dir)
    try:
        comparison.add(read_entries(open_previous(current_dir).results))
        return comparison.write(out or current_dir / "delta.csv")
    finally:
        comparison.close()


def write_results(directory: Path, rows: Sequence[Sequence[str]], header: Sequence[str] = RESULTS_HEADER) -> Path:
    """A report directory holding only results.csv with ``rows`` (short rows are padded)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "results.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow(list(row) + [""] * (len(header) - len(row)))
    return directory


def row(filename: str, status: str, call_id: str = "", number: int = 1, org: str = "o") -> list[str]:
    return ["c", org, "f", filename, str(number), "m.csv", status, call_id]


def changes(path: Path) -> list[tuple[str, str, str, str]]:
    """delta.csv as (change, filename, previous_status, status) in file order."""
    return [(r["change"], r["filename"], r["previous_status"], r["status"]) for r in read_results(path)]


def test_each_kind_of_change_is_listed_once_in_order(tmp_path: Path) -> None:
    """Known changes between two results.csv come out exactly, grouped in CHANGES order, unchanged rows absent."""
    before = write_results(
        tmp_path / "before",
        [
            row("same.mp3", "present", "A", 1),
            row("lost.mp3", "present", "B", 2),
            row("back.mp3", "missing", "", 3),
            row("moved.mp3", "present", "C", 4),
            row("err.mp3", "error", "", 5),
            row("gone.mp3", "missing", "", 6),
            row("still-missing.mp3", "missing", "", 7),
        ],
    )
    after = write_results(
        tmp_path / "after",
        [
            row("new.mp3", "present", "N", 1),
            row("back.mp3", "present", "D", 2),
            row("same.mp3", "present", "A", 3),
            row("err.mp3", "missing", "", 4),
            row("moved.mp3", "present", "C2", 5),
            row("lost.mp3", "missing", "", 6),
            row("still-missing.mp3", "missing", "", 7),
        ],
    )
    counts = compare(before, after)
    assert changes(after / "delta.csv") == [
        ("newly_missing", "lost.mp3", "present", "missing"),
        ("recovered", "back.mp3", "missing", "present"),
        ("call_id_changed", "moved.mp3", "present", "present"),
        ("status_changed", "err.mp3", "error", "missing"),
        ("new", "new.mp3", "", "present"),
        ("gone", "gone.mp3", "missing", ""),
    ]
    assert counts == {
        "newly_missing": 1,
        "recovered": 1,
        "call_id_changed": 1,
        "status_changed": 1,
        "new": 1,
        "gone": 1,
        "unchanged": 2,
    }
    moved = next(r for r in read_results(after / "delta.csv") if r["change"] == "call_id_changed")
    assert (moved["previous_call_id"], moved["call_id"], moved["previous_row"], moved["row"]) == ("C", "C2", "4", "5")


def test_rows_match_by_key_not_by_row_number(tmp_path: Path) -> None:
    """Reordering the manifest changes nothing; the same filename in another organisation is another row."""
    before = write_results(tmp_path / "b", [row("x.mp3", "present", "A", 1), row("y.mp3", "missing", "", 2)])
    after = write_results(
        tmp_path / "a",
        [row("y.mp3", "missing", "", 1), row("x.mp3", "present", "A", 2), row("x.mp3", "missing", "", 3, org="other")],
    )
    assert compare(before, after)["unchanged"] == 2
    assert changes(after / "delta.csv") == [("new", "x.mp3", "", "missing")]


def test_a_repeated_key_counts_once_by_its_first_row(tmp_path: Path) -> None:
    """Duplicate keys on either side are matched by their first row and never reported as new or gone."""
    before = write_results(tmp_path / "b", [row("x.mp3", "present", "A", 1), row("x.mp3", "present", "A", 2)])
    after = write_results(
        tmp_path / "a", [row("x.mp3", "missing", "", 1), row("x.mp3", "missing", "", 2), row("x.mp3", "missing", "", 3)]
    )
    assert compare(before, after) == dict.fromkeys((*CHANGES, "unchanged"), 0) | {"newly_missing": 1}
    assert [r["row"] for r in read_results(after / "delta.csv")] == ["1"]


def test_an_older_report_with_other_columns_still_compares(tmp_path: Path) -> None:
    """Key columns in any case and order, no row/source/detail columns, extra columns: only keys+status+call_id."""
    before = write_results(
        tmp_path / "b",
        [["x.mp3", "F", "present", "A", "O", "C", "zzz"]],
        header=["FileName", "Folder", "status", "call_id", "Organisation", "COMPANY", "extra"],
    )
    after = write_results(tmp_path / "a", [["C", "O", "F", "x.mp3", "1", "m.csv", "missing", ""]])
    assert compare(before, after)["newly_missing"] == 1
    (only,) = read_results(after / "delta.csv")
    assert (only["previous_row"], only["previous_source"], only["row"]) == ("", "", "1")


def test_a_manifest_column_named_status_is_not_taken_for_ours(tmp_path: Path) -> None:
    """'Status' from the manifest (kept verbatim in results.csv) does not shadow the report's own status column."""
    header = ["company", "organisation", "folder", "filename", "Status", "status", "call_id"]
    before = write_results(tmp_path / "b", [["c", "o", "f", "x", "archived", "present", "A"]], header=header)
    after = write_results(tmp_path / "a", [["c", "o", "f", "x", "archived", "missing", ""]], header=header)
    assert compare(before, after)["newly_missing"] == 1


def test_delta_csv_header_is_stable(tmp_path: Path) -> None:
    """delta.csv has the documented columns even when nothing changed."""
    before = write_results(tmp_path / "b", [row("x.mp3", "present", "A")])
    after = write_results(tmp_path / "a", [row("x.mp3", "present", "A")])
    compare(before, after)
    with open(after / "delta.csv", encoding="utf-8") as handle:
        assert handle.read() == ",".join(COLUMNS) + "\n"


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: None, "no such directory"),
        (lambda d: d.mkdir(), "holds no results.csv"),
        (lambda d: (d.mkdir(), (d / "results.csv").write_text("")), "results.csv is empty"),
        (
            lambda d: write_results(d, [], header=["company", "folder", "filename", "status"]),
            "no column(s) organisation, call_id",
        ),
    ],
    ids=["absent", "no-results", "empty", "columns"],
)
def test_an_unusable_previous_directory_is_a_clear_usage_error(tmp_path: Path, setup: object, message: str) -> None:
    """Each way a --compare-to directory can be wrong names the problem and hints at the fix."""
    previous = tmp_path / "previous"
    setup(previous)  # type: ignore[operator]
    with pytest.raises(UsageError, match="HINT") as caught:
        open_previous(previous)
    assert message in str(caught.value)


def test_previous_run_id_is_read_from_summary_json(tmp_path: Path) -> None:
    """The previous run's id and engine version come from its summary.json when there is one."""
    previous = write_results(tmp_path / "b", [row("x", "present", "A")])
    (previous / "summary.json").write_text(json.dumps({"run_id": "r-1", "engine_version": "0.0.9"}))
    found = open_previous(previous)
    assert (found.run_id, found.engine_version) == ("r-1", "0.0.9")
    (previous / "summary.json").write_text("{not json")
    assert open_previous(previous).run_id is None


def test_no_work_file_is_left_behind(tmp_path: Path) -> None:
    """The SQLite work file lives beside the report only while comparing."""
    before = write_results(tmp_path / "b", [row("x", "present", "A")])
    after = write_results(tmp_path / "a", [row("x", "missing")])
    compare(before, after)
    assert sorted(p.name for p in after.iterdir()) == ["delta.csv", "results.csv"]


KEYS = [("acme", "acme-ca", "2026/11/25", f"call-{i:02d}.mp3") for i in range(12)]


async def reconcile_with(
    dataset: dict[tuple[str, str, str, str], str], manifest: Path, out: Path, compare_to: Path | None = None
) -> dict[str, object]:
    async with Emulator(EmulatorConfig(), Dataset(dataset)) as emulator:
        settings: Settings = settings_for(emulator)
        summary = await run([manifest], out, settings=settings, compare_to=compare_to)
    return summary.summary.to_dict()


async def test_two_real_runs_list_exactly_the_changes_made(tmp_path: Path) -> None:
    """Against two emulator datasets and a changed manifest, delta.csv, summary.json and report.html agree."""
    first_manifest = write_manifest(tmp_path / "first.csv", KEYS[:10])
    second_manifest = write_manifest(tmp_path / "second.csv", [KEYS[11], *reversed(KEYS[1:10])])  # 0 gone, 11 new
    first = {k: f"id-{i}" for i, k in enumerate(KEYS) if i not in (3, 4)}  # 3 and 4 missing
    second = {k: f"id-{i}" for i, k in enumerate(KEYS) if i not in (5, 6)}  # 5, 6 newly missing; 3, 4 recovered
    second[KEYS[7]] = "id-7-reingested"
    await reconcile_with(first, first_manifest, tmp_path / "run1")
    data = await reconcile_with(second, second_manifest, tmp_path / "run2", compare_to=tmp_path / "run1")
    listed = [(r["change"], r["filename"]) for r in read_results(tmp_path / "run2" / "delta.csv")]
    name = [k[3] for k in KEYS]
    assert listed == [
        ("newly_missing", name[6]),
        ("newly_missing", name[5]),  # in the new manifest's (reversed) order
        ("recovered", name[4]),
        ("recovered", name[3]),
        ("call_id_changed", name[7]),
        ("new", name[11]),
        ("gone", name[0]),
    ]
    delta = data["delta"]
    assert isinstance(delta, dict)
    assert delta["counts"] == {
        "newly_missing": 2,
        "recovered": 2,
        "call_id_changed": 1,
        "status_changed": 0,
        "new": 1,
        "gone": 1,
        "unchanged": 4,
    }
    assert delta["run_id"] == json.loads((tmp_path / "run1" / "summary.json").read_text())["run_id"]
    assert json.loads((tmp_path / "run2" / "summary.json").read_text())["delta"] == delta
    page = (tmp_path / "run2" / "report.html").read_text(encoding="utf-8")
    assert '<section id="delta">' in page
    assert '<td>newly missing</td><td class="num">2</td>' in page


async def test_a_bad_compare_to_fails_before_any_request(tmp_path: Path) -> None:
    """--compare-to of a directory without results.csv is refused before the run sends anything."""
    manifest = write_manifest(tmp_path / "m.csv", KEYS[:3])
    (tmp_path / "empty").mkdir()
    async with Emulator(EmulatorConfig(), Dataset({})) as emulator:
        with pytest.raises(UsageError, match=r"no results\.csv"):
            await run([manifest], tmp_path / "out", settings=settings_for(emulator), compare_to=tmp_path / "empty")
        assert emulator.stats.api_requests == 0
