"""No client secret or bearer token in any output: redact() itself, then a run at -vv that tries hard to leak."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from click.testing import CliRunner, Result

from reconcile.api import run
from reconcile.cli import cli
from reconcile.config import Secret
from reconcile.config._logs import configure_logging, reset_logging
from reconcile.config._redact import MASK, RedactingFilter, redact, register
from reconcile.emulator import DEMO_CLIENT_ID, DEMO_TENANT_ID, Dataset, Emulator, EmulatorConfig, Faults
from reconcile.emulator.tokens import TokenBook
from reconcile.errors import TokenError
from reconcile.platform._auth import TokenProvider
from reconcile.platform._client import PlatformClient
from tests.conftest import settings_for, write_manifest

# Characters that URL-encoding changes, so the form body's encoded secret is tested too.
SECRET = "Sx9~leak+test/secret=value%21!"
WRONG = "Wr0ng~leak+secret/for=tests"
JWT_LIKE = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXZhbHVl"


def forms(secret: str) -> list[str]:
    return [secret, quote(secret, safe=""), quote_plus(secret)]


def assert_clean(texts: Iterable[tuple[str, str | bytes]], secrets: Iterable[str], tokens: Iterable[str]) -> int:
    """No secret (nor its URL-encoded forms), no token (nor its signature) in any of ``texts``; how many looked at."""
    needles = [f for s in secrets for f in forms(s)]
    needles += [part for t in tokens for part in (t, t.rsplit(".", 1)[-1])]
    seen = 0
    for name, text in texts:
        for needle in needles:
            found = needle.encode() in text if isinstance(text, bytes) else needle in text
            assert not found, f"{needle[:12]}... leaked into {name}"
        seen += 1
    return seen


@pytest.fixture
def issued(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every token any emulator in this process issues; each is also logged, raw, as careless code might."""
    tokens: list[str] = []
    original = TokenBook.issue

    def spy(self: TokenBook, **kwargs: Any) -> str:
        token = original(self, **kwargs)
        tokens.append(token)
        logging.getLogger("aiohttp.server").debug("issued %s for %s", token, kwargs)
        logging.getLogger("asyncio").debug("form was client_secret=%s&scope=x", quote_plus(SECRET))
        return token

    monkeypatch.setattr(TokenBook, "issue", spy)
    return tokens


pytestmark = pytest.mark.usefixtures("clean_logging")


# -- redact() --------------------------------------------------------------------------------------------------


def test_registered_secret_and_its_encodings_are_masked() -> None:
    """A registered secret is masked as is and URL-encoded (a form body echoed back carries the encoded form)."""
    secret = "Rg7~registered+secret/x=1"
    register(secret)
    for form in forms(secret):
        assert redact(f"before {form} after") == f"before {MASK} after"


def test_token_shapes_are_masked_even_unregistered() -> None:
    """Bearer headers, JWT-shaped strings and client_secret= fields are masked without being registered."""
    assert redact("Authorization: Bearer abc.DEF_123-xyz") == f"Authorization: Bearer {MASK}"
    assert JWT_LIKE not in redact(f"token={JWT_LIKE};")
    assert redact("grant_type=client_credentials&client_secret=hunter2hunter2&scope=x") == (
        f"grant_type=client_credentials&client_secret={MASK}&scope=x"
    )
    assert redact("nothing secret here") == "nothing secret here"


def test_assertion_fields_and_url_passwords_are_masked_even_unregistered() -> None:
    """A client_assertion= form field and the password of any URL's user:password@ are masked; the user stays."""
    assert redact("client_id=c&client_assertion=opaque-assertion&scope=x") == (
        f"client_id=c&client_assertion={MASK}&scope=x"
    )
    assert redact("via http://alice:s3cr3t@proxy.corp:3128 failed") == f"via http://alice:{MASK}@proxy.corp:3128 failed"
    assert (
        redact("https://host:8443/path@x and http://127.0.0.1:3128")
        == "https://host:8443/path@x and http://127.0.0.1:3128"
    )


def test_a_hints_url_placeholder_is_not_masked() -> None:
    """The placeholder http://USER:PASSWORD@host:port in a hint is left as written; a real password still goes."""
    hint = "HINT: give them in the proxy URL, http://USER:PASSWORD@host:port, in HTTPS_PROXY"
    assert redact(hint) == hint
    assert redact("http://USER:hunter22@proxy:3128") == f"http://USER:{MASK}@proxy:3128"
    assert redact("http://alice:PASSWORD@proxy:3128") == f"http://alice:{MASK}@proxy:3128"


def test_short_values_are_not_registered() -> None:
    """A 'secret' of under four characters would mask innocent text everywhere: it is not registered."""
    register("ab")
    assert redact("abcab") == "abcab"


def test_filter_redacts_message_args_and_exceptions() -> None:
    """The filter masks the formatted message, drops the args, and renders a redacted traceback."""
    secret = "Ft4~filter-secret-value"
    register(secret)
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "got %s and %r", (secret, JWT_LIKE), None)
    try:
        raise ValueError(f"inner {secret}")
    except ValueError:
        record.exc_info = sys.exc_info()
    assert RedactingFilter().filter(record)
    assert record.args is None
    assert secret not in record.getMessage()
    assert JWT_LIKE not in record.getMessage()
    assert record.exc_text
    assert "ValueError" in record.exc_text
    assert secret not in record.exc_text


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_formatters_redact_extras_and_stack(log_format: str) -> None:
    """A token in an extra field or a stack trace is masked by the formatter itself, after every filter."""
    secret = "Fm5~formatter-secret-value"
    register(secret)
    stream = io.StringIO()
    configure_logging(2, log_format=log_format, stream=stream)
    logging.getLogger("reconcile.test").info(
        "see %s", "fields", extra={"header": f"Bearer {secret}", "nested": {"t": [JWT_LIKE]}}, stack_info=True
    )
    text = stream.getvalue()
    assert "see fields" in text
    assert secret not in text
    assert JWT_LIKE not in text
    if log_format == "json":
        entry = json.loads(text)
        assert entry["header"] == f"Bearer {MASK}"
        assert entry["nested"] == {"t": [MASK]}


# -- a run that tries to leak ----------------------------------------------------------------------------------


async def test_library_objects_and_errors_do_not_show_secrets(
    make_emulator: Any, issued: list[str], tmp_path: Path
) -> None:
    """repr() of Settings, PlatformClient, TokenProvider and Token, and the text of a refusal, show no secret."""
    async with make_emulator(EmulatorConfig(client_secret=SECRET)) as emulator:
        settings = settings_for(emulator, client_secret=Secret(SECRET))
        async with PlatformClient(settings) as client:
            token = await client.tokens.token()
        wrong = settings.with_(client_secret=Secret(WRONG))
        async with PlatformClient(wrong) as client:
            with pytest.raises(TokenError) as refused:
                await client.tokens.token()
        manifest = write_manifest(tmp_path / "m.csv", [("acme", "acme-ca", "f", "a.mp3")])
        summary = await run([manifest], tmp_path / "out", settings=wrong)
    assert issued == [token.value]
    texts = [
        ("repr(Settings)", repr(settings)),
        ("str(Settings)", str(settings)),
        ("repr(PlatformClient)", repr(client)),
        ("repr(TokenProvider)", repr(client.tokens)),
        ("repr(Token)", repr(token)),
        ("str(TokenError)", str(refused.value)),
        ("repr(TokenError)", repr(refused.value)),
        ("TokenError.args", repr(refused.value.args)),
        ("summary error", json.dumps(summary.summary.to_dict().get("error"))),
    ]
    assert "7000215" in str(refused.value)
    assert assert_clean(texts, [SECRET, WRONG], issued) == len(texts)
    assert isinstance(client.tokens, TokenProvider)


@contextlib.contextmanager
def threaded_emulator(config: EmulatorConfig) -> Iterator[Emulator]:
    """The emulator on its own event loop in a thread: the CLI runs its own loop here, and TokenBook is spied on."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="emulator", daemon=True)
    thread.start()
    emulator = Emulator(config, Dataset.demo())
    asyncio.run_coroutine_threadsafe(emulator.start(), loop).result(10)
    try:
        yield emulator
    finally:
        asyncio.run_coroutine_threadsafe(emulator.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def outputs(result: Result, folder: Path) -> list[tuple[str, str | bytes]]:
    """What a user or a later process can see: the terminal, the exception, and every file written."""
    found: list[tuple[str, str | bytes]] = [("terminal", result.output), ("exception", repr(result.exception))]
    found += [(str(p), p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file()]
    return found


@pytest.mark.slow
def test_cli_at_debug_leaks_nothing_anywhere(
    issued: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """-vv with revoked tokens, throttling and failures, then a wrong secret, then doctor: no secret, no token."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("CALLJOURNEY_")]:
        monkeypatch.delenv(name)
    faults = Faults(rate_revoke=0.1, rate_500=0.05, rate_429=0.05, rate_malformed=0.03)
    rows = list(Dataset.demo())[:30] + [("acme", "acme-ca", "f", f"missing-{i}.mp3") for i in range(30)]
    manifest = write_manifest(tmp_path / "m.csv", rows)
    checked = 0
    with threaded_emulator(EmulatorConfig(client_secret=SECRET, faults=faults, seed=11)) as emulator:
        env = {
            "CALLJOURNEY_TENANT_ID": DEMO_TENANT_ID,
            "CALLJOURNEY_CLIENT_ID": DEMO_CLIENT_ID,
            "CALLJOURNEY_CLIENT_SECRET": SECRET,
            "CALLJOURNEY_BASE_URL": emulator.base_url,
            "CALLJOURNEY_AUTHORITY": emulator.authority,
            "PYTHONASYNCIODEBUG": "1",
        }
        runs = [
            (
                [
                    "-vv",
                    "run",
                    str(manifest),
                    "--out",
                    "good",
                    "--log-file",
                    "logs/good.jsonl",
                    "--log-format",
                    "json",
                    "--format",
                    "csv,json",
                    "--concurrency",
                    "4",
                    "--progress-interval",
                    "0.5",
                ],
                env,
                (1, 3),
            ),
            (["-vv", "run", str(manifest), "--out", "text", "--concurrency", "4"], env, (1, 3)),
            (
                ["-vv", "run", str(manifest), "--out", "wrong", "--log-file", "logs/wrong.log"],
                {**env, "CALLJOURNEY_CLIENT_SECRET": WRONG},
                (4,),
            ),
            (["-vv", "doctor", "--probe", "/".join(rows[0])], env, (0,)),
            (["-vv", "doctor"], {**env, "CALLJOURNEY_CLIENT_SECRET": WRONG}, (4,)),
        ]
        for args, run_env, codes in runs:
            if args[1] == "doctor":  # doctor retries little by design: its steps must not meet injected faults
                emulator.faults = Faults()
            result = CliRunner().invoke(cli, args, env=run_env)
            reset_logging()  # closes the log file before it is read
            assert result.exit_code in codes, (args, result.output)
            checked += assert_clean(outputs(result, tmp_path), [SECRET, WRONG], issued)
        stats = emulator.stats
    assert stats.faults["revoke"] >= 3  # tokens were revoked mid-run and renewed ...
    assert len(issued) >= 5  # ... so several tokens existed, each a chance to leak
    log = (tmp_path / "logs" / "good.jsonl").read_text(encoding="utf-8")
    assert len(log.splitlines()) > 20
    assert "DEBUG" in log
    assert "invalid_client" in (tmp_path / "logs" / "wrong.log").read_text(encoding="utf-8")
    assert checked > 15
