"""Logging: text and JSON lines, levels for -v/-vv, the log file, structured retries and fatal errors."""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reconcile.api import run
from reconcile.cli import cli
from reconcile.config import Secret
from reconcile.config._logs import configure_logging, error_fields, level_for, reset_logging
from reconcile.config._redact import RedactingFilter
from reconcile.emulator import EmulatorConfig, Faults
from reconcile.errors import TokenError, UsageError
from tests.conftest import settings_for, write_manifest

TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (?P<level>[A-Z]+) (?P<logger>\S+): (?P<message>.*)$")
log = logging.getLogger("reconcile.test")


pytestmark = pytest.mark.usefixtures("clean_logging")


def test_text_lines_have_utc_time_level_logger_and_message() -> None:
    """A text line reads `2026-11-26T23:59:01.123Z WARNING reconcile.test: message`."""
    stream = io.StringIO()
    configure_logging(0, stream=stream)
    log.warning("platform slow: %d ms", 900)
    match = TEXT_LINE.match(stream.getvalue().strip())
    assert match, stream.getvalue()
    assert match.group("level", "logger", "message") == ("WARNING", "reconcile.test", "platform slow: 900 ms")


@pytest.mark.parametrize(
    ("verbosity", "shown"),
    [(0, {"WARNING"}), (1, {"WARNING", "INFO"}), (2, {"WARNING", "INFO", "DEBUG"}), (5, {"WARNING", "INFO", "DEBUG"})],
)
def test_verbosity_sets_the_level(verbosity: int, shown: set[str]) -> None:
    """No -v: warnings; -v adds INFO; -vv (and more) adds DEBUG."""
    stream = io.StringIO()
    configure_logging(verbosity, stream=stream)
    log.debug("d")
    log.info("i")
    log.warning("w")
    levels = {m.group("level") for m in map(TEXT_LINE.match, stream.getvalue().splitlines()) if m}
    assert levels == shown
    assert level_for(verbosity) == min(logging.getLevelName(level) for level in shown)


def test_json_lines_carry_extras_and_a_redacted_traceback() -> None:
    """JSON: ts, level, logger, message, then extras as fields; a traceback is a field and is redacted."""
    stream = io.StringIO()
    configure_logging(1, log_format="json", stream=stream)
    log.info("retrying row %d", 17, extra={"row": 17, "status": 503, "wait": 1.5, "codes": (1, 2)})
    try:
        raise RuntimeError("failed with Authorization: Bearer abc.def-ghi")
    except RuntimeError:
        log.exception("boom")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "retrying row 17"
    assert (first["level"], first["logger"]) == ("INFO", "reconcile.test")
    assert (first["row"], first["status"], first["wait"], first["codes"]) == (17, 503, 1.5, [1, 2])
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", first["ts"])
    assert second["level"] == "ERROR"
    assert "RuntimeError" in second["exception"]
    assert "abc.def-ghi" not in stream.getvalue()


def test_log_file_gets_details_and_stderr_keeps_warnings(tmp_path: Path) -> None:
    """With --log-file the file gets INFO (DEBUG at -vv) and stderr only warnings."""
    stream = io.StringIO()
    path = tmp_path / "logs" / "run.log"
    configure_logging(0, log_file=path, stream=stream)
    log.debug("debug detail")
    log.info("token issued")
    log.warning("stopping")
    reset_logging()  # closes the file
    written = path.read_text(encoding="utf-8")
    assert "token issued" in written
    assert "stopping" in written
    assert "debug detail" not in written
    assert "stopping" in stream.getvalue()
    assert "token issued" not in stream.getvalue()
    configure_logging(2, log_file=path, stream=stream)
    log.debug("debug detail")
    reset_logging()
    assert "debug detail" in path.read_text(encoding="utf-8")


def test_unwritable_log_file_is_a_usage_error(tmp_path: Path) -> None:
    """A log file that cannot be opened is exit 2 naming it, with a hint."""
    (tmp_path / "dir").mkdir()
    with pytest.raises(UsageError, match="HINT") as caught:
        configure_logging(0, log_file=tmp_path / "dir")
    assert str(tmp_path / "dir") in str(caught.value)
    with pytest.raises(UsageError, match="log format"):
        configure_logging(0, log_format="xml")


def test_configure_twice_replaces_its_own_handlers_only(caplog: pytest.LogCaptureFixture) -> None:
    """A second call replaces reconcile's handlers; a foreign handler (pytest's) stays and gets redaction."""
    configure_logging(0, stream=io.StringIO())
    configure_logging(1, stream=io.StringIO())
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "_reconcile_handler", False)]
    assert len(ours) == 1
    assert caplog.handler in root.handlers
    assert any(isinstance(f, RedactingFilter) for f in caplog.handler.filters)


def test_redaction_reaches_handlers_of_other_loggers() -> None:
    """A handler someone put on aiohttp's logger, and logging's last resort, get the redacting filter too."""
    handler = logging.StreamHandler(io.StringIO())
    aiohttp_log = logging.getLogger("aiohttp.client")
    aiohttp_log.addHandler(handler)
    try:
        configure_logging(0, stream=io.StringIO())
        assert any(isinstance(f, RedactingFilter) for f in handler.filters)
        assert logging.lastResort is not None
        assert any(isinstance(f, RedactingFilter) for f in logging.lastResort.filters)
    finally:
        aiohttp_log.removeHandler(handler)


def test_error_fields_carry_azure_ad_codes_and_ids() -> None:
    """A fatal token error logs its Azure AD error, codes, trace and correlation ids as fields."""
    exc = TokenError(
        "refused",
        status=401,
        details={"error": "invalid_client", "error_codes": [7000215], "trace_id": "t-1", "correlation_id": "c-1"},
    )
    assert error_fields(exc) == {
        "error": "TokenError",
        "status": 401,
        "error_codes": [7000215],
        "trace_id": "t-1",
        "correlation_id": "c-1",
        "aad_error": "invalid_client",
    }
    assert error_fields(ValueError("x")) == {"error": "ValueError"}


@pytest.mark.slow
async def test_retries_and_throttling_are_logged_with_the_row(make_emulator: Any, tmp_path: Path) -> None:
    """At -v a retry names the row, the status and the wait (a 429's at least its Retry-After); no token in sight."""
    stream = io.StringIO()
    configure_logging(1, log_format="json", stream=stream)
    manifest = write_manifest(tmp_path / "m.csv", [("acme", "acme-ca", "f", f"r{i}.mp3") for i in range(40)])
    async with make_emulator(EmulatorConfig(faults=Faults(rate_500=0.15, rate_429=0.1), seed=3)) as emulator:
        settings = settings_for(emulator, concurrency=4, max_attempts=6)
        summary = await run([manifest], tmp_path / "out", settings=settings)
    assert summary.counts["missing"] == 40
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    retries = [e for e in entries if "retrying in" in e["message"]]
    assert retries, entries
    for entry in retries:
        assert 1 <= entry["row"] <= 40
        assert entry["status"] in (429, 500)
        assert entry["wait"] >= 0
        assert f"row {entry['row']} of manifest 1" in entry["message"]
    assert any(e["status"] == 429 and e["wait"] >= 0.9 for e in retries)  # the row waits out its Retry-After
    assert any(e["logger"] == "reconcile.platform._auth" and "token issued" in e["message"] for e in entries)


async def test_fatal_error_is_logged_with_its_codes(make_emulator: Any, tmp_path: Path) -> None:
    """A refused secret logs one ERROR line carrying invalid_client, AADSTS code and correlation id as fields."""
    stream = io.StringIO()
    configure_logging(0, log_format="json", stream=stream)
    manifest = write_manifest(tmp_path / "m.csv", [("acme", "acme-ca", "f", "a.mp3")])
    async with make_emulator() as emulator:
        settings = settings_for(emulator).with_(client_secret=Secret("wrong~1"))
        summary = await run([manifest], tmp_path / "out", settings=settings)
    assert summary.exit_code == 4
    (entry,) = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert entry["level"] == "ERROR"
    assert entry["aad_error"] == "invalid_client"
    assert entry["error_codes"] == [7000215]
    assert re.fullmatch(r"[0-9a-f-]{36}", entry["correlation_id"])
    assert entry["correlation_id"] in entry["message"]


# -- the CLI ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_log_file_in_json_keeps_stderr_for_warnings(env: dict[str, str], tmp_path: Path) -> None:
    """`run --log-file x --log-format json -v`: JSON lines in the file (token renewal included), none on stderr."""
    manifest = write_manifest(tmp_path / "m.csv", [("acme", "acme-ca", "f", "a.mp3")])
    result = CliRunner().invoke(
        cli, ["run", str(manifest), "--out", "out", "--log-file", "run.log", "--log-format", "json", "-v"], env=env
    )
    assert result.exit_code == 1, result.output
    reset_logging()
    entries = [json.loads(line) for line in (tmp_path / "run.log").read_text(encoding="utf-8").splitlines()]
    assert any(e["logger"] == "reconcile.platform._auth" and e["level"] == "INFO" for e in entries)
    assert "token issued" not in result.stderr


@pytest.mark.slow
def test_cli_verbosity_adds_up_before_and_after_the_command(env: dict[str, str], tmp_path: Path) -> None:
    """`reconcile -v run ... -v` is -vv: DEBUG lines reach stderr; without -v no INFO line does."""
    manifest = write_manifest(tmp_path / "m.csv", [("acme", "acme-ca", "f", "a.mp3")])
    quiet = CliRunner().invoke(cli, ["run", str(manifest), "--out", "out"], env=env)
    assert quiet.exit_code == 1, quiet.output
    assert not [line for line in quiet.stderr.splitlines() if " INFO " in line]
    loud = CliRunner().invoke(cli, ["-v", "run", str(manifest), "--out", "out2", "-v"], env=env)
    assert loud.exit_code == 1, loud.output
    lines = [m for m in map(TEXT_LINE.match, loud.stderr.splitlines()) if m]
    assert {"INFO", "DEBUG"} <= {m.group("level") for m in lines}, loud.stderr
    assert any("records to settle" in m.group("message") for m in lines)
