"""`reconcile merge`: shards run against the emulator and merged equal the unsharded report; bad sets are refused."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner, Result

from reconcile.api import run
from reconcile.cli import cli
from reconcile.config import Secret
from reconcile.emulator import Dataset, Emulator, EmulatorConfig
from reconcile.engine._engine import RunOptions
from reconcile.errors import UsageError
from reconcile.input._shard import Shard
from reconcile.input._table import ReadOptions
from reconcile.report._build import Report
from reconcile.shards._merge import merge_reports
from tests.conftest import (
    SAMPLES,
    html_without_run_section,
    read_jsonl,
    read_parquet,
    read_results,
    read_xlsx_all,
    settings_for,
    without,
    write_manifest,
)

pytestmark = pytest.mark.slow  # every test reads the shard runs of one module fixture, against the emulator

FORMATS = ("csv", "parquet", "xlsx", "json")
NIGHTLY = SAMPLES / "nightly-export-2026-11-25.csv"
ARCHIVE = SAMPLES / "archive-audit-emea.csv"
# Keys every merged summary.json must share with an unsharded run's, value for value.
SAME_IN_SUMMARY = (
    "counts",
    "records",
    "duplicates",
    "complete",
    "outcome",
    "manifests",
    "by_company",
    "by_organisation",
    "endpoint",
    "base_url",
    "tenant_id",
    "client_id",
    "label",
)


def extra_manifest(path: Path, *, variant: str = "") -> Path:
    """A third manifest: duplicates of the nightly sample's rows (across manifests), invalid rows, missing rows."""
    nightly = pd.read_csv(NIGHTLY, dtype=str, keep_default_na=False)
    rows = [
        tuple(r) for r in nightly[["company", "organisation", "folder", "filename"]].head(12).itertuples(index=False)
    ]
    rows += [("acme", "acme-ca", "2026/11/26/inbound", f"absent-{n}{variant}.mp3") for n in range(15)]
    rows += [("", "acme-ca", "2026/11/26", "blank-company.mp3"), ("acme", " ", "2026/11/26", "blank-org.mp3")]
    rows += [rows[13], rows[14], rows[0]]  # duplicates within this manifest, of missing and present rows
    return write_manifest(path, rows)


def run_all(base: Path, paths: list[Path], jobs: list[tuple[str, RunOptions | None, dict[str, Any]]]) -> None:
    """Run each (name, options, settings changes) against one in-process emulator, in a fresh event loop."""

    async def main() -> None:
        async with Emulator(EmulatorConfig()) as emulator:
            for name, options, changes in jobs:
                assert options is not None
                await run(paths, base / name, settings=settings_for(emulator, **changes), options=options)

    asyncio.run(main())


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One unsharded run, its three shards (given to merge out of order) merged, plus odd shards for refusals."""
    base = tmp_path_factory.mktemp("merge")
    paths = [NIGHTLY, ARCHIVE, extra_manifest(base / "extra.csv")]
    jobs: list[tuple[str, RunOptions | None, dict[str, Any]]] = [
        ("full", RunOptions(formats=FORMATS, label="audit"), {}),
        *[
            (
                f"shard-{k}",
                RunOptions(formats=FORMATS, label="audit", shard=Shard(k, 3)),
                {},
            )
            for k in range(3)
        ],
        # A shard that stopped on a fatal error (the secret is refused), for --allow-incomplete.
        (
            "fatal-1",
            RunOptions(formats=FORMATS, shard=Shard(1, 3)),
            {"client_secret": Secret("not-the-secret")},
        ),
        ("single", RunOptions(shard=Shard(0, 1)), {}),
    ]
    run_all(base, paths, jobs)
    # Shard 2 of the same run, but of a manifest that changed in between (same path, other SHA-256).
    extra_manifest(base / "extra.csv", variant="-changed")
    run_all(base, paths, [("other-2", RunOptions(formats=FORMATS, shard=Shard(2, 3)), {})])
    (base / "stray").mkdir()
    merge_reports([base / "shard-2", base / "shard-0", base / "shard-1"], base / "merged")
    return base


def summary_of(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((directory / "summary.json").read_text(encoding="utf-8"))
    return data


def invoke(args: list[str]) -> Result:
    result = CliRunner().invoke(cli, args)
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_every_shard_holds_part_of_each_kind_of_row(runs: Path) -> None:
    """The split is real: each shard has rows, fewer than the whole, and together they hold each kind of row."""
    full = read_results(runs / "full" / "results.csv")
    sizes = [len(read_results(runs / f"shard-{k}" / "results.csv")) for k in range(3)]
    assert all(0 < size < len(full) for size in sizes)
    assert sum(sizes) == len(full)
    statuses = {r["status"] for r in full}
    assert {"present", "missing", "invalid"} <= statuses
    assert any(" of " in r["detail"] and r["detail"].startswith("duplicate of row") for r in full)  # across manifests


def test_merged_results_equal_the_unsharded_run_row_for_row(runs: Path) -> None:
    """results.csv and missing.csv: same header, same rows in the same order, every column but checked_at."""
    for name in ("results.csv", "missing.csv"):
        full, merged = read_results(runs / "full" / name), read_results(runs / "merged" / name)
        assert list(merged[0]) == list(full[0])
        assert without(merged, "checked_at") == without(full, "checked_at")
        assert len(merged) > 0


def test_merged_summary_equals_the_unsharded_one(runs: Path) -> None:
    """Counts, records, duplicates, manifests (SHA-256, records), per-company and per-organisation counts agree."""
    full, merged = summary_of(runs / "full"), summary_of(runs / "merged")
    for key in SAME_IN_SUMMARY:
        assert merged[key] == full[key], key
    assert sum(merged["counts"].values()) == merged["records"]
    assert list(merged)[: len(full)] == list(full)  # an unsharded run's keys, in its order, then merged_from
    shards = [summary_of(runs / f"shard-{k}") for k in range(3)]
    assert [m["run_id"] for m in merged["merged_from"]] == [s["run_id"] for s in shards]
    assert merged["started_at"] == min(s["started_at"] for s in shards)
    assert merged["finished_at"] == max(s["finished_at"] for s in shards)
    assert merged["requests"] == sum(s["requests"] for s in shards)
    assert merged["shard"] is None


def test_every_other_format_equals_the_unsharded_run(runs: Path) -> None:
    """Parquet, JSON Lines, the XLSX All sheet and report.html (run details aside) are those of the unsharded run."""

    for reader in (read_parquet, read_jsonl, read_xlsx_all):
        full, merged = reader(runs / "full"), reader(runs / "merged")
        assert merged.drop(columns="checked_at").equals(full.drop(columns="checked_at"))
    assert html_without_run_section(runs / "merged" / "report.html") == html_without_run_section(
        runs / "full" / "report.html"
    )
    assert set(summary_of(runs / "merged")["outputs"]) == set(summary_of(runs / "full")["outputs"])


def test_a_single_shard_of_one_merges_to_the_unsharded_run(runs: Path, tmp_path: Path) -> None:
    """--shard 0/1 merged alone is the whole run."""
    summary = merge_reports([runs / "single"], tmp_path / "merged")
    assert without(read_results(tmp_path / "merged" / "results.csv"), "checked_at") == without(
        read_results(runs / "full" / "results.csv"), "checked_at"
    )
    assert summary.counts == summary_of(runs / "full")["counts"]


def test_merge_command_exits_like_run_and_lists_outputs(runs: Path, tmp_path: Path) -> None:
    """The CLI exits with the unsharded run's code (3: invalid rows) and prints the merged paths."""
    out = tmp_path / "cli"
    result = invoke(["merge", *(str(runs / f"shard-{k}") for k in range(3)), "--out", str(out), "--format", "csv"])
    full = summary_of(runs / "full")
    assert result.exit_code == 3, result.output
    assert f"{full['records']} records" in result.output
    assert str(out / "results.csv") in result.output
    assert not (out / "results.parquet").exists()  # --format csv: only what was asked


def test_compare_to_the_unsharded_run_finds_no_change(runs: Path, tmp_path: Path) -> None:
    """--compare-to: the merged report compared with the unsharded one has only unchanged rows."""
    summary = merge_reports([runs / f"shard-{k}" for k in range(3)], tmp_path / "m", compare_to=runs / "full")
    changes = summary.summary.to_dict()["delta"]["counts"]
    assert changes["unchanged"] > 0
    assert {k: v for k, v in changes.items() if k != "unchanged"} == dict.fromkeys(
        ("newly_missing", "recovered", "call_id_changed", "status_changed", "new", "gone"), 0
    )


def refused(runs: Path, dirs: list[str], *extra: str) -> str:
    """Run `reconcile merge` on ``dirs``; it must exit 2 and write nothing; its message."""
    out = runs / "refused"
    result = invoke(["merge", *(str(runs / d) for d in dirs), "--out", str(out), *extra])
    assert result.exit_code == 2, result.output
    assert not (out / "results.csv").exists()
    return result.output


def test_a_missing_shard_is_refused(runs: Path) -> None:
    """Two shards of three: refused, naming the missing one."""
    message = refused(runs, ["shard-0", "shard-2"])
    assert "shard 1/3 is missing" in message


def test_a_repeated_shard_is_refused(runs: Path, copies: Path) -> None:
    """The same shard twice (two directories holding shard 0/3): refused, naming both directories."""
    message = refused(runs, ["shard-0", str(copies / "shard-0-again"), "shard-1", "shard-2"])
    assert "shard 0/3 is given 2 times" in message
    assert "shard-0-again" in message


def test_shards_of_another_manifest_are_refused(runs: Path) -> None:
    """A shard whose manifest changed (SHA-256 differs): refused, naming the manifest."""
    message = refused(runs, ["shard-0", "shard-1", "other-2"])
    assert "different manifests" in message
    assert "extra.csv" in message
    assert "SHA-256" in message


def test_shards_split_differently_are_refused(runs: Path, copies: Path) -> None:
    """A shard of another N (here 0/2 against 1/3 and 2/3): refused."""
    message = refused(runs, [str(copies / "shard-0-of-2"), "shard-1", "shard-2"])
    assert "split the rows differently" in message


def test_an_unsharded_report_or_a_stray_directory_is_refused(runs: Path) -> None:
    """An unsharded run's --out, or a directory with no report, is not a shard."""
    assert "unsharded run" in refused(runs, ["full"])
    assert "holds no summary.json" in refused(runs, ["stray"])


def test_merging_into_a_shard_is_refused(runs: Path) -> None:
    """--out may not be one of the shards."""
    result = invoke(["merge", *(str(runs / f"shard-{k}") for k in range(3)), "--out", str(runs / "shard-1")])
    assert result.exit_code == 2
    assert "is one of the shards" in result.output


def test_an_incomplete_shard_is_refused_unless_allowed(runs: Path, tmp_path: Path) -> None:
    """A shard that stopped on a fatal error: refused; --allow-incomplete merges it with unchecked rows, exit 4."""
    message = refused(runs, ["shard-0", "fatal-1", "shard-2"])
    assert "shard 1/3" in message
    assert "TokenError" in message
    assert "--allow-incomplete" in message
    out = tmp_path / "partial"
    result = invoke(
        ["merge", *(str(runs / d) for d in ("shard-0", "fatal-1", "shard-2")), "--out", str(out), "--allow-incomplete"]
    )
    assert result.exit_code == 4, result.output
    merged, full = summary_of(out), summary_of(runs / "full")
    assert merged["records"] == full["records"]
    assert merged["counts"]["unchecked"] > 0
    assert (merged["complete"], merged["outcome"]) == (False, "fatal")
    assert merged["error"]["shard"] == "1/3"
    assert "missing" not in {r["status"] for r in read_results(out / "results.csv") if r["detail"].startswith("not")}


@pytest.fixture
def copies(runs: Path, tmp_path: Path) -> Path:
    """Copies of shard 0: one as is, one whose summary.json says 0/2."""
    shutil.copytree(runs / "shard-0", tmp_path / "shard-0-again")
    shutil.copytree(runs / "shard-0", tmp_path / "shard-0-of-2")
    summary = summary_of(tmp_path / "shard-0-of-2")
    summary["shard"] = "0/2"
    (tmp_path / "shard-0-of-2" / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return tmp_path


def tamper(runs: Path, tmp_path: Path, edit: Any) -> list[Path]:
    """The three shards, shard 1 copied with its results.csv lines passed through ``edit``."""
    shutil.copytree(runs / "shard-1", tmp_path / "shard-1")
    results = tmp_path / "shard-1" / "results.csv"
    lines = results.read_text(encoding="utf-8").splitlines(keepends=True)
    results.write_text("".join(edit(lines)), encoding="utf-8")
    return [runs / "shard-0", tmp_path / "shard-1", runs / "shard-2"]


def test_a_results_file_cut_short_is_refused(runs: Path, tmp_path: Path) -> None:
    """A shard's results.csv missing its last row: refused, naming the row no shard holds."""
    shards = tamper(runs, tmp_path, lambda lines: lines[:-1])
    with pytest.raises(UsageError, match="in none of the shards"):
        merge_reports(shards, tmp_path / "merged")
    assert not (tmp_path / "merged" / "results.csv").exists()


def test_overlapping_shards_are_refused(runs: Path, tmp_path: Path) -> None:
    """A row of shard 0 also in shard 1: refused as an overlap."""
    stolen = (runs / "shard-0" / "results.csv").read_text(encoding="utf-8").splitlines(keepends=True)[1]
    shards = tamper(runs, tmp_path, lambda lines: [lines[0], stolen, *lines[1:]])
    with pytest.raises(UsageError, match="more than one shard"):
        merge_reports(shards, tmp_path / "merged")


async def test_mapped_columns_merge_like_an_unsharded_run(tmp_path: Path) -> None:
    """With --map, a template and a constant, the merged report (incl. report.html) is the unsharded one."""
    header = ("Tenant", "Queue", "CallDate", "RecordingSid", "company")
    rows = [(f"acme-{n % 3}", f"q{n % 4}", f"2026-11-{20 + n % 5}", f"RE{n}", "ignored") for n in range(60)]
    manifest = write_manifest(tmp_path / "export.csv", rows + rows[:5], header=header)
    read = ReadOptions(
        columns=(("organisation", "Queue"), ("folder", "CallDate")),
        constants=(("company", "acme"),),
        filename_template="{RecordingSid}.wav",
    )
    present = {("acme", f"q{n % 4}", f"2026-11-{20 + n % 5}", f"RE{n}.wav"): f"id-{n}" for n in range(0, 60, 2)}
    async with Emulator(EmulatorConfig(), Dataset(present)) as emulator:
        settings = settings_for(emulator)
        await run([manifest], tmp_path / "full", settings=settings, read=read)
        for k in range(2):
            await run([manifest], tmp_path / f"s{k}", settings=settings, read=read, shard=Shard(k, 2))
    summary: Report = await asyncio.to_thread(merge_reports, [tmp_path / "s1", tmp_path / "s0"], tmp_path / "m")
    full = summary_of(tmp_path / "full")
    assert summary.summary.to_dict()["by_organisation"] == full["by_organisation"]
    assert summary.counts == full["counts"]
    assert full["counts"]["missing"] > 0
    assert without(read_results(tmp_path / "m" / "results.csv"), "checked_at") == without(
        read_results(tmp_path / "full" / "results.csv"), "checked_at"
    )
    assert html_without_run_section(tmp_path / "m" / "report.html") == html_without_run_section(
        tmp_path / "full" / "report.html"
    )
