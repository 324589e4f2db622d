"""The output directory: created or refused with the reason, reconcile's own, and one command's at a time.

Concurrent commands are real processes on one directory; a holder killed with -9 leaves no stale lock.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconcile.cli import cli
from reconcile.engine._outdir import LOCK_NAME, claim
from reconcile.errors import OutDirBusy, OutDirError
from tests.conftest import HEADER, cli_env, emulator_process, read_results, write_manifest

ROWS = 1500
CLI = [sys.executable, "-c", "from reconcile.cli import main; main()"]


def _rows(count: int) -> list[tuple[str, str, str, str]]:
    return [("acme", "acme-ca", "2026/11/25", f"rec-{i:05d}.mp3") for i in range(count)]


@pytest.fixture
def slow_platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The emulator in its own process answering in 20 ms; the environment a `reconcile` subprocess needs."""
    with emulator_process("--latency-ms", "20") as url:
        yield {**os.environ, **cli_env(url, tmp_path, monkeypatch)}


def _start(args: list[str], env: Mapping[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, *args], env=dict(env), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _run_in_progress(env: Mapping[str, str], work: Path, rows_done: int) -> tuple[list[str], subprocess.Popen[str]]:
    """A `reconcile run` of ROWS rows into ``work``/out, once it holds the lock and has journalled ``rows_done``;
    its arguments (to run the same command again) and its process."""
    manifest = write_manifest(work / "m.csv", _rows(ROWS))
    args = ["run", str(manifest), "--out", "out", "--concurrency", "4", "-q"]
    process = _start(args, env, work)
    _wait_until_locked_by(process, work / "out", rows_done=rows_done)
    return args, process


def _wait_until_locked_by(process: subprocess.Popen[str], out: Path, rows_done: int = 0) -> None:
    """Until ``process`` holds ``out``'s lock (its PID in the lock file) and has journalled ``rows_done`` rows."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            holder = json.loads((out / LOCK_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            holder = {}
        if holder.get("pid") == process.pid and (not rows_done or _journalled(out) >= rows_done):
            return
        time.sleep(0.05)
    raise AssertionError(f"{process.pid} did not lock {out} within 60 s")


def _journalled(out: Path) -> int:
    import sqlite3

    try:
        with sqlite3.connect(f"file:{out / 'journal.sqlite'}?mode=ro", uri=True) as db:
            (count,) = db.execute("SELECT count(*) FROM results").fetchone()
            return int(count)
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_a_second_run_on_one_out_exits_2_at_once_naming_the_holder(
    slow_platform: dict[str, str], tmp_path: Path
) -> None:
    """Two real runs on one --out: the second exits 2 at once naming PID, host and start; the first ends whole."""
    args, first = _run_in_progress(slow_platform, tmp_path, rows_done=50)
    try:
        second = subprocess.run(
            [*CLI, *args], env=slow_platform, cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False
        )
        assert first.poll() is None  # the first is still running, untouched
        holder = json.loads((tmp_path / "out" / LOCK_NAME).read_text(encoding="utf-8"))
        assert second.returncode == 2, second.stderr
        assert second.stdout == ""
        assert second.stderr.startswith(
            f"error: --out out is in use by reconcile run (PID {first.pid} on {socket.gethostname()}, "
            f"started {holder['started_at']}); "
        )
        assert "HINT: wait for it to finish" in second.stderr
        assert "Traceback" not in second.stderr
        stdout, stderr = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 1, stderr  # the demo dataset knows none of these rows: complete, all missing
    assert f"{ROWS} records: 0 present, {ROWS} missing" in stdout
    assert len(read_results(tmp_path / "out" / "results.csv")) == ROWS


@pytest.mark.slow
def test_a_holder_killed_with_9_leaves_no_stale_lock(slow_platform: dict[str, str], tmp_path: Path) -> None:
    """kill -9 of the run holding --out: the next run takes the directory at once and resumes to a whole report."""
    args, first = _run_in_progress(slow_platform, tmp_path, rows_done=50)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    assert (tmp_path / "out" / LOCK_NAME).exists()  # the file stays; the lock died with its holder
    second = subprocess.run(
        [*CLI, *args], env=slow_platform, cwd=tmp_path, capture_output=True, text=True, timeout=180, check=False
    )
    assert second.returncode == 1, second.stderr
    assert f"{ROWS} records: 0 present, {ROWS} missing" in second.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert summary["resumed"] is True
    assert summary["complete"] is True


def test_merge_takes_the_same_lock(tmp_path: Path) -> None:
    """`merge --out` of a directory another command holds exits 2 naming the holder, before reading any shard."""
    out = tmp_path / "merged"
    with claim(out, command="run") as held:
        result = CliRunner().invoke(cli, ["merge", str(tmp_path / "no-shard"), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert f"is in use by reconcile run (PID {held.holder.pid} on {held.holder.host}" in result.output
    assert "Traceback" not in result.output


def test_a_lock_is_released_with_its_holder(tmp_path: Path) -> None:
    """While held, the directory refuses a second claim (OutDirBusy, an OutDirError); released, it is free again."""
    with claim(tmp_path / "out", command="run"), pytest.raises(OutDirBusy):
        claim(tmp_path / "out", command="merge")
    with claim(tmp_path / "out", command="merge") as again:
        assert again.holder.command == "merge"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("file/out", "error: --out {out} cannot be created: a part of its path is a file, not a directory. HINT: "),
        ("file", "Error: Invalid value for '--out': Directory '{out}' is a file."),  # click's own check
    ],
)
def test_an_out_that_cannot_be_a_directory_is_exit_2_naming_it(
    where: str, expected: str, env: dict[str, str], tmp_path: Path
) -> None:
    """--out under a file, or a file itself: exit 2 naming the directory and the reason, no traceback."""
    (tmp_path / "file").write_text("not a directory")
    manifest = write_manifest(tmp_path / "m.csv", _rows(1))
    result = CliRunner().invoke(cli, ["run", str(manifest), "--out", str(tmp_path / where)], env=env)
    assert result.exit_code == 2, result.output
    assert expected.format(out=tmp_path / where) in result.output
    assert "Traceback" not in result.output
    with pytest.raises(OutDirError, match=r"it is a file, not a directory\. HINT"):  # the library says it too
        claim(tmp_path / "file", command="run")


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("ro", "is not writable (permission denied). HINT: fix its permissions, or choose another --out"),
        (
            "ro/out",
            "cannot be created: permission denied. HINT: choose a directory under one you can write to, or create "
            "it first",
        ),
    ],
)
def test_a_read_only_out_or_parent_is_exit_2_naming_it(where: str, expected: str) -> None:
    """A read-only --out, or one under a read-only parent: exit 2 naming it and why; never a "--fresh" hint.

    As root, which ignores permissions, the command runs as the unprivileged user nobody (util-linux setpriv)."""
    base = Path(tempfile.mkdtemp(prefix="reconcile-ro-"))  # outside root's private pytest directory
    try:
        base.chmod(0o755)
        manifest = write_manifest(base / "m.csv", _rows(1))
        manifest.chmod(0o644)
        (base / "ro").mkdir()
        (base / "ro").chmod(0o555)
        out = base / where
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(base),
            "CALLJOURNEY_TENANT_ID": "00000000-0000-0000-0000-000000000000",
            "CALLJOURNEY_CLIENT_ID": "11111111-1111-1111-1111-111111111111",
            "CALLJOURNEY_CLIENT_SECRET": "not-used-secret",
            "CALLJOURNEY_BASE_URL": "http://127.0.0.1:9",
            "CALLJOURNEY_AUTHORITY": "http://127.0.0.1:9",
        }
        done = subprocess.run(
            [*as_nobody, *CLI, "run", str(manifest), "--out", str(out)],
            env=env,
            cwd=base,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        (base / "ro").chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"error: --out {out} {expected}\n"


@pytest.mark.slow
def test_a_directory_of_someone_elses_files_is_refused_unless_force(env: dict[str, str], tmp_path: Path) -> None:
    """--out holding a user's files and no journal: exit 2 naming them, nothing touched; --force writes only ours."""
    out = tmp_path / "mine"
    out.mkdir()
    own = {"results.csv": "my,own\n", "summary.json": "{}", "report.html": "<p>mine</p>", "notes.txt": "keep"}
    for name, text in own.items():
        (out / name).write_text(text)
    manifest = write_manifest(tmp_path / "m.csv", _rows(2))
    refused = CliRunner().invoke(cli, ["run", str(manifest), "--out", str(out)], env=env)
    assert refused.exit_code == 2, refused.output
    assert refused.output.startswith(
        f"error: --out {out} holds files reconcile did not write (notes.txt, report.html, results.csv, summary.json) "
        "and no reconcile run"
    )
    assert "pass --force" in refused.output
    assert {p.name: p.read_text() for p in out.iterdir()} == own  # not even a lock file was added
    forced = CliRunner().invoke(cli, ["run", str(manifest), "--out", str(out), "--force"], env=env)
    assert forced.exit_code == 1, forced.output
    assert (out / "notes.txt").read_text() == "keep"
    assert len(read_results(out / "results.csv")) == 2  # reconcile's own name, overwritten as --force allows
    again = CliRunner().invoke(cli, ["run", str(manifest), "--out", str(out)], env=env)
    assert again.exit_code == 1, again.output  # now it holds a run: no --force needed to resume


@pytest.mark.slow
def test_an_empty_or_new_out_needs_no_force(env: dict[str, str], tmp_path: Path) -> None:
    """An empty directory, or one not there yet (parents too), is used as is."""
    (tmp_path / "empty").mkdir()
    manifest = write_manifest(tmp_path / "m.csv", _rows(1), header=HEADER)
    for out in (tmp_path / "empty", tmp_path / "new" / "deeper"):
        result = CliRunner().invoke(cli, ["run", str(manifest), "--out", str(out)], env=env)
        assert result.exit_code == 1, result.output
        assert (out / "summary.json").is_file()
    with pytest.raises(OutDirError, match="is a file"):
        claim(out / "summary.json", command="run")


@pytest.mark.slow
def test_a_report_never_outlives_the_journal_it_describes(slow_platform: dict[str, str], tmp_path: Path) -> None:
    """A partial report, then a resume stopped by a double Ctrl-C: the old report is gone, not left as if current."""
    args, first = _run_in_progress(slow_platform, tmp_path, rows_done=20)
    first.send_signal(signal.SIGINT)
    first.communicate(timeout=60)
    assert first.returncode == 130
    assert json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))["complete"] is False
    second = _start(args, slow_platform, tmp_path)
    _wait_until_locked_by(second, tmp_path / "out", rows_done=_journalled(tmp_path / "out") + 20)
    second.send_signal(signal.SIGINT)
    assert second.stderr is not None
    warned = second.stderr.readline()  # the first is being handled: a second one now is a second Ctrl-C
    assert "SIGINT received" in warned
    second.send_signal(signal.SIGINT)
    _, stderr = second.communicate(timeout=60)
    assert second.returncode == 130, stderr
    assert "stopped at once" in stderr
    left = {p.name for p in (tmp_path / "out").iterdir()}
    assert not left & {"summary.json", "results.csv", "missing.csv", "report.html"}, left
    assert "journal.sqlite" in left


def test_a_report_reconcile_wrote_before_the_lock_file_is_its_own(tmp_path: Path) -> None:
    """A merged report from before the lock file (no journal) is recognised by its summary.json; `{}` is not."""
    out = tmp_path / "merged"
    out.mkdir()
    (out / "results.csv").write_text("row\n")
    (out / "summary.json").write_text("{}")
    with pytest.raises(OutDirError, match="holds files reconcile did not write"):
        claim(out, command="merge")
    (out / "summary.json").write_text(json.dumps({"run_id": "r", "engine_version": "0.1.0", "counts": {}}))
    with claim(out, command="merge") as held:
        assert held.directory == out
