"""api.py, the library front door: run and run_sync, their paths, settings and options, the event loop they get."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import shutil
import signal
import ssl
import threading
from pathlib import Path

import pytest
import trustme

import reconcile
from reconcile.api import GC_THRESHOLD, _Collector
from reconcile.config import Secret, Settings
from reconcile.emulator import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TENANT_ID, Dataset, Emulator, EmulatorConfig
from reconcile.engine._engine import Reconciler
from reconcile.engine._outdir import LOCK_NAME
from reconcile.errors import ConfigError, JournalMismatch, ManifestError
from tests.conftest import SAMPLES, settings_for, tls_emulator_process, tls_environment, write_manifest

ROWS = [("acme", "acme-ca", "2026/11/25", f"call-{i:03d}.wav") for i in range(40)]


async def test_a_manifest_changed_during_the_run_gets_no_report(tmp_path: Path) -> None:
    """An export appended to while it is checked ends in a ManifestError naming it, and no report is written."""
    manifest = write_manifest(tmp_path / "export.csv", ROWS)
    out = tmp_path / "out"
    started: list[Reconciler] = []

    def append_a_row() -> None:
        with open(manifest, "a", encoding="utf-8", newline="") as handle:
            handle.write("acme,acme-ca,2026/11/25,late-arrival.wav\n")

    async with Emulator(EmulatorConfig(latency_ms=30), Dataset({ROWS[0]: "call-1"})) as emulator:
        settings = settings_for(emulator, concurrency=2)
        run = asyncio.ensure_future(reconcile.run([manifest], out, settings=settings, on_start=started.append))
        while not started or started[0].progress.done < 1:  # noqa: ASYNC110  # progress has no event to wait on
            await asyncio.sleep(0.01)
        await asyncio.to_thread(append_a_row)  # while rows are still being checked
        with pytest.raises(ManifestError, match=r"export\.csv: changed while it was being reconciled .*--fresh"):
            await run
        assert not (out / "results.csv").exists()
        assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [LOCK_NAME]  # nor any part of one
        with pytest.raises(JournalMismatch):  # the journal holds the run of the file as it was
            await reconcile.run([manifest], out, settings=settings)
        summary = await reconcile.run([manifest], out, settings=settings, fresh=True)
    assert summary.records == len(ROWS) + 1
    assert summary.counts["present"] == 1


# --- the front door: paths, settings from the environment, options as keywords -----------------------------


def tls_settings(url: str, ca_bundle: Path) -> Settings:
    """Settings reaching the emulator at ``url`` over TLS with the demo credentials, verification on."""
    return Settings(
        tenant_id=DEMO_TENANT_ID,
        client_id=DEMO_CLIENT_ID,
        client_secret=Secret(DEMO_CLIENT_SECRET),
        base_url=url,
        authority=url,
        ca_bundle=ca_bundle,
        concurrency=4,
    )


async def test_an_unknown_option_is_a_type_error_naming_the_valid_ones(tmp_path: Path) -> None:
    """A misspelt keyword fails at once, listing every option, and out_dir is not even created."""
    with pytest.raises(TypeError, match=r"unknown run option\(s\) 'concurrrency'; the options are fresh, .*label"):
        await reconcile.run("export.csv", tmp_path / "out", concurrrency=4)
    with pytest.raises(TypeError, match="'colour'"):
        reconcile.run_sync("export.csv", tmp_path / "out", colour="red")
    assert not (tmp_path / "out").exists()


async def test_run_reads_a_directory_into_a_str_out_dir_with_settings_from_the_environment(
    ca_bundle: Path, server_ssl: ssl.SSLContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """settings=None reads CALLJOURNEY_* (TLS, verification on), a directory expands, keywords set the options."""
    exports = tmp_path / "exports"
    exports.mkdir()
    for sample in sorted(SAMPLES.glob("*.csv")):
        shutil.copy(sample, exports / sample.name)
    async with Emulator(EmulatorConfig(), ssl_context=server_ssl) as emulator:
        tls_environment(emulator.base_url, ca_bundle, tmp_path, monkeypatch)
        assert emulator.base_url.startswith("https://")
        summary = await reconcile.run("exports", "out", concurrency=2, max_attempts=3, formats="csv,JSON", label="lib")
    data = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert [m["path"] for m in data["manifests"]] == [f"exports/{p.name}" for p in sorted(SAMPLES.glob("*.csv"))]
    assert (data["label"], data["pacing"]["concurrency"]) == ("lib", 2)
    assert (tmp_path / "out" / "results.jsonl").is_file()
    assert summary.complete
    assert summary.records == sum(data["counts"].values())


async def test_run_options_and_keywords_combine(emulator: Emulator, tmp_path: Path) -> None:
    """options= gives a base, keywords change it: the shard comes from the base, the label from the keyword."""
    manifest = write_manifest(tmp_path / "m.csv", ROWS)
    base = reconcile.RunOptions(shard="0/2", label="base")
    summary = await reconcile.run(manifest, tmp_path / "out", settings=settings_for(emulator), options=base, label="kw")
    data = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert (data["label"], data["shard"]) == ("kw", "0/2")
    assert 0 < summary.records < len(ROWS)


async def test_hand_built_settings_are_checked_before_the_run(tmp_path: Path) -> None:
    """Settings built without load() (say from an Airflow connection) get load()'s checks: no secret, no run."""
    manifest = write_manifest(tmp_path / "m.csv", ROWS[:1])
    settings = Settings(tenant_id=DEMO_TENANT_ID, client_id=DEMO_CLIENT_ID, base_url="http://127.0.0.1:9")
    with pytest.raises(ConfigError, match="no credential"):
        await reconcile.run(manifest, tmp_path / "out", settings=settings)


@pytest.mark.slow
def test_run_sync_where_a_loop_runs_uses_a_worker_thread(ca: trustme.CA, ca_bundle: Path, tmp_path: Path) -> None:
    """In a notebook's running loop, run_sync runs the reconciliation on another thread's loop and returns."""
    manifest = write_manifest(tmp_path / "m.csv", ROWS)
    threads: list[threading.Thread] = []

    async def cell(url: str) -> reconcile.Summary:  # a Jupyter cell: a loop runs, the code is not awaited
        return reconcile.run_sync(
            [manifest],
            tmp_path / "out",
            settings=tls_settings(url, ca_bundle),
            on_start=lambda _: threads.append(threading.current_thread()),
        )

    with tls_emulator_process(ca, tmp_path / "emulator") as url:
        loop = asyncio.new_event_loop()  # as ipykernel's: no asyncio.run, no signal handler of asyncio's
        try:
            summary = loop.run_until_complete(cell(url))
        finally:
            loop.close()
    assert summary.complete
    assert summary.records == len(ROWS)
    assert threads
    assert threads[0] is not threading.main_thread()


@pytest.mark.slow
def test_run_sync_interrupted_in_a_notebook_stops_gracefully(ca: trustme.CA, ca_bundle: Path, tmp_path: Path) -> None:
    """Ctrl-C (the stop button) while run_sync waits: a partial report, the lock released, then KeyboardInterrupt."""
    manifest = write_manifest(tmp_path / "m.csv", ROWS)
    out = tmp_path / "out"

    def interrupt(_: Reconciler) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # delivered to the main thread, which waits for the worker

    async def cell(url: str) -> reconcile.Summary:
        return reconcile.run_sync([manifest], out, settings=tls_settings(url, ca_bundle), on_start=interrupt)

    # Ctrl-C raises KeyboardInterrupt, as in a kernel, whatever handler an earlier test's loop left behind.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    with tls_emulator_process(ca, tmp_path / "emulator", "--latency-ms", "200") as url:
        loop = asyncio.new_event_loop()
        try:
            with pytest.raises(KeyboardInterrupt):
                loop.run_until_complete(cell(url))
        finally:
            loop.close()
            signal.signal(signal.SIGINT, previous)
        data = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        assert (data["outcome"], data["complete"]) == ("interrupted", False)
        resumed = reconcile.run_sync([manifest], out, settings=tls_settings(url, ca_bundle))  # the lock is free
    assert resumed.complete
    assert resumed.records == len(ROWS)


def test_the_collector_stays_tuned_until_the_last_loop_ends() -> None:
    """Two runs at once (two Airflow tasks): the first to end does not restore the threshold under the other."""
    before = gc.get_threshold()
    collector = _Collector()
    with collector.tuned():
        with collector.tuned():
            assert gc.get_threshold()[0] == max(GC_THRESHOLD, before[0])
        assert gc.get_threshold()[0] == max(GC_THRESHOLD, before[0])
    assert gc.get_threshold() == before
