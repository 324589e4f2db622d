"""`reconcile emulator`'s export lines and --env-file: pasted into a shell or left in ./.env, they point a
`reconcile run` at the running emulator, over plain loopback http and over verified TLS."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from click.testing import CliRunner

from reconcile.config._settings import check_url, environment
from reconcile.emulator import DEMO_CLIENT_SECRET, Emulator, EmulatorConfig
from reconcile.emulator.command import emulator as emulator_command
from reconcile.emulator.environment import ENV_FILE_MARKER, client_environment, export_lines
from reconcile.ops._demo import DEMO_MANIFESTS
from tests.conftest import REPO

SMOKE = DEMO_MANIFESTS / "smoke-10.csv"  # 7 present, 3 missing: `reconcile run` exits 1
README = (REPO / "README.md").read_text(encoding="utf-8")


@contextlib.contextmanager
def emulator_lines(*args: str) -> Iterator[list[str]]:
    """`python -m reconcile.emulator --port 0 ARGS` in a subprocess; its stdout up to the last export line."""
    command = [sys.executable, "-m", "reconcile.emulator", "--port", "0", *args]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as process:
        try:
            assert process.stdout is not None
            # Raw reads under select: a buffered readline would take lines select can then no longer see.
            received = b""
            while b"\nexport CALLJOURNEY_AUTHORITY=" not in received or not received.endswith(b"\n"):
                ready, _, _ = select.select([process.stdout], [], [], 20)
                assert ready, f"the emulator printed no more within 20 s after {received!r}"
                chunk = os.read(process.stdout.fileno(), 65536)
                assert chunk, f"the emulator stopped after {received!r}"
                received += chunk
            yield received.decode().splitlines()
        finally:
            process.terminate()
            process.wait(timeout=10)


def parse_exports(lines: list[str]) -> dict[str, str]:
    """The variables of ``export NAME=VALUE`` lines, as a POSIX shell would set them; every line is a comment
    or such an export (what can be pasted as it stands)."""
    variables: dict[str, str] = {}
    for line in lines:
        words = shlex.split(line, comments=True)
        if not words:
            continue
        assert words[0] == "export", line
        assert len(words) == 2, line
        name, value = words[1].split("=", 1)
        variables[name] = value
    return variables


def reconcile_run(cwd: Path, variables: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m reconcile run smoke-10.csv` in ``cwd``, with none of the developer's CALLJOURNEY_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLJOURNEY_")}
    return subprocess.run(
        [sys.executable, "-m", "reconcile", "run", str(SMOKE), "--out", "out", "-q"],
        cwd=cwd,
        env={**env, **variables},
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_smoke_report(result: subprocess.CompletedProcess[str], out: Path) -> None:
    assert result.returncode == 1, result.stderr
    counts = json.loads((out / "summary.json").read_text(encoding="utf-8"))["counts"]
    assert (counts["present"], counts["missing"], counts["error"]) == (7, 3, 0)


@pytest.mark.slow
def test_pasted_exports_point_a_run_at_the_emulator(tmp_path: Path) -> None:
    """Every line after the URL line is a comment or an `export`; as a shell parses them, they set the demo
    credentials, and the URL as base URL and authority (port included), and a run with just those works; the
    README shows these lines."""
    with emulator_lines() as lines:
        assert lines[0].startswith("emulator listening on http://127.0.0.1:")
        url = lines[0].removeprefix("emulator listening on ")
        variables = parse_exports(lines[1:])
        assert variables["CALLJOURNEY_BASE_URL"] == variables["CALLJOURNEY_AUTHORITY"] == url
        assert variables["CALLJOURNEY_CLIENT_SECRET"] == DEMO_CLIENT_SECRET
        assert set(variables) == {f"CALLJOURNEY_{n}" for n in ("TENANT_ID", "CLIENT_ID", "CLIENT_SECRET")} | {
            "CALLJOURNEY_BASE_URL",
            "CALLJOURNEY_AUTHORITY",
        }
        assert_smoke_report(reconcile_run(tmp_path, variables), tmp_path / "out")
    port = url.rsplit(":", 1)[1]
    shown = README.split("$ reconcile emulator --port 8080\n", 1)[1].split("```", 1)[0]
    assert shown.splitlines() == [line.replace(f":{port}", ":8080") for line in lines], "README's example is stale"


@pytest.mark.slow
def test_env_file_is_what_reconcile_reads_from_its_working_directory(
    tmp_path: Path, ca: trustme.CA, ca_bundle: Path
) -> None:
    """--env-file writes, before the URL line, a private .env holding what the exports say (python-dotenv reads
    the same values); a run in that directory needs nothing else but the CA of a TLS emulator."""
    pem = tmp_path / "localhost.pem"
    ca.issue_cert("localhost", "127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(pem))
    env_file = tmp_path / ".env"
    with emulator_lines("--certfile", str(pem), "--env-file", str(env_file)) as lines:
        assert lines[0].startswith("emulator listening on https://localhost:")
        assert any("CALLJOURNEY_CA_BUNDLE" in line for line in lines if line.startswith("#"))
        assert env_file.stat().st_mode & 0o777 == 0o600
        assert env_file.read_text(encoding="utf-8").startswith(ENV_FILE_MARKER)
        assert environment({}, env_file) == parse_exports(lines[1:])
        result = reconcile_run(tmp_path, {"CALLJOURNEY_CA_BUNDLE": str(ca_bundle)})
        assert_smoke_report(result, tmp_path / "out")


@pytest.mark.slow
def test_env_file_replaces_its_own_file_never_another(tmp_path: Path) -> None:
    """A .env the emulator wrote is rewritten for the new port; any other file (it may hold real credentials)
    is refused with exit 2 and a HINT, and left as it was."""
    own = tmp_path / "own.env"
    own.write_text(f"{ENV_FILE_MARKER}, long ago\nCALLJOURNEY_BASE_URL=http://127.0.0.1:1\n", encoding="utf-8")
    with emulator_lines("--env-file", str(own)) as lines:
        url = lines[0].removeprefix("emulator listening on ")
        assert environment({}, own)["CALLJOURNEY_BASE_URL"] == url
    foreign = tmp_path / ".env"
    foreign.write_text("CALLJOURNEY_CLIENT_SECRET=a-real-secret\n", encoding="utf-8")
    result = CliRunner().invoke(emulator_command, ["--port", "0", "--env-file", str(foreign)])
    assert result.exit_code == 2, result.output
    assert "was not written by `reconcile emulator`" in result.output
    assert "HINT:" in result.output
    assert foreign.read_text(encoding="utf-8") == "CALLJOURNEY_CLIENT_SECRET=a-real-secret\n"
    missing_dir = CliRunner().invoke(emulator_command, ["--env-file", str(tmp_path / "nowhere" / ".env")])
    assert missing_dir.exit_code == 2, missing_dir.output
    assert "HINT: create it" in missing_dir.output


async def test_a_wildcard_listener_is_reached_on_loopback() -> None:
    """Listening on 0.0.0.0, the exports name 127.0.0.1 (a client cannot connect to 0.0.0.0, and plain http
    must be loopback); a changed endpoint path is exported too."""
    config = EmulatorConfig(endpoint_path="/api/v1/search/callexists")
    async with Emulator(config, host="0.0.0.0", port=0) as server:
        variables = client_environment(server, "0.0.0.0")
    assert variables["CALLJOURNEY_BASE_URL"] == f"http://127.0.0.1:{server.port}"
    assert check_url(variables["CALLJOURNEY_BASE_URL"]) is None
    assert variables["CALLJOURNEY_ENDPOINT_PATH"] == "/api/v1/search/callexists"
    assert list(variables)[-1] == "CALLJOURNEY_AUTHORITY"


@pytest.mark.parametrize("value", ["it's", "a b", "$HOME", "x;rm -rf ~", "\\n"])
def test_export_lines_quote_any_value_for_the_shell(value: str) -> None:
    """Whatever a value holds, the shell reads back exactly it: quoting, not hoping the value is tame."""
    assert parse_exports(export_lines({"CALLJOURNEY_SCOPE": value})) == {"CALLJOURNEY_SCOPE": value}
