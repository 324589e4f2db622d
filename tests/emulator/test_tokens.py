"""emulator/tokens: the token endpoint's shape, claims and Azure-AD-shaped errors, and token checks."""

from __future__ import annotations

import re
import time

import aiohttp
import pytest

from reconcile.emulator import (
    DEMO_CLIENT_ID,
    DEMO_TENANT_ID,
    Emulator,
    EmulatorConfig,
    Faults,
)
from tests.conftest import Clock
from tests.emulator.conftest import (
    ask,
    claims_of,
    get_token,
    token_form,
)


async def test_token_success_shape_and_claims(emu: Emulator, session: aiohttp.ClientSession) -> None:
    """A valid client-credentials request gets an Entra-shaped body and a JWT with the expected claims."""
    before = int(time.time())
    async with session.post(emu.token_url, data=token_form()) as response:
        assert response.status == 200
        body = await response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == body["ext_expires_in"] == 5
    assert "refresh_in" not in body
    claims = claims_of(body["access_token"])
    assert claims["aud"] == f"api://{DEMO_CLIENT_ID}"
    assert claims["appid"] == DEMO_CLIENT_ID
    assert claims["tid"] == DEMO_TENANT_ID
    assert DEMO_TENANT_ID in claims["iss"]
    assert claims["roles"] == ["Conversation.Read"]
    assert before <= claims["iat"] == claims["nbf"] <= time.time()
    assert claims["iat"] + 5 <= claims["exp"] <= claims["iat"] + 6
    assert claims["jti"]
    assert emu.stats.token_requests == 1


async def test_token_refresh_in_when_configured(session: aiohttp.ClientSession) -> None:
    """refresh_in is sent only when the config asks for it."""
    async with Emulator(EmulatorConfig(refresh_in=1800)) as emu:
        body = await (await session.post(emu.token_url, data=token_form())).json()
    assert body["refresh_in"] == 1800
    assert body["expires_in"] == 3599


@pytest.mark.parametrize(
    ("tenant", "form", "status", "error", "code"),
    [
        ("00000000-0000-0000-0000-000000000000", {}, 400, "invalid_request", 90002),
        (DEMO_TENANT_ID, {"client_id": "11111111-1111-1111-1111-111111111111"}, 400, "unauthorized_client", 700016),
        (DEMO_TENANT_ID, {"client_secret": "wrong"}, 401, "invalid_client", 7000215),
        (DEMO_TENANT_ID, {"scope": "https://graph.microsoft.com/.default"}, 400, "invalid_scope", 70011),
        (DEMO_TENANT_ID, {"grant_type": "password"}, 400, "unsupported_grant_type", 70003),
        (DEMO_TENANT_ID, {"grant_type": ""}, 400, "invalid_request", 900144),
    ],
)
async def test_token_errors_are_azure_shaped(
    emu: Emulator,
    session: aiohttp.ClientSession,
    tenant: str,
    form: dict[str, str],
    status: int,
    error: str,
    code: int,
) -> None:
    """Each rejected token request carries Entra's status, error, AADSTS code, trace and correlation ids."""
    url = f"{emu.authority}/{tenant}/oauth2/v2.0/token"
    async with session.post(url, data=token_form(**form)) as response:
        assert response.status == status
        body = await response.json()
    assert body["error"] == error
    assert body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    for name in ("trace_id", "correlation_id"):
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", body[name])
        assert body[name] in body["error_description"]
    assert "Timestamp: " in body["error_description"]
    assert body["timestamp"].endswith("Z")


@pytest.mark.parametrize(
    ("faults", "status", "error", "retry_after"),
    [
        (Faults(token_rate_429=1), 429, "temporarily_unavailable", "1"),
        (Faults(token_rate_503=1), 503, None, "1"),
        (Faults(token_rate_unavailable=1), 400, "temporarily_unavailable", None),
    ],
)
async def test_token_faults(
    session: aiohttp.ClientSession, faults: Faults, status: int, error: str | None, retry_after: str | None
) -> None:
    """Token-endpoint faults answer with the transient statuses a refresher must retry."""
    async with Emulator(EmulatorConfig(faults=faults)) as emu:
        async with session.post(emu.token_url, data=token_form()) as response:
            assert response.status == status
            assert response.headers.get("Retry-After") == retry_after
            if error is not None:
                assert (await response.json())["error"] == error
        assert sum(emu.stats.faults.values()) == 1
        assert emu.stats.token_by_status == {status: 1}


async def test_api_rejects_forged_signature(emu: Emulator, session: aiohttp.ClientSession) -> None:
    """A token whose signature does not match its content gets 401."""
    token = await get_token(session, emu)
    header, payload, signature = token.split(".")
    forged = f"{header}.{payload}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    status, body, _ = await ask(session, emu, forged)
    assert (status, body) == (401, {"error": "invalid token signature"})


async def test_api_rejects_expired_token(session: aiohttp.ClientSession) -> None:
    """A token is accepted until its exp and rejected with 401 after it."""
    clock = Clock(1_800_000_000.5)
    async with Emulator(EmulatorConfig(token_lifetime=1, clock=clock)) as emu:
        token = await get_token(session, emu)
        assert (await ask(session, emu, token))[0] == 200
        clock.now = claims_of(token)["exp"] - 0.01
        assert (await ask(session, emu, token))[0] == 200
        clock.now = claims_of(token)["exp"]
        status, body, headers = await ask(session, emu, token)
    assert (status, body) == (401, {"error": "token is expired"})
    assert "invalid_token" in headers["WWW-Authenticate"]


async def test_revoke_all_tokens(emu: Emulator, session: aiohttp.ClientSession) -> None:
    """revoke_all_tokens() turns every issued token into a 401; a freshly issued one works."""
    old = await get_token(session, emu)
    assert (await ask(session, emu, old))[0] == 200
    emu.revoke_all_tokens()
    status, body, _ = await ask(session, emu, old)
    assert (status, body) == (401, {"error": "token has been revoked"})
    new = await get_token(session, emu)
    assert (await ask(session, emu, new))[0] == 200


async def test_revoke_fault_forces_refresh(session: aiohttp.ClientSession) -> None:
    """A revoke fault answers 401 and the presented token stays dead after faults stop."""
    async with Emulator(EmulatorConfig(faults=Faults(rate_revoke=1))) as emu:
        token = await get_token(session, emu)
        assert (await ask(session, emu, token))[:2] == (401, {"error": "token has been revoked"})
        emu.faults = Faults()
        assert (await ask(session, emu, token))[0] == 401
        assert (await ask(session, emu, await get_token(session, emu)))[0] == 200


async def test_a_stray_401_leaves_the_token_good(session: aiohttp.ClientSession) -> None:
    """An injected stray 401 refuses that request only: the same token is accepted by the next one."""
    async with Emulator(EmulatorConfig(faults=Faults(rate_401=1.0))) as emu:
        token = await get_token(session, emu)
        status, _, _ = await ask(session, emu, token)
        assert status == 401
        emu.faults = Faults()
        status, _, _ = await ask(session, emu, token)
        assert status == 200
