"""Chaos tests: `reconcile run` as a real process, killed, signalled, throttled and failed, against the emulator.

Most runs talk to the emulator in its own process.  Some scenarios need what its command line cannot give:
per-key request counts (what a ``kill -9`` or ``--retry-errors`` makes the engine ask), faults changed between
runs, a platform answering 500 to everything, tokens revoked on a timer.  Those run the same Emulator in a thread
of the test process (:class:`chaos_helpers.ThreadedEmulator`); the engine is a separate process either way.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconcile.emulator import EmulatorConfig, Faults, Key
from reconcile.engine._outdir import LOCK_NAME
from tests.chaos_helpers import (
    EmulatorProcess,
    Report,
    Runs,
    ThreadedEmulator,
    answered_in_journal,
    chaos_manifest,
    journal_integrity,
    key_of,
    read_report,
    synthetic_dataset,
    wait_until,
    wrong_rows,
)

pytestmark = pytest.mark.slow

SEED = 7  # of the synthetic dataset: the manifests and every emulator agree on it
ROWS = 6000  # the shared manifest for kills and signals; latency stretches the runs, not size
KILLS = 3
EXIT_ROW_PROBLEMS, EXIT_USAGE, EXIT_FATAL = 3, 2, 4  # every manifest here has invalid rows, so complete = 3


@dataclass(frozen=True, slots=True)
class Manifest:
    path: Path
    rows: list[Key]

    @property
    def valid_keys(self) -> set[Key]:
        return {key for key in self.rows if all(value.strip() for value in key)}


def synthetic_args(*more: str) -> tuple[str, ...]:
    return ("--synthetic-present-ratio", "0.9", "--seed", str(SEED), *more)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chaos")


@pytest.fixture(scope="module")
def big(workdir: Path) -> Manifest:
    """ROWS synthetic rows with invalid rows and duplicates spread through them."""
    path = workdir / "big.csv"
    return Manifest(path, chaos_manifest(path, ROWS, SEED))


@pytest.fixture(scope="module")
def fast() -> Iterator[EmulatorProcess]:
    """The synthetic platform, answering at once."""
    with EmulatorProcess(*synthetic_args()) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def slow() -> Iterator[EmulatorProcess]:
    """The synthetic platform with 20 ms per answer: a run of ``big`` lasts several seconds."""
    with EmulatorProcess(*synthetic_args("--latency-ms", "20")) as emulator:
        yield emulator


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[Runs]:
    with Runs(tmp_path / "runs") as started:
        yield started


@pytest.fixture(scope="module")
def clean(big: Manifest, fast: EmulatorProcess, workdir: Path) -> Report:
    """The report of an undisturbed run of ``big``: what every interrupted run must end with."""
    with Runs(workdir / "clean-runs") as runs:
        finished = runs.run(fast.url, big.path, workdir / "clean")
    assert finished.code == EXIT_ROW_PROBLEMS, finished.stderr
    report = read_report(workdir / "clean")
    assert report.summary["complete"] is True
    assert not list(wrong_rows(report.results, synthetic_dataset(SEED)))
    return report


def assert_same_report(report: Report, clean: Report) -> None:
    """Every column but checked_at and attempts, missing.csv likewise, and the counts of summary.json."""
    results, missing = report.comparable()
    clean_results, clean_missing = clean.comparable()
    assert len(results) == len(clean_results)
    differing = [(a, b) for a, b in zip(results, clean_results, strict=True) if a != b]
    assert not differing, f"{len(differing)} rows differ from the clean run, e.g. {differing[:3]}"
    assert missing == clean_missing
    for name in ("counts", "records", "duplicates", "complete"):
        assert report.summary[name] == clean.summary[name], name


def assert_valid_partial(report: Report, clean: Report, manifest: Manifest, reason: str) -> None:
    """One row per record; the rows reached agree with the clean run, the others are unchecked."""
    assert len(report.results) == len(manifest.rows)
    summary = report.summary
    assert summary["complete"] is False
    assert summary["outcome"] == "interrupted"
    assert sum(summary["counts"].values()) == summary["records"] == len(manifest.rows)
    statuses = report.statuses()
    assert all(count == statuses[status] for status, count in summary["counts"].items())
    assert summary["counts"]["unchecked"] > 0
    assert summary["counts"]["error"] == 0
    for row, partial_row, clean_row in zip(report.results, report.comparable()[0], clean.comparable()[0], strict=True):
        if row["status"] == "unchecked":
            assert row["call_id"] == "", row
            assert reason in row["detail"], row
        else:
            assert partial_row == clean_row


def test_kill_9_three_times_then_resume_gives_the_clean_report(
    big: Manifest, clean: Report, runs: Runs, tmp_path: Path
) -> None:
    """Three kill -9s at random moments and a final re-run end with a clean run's report; few keys asked twice."""
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    out = tmp_path / "out"
    delays = []
    with ThreadedEmulator(EmulatorConfig(latency_ms=20), synthetic_dataset(SEED)) as emulator:
        for _ in range(KILLS):
            before = emulator.api_requests()
            run = runs.start(emulator.url, big.path, out)
            wait_until(lambda: emulator.api_requests() > before, 30, "the attempt's first request", run)  # noqa: B023
            delays.append(rng.uniform(0.5, 2.0))
            time.sleep(delays[-1])
            run.signal(signal.SIGKILL)
            assert run.wait(10).code == -signal.SIGKILL
        final = runs.run(emulator.url, big.path, out)
        asked = emulator.keys_asked()
    assert final.code == EXIT_ROW_PROBLEMS, final.stderr
    report = read_report(out)
    assert_same_report(report, clean)
    # nothing half-written is left; the lock file stays, as the directory's mark
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [LOCK_NAME]
    assert report.summary["resumed"] is True
    attempts = report.summary["attempts"]
    assert [a["attempt"] for a in attempts] == list(range(1, KILLS + 2))
    assert [a["outcome"] for a in attempts] == [None] * KILLS + ["complete"]  # a killed attempt never ends
    # Every valid key was asked, none invented; those asked again were lost with at most ~1 s of work per kill.
    assert set(asked) == big.valid_keys
    again = sum(1 for count in asked.values() if count > 1)
    throughput = report.summary["requests"] / report.summary["duration_seconds"]
    print(
        f"kill -9 after {[round(d, 2) for d in delays]} s (rng seed {seed}): {again} keys asked again "
        f"({again / KILLS:.0f} per kill), final run {throughput:.0f} requests/s"
    )
    assert again <= KILLS * throughput * 1.0, (seed, delays)
    assert max(asked.values()) <= KILLS + 1


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_writes_a_partial_report_and_a_rerun_completes_it(
    signum: signal.Signals,
    code: int,
    big: Manifest,
    clean: Report,
    slow: EmulatorProcess,
    fast: EmulatorProcess,
    runs: Runs,
    tmp_path: Path,
) -> None:
    """SIGTERM/SIGINT mid-run: exit 143/130 with a valid partial report; a re-run ends with the clean report."""
    out = tmp_path / "out"
    run = runs.start(slow.url, big.path, out)
    wait_until(lambda: answered_in_journal(out) >= 300, 30, "300 answered rows", run)
    run.signal(signum)
    stopped = run.wait(20)
    assert stopped.code == code, stopped.stderr
    assert "Traceback" not in stopped.stderr
    assert_valid_partial(read_report(out), clean, big, signum.name)

    final = runs.run(fast.url, big.path, out)
    assert final.code == EXIT_ROW_PROBLEMS, final.stderr
    report = read_report(out)
    assert_same_report(report, clean)
    assert report.summary["resumed"] is True
    assert [a["outcome"] for a in report.summary["attempts"]] == ["interrupted", "complete"]


def test_second_sigint_stops_at_once_and_the_journal_stays_consistent(
    big: Manifest, clean: Report, fast: EmulatorProcess, runs: Runs, tmp_path: Path
) -> None:
    """A second SIGINT exits 130 without waiting for 3-second answers; a re-run then completes correctly."""
    out = tmp_path / "out"
    with EmulatorProcess(*synthetic_args("--latency-ms", "3000")) as very_slow:
        run = runs.start(very_slow.url, big.path, out)
        wait_until(lambda: answered_in_journal(out) >= 1, 30, "the first answers", run)
        time.sleep(0.3)  # the second wave of requests is in flight, ~2.7 s from its answers
        run.signal(signal.SIGINT)
        time.sleep(0.2)
        run.signal(signal.SIGINT)
        second = time.monotonic()
        stopped = run.wait(20)
        took = time.monotonic() - second
    assert stopped.code == 130, stopped.stderr
    assert "Traceback" not in stopped.stderr
    print(f"second SIGINT: exit {stopped.code} {took:.2f} s later")
    assert took < 1.5, f"the second SIGINT took {took:.2f} s to stop the run: it waited for answers in flight"
    assert journal_integrity(out) == "ok"
    answered = answered_in_journal(out)
    assert answered >= 1

    final = runs.run(fast.url, big.path, out)
    assert final.code == EXIT_ROW_PROBLEMS, final.stderr
    report = read_report(out)
    assert_same_report(report, clean)
    assert [a["outcome"] for a in report.summary["attempts"]] == [None, "complete"]
    assert report.summary["requests"] == len(big.valid_keys) - answered  # what the first attempt kept is not re-asked


def test_twenty_percent_faults_and_short_tokens_give_no_wrong_rows(runs: Runs, tmp_path: Path) -> None:
    """20% injected faults and 5-second tokens: every row right, none in error."""
    manifest = Manifest(tmp_path / "faulty.csv", chaos_manifest(tmp_path / "faulty.csv", 240, SEED))
    out = tmp_path / "out"
    with EmulatorProcess(*synthetic_args("--fault-rate", "0.2", "--token-lifetime", "5")) as emulator:
        # Global Retry-After pauses dominate: many workers share each one.  Ten attempts make a row failing
        # every one of them (0.16**10) practically impossible, so a single error row is a real bug.
        finished = runs.run(
            emulator.url, manifest.path, out, "--concurrency", "64", "--max-attempts", "10", timeout=120
        )
    totals = emulator.totals
    assert finished.code == EXIT_ROW_PROBLEMS, finished.stderr
    report = read_report(out)
    dataset = synthetic_dataset(SEED)
    assert len(report.results) == len(manifest.rows)
    assert not list(wrong_rows(report.results, dataset))
    counts = report.summary["counts"]
    assert counts["error"] == counts["unchecked"] == 0
    expected_missing = [r for r in report.results if r["status"] != "invalid" and not dataset.lookup(key_of(r))]
    assert counts["missing"] == len(expected_missing)
    assert totals is not None
    assert totals.faults > 0
    assert totals.token_requests > 1
    print(
        f"20% faults: {report.summary['duration_seconds']} s, {report.summary['retries']} retries, "
        f"{totals.faults} faults, {totals.token_requests} token requests"
    )


def test_token_revocations_while_answers_are_in_flight_do_not_stop_the_run(runs: Runs, tmp_path: Path) -> None:
    """Tokens revoked every 0.3 s while answers take 0-0.6 s: every fresh token works, so the run completes."""
    path, out = tmp_path / "m.csv", tmp_path / "out"
    chaos_manifest(path, 300, SEED)
    with ThreadedEmulator(EmulatorConfig(jitter_ms=600), synthetic_dataset(SEED)) as emulator:
        emulator.revoke_tokens_every(0.3)
        finished = runs.run(emulator.url, path, out, "--concurrency", "32")
        refused = emulator.call(lambda emu: emu.stats.by_status[401])
    report = read_report(out)
    print(f"revocations: {refused} answers 401, {report.summary['token_fetches']} tokens, {report.summary['counts']}")
    assert refused > 0
    assert finished.code == EXIT_ROW_PROBLEMS, finished.stderr
    assert report.summary["complete"] is True
    assert report.summary["counts"]["error"] == 0
    assert not list(wrong_rows(report.results, synthetic_dataset(SEED)))


def test_rate_capped_platform_run_settles_near_the_cap_with_few_429s(runs: Runs, tmp_path: Path) -> None:
    """Against 200 requests/s with 100 in flight: every row right, at most 10% 429s, at least 70% of the cap (a
    generous band: the benchmark measures the targets)."""
    cap = 200.0
    manifest = Manifest(tmp_path / "capped.csv", chaos_manifest(tmp_path / "capped.csv", 4000, SEED))
    out = tmp_path / "out"
    with EmulatorProcess(*synthetic_args("--max-rps", str(cap))) as emulator:
        finished = runs.run(emulator.url, manifest.path, out, "--concurrency", "100", timeout=90)
    assert finished.code == EXIT_ROW_PROBLEMS, finished.stderr
    report = read_report(out)
    summary = report.summary
    assert summary["complete"] is True
    assert not list(wrong_rows(report.results, synthetic_dataset(SEED)))
    assert summary["counts"]["error"] == 0
    share_429 = summary["throttled"] / (summary["requests"] + summary["retries"])
    achieved = summary["records"] / summary["duration_seconds"]
    print(f"rate cap {cap:.0f}/s: {achieved:.1f} rows/s = {achieved / cap:.1%} of the cap, {share_429:.2%} 429s")
    assert emulator.totals is not None
    assert emulator.totals.rate_limited == summary["throttled"]
    assert share_429 <= 0.10
    assert achieved >= 0.7 * cap


def test_changed_manifest_is_refused_until_fresh(fast: EmulatorProcess, runs: Runs, tmp_path: Path) -> None:
    """A changed manifest with the same --out exits 2 naming --fresh and leaves the report alone; --fresh redoes it."""
    path, out = tmp_path / "m.csv", tmp_path / "out"
    chaos_manifest(path, 200, SEED)
    assert runs.run(fast.url, path, out).code == EXIT_ROW_PROBLEMS
    before = (out / "summary.json").read_bytes()
    rows = chaos_manifest(path, 210, SEED)
    refused = runs.run(fast.url, path, out)
    assert refused.code == EXIT_USAGE
    assert "--fresh" in refused.stderr
    assert (out / "summary.json").read_bytes() == before

    assert runs.run(fast.url, path, out, "--fresh").code == EXIT_ROW_PROBLEMS
    report = read_report(out)
    assert report.summary["records"] == len(report.results) == len(rows)
    assert report.summary["resumed"] is False
    assert len(report.summary["attempts"]) == 1
    assert report.summary["complete"] is True
    assert not list(wrong_rows(report.results, synthetic_dataset(SEED)))


def test_retry_errors_asks_again_only_the_error_rows(runs: Runs, tmp_path: Path) -> None:
    """--retry-errors after a run with error rows asks exactly their keys once each and ends with no errors."""
    path, out = tmp_path / "m.csv", tmp_path / "out"
    chaos_manifest(path, 300, SEED)
    faulty = EmulatorConfig(faults=Faults(rate_500=0.5), seed=SEED)
    with ThreadedEmulator(faulty, synthetic_dataset(SEED)) as emulator:
        first = runs.run(emulator.url, path, out, "--max-attempts", "1")
        assert first.code == EXIT_ROW_PROBLEMS, first.stderr
        before = read_report(out)
        errors = {key_of(r) for r in before.results if r["status"] == "error"}
        assert errors, "no error rows: the faults did not bite"
        emulator.set_faults(Faults())
        asked_before = emulator.keys_asked()
        retried = runs.run(emulator.url, path, out, "--retry-errors")
        asked = emulator.keys_asked() - asked_before
    assert retried.code == EXIT_ROW_PROBLEMS, retried.stderr
    after = read_report(out)
    assert set(asked) == errors
    assert set(asked.values()) == {1}
    assert after.summary["requests"] == len(errors)
    assert after.summary["counts"]["error"] == 0
    assert after.summary["complete"] is True
    assert not list(wrong_rows(after.results, synthetic_dataset(SEED)))
    kept = [
        (a, b)
        for a, b, r in zip(after.comparable()[0], before.comparable()[0], before.results, strict=True)
        if r["status"] != "error"
    ]
    assert all(a == b for a, b in kept)


def test_retry_errors_without_an_earlier_run_is_exit_2(fast: EmulatorProcess, runs: Runs, tmp_path: Path) -> None:
    """--retry-errors on an --out with no journal exits 2 and creates none."""
    path, out = tmp_path / "m.csv", tmp_path / "out"
    chaos_manifest(path, 20, SEED)
    finished = runs.run(fast.url, path, out, "--retry-errors")
    assert finished.code == EXIT_USAGE
    assert "--retry-errors" in finished.stderr
    assert not (out / "journal.sqlite").exists()


def test_garbage_journal_is_exit_4_untouched_and_fresh_recovers(
    fast: EmulatorProcess, runs: Runs, tmp_path: Path
) -> None:
    """A journal of garbage bytes: exit 4 with a message naming it and --fresh, no traceback; --fresh then works."""
    path, out = tmp_path / "m.csv", tmp_path / "out"
    chaos_manifest(path, 50, SEED)
    out.mkdir()
    garbage = random.Random(SEED).randbytes(8192)
    (out / "journal.sqlite").write_bytes(garbage)
    refused = runs.run(fast.url, path, out)
    assert refused.code == EXIT_FATAL
    assert "journal.sqlite" in refused.stderr
    assert "--fresh" in refused.stderr
    assert (out / "journal.sqlite").read_bytes() == garbage
    assert not (out / "results.csv").exists()
    assert runs.run(fast.url, path, out, "--fresh").code == EXIT_ROW_PROBLEMS
    assert read_report(out).summary["complete"] is True


def test_foreign_sqlite_file_is_exit_4_and_left_unchanged(fast: EmulatorProcess, runs: Runs, tmp_path: Path) -> None:
    """A SQLite file that is not a journal: exit 4 with a clear message, and the file is not modified."""
    path, out = tmp_path / "m.csv", tmp_path / "out"
    chaos_manifest(path, 20, SEED)
    out.mkdir()
    foreign = sqlite3.connect(out / "journal.sqlite")
    try:
        foreign.execute("CREATE TABLE customers (name TEXT)")
        foreign.execute("INSERT INTO customers VALUES ('someone else''s data')")
        foreign.commit()
    finally:
        foreign.close()
    original = (out / "journal.sqlite").read_bytes()
    refused = runs.run(fast.url, path, out)
    assert refused.code == EXIT_FATAL
    assert "not a reconcile journal" in refused.stderr
    assert (out / "journal.sqlite").read_bytes() == original


def test_persistent_500s_spend_the_retry_budget_and_the_run_is_resumable(runs: Runs, tmp_path: Path) -> None:
    """A platform answering 500 to everything: exit 4 'kept failing', nothing called missing; a re-run completes."""
    path, out = tmp_path / "m.csv", tmp_path / "out"
    rows = chaos_manifest(path, 300, SEED)
    with ThreadedEmulator(EmulatorConfig(faults=Faults(rate_500=1.0)), synthetic_dataset(SEED)) as emulator:
        failed = runs.run(emulator.url, path, out)
        sent = emulator.api_requests()
        partial = read_report(out)
        emulator.set_faults(Faults())
        resumed = runs.run(emulator.url, path, out)
    assert failed.code == EXIT_FATAL, failed.stderr
    assert "the platform kept failing" in failed.stderr
    assert partial.summary["complete"] is False
    assert partial.summary["error"]["type"] == "PlatformUnavailable"
    counts = partial.summary["counts"]
    assert counts["present"] == counts["missing"] == 0
    assert counts["unchecked"] > 0
    assert sum(counts.values()) == len(partial.results) == len(rows)
    assert resumed.code == EXIT_ROW_PROBLEMS, resumed.stderr
    report = read_report(out)
    assert report.summary["complete"] is True
    assert report.summary["resumed"] is True
    assert [a["outcome"] for a in report.summary["attempts"]] == ["fatal", "complete"]
    assert report.summary["counts"]["error"] == report.summary["counts"]["unchecked"] == 0
    assert not list(wrong_rows(report.results, synthetic_dataset(SEED)))
    # The budget (500 units, 5 per retry, 16 workers) stopped it long before 5 attempts for each of the rows.
    assert sent < len(rows)
    print(f"persistent 500s: {sent} requests before the run stopped")


def test_a_five_second_outage_mid_run_is_ridden_out(big: Manifest, clean: Report, runs: Runs, tmp_path: Path) -> None:
    """The platform killed mid-run and back on the same address 5 s later: the run pauses, probes, resumes and ends
    complete with the clean report; no row is charged for the outage, the progress line said so meanwhile."""
    out = tmp_path / "out"
    emulator = EmulatorProcess(*synthetic_args("--latency-ms", "20"))
    with emulator:
        run = runs.start(emulator.url, big.path, out, "--concurrency", "16", "--progress-interval", "0.5")
        wait_until(lambda: answered_in_journal(out) > 1000, 30, "a thousand answers", run)
        emulator.kill()
        killed = time.monotonic()
        time.sleep(5)
        assert run.running(), "the run must ride out a 5 s outage, not stop"
        with EmulatorProcess(*synthetic_args("--latency-ms", "20", "--port", str(emulator.port))):
            finished = run.wait(90)
    assert finished.code == EXIT_ROW_PROBLEMS, finished.stderr
    assert "Traceback" not in finished.stderr
    assert finished.seconds > time.monotonic() - killed - 60
    report = read_report(out)
    assert_same_report(report, clean)
    pacing = report.summary["pacing"]
    assert pacing["outages"] >= 1
    assert pacing["outage_seconds"] >= 4
    assert "platform unreachable for" in finished.stderr
    assert "answers again" in finished.stderr


def test_an_outage_longer_than_the_tolerance_stops_the_run_resumably(
    big: Manifest, clean: Report, runs: Runs, tmp_path: Path
) -> None:
    """With --outage-tolerance 2 a platform that does not come back ends the run: exit 4 naming the tolerance,
    rows not reached unchecked (none called missing), and a re-run resumes to the clean report."""
    out = tmp_path / "out"
    emulator = EmulatorProcess(*synthetic_args("--latency-ms", "20"))
    with emulator:
        run = runs.start(emulator.url, big.path, out, "--concurrency", "16", "--outage-tolerance", "2")
        wait_until(lambda: answered_in_journal(out) > 500, 30, "five hundred answers", run)
        emulator.kill()
        finished = run.wait(60)
    assert finished.code == EXIT_FATAL, finished.stderr
    assert "outage tolerance of 2 s" in finished.stderr
    summary = read_report(out).summary
    assert summary["counts"]["unchecked"] > 0
    assert summary["error"]["type"] == "HostUnreachable"
    with EmulatorProcess(*synthetic_args()) as back:
        resumed = runs.run(back.url, big.path, out)
    assert resumed.code == EXIT_ROW_PROBLEMS, resumed.stderr
    assert_same_report(read_report(out), clean)
