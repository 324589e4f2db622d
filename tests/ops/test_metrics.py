"""Metrics for the scheduler: the textfile during and after a run, push-add to a Pushgateway, and the CLI options.

Every file and every pushed body is read back with Prometheus's own parser (prometheus_client.parser).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from reconcile.api import run
from reconcile.config import Secret, Settings
from reconcile.emulator import DEMO_CLIENT_SECRET, Emulator, EmulatorConfig
from reconcile.engine import Reconciler, RunOptions
from reconcile.input import Shard
from reconcile.ops import MetricsOptions, export_metrics
from reconcile.ops._metrics import read_previous
from reconcile.report import Report
from tests.conftest import SAMPLES, closed_port, invoke_cli, settings_for, write_manifest

LABELS = (("region", "ca"),)
BATCH_METRICS = {
    "reconcile_last_success_timestamp_seconds",
    "reconcile_last_run_timestamp_seconds",
    "reconcile_last_run_exit_code",
    "reconcile_last_run_outcome",
    "reconcile_duration_seconds",
    "reconcile_rows",
    "reconcile_requests",
    "reconcile_retries",
    "reconcile_throttled",
    "reconcile_token_fetches",
    "reconcile_rows_per_second",
}


def parse(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Metric family name -> [(labels, value)] for each sample, by Prometheus's own text parser."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        found.setdefault(family.name, []).extend((dict(s.labels), s.value) for s in family.samples)
    return found


def value(families: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    """The one sample of ``name`` whose labels include ``labels``."""
    (only,) = [v for own, v in families[name] if all(own.get(k) == w for k, w in labels.items())]
    return only


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def assert_equals_summary(families: dict[str, list[tuple[dict[str, str], float]]], data: dict[str, Any]) -> None:
    """The batch metrics carry summary.json's values."""
    assert BATCH_METRICS - {"reconcile_last_success_timestamp_seconds"} <= set(families)
    for status, count in data["counts"].items():
        assert value(families, "reconcile_rows", status=status) == count
    assert value(families, "reconcile_records") == data["records"]
    assert value(families, "reconcile_requests") == data["requests"]
    assert value(families, "reconcile_retries") == data["retries"]
    assert value(families, "reconcile_throttled") == data["throttled"]
    assert value(families, "reconcile_faults") == data["pacing"]["faults"]
    assert value(families, "reconcile_token_fetches") == data["token_fetches"]
    assert value(families, "reconcile_rows_per_second") == data["rows_per_second"]
    assert value(families, "reconcile_duration_seconds") == data["duration_seconds"]
    assert value(families, "reconcile_run_start_timestamp_seconds") == pytest.approx(epoch(data["started_at"]))
    assert value(families, "reconcile_last_run_timestamp_seconds") == pytest.approx(epoch(data["finished_at"]))
    assert value(families, "reconcile_running") == 0


async def reconcile_with_metrics(
    paths: list[Path],
    out: Path,
    settings: Settings,
    options: RunOptions,
    metrics: MetricsOptions,
    on_start: Callable[[Reconciler], None] = lambda _: None,
) -> Report:
    """The library run into ``out`` with its metrics exported, as the CLI calls it."""
    return await export_metrics(
        metrics,
        settings,
        options,
        lambda start: run(paths, out, settings=settings, options=options, on_start=start),
        on_start,
    )


def manifest(tmp_path: Path, emulator: Emulator, rows: int, name: str = "m.csv") -> Path:
    """A manifest of ``rows`` rows, the first half known to the emulator (present), the rest missing."""
    known = list(emulator.dataset)[: rows // 2]
    unknown = [("acme", "acme-ca", "2026/11/25/inbound", f"nowhere-{i:04d}.mp3") for i in range(rows - len(known))]
    return write_manifest(tmp_path / name, [*known, *unknown])


def summary_json(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return data


# -- the textfile --------------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_textfile_written_during_and_after_a_run_carries_summary_values(
    make_emulator: Callable[..., Emulator], server_ssl: ssl.SSLContext, ca_bundle: Path, tmp_path: Path
) -> None:
    """Read while the run goes, the textfile parses and shows it running with rows settled so far; after it, every
    batch metric equals summary.json's; written by rename, no temporary file is left beside it."""
    textfile = tmp_path / "collector" / "reconcile.prom"
    textfile.parent.mkdir()
    seen: list[dict[str, list[tuple[dict[str, str], float]]]] = []

    async def read_while_running() -> None:
        while True:
            if textfile.exists():
                families = parse(textfile.read_text(encoding="utf-8"))
                rows = sum(v for _, v in families["reconcile_rows"])
                if value(families, "reconcile_running") == 1 and rows >= 5:
                    seen.append(families)
                    return
            await asyncio.sleep(0.01)

    async with make_emulator(EmulatorConfig(latency_ms=40), ssl_context=server_ssl) as emu:
        settings = settings_for(emu, ca_bundle=ca_bundle, concurrency=2)
        options = RunOptions(label="nightly")
        metrics = MetricsOptions(file=textfile, labels=LABELS, interval=0.05)
        reader = asyncio.create_task(read_while_running())
        summary = await reconcile_with_metrics(
            [manifest(tmp_path, emu, 60)], tmp_path / "out", settings, options, metrics
        )
        assert reader.done()  # it saw the run going before the run ended
    (during,) = seen
    assert value(during, "reconcile_rows", status="present") + value(during, "reconcile_rows", status="missing") < 60
    assert value(during, "reconcile_requests") >= 5
    assert "reconcile_last_run_timestamp_seconds" not in during  # no earlier run: nothing to carry over
    assert all(own["region"] == "ca" and own["label"] == "nightly" for own, _ in during["reconcile_rows"])
    text = textfile.read_text(encoding="utf-8")
    after = parse(text)
    data = summary_json(tmp_path / "out")
    assert summary.exit_code == 1
    assert_equals_summary(after, data)
    assert value(after, "reconcile_last_success_timestamp_seconds") == pytest.approx(epoch(data["finished_at"]))
    assert value(after, "reconcile_last_run_exit_code") == 1
    assert value(after, "reconcile_last_run_outcome", outcome="complete") == 1
    assert sum(v for _, v in after["reconcile_last_run_outcome"]) == 1
    assert [p.name for p in textfile.parent.iterdir()] == ["reconcile.prom"]
    assert DEMO_CLIENT_SECRET not in text
    assert "Bearer" not in text
    assert "eyJ" not in text  # no token, nor any JWT


async def test_a_failed_run_keeps_the_previous_success(emulator: Emulator, tmp_path: Path) -> None:
    """After a success, a run refused by the identity provider (exit 4) and one that cannot start (exit 2) each
    record their own end and exit code, while the last success stays the successful run's."""
    textfile = tmp_path / "reconcile.prom"
    metrics = MetricsOptions(file=textfile, labels=LABELS)
    path = manifest(tmp_path, emulator, 10)
    good = await reconcile_with_metrics([path], tmp_path / "a", settings_for(emulator), RunOptions(), metrics)
    succeeded = epoch(good.summary.finished_at)
    wrong = settings_for(emulator, client_secret=Secret("not-the-secret"))
    failed = await reconcile_with_metrics([path], tmp_path / "b", wrong, RunOptions(), metrics)
    assert failed.exit_code == 4
    families = parse(textfile.read_text(encoding="utf-8"))
    assert value(families, "reconcile_last_success_timestamp_seconds") == pytest.approx(succeeded)
    assert value(families, "reconcile_last_run_timestamp_seconds") == pytest.approx(epoch(failed.summary.finished_at))
    assert value(families, "reconcile_last_run_exit_code") == 4
    assert value(families, "reconcile_last_run_outcome", outcome="fatal") == 1
    assert value(families, "reconcile_rows", status="unchecked") == 10
    assert "not-the-secret" not in textfile.read_text(encoding="utf-8")

    foreign = tmp_path / "c"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("someone else's", encoding="utf-8")
    with pytest.raises(Exception, match="holds files"):
        await reconcile_with_metrics([path], foreign, settings_for(emulator), RunOptions(), metrics)
    families = parse(textfile.read_text(encoding="utf-8"))
    assert value(families, "reconcile_last_success_timestamp_seconds") == pytest.approx(succeeded)
    assert value(families, "reconcile_last_run_exit_code") == 2
    assert value(families, "reconcile_last_run_outcome", outcome="usage") == 1


async def test_sigterm_partial_report_is_recorded_as_interrupted(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    """A run stopped by SIGTERM writes its partial report and the metrics of it: exit 143, interrupted, its
    unchecked rows, and no success."""
    textfile = tmp_path / "reconcile.prom"

    def stop_soon(reconciler: Reconciler) -> None:
        async def stop() -> None:
            while reconciler.progress.done < 5:  # noqa: ASYNC110 - the engine keeps counters, not events
                await asyncio.sleep(0.005)
            reconciler.stop("SIGTERM")

        asyncio.get_running_loop().create_task(stop())

    async with make_emulator(EmulatorConfig(latency_ms=20)) as emu:
        settings = settings_for(emu, concurrency=2)
        options = RunOptions()
        summary = await reconcile_with_metrics(
            [manifest(tmp_path, emu, 200)],
            tmp_path / "out",
            settings,
            options,
            MetricsOptions(file=textfile),
            stop_soon,
        )
    assert summary.exit_code == 143
    families = parse(textfile.read_text(encoding="utf-8"))
    assert_equals_summary(families, summary_json(tmp_path / "out"))
    assert value(families, "reconcile_rows", status="unchecked") > 0
    assert value(families, "reconcile_last_run_exit_code") == 143
    assert value(families, "reconcile_last_run_outcome", outcome="interrupted") == 1
    assert "reconcile_last_success_timestamp_seconds" not in families


async def test_a_second_signal_records_the_stop_and_pushes_nothing(
    make_emulator: Callable[..., Emulator], pushgateway: Pushgateway, ca_bundle: Path, tmp_path: Path
) -> None:
    """Stopped at once (a second SIGTERM cancels the run: no report), the textfile still says interrupted with
    exit 143 while nothing is pushed: the user asked to stop now, not after a push."""
    textfile = tmp_path / "reconcile.prom"
    started = asyncio.Event()
    reconcilers: list[Reconciler] = []

    def keep(reconciler: Reconciler) -> None:
        reconcilers.append(reconciler)
        started.set()

    async with make_emulator(EmulatorConfig(latency_ms=20)) as emu:
        settings = settings_for(emu, concurrency=2, ca_bundle=ca_bundle)
        metrics = MetricsOptions(file=textfile, pushgateway=pushgateway.url)
        options = RunOptions()
        task = asyncio.create_task(
            reconcile_with_metrics([manifest(tmp_path, emu, 200)], tmp_path / "out", settings, options, metrics, keep)
        )
        await started.wait()
        while reconcilers[0].progress.done < 3:  # noqa: ASYNC110 - the engine keeps counters, not events
            await asyncio.sleep(0.005)
        reconcilers[0].stop("SIGTERM")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    families = parse(textfile.read_text(encoding="utf-8"))
    assert value(families, "reconcile_last_run_exit_code") == 143
    assert value(families, "reconcile_last_run_outcome", outcome="interrupted") == 1
    assert value(families, "reconcile_running") == 0
    assert pushgateway.pushes == []
    assert not (tmp_path / "out" / "summary.json").exists()


async def test_an_internal_error_is_recorded_as_exit_5(emulator: Emulator, tmp_path: Path) -> None:
    """A bug during the run (here in the start hook) is recorded as exit 5, outcome internal, and still raised."""
    textfile = tmp_path / "reconcile.prom"

    def broken(_: Reconciler) -> None:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        await reconcile_with_metrics(
            [manifest(tmp_path, emulator, 4)],
            tmp_path / "out",
            settings_for(emulator),
            RunOptions(),
            MetricsOptions(file=textfile),
            broken,
        )
    families = parse(textfile.read_text(encoding="utf-8"))
    assert value(families, "reconcile_last_run_exit_code") == 5
    assert value(families, "reconcile_last_run_outcome", outcome="internal") == 1


def test_an_unreadable_earlier_file_carries_nothing_over(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An earlier file that does not parse is reported and carried over as nothing, never half-read; another
    series' samples (other labels) are not taken for ours."""
    broken = tmp_path / "broken.prom"
    broken.write_text('reconcile_last_success_timestamp_seconds{region="ca" 12\n', encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        assert read_previous(broken, {"region": "ca"}) == ()
    assert "does not parse" in caplog.text
    other = tmp_path / "other.prom"
    other.write_text('reconcile_last_success_timestamp_seconds{region="us"} 12\n', encoding="utf-8")
    assert read_previous(other, {"region": "ca"}) == ()
    assert [s.value for s in read_previous(other, {"region": "us"})] == [12.0]


# -- the Pushgateway -----------------------------------------------------------------------------------------


@dataclass
class Pushgateway:
    """A stand-in Pushgateway on loopback over TLS: it records each push's method, path and body."""

    url: str = ""
    pushes: list[tuple[str, str, str]] = field(default_factory=list)


@pytest.fixture
async def pushgateway(server_ssl: ssl.SSLContext) -> AsyncIterator[Pushgateway]:
    gateway = Pushgateway()

    async def record(request: web.Request) -> web.Response:
        gateway.pushes.append((request.method, request.path, await request.text()))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_route("*", "/metrics/{tail:.*}", record)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ssl)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    gateway.url = f"https://localhost:{port}"
    try:
        yield gateway
    finally:
        await runner.cleanup()


async def test_push_add_keeps_the_last_success_on_failure(
    emulator: Emulator, pushgateway: Pushgateway, ca_bundle: Path, tmp_path: Path
) -> None:
    """Each run POSTs (push-add) to /metrics/job/JOB/LABEL/VALUE… over verified TLS: the successful run's body holds
    the last success with summary.json's values, the failed run's holds its exit code but no last success; the
    labels are in the grouping key, not on the samples; no secret in either body."""
    metrics = MetricsOptions(pushgateway=pushgateway.url, job="reconcile-nightly", labels=LABELS)
    path = manifest(tmp_path, emulator, 10)
    shard_options = RunOptions(label="nightly ca", shard=Shard(0, 1))
    good = await reconcile_with_metrics(
        [path], tmp_path / "a", settings_for(emulator, ca_bundle=ca_bundle), shard_options, metrics
    )
    wrong = settings_for(emulator, ca_bundle=ca_bundle, client_secret=Secret("not-the-secret"))
    bad_options = RunOptions(label="nightly ca", shard=Shard(0, 1))
    failed = await reconcile_with_metrics([path], tmp_path / "b", wrong, bad_options, metrics)
    assert (good.exit_code, failed.exit_code) == (1, 4)
    assert [(method, route) for method, route, _ in pushgateway.pushes] == [
        ("POST", "/metrics/job/reconcile-nightly/label@base64/bmlnaHRseSBjYQ==/region/ca/shard@base64/MC8x")
    ] * 2
    first, second = (parse(body) for _, _, body in pushgateway.pushes)
    assert_equals_summary(first, summary_json(tmp_path / "a"))
    assert value(first, "reconcile_last_success_timestamp_seconds") == pytest.approx(epoch(good.summary.finished_at))
    assert "reconcile_last_success_timestamp_seconds" not in second
    assert value(second, "reconcile_last_run_exit_code") == 4
    assert value(second, "reconcile_last_run_outcome", outcome="fatal") == 1
    assert all(own.keys() <= {"status", "outcome"} for family in first.values() for own, _ in family)
    for _, _, body in pushgateway.pushes:
        assert DEMO_CLIENT_SECRET not in body
        assert "not-the-secret" not in body
        assert "eyJ" not in body


async def test_an_unreachable_pushgateway_warns_and_keeps_the_exit_code(
    emulator: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A Pushgateway that refuses the connection costs a warning naming it; the run's exit code is its own."""
    gateway = f"http://127.0.0.1:{closed_port()}"
    with caplog.at_level(logging.WARNING, logger="reconcile.ops._metrics"):
        summary = await reconcile_with_metrics(
            [manifest(tmp_path, emulator, 4)],
            tmp_path / "out",
            settings_for(emulator),
            RunOptions(),
            MetricsOptions(pushgateway=gateway),
        )
    assert summary.exit_code == 1
    assert f"not pushed to {gateway}" in caplog.text


# -- the command line ----------------------------------------------------------------------------------------


def test_cli_run_writes_the_textfile_with_the_profile_and_labels(env: dict[str, str], tmp_path: Path) -> None:
    """`run --metrics-file` with a profile naming a label: the file carries summary.json's values, labelled with
    the profile, its metrics labels and the flag's (which wins over the profile's)."""
    (tmp_path / "reconcile.toml").write_text(
        '[profile.ca]\nmetrics_labels = { region = "ca", team = "audit" }\n', encoding="utf-8"
    )
    result = invoke_cli(
        [
            "run", str(SAMPLES / "smoke-10.csv"), "--out", "out", "--profile", "ca", "-q",
            "--metrics-file", "reconcile.prom", "--metrics-label", "team=ops",
        ],
        env,
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    families = parse((tmp_path / "reconcile.prom").read_text(encoding="utf-8"))
    assert_equals_summary(families, summary_json(tmp_path / "out"))
    assert families["reconcile_running"][0][0] == {"profile": "ca", "region": "ca", "team": "ops"}


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--metrics-file", "reconcile.txt"], 2, "HINT: --metrics-file reconcile.prom"),
        (["--metrics-file", "no/such/dir/r.prom"], 2, "does not exist"),
        (["--metrics-label", "region"], 2, "is not KEY=VALUE"),
        (["--metrics-label", "job=x"], 2, "cannot be a label name"),
        (["--pushgateway", "http://pushgateway.example:9091"], 4, "plain http to a remote host"),
        (["--pushgateway", "https://user:pa55@pushgateway.example"], 2, "holds a password"),
    ],
)
def test_bad_metrics_options_are_refused_before_any_request(
    env: dict[str, str], tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    """A metrics option that cannot work is refused with the fix before the run starts: no --out is made."""
    result = invoke_cli(["run", str(SAMPLES / "smoke-10.csv"), "--out", "out", "-q", *args], env)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "pa55" not in result.output
    assert not (tmp_path / "out").exists()
