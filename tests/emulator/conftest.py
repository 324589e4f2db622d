"""What the emulator's tests share: a running emulator, a client session, and how to ask them."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from reconcile.emulator import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    Emulator,
    EmulatorConfig,
)

FIELDS = ("company", "organisation", "folder", "filename")
ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_manifests"
PRESENT = {"company": "initech", "organisation": "initech-ca", "folder": "2026/11/24", "filename": "smoke-00.mp3"}
MISSING = {**PRESENT, "filename": "smoke-03.mp3"}
PRESENT_KEY = (PRESENT["company"], PRESENT["organisation"], PRESENT["folder"], PRESENT["filename"])


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(EmulatorConfig(token_lifetime=5)) as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def token_form(**overrides: str) -> dict[str, str]:
    form = {
        "client_id": DEMO_CLIENT_ID,
        "client_secret": DEMO_CLIENT_SECRET,
        "scope": f"api://{DEMO_CLIENT_ID}/.default",
        "grant_type": "client_credentials",
    }
    form.update(overrides)
    return form


async def get_token(session: aiohttp.ClientSession, emu: Emulator) -> str:
    async with session.post(emu.token_url, data=token_form()) as response:
        assert response.status == 200, await response.text()
        token: str = (await response.json())["access_token"]
        return token


async def ask(
    session: aiohttp.ClientSession,
    emu: Emulator,
    token: str | None,
    body: Any = PRESENT,
    **kwargs: Any,
) -> tuple[int, Any, CIMultiDictProxy[str]]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with session.post(emu.api_url, data=data, headers=headers, **kwargs) as response:
        text = await response.text()
        try:
            payload = json.loads(text)
        except ValueError:
            payload = text
        return response.status, payload, response.headers


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded
