"""report.pdf: rendered by poppler, its first page names the run, the manifests' SHA-256s and the counts; its lists
are tables with repeating headers, capped with a note; without WeasyPrint, pdf is a usage error before the run."""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path

import pytest
import trustme

from reconcile.api import run
from reconcile.emulator import Emulator, EmulatorConfig
from reconcile.emulator.faults import Faults
from reconcile.engine import RunOptions
from reconcile.errors import UsageError
from reconcile.input import Shard
from reconcile.ops._demo import sample_manifests
from reconcile.report._pdf import PdfWriter, RowList, render
from reconcile.report._summary import Summary
from reconcile.report._writers import check_formats
from reconcile.shards import merge_reports
from tests.conftest import (
    HEADER as HEADER_COLUMNS,
)
from tests.conftest import (
    OUR_COLUMNS,
    SAMPLES,
    cli_env,
    invoke_cli,
    read_results,
    settings_for,
    tls_emulator_process,
    write_manifest,
)
from tests.report.browser import look_at, pdf_attachment, pdf_metadata, pdf_pages, pdf_text

HEADER = re.compile(r"Manifest\s+Row\s+Company\s+Organisation\s+Folder\s+Filename\s+Detail")


def summary_of(out: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return data


def page_texts(pdf: Path, pages: int) -> list[str]:
    return [pdf_text(pdf, n) for n in range(1, pages + 1)]


@pytest.fixture
async def pdf_report(emulator: Emulator, tmp_path: Path) -> Path:
    """The demo's sample manifests reconciled with --format pdf; the output directory."""
    out = tmp_path / "out"
    await run(
        sample_manifests(), out, settings=settings_for(emulator), options=RunOptions(formats=("pdf",), label="audit")
    )
    return out


@pytest.mark.slow
async def test_pdf_pages_render_and_the_first_names_run_manifests_and_counts(pdf_report: Path, tmp_path: Path) -> None:
    """pdftoppm renders every page with ink; page 1 holds the run id, each SHA-256 and record count, the counts."""
    pdf = pdf_report / "report.pdf"
    summary = summary_of(pdf_report)
    assert summary["outputs"]["report_pdf"] == str(pdf)  # type: ignore[index]
    pages = pdf_pages(pdf, tmp_path / "pages")
    assert len(pages) > 1
    for png in pages:
        picture = look_at(png)
        assert picture.colours > 2, png  # text on every page, never a blank one
        assert picture.ink > 500, png
    first = pdf_text(pdf, 1)
    assert str(summary["run_id"]) in first
    for manifest in summary["manifests"]:  # type: ignore[attr-defined]
        line = next(line for line in first.splitlines() if manifest["path"] in line)
        assert f"{manifest['records']:,}" in line.split()
        assert f"SHA-256 {manifest['sha256']}" in first  # on one line, whole: an auditor copies it
    for status, count in summary["counts"].items():  # type: ignore[attr-defined]
        assert re.search(rf"^\s*{status}\s+{count:,}\s", first, re.MULTILINE), status
    assert re.search(rf"^\s*1\s*/\s*{len(pages)}\s*$", first, re.MULTILINE)  # numbered "n / total"
    assert re.search(rf"^\s*{len(pages)}\s*/\s*{len(pages)}\s*$", pdf_text(pdf, len(pages)), re.MULTILINE)


@pytest.mark.slow
async def test_pdf_is_pdf_a_3b_and_carries_summary_json(pdf_report: Path, tmp_path: Path) -> None:
    """report.pdf declares PDF/A-3b (the archiving profile) and holds summary.json as an attachment, equal to it."""
    pdf = pdf_report / "report.pdf"
    assert 'pdfaid:part="3" pdfaid:conformance="B"' in pdf_metadata(pdf)
    attached = json.loads(pdf_attachment(pdf, "summary.json", tmp_path))
    assert attached == summary_of(pdf_report)


@pytest.mark.slow
async def test_pdf_lists_every_missing_and_invalid_row_with_headers_on_each_page(pdf_report: Path) -> None:
    """Every missing and invalid row of results.csv is in the PDF; each page of a list starts with its header."""
    pdf = pdf_report / "report.pdf"
    pages = len(pdf_pages(pdf, pdf_report / "pages"))
    texts = page_texts(pdf, pages)
    everything = "\n".join(texts)
    results = read_results(pdf_report / "results.csv")
    listed = [r for r in results if r["status"] in ("missing", "invalid")]
    for status in ("missing", "invalid"):
        rows = [r for r in listed if r["status"] == status]
        assert rows, status
        assert f"All {len(rows)} {status} rows." in everything
    names = [r["filename"].split("_")[0] for r in listed if r["filename"]]  # long names wrap at "_" in the table
    assert all(name in everything for name in names)
    listing = [t for t in texts[1:] if any(name in t for name in names)]
    assert len(listing) >= 2  # the lists run over more than one page
    for text in listing:
        assert HEADER.search(text), text[:400]  # the header row repeats on every page of a list


@pytest.mark.slow
async def test_pdf_caps_long_lists_and_says_where_the_rest_are(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With lists capped at 5 missing and 2 invalid rows, the PDF lists that many and names the full list's file."""
    monkeypatch.setattr(PdfWriter, "caps", {"missing": 5, "error": 2, "invalid": 2})
    out = tmp_path / "out"
    await run(sample_manifests(), out, settings=settings_for(emulator), options=RunOptions(formats=("pdf",)))
    pdf = out / "report.pdf"
    texts = "\n".join(page_texts(pdf, len(pdf_pages(pdf, tmp_path / "pages"))))
    missing = read_results(out / "missing.csv")
    invalid = [r for r in read_results(out / "results.csv") if r["status"] == "invalid"]
    assert f"The first 5 of {len(missing)} missing rows; the full list is in missing.csv." in texts
    assert f"The first 2 of {len(invalid)} invalid rows; the full list is in results.csv (status invalid)." in texts
    assert missing[4]["filename"] in texts
    assert missing[-1]["filename"] not in texts


@pytest.mark.slow
async def test_pdf_lists_error_rows_with_their_reason(make_emulator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Rows the platform answered badly are listed as errors, each with the detail results.csv gives."""
    manifest = write_manifest(tmp_path / "m.csv", [("acme", "acme-ca", "2026/11/25", f"f{i}.mp3") for i in range(40)])
    config = EmulatorConfig(faults=Faults(rate_malformed=0.3), seed=7)
    async with make_emulator(config) as emulator:
        out = tmp_path / "out"
        await run(
            [manifest], out, settings=settings_for(emulator, max_attempts=1), options=RunOptions(formats=("pdf",))
        )
    errors = [r for r in read_results(out / "results.csv") if r["status"] == "error"]
    assert errors
    pdf = out / "report.pdf"
    texts = "\n".join(page_texts(pdf, len(pdf_pages(pdf, tmp_path / "pages"))))
    assert "Rows that could not be checked (error)" in texts
    assert f"All {len(errors)} error rows." in texts
    for row in errors:
        assert re.search(rf"\b{re.escape(row['filename'])}\b", texts), row


def test_pdf_document_escapes_values_and_shows_the_delta_and_unchecked_rows() -> None:
    """Values are escaped; --compare-to's changes are shown; a stopped run's unchecked rows are said to be resumable."""
    summary = {
        "counts": {"present": 0, "missing": 0, "invalid": 0, "error": 0, "unchecked": 3},
        "records": 3,
        "label": "<script>x</script>",
        "outcome": "interrupted",
        "manifests": [{"path": "a<b>.csv", "sha256": "0" * 64, "records": 3, "bytes": 10}],
        "delta": {"compared_to": "reports/2026-11-25", "run_id": "r-1", "counts": {"newly_missing": 4}},
    }
    document = render(Summary.from_dict(summary), [RowList("missing", (), 5)])
    assert "Changes since the previous run" in document
    assert '<td>newly missing</td><td class="num">4</td>' in document
    assert "<script>x" not in document
    assert "&lt;script&gt;x&lt;/script&gt;" in document
    assert "a&lt;b&gt;.csv" in document
    assert "3 rows were not checked" in document
    assert "resumes the run" in document


def test_pdf_without_weasyprint_is_a_usage_error_with_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    """When WeasyPrint cannot be imported, asking for pdf names the extra to install."""
    monkeypatch.setitem(sys.modules, "weasyprint", None)  # import weasyprint now raises ImportError
    with pytest.raises(UsageError, match=re.escape("HINT: pip install 'calljourney-reconcile[pdf]'")):
        check_formats(["csv", "pdf"])
    assert check_formats(["csv", "json"]) == ("csv", "json")  # other formats do not need it


def test_cli_pdf_without_weasyprint_exits_2_before_the_run(
    emulator_process_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run --format pdf` without WeasyPrint exits 2 with the hint, and no row is checked: no journal, no report."""
    env = cli_env(emulator_process_url, tmp_path, monkeypatch)
    monkeypatch.setitem(sys.modules, "weasyprint", None)
    result = invoke_cli(["run", str(SAMPLES / "smoke-10.csv"), "--out", "out", "--format", "csv,pdf", "-q"], env)
    assert result.exit_code == 2, result.output
    assert "pip install 'calljourney-reconcile[pdf]'" in result.output
    assert not (tmp_path / "out" / "journal.sqlite").exists()
    assert not (tmp_path / "out" / "results.csv").exists()


@pytest.mark.slow
def test_cli_writes_report_pdf_over_verified_tls(
    ca: trustme.CA, ca_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`reconcile run --format pdf` against the HTTPS emulator writes report.pdf, and nothing about it on stderr."""
    with tls_emulator_process(ca, tmp_path / "tls") as url:
        env = {**cli_env(url, tmp_path, monkeypatch), "CALLJOURNEY_CA_BUNDLE": str(ca_bundle)}
        result = invoke_cli(["run", str(SAMPLES / "smoke-10.csv"), "--out", "out", "--format", "pdf", "-q"], env)
    assert result.exit_code == 1, result.output  # smoke-10 holds three missing recordings
    pdf = tmp_path / "out" / "report.pdf"
    summary = summary_of(tmp_path / "out")
    assert summary["base_url"].startswith("https://")  # type: ignore[attr-defined]
    assert summary["manifests"][0]["sha256"] in pdf_text(pdf, 1)  # type: ignore[index]
    assert re.search(r"^report pdf:\s+out/report\.pdf$", result.output, re.MULTILINE), result.output
    assert "weasyprint" not in result.output.lower(), result.output  # its log is kept out of the run's


def test_characters_no_font_draws_make_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """WeasyPrint's line per undrawable character becomes one warning of ours naming them, with the fix."""
    columns = [*HEADER_COLUMNS, *OUR_COLUMNS]
    unprintable = "\U0010fffd\U0010fffc"  # private-use characters: no font draws them
    writer = PdfWriter(tmp_path, columns, [])
    row = ["acme", "acme-ca", "2026/11/25", f"call-{unprintable}.mp3", 1, "m.csv", "missing", "", "", 1, ""]
    writer.add([row], [row])
    summary = {"counts": {"present": 0, "missing": 1, "invalid": 0, "error": 0, "unchecked": 0}, "records": 1}
    with caplog.at_level(logging.DEBUG):
        writer.finish(Summary.from_dict(summary))
    assert (tmp_path / "report.pdf").read_bytes().startswith(b"%PDF-")
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.name for r in warnings] == ["reconcile.report._pdf"]
    assert f"draws 2 of the report's characters ({unprintable})" in warnings[0].getMessage()
    assert "HINT: install a font" in warnings[0].getMessage()


@pytest.mark.slow
async def test_merge_writes_the_pdf_the_shards_wrote(emulator: Emulator, tmp_path: Path) -> None:
    """Shards run with --format pdf merge, by default, into a report.pdf listing every shard's missing rows."""
    shards = [tmp_path / f"shard-{k}" for k in range(2)]
    for k, out in enumerate(shards):
        options = RunOptions(formats=("pdf",), shard=Shard(k, 2))
        await run(sample_manifests(), out, settings=settings_for(emulator), options=options)
    summary = merge_reports(shards, tmp_path / "merged")
    pdf = tmp_path / "merged" / "report.pdf"
    assert summary.paths["report_pdf"] == pdf
    texts = "\n".join(page_texts(pdf, len(pdf_pages(pdf, tmp_path / "pages"))))
    missing = read_results(tmp_path / "merged" / "missing.csv")
    assert f"All {len(missing)} missing rows." in texts
    assert all(row["filename"].split("_")[0] in texts for row in missing)
    for manifest in summary.summary.to_dict()["manifests"]:
        assert f"SHA-256 {manifest['sha256']}" in pdf_text(pdf, 1)
