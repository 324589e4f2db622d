"""Crash reports: an unexpected exception ends a command with exit 5 and one line naming a file to report.

Exit 5 is its own code so that a bug is never read as a finished report (0, 1) or a usage error (2).  The file
holds what a maintainer needs: the traceback, the versions, the command line and the platform, all through
:func:`reconcile.config._redact.redact`, so the client secret and tokens never reach it.  It goes into ``--out`` beside
the journal when there is one that can be written, else into the temporary directory.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import traceback
from datetime import UTC, datetime
from pathlib import Path

from reconcile._version import __version__, installed_version
from reconcile.config import redact
from reconcile.errors import InternalError

CRASH_PREFIX = "reconcile-crash-"
PACKAGES = ("aiohttp", "click", "tenacity", "orjson", "pandas", "pyarrow", "openpyxl", "rich", "uvloop")


def report_crash(exc: BaseException, directory: Path | None = None) -> str:
    """Write the crash file for ``exc`` and return the one line to print about it."""
    try:
        path: Path | None = write_crash_file(exc, directory)
    except OSError:
        path = None
    what = redact(f"{type(exc).__name__}: {exc}")
    where = f"details are in {path}: please send that file with a report" if path else "no crash file could be written"
    return (
        f"internal error (exit {InternalError.exit_code}): {what}. This is a bug in reconcile, not a problem with "
        f"the input; {where}. Re-running the same command resumes from the journal"
    )


def write_crash_file(exc: BaseException, directory: Path | None = None) -> Path:
    """The crash file, in ``directory`` when it is a writable directory, else in the temporary directory."""
    now = datetime.now(UTC)
    name = f"{CRASH_PREFIX}{now.strftime('%Y%m%dT%H%M%SZ')}-{os.getpid()}.txt"
    target = directory if directory is not None and os.access(directory, os.W_OK | os.X_OK) else None
    path = (target or Path(tempfile.gettempdir())) / name
    path.write_text(redact(crash_text(exc, now)), encoding="utf-8")
    return path


def crash_text(exc: BaseException, when: datetime) -> str:
    """What the crash file says (before redaction)."""
    lines = [
        f"reconcile {__version__} crashed (exit {InternalError.exit_code}) at "
        + when.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "command line: " + " ".join(["reconcile", *sys.argv[1:]]),
        f"working directory: {os.getcwd()}",
        f"python: {sys.version.split()[0]} ({platform.python_implementation()}) on {platform.platform()}",
        "packages: " + ", ".join(f"{name} {installed_version(name)}" for name in PACKAGES),
        "",
        *traceback.format_exception(exc),
    ]
    return "\n".join(line.rstrip("\n") for line in lines) + "\n"
