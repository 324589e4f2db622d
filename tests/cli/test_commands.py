"""The command line through click's CliRunner, against the emulator running in its own process."""

from __future__ import annotations

import gc
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reconcile.api import GC_THRESHOLD, event_loop_run
from reconcile.cli import cli
from reconcile.emulator import DEMO_CLIENT_SECRET, Dataset
from reconcile.ops._demo import DEMO_MANIFESTS, sample_manifests
from tests.conftest import read_results, write_manifest

PRESENT = list(Dataset.demo())[:3]
MISSING_ROW = ("acme", "acme-ca", "2026/11/25/inbound", "no-such-recording.mp3")


def invoke(args: list[str], env: Mapping[str, str | None]) -> Result:
    """Run the CLI; whatever happens, no traceback reaches the user."""
    result = CliRunner().invoke(cli, args, env=env)
    assert "Traceback" not in result.output, result.output
    # A user's mistake ends in a clean exit, never in an exception escaping the command.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def python(code: str, args: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -c code args...`` in a fresh interpreter (what it imports, how it exits), with ``env`` added."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def summary_json(out: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return data


@pytest.mark.slow
def test_exit_0_when_every_row_is_present(env: dict[str, str], tmp_path: Path) -> None:
    """All rows present: exit 0, and the stdout summary names the counts and every output path."""
    manifest = write_manifest(tmp_path / "m.csv", PRESENT)
    result = invoke(["run", str(manifest), "--out", "out"], env)
    assert result.exit_code == 0, result.output
    assert "3 present" in result.stdout
    for name in ("results.csv", "missing.csv", "summary.json"):
        assert str(Path("out") / name) in result.stdout
        assert (tmp_path / "out" / name).is_file()
    assert [r["status"] for r in read_results(tmp_path / "out" / "results.csv")] == ["present"] * 3


@pytest.mark.slow
def test_a_run_off_a_terminal_imports_no_pandas_rich_or_server(env: dict[str, str], tmp_path: Path) -> None:
    """`reconcile run` in cron loads neither pandas, rich nor the emulator's aiohttp server: each is start-up time."""
    manifest = write_manifest(tmp_path / "m.csv", [*PRESENT, MISSING_ROW])
    code = (
        "import sys\nfrom reconcile.cli import cli\ntry:\n    cli()\nexcept SystemExit as exit:\n"
        "    heavy = ('pandas', 'numpy', 'rich', 'aiohttp.web', 'reconcile.emulator')\n"
        "    loaded = [m for m in heavy if m in sys.modules]\n"
        "    print('exit', exit.code, 'loaded', loaded)"
    )
    result = python(code, ["run", str(manifest), "--out", str(tmp_path / "out")], env)
    assert result.stdout.splitlines()[-1] == "exit 1 loaded []", result.stdout + result.stderr
    assert [r["status"] for r in read_results(tmp_path / "out" / "results.csv")] == ["present"] * 3 + ["missing"]


@pytest.mark.slow
def test_the_console_script_exits_with_the_code_and_everything_flushed(env: dict[str, str], tmp_path: Path) -> None:
    """main() leaves at once after the command, yet with its exit code, all of stdout and the whole log file."""
    manifest = write_manifest(tmp_path / "m.csv", [*PRESENT, MISSING_ROW])
    log = tmp_path / "run.log"
    args = ["-v", "--log-file", str(log), "run", str(manifest), "--out", str(tmp_path / "out")]
    result = python("from reconcile.cli import main; main()", args, env)
    assert result.returncode == 1, result.stderr
    assert result.stdout.startswith("4 records: 3 present, 1 missing"), result.stdout
    assert result.stdout.rstrip().endswith(str(tmp_path / "out" / "summary.json")), result.stdout
    assert "token issued" in log.read_text(encoding="utf-8")
    hidden = sorted(p.name for p in (tmp_path / "out").iterdir() if p.name.startswith("."))
    assert hidden == [".reconcile.lock"]  # no partials; the lock file stays, as the directory's mark


@pytest.mark.slow
def test_exit_1_when_some_rows_are_missing(env: dict[str, str], tmp_path: Path) -> None:
    """A complete run with a missing row exits 1 and lists it in missing.csv."""
    manifest = write_manifest(tmp_path / "m.csv", [*PRESENT, MISSING_ROW])
    result = invoke(["run", str(manifest), "--out", "out"], env)
    assert result.exit_code == 1, result.output
    (missing,) = read_results(tmp_path / "out" / "missing.csv")
    assert missing["filename"] == "no-such-recording.mp3"


@pytest.mark.slow
def test_exit_2_for_a_missing_required_column(env: dict[str, str], tmp_path: Path) -> None:
    """A manifest without a required column exits 2 naming what is missing and what was found."""
    manifest = write_manifest(
        tmp_path / "m.csv", [("acme", "acme-ca", "a.mp3")], header=("Company", "Organisation", "FileName")
    )
    result = invoke(["run", str(manifest), "--out", "out"], env)
    assert result.exit_code == 2, result.output
    assert "folder" in result.stderr
    assert "'Company'" in result.stderr
    assert "'FileName'" in result.stderr
    assert "m.csv" in result.stderr


@pytest.mark.slow
def test_exit_2_for_a_nonexistent_manifest(env: dict[str, str]) -> None:
    """A manifest path that does not exist exits 2 naming it."""
    result = invoke(["run", "no-such-file.csv", "--out", "out"], env)
    assert result.exit_code == 2, result.output
    assert "no-such-file.csv" in result.output


@pytest.mark.slow
def test_exit_2_without_arguments(env: dict[str, str]) -> None:
    """`reconcile run` without a manifest or --out is a usage error."""
    assert invoke(["run"], env).exit_code == 2
    assert invoke(["run", "m.csv"], env).exit_code == 2


@pytest.mark.slow
def test_exit_3_for_invalid_rows(env: dict[str, str], tmp_path: Path) -> None:
    """A row with a blank required field is invalid, never sent, and the run exits 3."""
    manifest = write_manifest(tmp_path / "m.csv", [*PRESENT, ("acme", "acme-ca", "   ", "x.mp3")])
    result = invoke(["run", str(manifest), "--out", "out"], env)
    assert result.exit_code == 3, result.output
    assert "1 invalid" in result.stdout
    invalid = read_results(tmp_path / "out" / "results.csv")[-1]
    assert (invalid["status"], invalid["call_id"]) == ("invalid", "")
    assert "folder" in invalid["detail"]


@pytest.mark.slow
def test_exit_4_for_a_wrong_endpoint_path(env: dict[str, str], tmp_path: Path) -> None:
    """The guide's callexists path 404s: exit 4, the message explains it, and no row is reported missing."""
    manifest = write_manifest(tmp_path / "m.csv", [*PRESENT, MISSING_ROW])
    result = invoke(["run", str(manifest), "--out", "out", "--endpoint-path", "/api/v1/search/callexists"], env)
    assert result.exit_code == 4, result.output
    assert "404" in result.stderr
    assert "callexists" in result.stderr
    assert read_results(tmp_path / "out" / "missing.csv") == []
    assert all(r["status"] != "missing" for r in read_results(tmp_path / "out" / "results.csv"))
    assert summary_json(tmp_path / "out")["error"]


@pytest.mark.slow
def test_exit_4_for_a_wrong_secret_shows_aadsts_not_the_secret(
    env: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A wrong secret exits 4 showing Azure AD's invalid_client and code; the secret is in no output, file or log."""
    caplog.set_level(logging.DEBUG)
    secret = "Qq8~this-is-the-wrong-secret"
    manifest = write_manifest(tmp_path / "m.csv", PRESENT)
    result = invoke(["-vv", "run", str(manifest), "--out", "out"], {**env, "CALLJOURNEY_CLIENT_SECRET": secret})
    assert result.exit_code == 4, result.output
    assert "invalid_client" in result.stderr
    assert result.stderr.count("7000215") == 1  # logged as it happened, not printed a second time
    assert (
        "stopped by a fatal error (TokenError, on stderr): the rows not reached are unchecked; once it is fixed, "
        "re-run the same command to resume"
    ) in result.stdout
    assert secret not in result.output
    for file in (tmp_path / "out").iterdir():
        assert secret.encode() not in file.read_bytes(), file.name
    assert caplog.records
    assert not [r for r in caplog.records if secret in r.getMessage()]


@pytest.mark.slow
def test_exit_4_for_plain_http_to_a_remote_host(env: dict[str, str], tmp_path: Path) -> None:
    """Plain http to a non-loopback host is refused before any request: exit 4 with the fix."""
    manifest = write_manifest(tmp_path / "m.csv", PRESENT)
    result = invoke(["run", str(manifest), "--out", "out", "--base-url", "http://platform.example.com"], env)
    assert result.exit_code == 4, result.output
    assert "plain http" in result.stderr
    assert "HINT" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_exit_4_when_no_credentials_are_configured(env: dict[str, str], tmp_path: Path) -> None:
    """Without a secret the run refuses to start and says which settings are missing."""
    manifest = write_manifest(tmp_path / "m.csv", PRESENT)
    result = invoke(["run", str(manifest), "--out", "out"], {**env, "CALLJOURNEY_CLIENT_SECRET": ""})
    assert result.exit_code == 4, result.output
    assert "CALLJOURNEY_CLIENT_SECRET" in result.stderr


@pytest.mark.slow
def test_client_secret_file(env: dict[str, str], tmp_path: Path) -> None:
    """--client-secret-file supplies the secret when the environment has none."""
    (tmp_path / "secret.txt").write_text(DEMO_CLIENT_SECRET + "\n", encoding="utf-8")
    manifest = write_manifest(tmp_path / "m.csv", PRESENT)
    result = invoke(
        ["run", str(manifest), "--out", "out", "--client-secret-file", "secret.txt"],
        {**env, "CALLJOURNEY_CLIENT_SECRET": ""},
    )
    assert result.exit_code == 0, result.output
    (tmp_path / "secret.txt").write_text("", encoding="utf-8")
    empty = invoke(
        ["run", str(manifest), "--out", "out", "--client-secret-file", "secret.txt"],
        {**env, "CALLJOURNEY_CLIENT_SECRET": ""},
    )
    assert empty.exit_code == 4, empty.output
    assert (
        empty.stderr == "error: the client secret file secret.txt is empty. HINT: write the client secret into it "
        "(one line), or point --client-secret-file at the file that holds it\n"
    )


@pytest.mark.slow
def test_dotenv_in_the_working_directory_is_read(env: dict[str, str], tmp_path: Path) -> None:
    """Settings missing from the environment are taken from ./.env."""
    (tmp_path / ".env").write_text(f"CALLJOURNEY_CLIENT_SECRET={DEMO_CLIENT_SECRET}\n", encoding="utf-8")
    manifest = write_manifest(tmp_path / "m.csv", PRESENT)
    result = invoke(["run", str(manifest), "--out", "out"], {**env, "CALLJOURNEY_CLIENT_SECRET": None})
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_garbage_journal_is_exit_4_without_a_traceback(env: dict[str, str], tmp_path: Path) -> None:
    """A corrupt journal in --out is a clean error (exit 4) suggesting --fresh; --fresh then works."""
    manifest = write_manifest(tmp_path / "m.csv", PRESENT)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "journal.sqlite").write_bytes(b"\x00garbage" * 512)
    result = invoke(["run", str(manifest), "--out", "out"], env)
    assert result.exit_code == 4, result.output
    assert "--fresh" in result.stderr
    assert invoke(["run", str(manifest), "--out", "out", "--fresh"], env).exit_code == 0


@pytest.mark.slow
def test_changed_manifest_is_exit_2(env: dict[str, str], tmp_path: Path) -> None:
    """Re-using --out after the manifest changed is refused with exit 2 and the --fresh hint."""
    manifest = write_manifest(tmp_path / "m.csv", PRESENT)
    assert invoke(["run", str(manifest), "--out", "out"], env).exit_code == 0
    write_manifest(manifest, [*PRESENT, MISSING_ROW])
    result = invoke(["run", str(manifest), "--out", "out"], env)
    assert result.exit_code == 2, result.output
    assert "--fresh" in result.stderr


@pytest.mark.slow
def test_resuming_with_another_map_is_exit_2_and_leaves_the_report(env: dict[str, str], tmp_path: Path) -> None:
    """Re-using --out with another --map is refused (exit 2, naming --map, hinting --fresh); nothing is rewritten."""
    header = ["company", "organisation", "folder", "File", "Other"]
    rows = [(*key[:3], key[3], "unrelated.mp3") for key in PRESENT]
    manifest = write_manifest(tmp_path / "m.csv", rows, header=header)
    first = invoke(["run", str(manifest), "--out", "out", "--map", "filename=File"], env)
    assert first.exit_code == 0, first.output
    report = (tmp_path / "out" / "results.csv").read_bytes()
    result = invoke(["run", str(manifest), "--out", "out", "--map", "filename=Other"], env)
    assert result.exit_code == 2, result.output
    assert "read with other options (--map)" in result.stderr
    assert "--fresh" in result.stderr
    assert (tmp_path / "out" / "results.csv").read_bytes() == report
    again = invoke(["run", str(manifest), "--out", "out", "--map", "filename=Other", "--fresh"], env)
    assert again.exit_code == 1, again.output  # unrelated.mp3 is missing everywhere
    assert [r["status"] for r in read_results(tmp_path / "out" / "results.csv")] == ["missing"] * 3


def test_demo_exits_3_and_writes_the_report_under_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`reconcile demo` needs no configuration, writes ./reconcile-demo, exits 3 (samples hold invalid rows)."""
    monkeypatch.chdir(tmp_path)
    for name in ("CALLJOURNEY_BASE_URL", "CALLJOURNEY_AUTHORITY", "CALLJOURNEY_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    result = invoke(["demo"], {})
    assert result.exit_code == 3, result.output
    out = tmp_path / "reconcile-demo"
    for name in ("results.csv", "missing.csv", "summary.json"):
        assert (out / name).is_file()
        assert str(Path("reconcile-demo") / name) in result.stdout
    assert "emulator" in result.stdout
    data = summary_json(out)
    assert data["complete"] is True
    counts = data["counts"]
    assert isinstance(counts, dict)
    assert min(counts["invalid"], counts["present"], counts["missing"]) > 0
    assert counts["error"] == 0


def test_demo_reconciles_the_packaged_samples_wherever_it_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo reads the manifests inside the package, even where a ./sample_manifests folder holds others."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sample_manifests").mkdir()
    write_manifest(tmp_path / "sample_manifests" / "mine.csv", PRESENT)
    result = invoke(["demo", "--out", "demo-out", "-q"], {})
    assert result.exit_code == 3, result.output
    sources = {row["source"] for row in read_results(tmp_path / "demo-out" / "results.csv")}
    assert {Path(source).name for source in sources} == {path.name for path in sample_manifests()}
    assert all(Path(source).parent == DEMO_MANIFESTS for source in sources)


def test_help_documents_the_commands() -> None:
    """--help lists run and demo; run --help documents the connection flags but offers no secret flag."""
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "run" in result.output
    assert "demo" in result.output
    run_help = CliRunner().invoke(cli, ["run", "--help"]).output
    for flag in (
        "--out",
        "--concurrency",
        "--base-url",
        "--endpoint-path",
        "--timeout",
        "--max-attempts",
        "--ca-bundle",
        "--client-secret-file",
    ):
        assert flag in run_help
    assert not re.search(r"--client-secret\b(?!-file)", run_help)


def test_commands_run_with_the_collector_tuned_then_restore_it() -> None:
    """While a command's event loop runs, the collector's first generation waits for 20,000 objects; then as before."""
    before = gc.get_threshold()

    async def inside() -> tuple[int, int, int]:
        return gc.get_threshold()

    assert event_loop_run(inside()) == (GC_THRESHOLD, *before[1:])
    assert gc.get_threshold() == before


@pytest.mark.slow
def test_a_stray_quote_in_an_export_is_one_invalid_row_and_every_other_row_is_checked(
    env: dict[str, str], tmp_path: Path
) -> None:
    """The issue's 1,000-row export, `"12 inch` on row 11: run reports 1,000 rows, row 11 invalid (line 12), exit 3."""
    manifest = tmp_path / "export.csv"
    rows = [[*MISSING_ROW[:3], f"rec-{i:04d}.mp3", "n" * 30] for i in range(1, 1001)]
    with open(manifest, "w", encoding="utf-8", newline="") as handle:
        handle.write("company,organisation,folder,filename,notes\n")
        for i, row in enumerate(rows, start=1):
            handle.write(",".join(row[:4]) + (',"12 inch\n' if i == 11 else f",{row[4]}\n"))
    result = invoke(["run", str(manifest), "--out", "out", "--concurrency", "32"], env)
    assert result.exit_code == 3, result.output
    assert "1000 records: 0 present, 999 missing, 1 invalid, 0 error" in result.stdout
    results = read_results(tmp_path / "out" / "results.csv")
    assert [r["filename"] for r in results] == [row[3] for row in rows]
    assert [r["row"] for r in results if r["status"] == "invalid"] == ["11"]
    assert results[10]["notes"] == "12 inch"
    assert results[10]["detail"].startswith("a quote on line 12 opens a value that runs on over lines 13-1001")
    assert {r["notes"] for r in results[11:]} == {"n" * 30}


@pytest.mark.slow
def test_a_nul_byte_in_a_filename_is_invalid_not_missing(env: dict[str, str], tmp_path: Path) -> None:
    """A NUL in a filename is never sent: the row is `invalid` with the reason (exit 3), the others are checked."""
    manifest = write_manifest(tmp_path / "m.csv", [*PRESENT, (*PRESENT[0][:3], "call-0001\x00.mp3")])
    result = invoke(["run", str(manifest), "--out", "out"], env)
    assert result.exit_code == 3, result.output
    assert "4 records: 3 present, 0 missing, 1 invalid, 0 error" in result.stdout
    last = read_results(tmp_path / "out" / "results.csv")[-1]
    assert (last["status"], last["attempts"]) == ("invalid", "0")
    assert last["detail"].startswith("control character in filename (U+0000 NUL)")
    checked = invoke(["validate", str(manifest)], env)
    assert checked.exit_code == 3
    assert "row 4 (line 5): control character in filename (U+0000 NUL)" in checked.output


@pytest.mark.slow
def test_a_resume_from_another_working_directory_continues(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same export as ./export.csv here and ../exports/export.csv from elsewhere is one manifest: it resumes."""
    (tmp_path / "exports").mkdir()
    (tmp_path / "cron").mkdir()
    write_manifest(tmp_path / "exports" / "export.csv", [*PRESENT, MISSING_ROW])
    out = str(tmp_path / "out")
    monkeypatch.chdir(tmp_path / "exports")
    assert invoke(["run", "./export.csv", "--out", out], env).exit_code == 1
    monkeypatch.chdir(tmp_path / "cron")
    again = invoke(["run", "../exports/export.csv", "--out", out], env)
    assert again.exit_code == 1, again.output
    summary = summary_json(tmp_path / "out")
    assert [a["attempt"] for a in summary["attempts"]] == [1, 2]  # type: ignore[index]
    assert summary["manifests"][0]["path"] == "../exports/export.csv"  # type: ignore[index]
    write_manifest(tmp_path / "exports" / "export.csv", PRESENT)
    changed = invoke(["run", "../exports/export.csv", "--out", out], env)
    assert changed.exit_code == 2
    assert "../exports/export.csv changed since the run in the output directory checked it" in changed.stderr


@pytest.mark.slow
def test_run_dash_reads_the_manifest_from_stdin_and_resumes(env: dict[str, str], tmp_path: Path) -> None:
    """`reconcile run -` spools standard input into --out: the rows are checked, and the same input again resumes."""
    manifest = write_manifest(tmp_path / "m.csv", [*PRESENT, MISSING_ROW]).read_bytes()
    first = CliRunner().invoke(cli, ["run", "-", "--out", "out"], env=env, input=manifest)
    assert first.exit_code == 1, first.output
    assert "4 records: 3 present, 1 missing" in first.stdout
    spooled = tmp_path / "out" / "manifest-from-stdin"
    assert spooled.read_bytes() == manifest
    assert {r["source"] for r in read_results(tmp_path / "out" / "results.csv")} == {str(Path("out") / spooled.name)}
    again = CliRunner().invoke(cli, ["run", "-", "--out", "out"], env=env, input=manifest)
    assert again.exit_code == 1, again.output
    assert summary_json(tmp_path / "out")["resumed"] is True


def test_validate_reads_stdin_and_a_pipe(tmp_path: Path) -> None:
    """`validate -` and a named pipe are read whole, not as "empty files"."""
    manifest = write_manifest(tmp_path / "m.csv", [*PRESENT, MISSING_ROW])
    from_stdin = CliRunner().invoke(cli, ["validate", "-"], input=manifest.read_bytes())
    assert from_stdin.exit_code == 0, from_stdin.output
    assert "4 records: 4 to send" in from_stdin.output
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", f"cat {manifest} > {fifo}"])
    try:
        from_pipe = CliRunner().invoke(cli, ["validate", str(fifo)])
    finally:
        writer.wait(timeout=30)
    assert from_pipe.exit_code == 0, from_pipe.output
    assert "4 records: 4 to send" in from_pipe.output
