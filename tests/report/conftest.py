"""Fixtures of the report's tests: a headless Chromium (see tests/report/browser.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.report.browser import Browser, headless_chromium


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    """Headless Chromium for one test: ``await chromium.open(path)`` loads a file with the network blocked."""
    async with headless_chromium() as browser:
        yield browser
