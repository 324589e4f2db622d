"""Crash reports: an unexpected exception exits 5 with one line naming a crash file, never 0 or 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import reconcile.report._build
from reconcile._version import __version__
from reconcile.cli import cli
from reconcile.emulator import DEMO_CLIENT_SECRET, Dataset
from reconcile.ops._crash import CRASH_PREFIX
from tests.conftest import write_manifest

PRESENT = list(Dataset.demo())[:3]


def test_a_bug_during_a_run_exits_5_naming_a_redacted_crash_file_in_out(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception no one expected: exit 5, one line on stderr naming the crash file in --out; no secret in either."""

    async def broken(self: object, outcome: object) -> None:
        raise RuntimeError(f"boom with {DEMO_CLIENT_SECRET} in it")

    monkeypatch.setattr(reconcile.report._build.RunReport, "finish", broken)
    manifest = write_manifest(tmp_path / "m.csv", PRESENT)
    monkeypatch.setattr(sys, "argv", ["/usr/bin/reconcile", "run", str(manifest), "--out", "out"])
    result = CliRunner().invoke(cli, sys.argv[1:], env=env)
    assert result.exit_code == 5, result.output
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    [crash] = (tmp_path / "out").glob(f"{CRASH_PREFIX}*.txt")
    assert line == (
        "internal error (exit 5): RuntimeError: boom with [REDACTED] in it. This is a bug in reconcile, not a "
        f"problem with the input; details are in {Path('out') / crash.name}: please send that file with a report. "
        "Re-running the same command resumes from the journal"
    )
    text = crash.read_text(encoding="utf-8")
    assert text.startswith(f"reconcile {__version__} crashed (exit 5) at ")
    for part in (
        f"command line: reconcile run {manifest} --out out\n",
        "python: 3.",
        "packages: aiohttp ",
        "Traceback (most recent call last)",
    ):
        assert part in text
    assert "RuntimeError: boom with [REDACTED] in it" in text
    assert DEMO_CLIENT_SECRET not in text + result.output


def test_the_console_script_exits_5_on_a_bug_with_the_command_line_in_the_crash_file(tmp_path: Path) -> None:
    """In a real process (the console script's os._exit): status 5, the crash file in the temp dir, argv recorded."""
    manifest = write_manifest(tmp_path / "m.csv", PRESENT)
    code = (
        "import reconcile.input as v\n"
        "def broken(*args, **kwargs): raise ZeroDivisionError('division by zero')\n"
        "v.validate = broken\n"
        "from reconcile.cli import main; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "validate", str(manifest)],
        env={**os.environ, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 5, done.stderr
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("internal error (exit 5): ZeroDivisionError: division by zero. This is a bug")
    [crash] = tmp_path.glob(f"{CRASH_PREFIX}*.txt")
    assert str(crash) in done.stderr
    assert f"command line: reconcile validate {manifest}\n" in crash.read_text(encoding="utf-8")


def test_ctrl_c_outside_a_run_is_130_not_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A KeyboardInterrupt while validating exits 130 (click would print "Aborted!" and exit 1)."""

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("reconcile.input.validate", interrupted)
    result = CliRunner().invoke(cli, ["validate", str(write_manifest(tmp_path / "m.csv", PRESENT))])
    assert result.exit_code == 130, result.output
    assert "Aborted" not in result.output
