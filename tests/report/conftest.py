"""Fixtures of the report's tests: a headless Chromium (see tests/report/browser.py), and three nights of runs."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from reconcile.api import run
from reconcile.emulator import Dataset, Emulator, EmulatorConfig
from reconcile.engine import RunOptions
from tests.conftest import settings_for, write_manifest
from tests.report.browser import Browser, headless_chromium


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    """Headless Chromium for one test: ``await chromium.open(path)`` loads a file with the network blocked."""
    async with headless_chromium() as browser:
        yield browser


KEYS = [("acme", "acme-ca", "2026/11/25", f"call-{i:02d}.mp3") for i in range(8)] + [
    ("globex", "globex-eu", "2026/11/25", f"rec-{i:02d}.wav") for i in range(4)
]
NIGHTS = ("2026-11-24", "2026-11-25", "2026-11-26")
# What the platform does not hold, night by night: 3 and 9 go missing on the second night, 1 recovers then,
# 9 recovers on the third, when 5 goes missing.
MISSING_BY_NIGHT = ({1, 2}, {2, 3, 9}, {2, 3, 5})


async def reconcile_night(
    reports: Path,
    night: str,
    missing: set[int],
    previous: str | None,
    server_ssl: ssl.SSLContext,
    ca_bundle: Path,
    **changes: Any,
) -> Path:
    """One night's run over HTTPS against a dataset lacking ``missing``, compared with the ``previous`` night."""
    manifest = write_manifest(reports.parent / "export.csv", KEYS)
    dataset = Dataset({key: f"id-{i}" for i, key in enumerate(KEYS) if i not in missing})
    async with Emulator(EmulatorConfig(), dataset, ssl_context=server_ssl) as emulator:
        assert emulator.base_url.startswith("https://")
        options = RunOptions(label="nightly", compare_to=reports / previous if previous else None)
        await run(
            [manifest],
            reports / night,
            settings=settings_for(emulator, ca_bundle=ca_bundle, **changes),
            options=options,
        )
    return reports / night


@pytest.fixture
async def reports(tmp_path: Path, server_ssl: ssl.SSLContext, ca_bundle: Path) -> Path:
    """reports/ holding three nights as deploy/cron/nightly.sh writes them (dated, each compared with the one
    before), and its logs/ directory."""
    reports = tmp_path / "reports"
    (reports / "logs").mkdir(parents=True)
    for index, (night, missing) in enumerate(zip(NIGHTS, MISSING_BY_NIGHT, strict=True)):
        await reconcile_night(reports, night, missing, NIGHTS[index - 1] if index else None, server_ssl, ca_bundle)
    return reports
