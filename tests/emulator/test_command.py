"""emulator/command: `reconcile emulator` serves until SIGTERM and validates its options."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.parse
import urllib.request

import pytest
from click.testing import CliRunner

from reconcile.emulator import (
    DEMO_CLIENT_SECRET,
    DEMO_TENANT_ID,
)
from reconcile.emulator.command import emulator as emulator_command
from reconcile.emulator.faults import ApiFault
from tests.emulator.conftest import (
    token_form,
)


@pytest.mark.slow
def test_command_serves_until_sigterm() -> None:
    """`python -m reconcile.emulator --port 0` prints its URL and exports, answers a token request, exits 0 on TERM."""
    process = subprocess.Popen(
        [sys.executable, "-m", "reconcile.emulator", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.fullmatch(r"emulator listening on (http://127\.0\.0\.1:\d+)\n", line)
        assert match, line
        # The export lines come in the same write; read here, since communicate() skips what readline buffered.
        exports = [process.stdout.readline()]
        while exports[-1] and not exports[-1].startswith("export CALLJOURNEY_AUTHORITY="):
            exports.append(process.stdout.readline())
        request = urllib.request.Request(
            f"{match[1]}/{DEMO_TENANT_ID}/oauth2/v2.0/token",
            data=urllib.parse.urlencode(token_form()).encode(),
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.load(response)["token_type"] == "Bearer"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert f"export CALLJOURNEY_CLIENT_SECRET={DEMO_CLIENT_SECRET}\n" in exports
    assert "1 token requests" in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("emulator stats: ")
    stats = json.loads(last.removeprefix("emulator stats: "))
    assert (stats["token_requests"], stats["api_requests"], stats["token_by_status"]) == (1, 0, {"200": 1})


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--queue-limit", "4"], "--queue-limit needs --capacity"),
        (["--capacity", "4", "--shed-retry-after", "1"], "--shed-retry-after needs --queue-limit"),
        (["--fault", "503"], "'503' is not KIND=RATE. HINT: e.g. --fault 503=0.02"),
        (["--fault", "504=0.1"], "unknown fault kind '504'. HINT: use one of"),
        (["--fault", "503=0.6", "--fault", "500=0.6"], "add up to 1.200"),
        (["--fault-rate", "0.1", "--fault", "503=0.1"], "alternatives. HINT: give every kind as --fault KIND=RATE"),
        (["--fault-mix", "stormy", "--fault-rate", "0.1"], "'stormy' is not one of 'uniform', 'gateway', 'flaky'"),
        (["--capacity", "0"], "x>=1"),
    ],
)
def test_command_refuses_bad_platform_options(args: list[str], fragment: str) -> None:
    """Contradictory or malformed shape options exit 2 with the reason, before anything listens."""
    result = CliRunner().invoke(emulator_command, ["--port", "0", *args])
    assert result.exit_code == 2, result.output
    assert fragment in result.output
    assert "listening" not in result.output


def test_command_help_documents_the_platform_shapes() -> None:
    """--help names every fault kind, both mixes, the cap's Retry-After, capacity, queue limit and the stats."""
    result = CliRunner().invoke(emulator_command, ["--help"], terminal_width=200)
    assert result.exit_code == 0
    for text in (
        "--fault-mix [uniform|gateway|flaky]",
        "--fault KIND=RATE",
        "HTTP-date",
        "--max-rps",
        "Retry-After",
        "--capacity",
        "--queue-limit",
        "--shed-retry-after",
        "_emulator/stats",
        "emulator stats: ",
    ):
        assert text in result.output, text
    assert all(kind.value in result.output for kind in ApiFault)
