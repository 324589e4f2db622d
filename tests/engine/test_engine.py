"""The engine end to end: manifests through the bundled emulator over loopback HTTP into the report."""

from __future__ import annotations

import asyncio
import codecs
import csv
import io
import json
import re
import ssl
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from reconcile import Reconciler, RunOptions, run
from reconcile.config import Secret
from reconcile.config._settings import Settings
from reconcile.emulator import Dataset, Emulator, EmulatorConfig, Faults, make_call_id, synthetic_manifest_rows
from reconcile.engine._engine import BATCH
from reconcile.engine._journal import Journal
from reconcile.input._manifest import Record
from reconcile.model import KEY_FIELDS
from reconcile.report._build import Report
from tests.conftest import OUR_COLUMNS, SAMPLES, read_results, settings_for, write_manifest

Key = tuple[str, str, str, str]
DUPLICATE = re.compile(r"^duplicate of row (\d+)(?: of (.+?))?(?:;|$)")


async def reconcile(paths: Sequence[Path], settings: Settings, out: Path, **options: Any) -> Report:
    """Run the library entry point into ``out``."""
    return await run(list(paths), out, settings=settings, **options)


def manifest_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """The manifest's header and records as Python's csv module reads them (the reference reading)."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        return header, [row for row in reader if row]


def output_name(column: str) -> str:
    """The results.csv name of a manifest column: itself, unless it clashes with one of the report's own."""
    return f"{column} (manifest)" if column in OUR_COLUMNS else column


def key_of(header: Sequence[str], values: Sequence[str]) -> Key:
    names = [h.strip().lower() for h in header]
    company, organisation, folder, filename = (values[names.index(f)] for f in KEY_FIELDS)
    return company, organisation, folder, filename


def check_against_dataset(paths: Sequence[Path], results: list[dict[str, str]], dataset: Dataset) -> Counter[str]:
    """Assert every result row is right for ``dataset``; return the count of each kind of row seen."""
    seen: Counter[str] = Counter()
    by_source: dict[str, dict[int, dict[str, str]]] = {}
    position = 0
    for path in paths:
        header, rows = manifest_rows(path)
        mine = results[position : position + len(rows)]
        position += len(rows)
        by_source[str(path)] = {int(r["row"]): r for r in mine}
        for number, (values, result) in enumerate(zip(rows, mine, strict=True), start=1):
            assert result["row"] == str(number)
            assert result["source"] == str(path)
            assert [result[output_name(h)] for h in header] == values  # the manifest's own columns, verbatim
            key = key_of(header, values)
            blank = [f for f, v in zip(KEY_FIELDS, key, strict=True) if not v.strip()]
            duplicate = DUPLICATE.match(result["detail"])
            if blank:
                assert result["status"] == "invalid", result
                named = set(re.findall(r"company|organisation|folder|filename", result["detail"]))
                assert named == set(blank), result
                seen["invalid"] += 1
            elif duplicate:
                first_source = duplicate.group(2) or str(path)
                first = by_source[first_source][int(duplicate.group(1))]
                first_header = manifest_rows(Path(first_source))[0]
                assert key_of(first_header, [first[output_name(h)] for h in first_header]) == key
                assert (result["status"], result["call_id"]) == (first["status"], first["call_id"])
                assert result["status"] in ("present", "missing")
                seen["duplicate"] += 1
            else:
                call_id = dataset.lookup(key)
                assert result["status"] == ("present" if call_id else "missing"), result
                assert result["call_id"] == (call_id or "")
                assert result["detail"] == ""
                seen[result["status"]] += 1
            assert result["checked_at"].endswith("Z")
    assert position == len(results)
    return seen


# -- clean runs -------------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_clean_run_over_the_sample_manifests(emulator: Emulator, tmp_path: Path) -> None:
    """Every sample row comes out right against the emulator's dataset, and each distinct key is asked once."""
    paths = sorted(SAMPLES.glob("*.csv"))
    summary = await reconcile(paths, settings_for(emulator), tmp_path)
    results = read_results(tmp_path / "results.csv")
    seen = check_against_dataset(paths, results, emulator.dataset)
    assert min(seen["present"], seen["missing"], seen["invalid"], seen["duplicate"]) > 0
    counts = summary.counts
    assert sum(counts.values()) == len(results) == summary.records
    assert counts["error"] == counts["unchecked"] == 0
    assert summary.exit_code == 3  # the samples hold invalid rows
    asked = emulator.stats.keys_asked
    assert set(asked.values()) == {1}
    assert len(asked) == seen["present"] + seen["missing"]
    missing = read_results(tmp_path / "missing.csv")
    assert missing == [r for r in results if r["status"] == "missing"]
    data = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert data["counts"] == counts
    assert [m["path"] for m in data["manifests"]] == [str(p) for p in paths]
    assert data["token_fetches"] == 1
    assert data["error"] is None


def tricky_manifest(path: Path) -> tuple[Path, Dataset]:
    """A real-world-shaped export, and a dataset holding some of its rows."""
    header = ["Agent", " Company ", "ORGANISATION", "folder", "FileName", "notes, free text", "row"]
    rows = [
        ["Doe, Jane", "acme", "acme-ca", "2026/11/25", "Call 2026-11-25, 09h14.mp3", "comma in filename", "r1"],
        ["Chen", " acme ", "acme-ca", "2026/11/25", "spaces.mp3", "company has spaces", "r2"],
        ["Müller", "acme", "acme-ca", "   ", "blank-folder.mp3", "whitespace-only folder", "r3"],
        ["王伟", "", "acme-ca", "2026/11/25", "", "company and filename empty", "r4"],
        ["Ferreira", "société", "équipe-montréal", "客户/回访", "señal-débil-ñandú.mp3", "unicode 😀", "r5"],
        ["Doe, Jane", "acme", "acme-ca", "2026/11/25", "Call 2026-11-25, 09h14.mp3", "callback\nre: invoice", "r6"],
        ["Chen", "ACME", "acme-ca", "2026/11/25", "spaces.mp3", "case differs: missing", "r7"],
        ["Chen", "acme", "acme-ca", "2026/11/25", 'he said "hi".mp3', 'quote "inside"', "r8"],
        ["Chen", "acme", "acme-ca", "2026/11/25", "trailing.mp3 ", "trailing space kept", "r9"],
        ["Chen", "acme", "acme-ca", "2026/11/25", 'he said "hi".mp3', "duplicate of a missing row", "r10"],
        ["", "acme", "acme-ca", "2026/11/25", "\tpresent-tab.mp3", "", ""],
    ]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(codecs.BOM_UTF8 + text.getvalue().encode("utf-8"))
    present: list[Key] = [
        ("acme", "acme-ca", "2026/11/25", "Call 2026-11-25, 09h14.mp3"),
        (" acme ", "acme-ca", "2026/11/25", "spaces.mp3"),
        ("société", "équipe-montréal", "客户/回访", "señal-débil-ñandú.mp3"),
        ("acme", "acme-ca", "2026/11/25", "trailing.mp3 "),
        ("acme", "acme-ca", "2026/11/25", "\tpresent-tab.mp3"),
    ]
    return path, Dataset({key: make_call_id(key) for key in present})


async def test_real_world_export_comes_out_exactly_right(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    """BOM, CRLF, quoted commas and quotes, embedded newlines, Unicode, blanks, duplicates, extra columns: all right."""
    path, dataset = tricky_manifest(tmp_path / "export.csv")
    async with make_emulator(EmulatorConfig(), dataset=dataset) as emu:
        summary = await reconcile([path], settings_for(emu), tmp_path / "out")
    results = read_results(tmp_path / "out" / "results.csv")
    header, rows = manifest_rows(path)
    assert len(results) == len(rows) == summary.records
    seen = check_against_dataset([path], results, dataset)
    assert seen == Counter({"present": 5, "missing": 2, "invalid": 2, "duplicate": 2})
    # The manifest's column named "row" is kept, renamed, beside ours; " Company " keeps its spaces.
    assert [r["row (manifest)"] for r in results] == [r[6] for r in rows]
    assert list(results[0])[:6] == header[:6]
    # Values were sent exactly as written: no trimming, no case change.
    asked = emu.stats.keys_asked
    assert asked[(" acme ", "acme-ca", "2026/11/25", "spaces.mp3")] == 1
    assert asked[("acme", "acme-ca", "2026/11/25", "trailing.mp3 ")] == 1
    assert ("acme", "acme-ca", "2026/11/25", "trailing.mp3") not in asked
    assert set(asked.values()) == {1}


async def test_one_row_manifest(emulator: Emulator, tmp_path: Path) -> None:
    """A single-row manifest of a present recording exits 0 with that row present."""
    key = next(iter(emulator.dataset))
    path = write_manifest(tmp_path / "one.csv", [key])
    summary = await reconcile([path], settings_for(emulator), tmp_path / "out")
    (row,) = read_results(tmp_path / "out" / "results.csv")
    assert (row["status"], row["call_id"]) == ("present", emulator.dataset.lookup(key))
    assert summary.exit_code == 0


async def test_header_only_manifest(emulator: Emulator, tmp_path: Path) -> None:
    """A manifest with a header and no rows writes header-only reports, zero counts, and sends nothing."""
    path = write_manifest(tmp_path / "empty.csv", [], header=("company", "organisation", "folder", "filename", "x"))
    summary = await reconcile([path], settings_for(emulator), tmp_path / "out")
    results_text = (tmp_path / "out" / "results.csv").read_text(encoding="utf-8")
    assert results_text.splitlines() == [
        "company,organisation,folder,filename,x,row,source,status,call_id,detail,attempts,checked_at"
    ]
    assert read_results(tmp_path / "out" / "missing.csv") == []
    assert summary.records == 0
    assert set(summary.counts.values()) == {0}
    assert emulator.stats.api_requests == 0
    assert summary.exit_code == 0


async def test_duplicates_across_manifests(emulator: Emulator, tmp_path: Path) -> None:
    """A key repeated in a second manifest is asked once and reported as a duplicate naming the first file."""
    keys = list(emulator.dataset)[:2]
    first = write_manifest(tmp_path / "a.csv", [keys[0], keys[1]])
    second = write_manifest(tmp_path / "b.csv", [("acme", "nowhere", "x", "missing.mp3"), keys[1]])
    await reconcile([first, second], settings_for(emulator), tmp_path / "out")
    results = read_results(tmp_path / "out" / "results.csv")
    assert results[3]["detail"] == f"duplicate of row 2 of {first}"
    assert results[3]["status"] == "present"
    check_against_dataset([first, second], results, emulator.dataset)
    assert emulator.stats.api_requests == 3


# -- faults, short tokens ---------------------------------------------------------------------------------


def stop_later(loop: asyncio.AbstractEventLoop, reconciler: Reconciler, delay: float) -> None:
    """Stop the run after ``delay`` seconds, so a run that crawls fails the test instead of hanging it."""
    loop.call_later(delay, reconciler.stop, "test deadline")


@pytest.mark.slow
async def test_ten_percent_faults_with_short_tokens(make_emulator: Callable[..., Emulator], tmp_path: Path) -> None:
    """10% injected faults and 3 s tokens over a run outlasting two token lifetimes: no error row, every row right,
    and tokens fetched stay near run time / lifetime (plus one per token the platform revoked)."""
    rows, lifetime, deadline = 700, 3, 30.0
    dataset = Dataset.synthetic(rows, 0.5)
    path = write_manifest(tmp_path / "synthetic.csv", list(synthetic_manifest_rows(rows, 0.5)))
    config = EmulatorConfig(token_lifetime=lifetime, faults=Faults.uniform(0.10), latency_ms=50, seed=7)
    loop = asyncio.get_running_loop()
    async with make_emulator(config, dataset=dataset) as emu:
        settings = settings_for(emu, concurrency=8)
        summary = await run(
            [path], tmp_path / "out", settings=settings, on_start=lambda r: stop_later(loop, r, deadline)
        )
    data = summary.summary.to_dict()
    assert summary.complete, f"not finished within {deadline} s: {data['counts']}, {data['rows_per_second']} rows/s"
    assert data["duration_seconds"] >= 2 * lifetime, "the run must outlast two token lifetimes to mean anything"
    results = read_results(tmp_path / "out" / "results.csv")
    assert summary.counts["error"] == 0
    check_against_dataset([path], results, dataset)
    faults = emu.stats.faults
    assert sum(faults.values()) >= rows * 0.05  # the faults really were injected
    assert data["token_fetches"] == emu.stats.token_requests
    expected = data["duration_seconds"] / lifetime
    assert data["token_fetches"] <= 2 * expected + 2 + faults["revoke"]
    assert data["token_fetches"] >= expected - 1  # tokens were renewed as they aged, not only after a 401


# -- TLS --------------------------------------------------------------------------------------------------


async def test_tls_with_a_private_ca_and_verification_on(
    make_emulator: Callable[..., Emulator], server_ssl: ssl.SSLContext, ca_bundle: Path, tmp_path: Path
) -> None:
    """Over https with the test CA in --ca-bundle, the run succeeds with verification on."""
    async with make_emulator(EmulatorConfig(), ssl_context=server_ssl) as emu:
        assert emu.base_url.startswith("https://")
        keys = list(emu.dataset)[:3]
        path = write_manifest(tmp_path / "m.csv", keys)
        summary = await reconcile([path], settings_for(emu, ca_bundle=ca_bundle), tmp_path / "out")
    assert summary.counts["present"] == 3
    assert summary.exit_code == 0


async def test_tls_without_the_ca_fails_naming_the_certificate(
    make_emulator: Callable[..., Emulator], server_ssl: ssl.SSLContext, tmp_path: Path
) -> None:
    """Without the CA the certificate is not trusted: a ConfigError (exit 4) naming the certificate, no row missing."""
    async with make_emulator(EmulatorConfig(), ssl_context=server_ssl) as emu:
        path = write_manifest(tmp_path / "m.csv", list(emu.dataset)[:3])
        summary = await reconcile([path], settings_for(emu), tmp_path / "out")
        assert emu.stats.token_requests == 0
    assert summary.exit_code == 4
    error = summary.summary.to_dict()["error"]
    assert error["type"] == "ConfigError"
    assert "certificate" in error["message"]
    assert "--ca-bundle" in error["message"]
    assert summary.counts["missing"] == 0


# -- fatal errors -----------------------------------------------------------------------------------------


async def test_wrong_endpoint_path_is_fatal_and_calls_nothing_missing(emulator: Emulator, tmp_path: Path) -> None:
    """A 404 from the API stops the run with EndpointNotFound; no row is missing and summary.json has the error."""
    paths = sorted(SAMPLES.glob("*.csv"))
    settings = settings_for(emulator, endpoint_path="/api/v1/search/callexists")
    summary = await reconcile(paths, settings, tmp_path)
    assert summary.exit_code == 4
    results = read_results(tmp_path / "results.csv")
    assert len(results) == summary.records
    assert not any(r["status"] == "missing" for r in results)
    assert read_results(tmp_path / "missing.csv") == []
    assert {r["status"] for r in results} <= {"invalid", "unchecked"}
    data = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert data["error"]["type"] == "EndpointNotFound"
    assert "callexists" in data["error"]["message"]
    assert data["complete"] is False
    assert sum(data["counts"].values()) == data["records"]


async def test_wrong_secret_is_fatal_shows_aadsts_and_never_the_secret(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    """A wrong secret stops the run with the Azure AD error in summary.json; the secret appears in no output file."""
    secret = "W7q~wrong-secret-that-must-not-leak"
    async with make_emulator() as emu:
        path = write_manifest(tmp_path / "m.csv", list(emu.dataset)[:5])
        settings = settings_for(emu, client_secret=Secret(secret))
        summary = await reconcile([path], settings, tmp_path / "out")
        assert emu.stats.api_requests == 0
    assert summary.exit_code == 4
    error = summary.summary.to_dict()["error"]
    assert error["type"] == "TokenError"
    assert error["error"] == "invalid_client"
    assert 7000215 in error["error_codes"]
    assert error["trace_id"]
    assert error["correlation_id"]
    assert summary.counts["missing"] == 0
    for file in (tmp_path / "out").iterdir():
        assert secret.encode() not in file.read_bytes(), file.name


async def test_unreachable_platform_is_fatal(emulator: Emulator, tmp_path: Path) -> None:
    """An API host refusing connections ends the run with HostUnreachable (exit 4) and no row missing."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = write_manifest(tmp_path / "m.csv", list(emulator.dataset)[:3])
    settings = settings_for(emulator, base_url=f"http://127.0.0.1:{port}", max_attempts=2)
    summary = await reconcile([path], settings, tmp_path / "out")
    assert summary.exit_code == 4
    assert summary.summary.to_dict()["error"]["type"] == "HostUnreachable"
    assert summary.counts["missing"] == 0


# -- streaming --------------------------------------------------------------------------------------------


class CountingRecords:
    """Wraps Manifest.records to count how many records the engine has pulled from the file so far."""

    def __init__(self, records: Callable[[], Iterator[Record]]) -> None:
        self.records = records
        self.read = 0

    def __call__(self) -> Iterator[Record]:
        for record in self.records():
            self.read += 1
            yield record


@pytest.mark.slow
async def test_first_request_goes_out_before_the_manifest_is_read(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    """With a 200,000-row manifest, requests start after about one batch is read, and a slow platform keeps the
    reader within a few batches (bounded queue), instead of the whole file being loaded first."""
    total = 200_000
    path = write_manifest(
        tmp_path / "big.csv", (("acme", "acme-ca", "2026/11/25", f"f{i:06d}.mp3") for i in range(total))
    )
    async with make_emulator(EmulatorConfig(latency_ms=20)) as emu:
        settings = settings_for(emu, concurrency=4)
        reconciler = Reconciler([path], settings, RunOptions())
        counter = CountingRecords(reconciler.manifests[0].records)
        reconciler.manifests[0].records = counter  # type: ignore[method-assign]
        journal = Journal.open(tmp_path / "out", [m.info() for m in reconciler.manifests])
        observed: dict[str, int] = {}

        async def watch() -> None:
            while emu.stats.api_requests < 1:  # noqa: ASYNC110 - the emulator keeps counters, not events
                await asyncio.sleep(0.001)
            observed["at_first_request"] = counter.read
            while emu.stats.api_requests < 40:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            observed["after_40_requests"] = counter.read
            reconciler.stop("test")

        try:
            watcher = asyncio.create_task(watch())
            started = time.monotonic()
            outcome = await reconciler.run(journal)
            await watcher
        finally:
            journal.close()
    assert outcome.interrupted == "test"
    assert time.monotonic() - started < 10
    assert 0 < observed["at_first_request"] <= 2 * BATCH
    assert observed["after_40_requests"] <= 3 * BATCH + 2 * settings.concurrency
    assert counter.read < total // 10


# -- pacing: the platform shapes ----------------------------------------------------------------------------


async def paced_run(
    make_emulator: Callable[..., Emulator], tmp_path: Path, rows: int, config: EmulatorConfig, **settings: Any
) -> tuple[Report, Emulator]:
    """Run ``rows`` synthetic rows against an emulator of ``config``; assert the report exact, error-free."""
    dataset = Dataset.synthetic(rows, 0.9)
    path = write_manifest(tmp_path / "m.csv", list(synthetic_manifest_rows(rows, 0.9)))
    async with make_emulator(config, dataset=dataset) as emu:
        summary = await reconcile([path], settings_for(emu, **settings), tmp_path / "out")
    assert summary.complete
    assert summary.counts["error"] == 0
    check_against_dataset([path], read_results(tmp_path / "out" / "results.csv"), dataset)
    return summary, emu


@pytest.mark.slow
async def test_automatic_concurrency_grows_on_a_platform_that_keeps_up(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    """50 ms answers however many are in flight: from 16 the concurrency grows, and the run beats a fixed 16."""
    summary, _ = await paced_run(make_emulator, tmp_path, 2500, EmulatorConfig(latency_ms=50), concurrency=None)
    pacing = summary.summary.to_dict()["pacing"]
    assert pacing["concurrency"] == "auto"
    assert pacing["concurrency_highest"] >= 40
    assert summary.summary.to_dict()["rows_per_second"] > 16 / 0.050  # what 16 in flight can do at most


@pytest.mark.slow
async def test_automatic_concurrency_backs_off_a_backend_that_queues(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    """A backend working on 8 requests at once (50 ms each): the concurrency comes down to it, so the platform's
    median latency stays near its no-load value while the run gets most of the 160 rows/s it can serve."""
    config = EmulatorConfig(latency_ms=50, capacity=8)
    summary, emu = await paced_run(make_emulator, tmp_path, 1200, config, concurrency=None)
    pacing = summary.summary.to_dict()["pacing"]
    assert pacing["concurrency_lowest"] <= 12
    assert 8 <= pacing["concurrency_final"] <= 20
    median = emu.stats.latency_ms(0.5)
    assert median is not None
    assert median <= 2.5 * 50
    assert summary.summary.to_dict()["rows_per_second"] >= 0.6 * 160


@pytest.mark.slow
async def test_load_shed_with_503s_ends_no_row_in_error(make_emulator: Callable[..., Emulator], tmp_path: Path) -> None:
    """32 fixed in flight against capacity 8 and a queue of 4: most first answers are shed 503s; they are pacing,
    so the rate comes down and every row still ends right."""
    config = EmulatorConfig(latency_ms=20, capacity=8, queue_limit=4)
    summary, emu = await paced_run(make_emulator, tmp_path, 800, config, concurrency=32)
    assert emu.stats.shed > 0
    assert summary.summary.to_dict()["pacing"]["throttled"] == emu.stats.shed


@pytest.mark.slow
async def test_a_flaky_platform_costs_retries_not_pace(make_emulator: Callable[..., Emulator], tmp_path: Path) -> None:
    """10% random faults (500, 503, 429 with Retry-After, resets, stray 401s): no rate cut, no pause for everyone,
    no row in error."""
    config = EmulatorConfig(latency_ms=10, faults=Faults.mix("flaky", 0.10), seed=3)
    summary, emu = await paced_run(make_emulator, tmp_path, 1500, config, concurrency=16)
    pacing = summary.summary.to_dict()["pacing"]
    assert (pacing["rate_cuts"], pacing["pauses"], pacing["rate_limit"]) == (0, 0, None)
    assert sum(emu.stats.faults.values()) >= 0.05 * 1500
    assert pacing["throttled"] + pacing["faults"] > 0
