"""Shared fixtures: the bundled emulator on loopback, a throwaway TLS CA, and settings pointing at them."""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import re
import select
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import trustme

from reconcile.config import Settings
from reconcile.demo import demo_settings
from reconcile.emulator import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TENANT_ID, Emulator, EmulatorConfig
from reconcile.logs import reset_logging

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "sample_manifests"
HEADER = ("company", "organisation", "folder", "filename")
# The columns of results.csv for a manifest with just those four: the manifest's, then the report's own.
OUR_COLUMNS = ("row", "source", "status", "call_id", "detail", "attempts", "checked_at")
RESULTS_HEADER = [*HEADER, *OUR_COLUMNS]


def settings_for(emulator: Emulator, **changes: Any) -> Settings:
    """Settings that reach ``emulator`` with the demo credentials; ``changes`` override fields."""
    return demo_settings(emulator, **{"concurrency": 8, "timeout": 5.0, **changes})


def write_manifest(
    path: Path,
    rows: Iterable[Sequence[str]],
    header: Sequence[str] = HEADER,
    *,
    encoding: str = "utf-8",
    newline: str = "\n",
) -> Path:
    """Write a CSV manifest; rows are written exactly as given."""
    with open(path, "w", encoding=encoding, newline="") as handle:
        writer = csv.writer(handle, lineterminator=newline)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_results(path: Path) -> list[dict[str, str]]:
    """results.csv (or missing.csv) as a list of dicts, every value a string."""
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def make_emulator() -> Callable[..., Emulator]:
    """Build an Emulator (use it as ``async with``) on a free loopback port."""

    def make(config: EmulatorConfig | None = None, **kwargs: Any) -> Emulator:
        return Emulator(config or EmulatorConfig(), **kwargs)

    return make


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    """The emulator with the demo dataset and no faults, on plain http loopback."""
    async with Emulator(EmulatorConfig()) as running:
        yield running


@contextlib.contextmanager
def emulator_process(*args: str) -> Iterator[str]:
    """The emulator in a subprocess with extra command-line ARGS (e.g. --latency-ms 20); its URL."""
    command = [sys.executable, "-m", "reconcile.emulator", "--port", "0", "--no-access-log", *args]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as process:
        try:
            assert process.stdout is not None
            ready, _, _ = select.select([process.stdout], [], [], 20)
            assert ready, "the emulator did not start within 20 s"
            line = process.stdout.readline().strip()
            assert line.startswith("emulator listening on "), line
            yield line.removeprefix("emulator listening on ")
        finally:
            process.terminate()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def emulator_process_url() -> Iterator[str]:
    """`python -m reconcile.emulator --port 0` in a subprocess, for CliRunner (it runs its own event loop); its URL."""
    with emulator_process() as url:
        yield url


def cli_env(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for CliRunner reaching the emulator at ``url`` with the demo credentials.

    The working directory becomes ``tmp_path`` (no stray .env is read, relative outputs land there) and any
    CALLJOURNEY_* variable of the developer's shell is removed.
    """
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("CALLJOURNEY_")]:
        monkeypatch.delenv(name)
    return {
        "CALLJOURNEY_TENANT_ID": DEMO_TENANT_ID,
        "CALLJOURNEY_CLIENT_ID": DEMO_CLIENT_ID,
        "CALLJOURNEY_CLIENT_SECRET": DEMO_CLIENT_SECRET,
        "CALLJOURNEY_BASE_URL": url,
        "CALLJOURNEY_AUTHORITY": url,
    }


@pytest.fixture
def env(emulator_process_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """CliRunner's environment reaching the module's emulator subprocess (see :func:`cli_env`)."""
    return cli_env(emulator_process_url, tmp_path, monkeypatch)


@pytest.fixture
def clean_logging() -> Iterator[None]:
    """The test leaves the root logger as it found it (for tests that configure logging)."""
    root = logging.getLogger()
    level = root.level
    yield
    reset_logging()
    root.setLevel(level)


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """A throwaway certificate authority: TLS is tested with verification on."""
    return trustme.CA()


@pytest.fixture
def server_ssl(ca: trustme.CA) -> ssl.SSLContext:
    """A server context with a certificate for localhost signed by ``ca``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


@pytest.fixture
def ca_bundle(ca: trustme.CA, tmp_path: Path) -> Path:
    """The test CA as a PEM file, for --ca-bundle."""
    path = tmp_path / "test-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


# -- comparing two reports -------------------------------------------------------------------------------------


def without(rows: list[dict[str, str]], *columns: str) -> list[dict[str, str]]:
    """``rows`` minus ``columns`` (e.g. checked_at, which differs between any two runs)."""
    return [{k: v for k, v in row.items() if k not in columns} for row in rows]


def html_without_run_section(path: Path) -> str:
    """report.html minus its run section (run id, times), which differs between any two runs."""
    return re.sub(r'<section id="run">.*?</section>', "", path.read_text(encoding="utf-8"), flags=re.S)


def read_parquet(directory: Path) -> pd.DataFrame:
    return pd.read_parquet(directory / "results.parquet")


def read_jsonl(directory: Path) -> pd.DataFrame:
    return pd.read_json(directory / "results.jsonl", lines=True, dtype=False)


def read_xlsx_all(directory: Path) -> pd.DataFrame:
    return pd.read_excel(directory / "results.xlsx", sheet_name="All", dtype=str, keep_default_na=False)
