"""A real browser for the report's pages: headless Chromium driven over the DevTools protocol, and poppler for PDFs.

Chromium is Debian's ``chromium-headless-shell`` (``.ci/run`` installs it), spoken to with aiohttp's websocket
client over ``--remote-debugging-port`` on loopback: the protocol is all a test needs (navigate, evaluate, capture),
and it adds no dependency, where playwright would pin a browser build of its own.  Every page opens with the
network blocked and recorded: the Fetch domain fails any request but the page's own file, and every request the
page made is listed in :attr:`Page.requests`.

    async with headless_chromium() as browser:
        page = await browser.open(out / "report.html")
        page.console, page.requests, await page.boxes("svg.chart"), await page.screenshot()

``python -m tests.report.browser docs/report.png`` runs the demo and writes its report's screenshot (the README's).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from PIL import Image

BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome", "headless_shell")
APT_HINT = "HINT: apt-get install chromium-headless-shell poppler-utils (.ci/run installs them when absent)"
START_SECONDS = 30  # a cold start on a busy two-core machine takes a few seconds
COMMAND_SECONDS = 60


def chromium_binary() -> str:
    """The browser to drive: $RECONCILE_CHROMIUM, else the first of :data:`BROWSERS` on PATH."""
    named = os.environ.get("RECONCILE_CHROMIUM")
    found = named or next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if not found:
        raise RuntimeError(f"no headless Chromium on PATH (looked for {', '.join(BROWSERS)}). {APT_HINT}")
    return found


@dataclass(frozen=True, slots=True)
class ConsoleMessage:
    """A console call, an uncaught exception or a browser log entry (a resource that failed to load, say)."""

    level: str
    text: str


@dataclass(frozen=True, slots=True)
class Box:
    """An element's rendered box, in CSS pixels."""

    x: float
    y: float
    width: float
    height: float


class _DevTools:
    """One websocket to the browser: commands by id, events to listeners (flattened sessions share the socket)."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self._socket = socket
        self._next = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self._reader = asyncio.create_task(self._read())

    async def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> Any:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        future = self._pending[self._next] = asyncio.get_running_loop().create_future()
        await self._socket.send_str(json.dumps(message))
        return await asyncio.wait_for(future, COMMAND_SECONDS)

    async def _read(self) -> None:
        async for frame in self._socket:
            if frame.type != aiohttp.WSMsgType.TEXT:
                continue
            message = json.loads(frame.data)
            future = self._pending.pop(message["id"], None) if "id" in message else None
            if future is not None and not future.done():
                if "error" in message:
                    future.set_exception(RuntimeError(f"DevTools: {message['error']}"))
                else:
                    future.set_result(message.get("result", {}))
            elif "method" in message:
                for listener in list(self.listeners):
                    listener(message)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(RuntimeError("DevTools: the browser closed the connection"))

    async def close(self) -> None:
        await self._socket.close()
        await self._reader


@dataclass
class Page:
    """A loaded page: what it logged and fetched, and ways to look at it."""

    url: str
    _devtools: _DevTools
    _session: str
    console: list[ConsoleMessage] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # every URL the page asked for, its own first

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (awaited if a promise), as JSON gives it back."""
        result = await self._send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def boxes(self, selector: str) -> list[Box]:
        """The rendered box of every element ``selector`` matches, in document order."""
        script = (
            f"Array.from(document.querySelectorAll({json.dumps(selector)})).map(e => {{"
            "const r = e.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; })"
        )
        return [Box(*values) for values in await self.evaluate(script)]

    async def screenshot(self, *, max_height: int | None = None) -> bytes:
        """A PNG of the whole page (or its top ``max_height`` CSS pixels)."""
        metrics = await self._send("Page.getLayoutMetrics")
        size = metrics["cssContentSize"]
        height = size["height"] if max_height is None else min(size["height"], max_height)
        clip = {"x": 0, "y": 0, "width": size["width"], "height": height, "scale": 1}
        shot = await self._send(
            "Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True}
        )
        return base64.b64decode(shot["data"])

    async def _send(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return await self._devtools.send(method, params, self._session)


class Browser:
    """A running headless Chromium: :meth:`open` loads a file in a new tab."""

    def __init__(self, devtools: _DevTools, width: int, height: int) -> None:
        self._devtools = devtools
        self._size = (width, height)
        self._tasks: set[asyncio.Task[Any]] = set()

    async def open(self, path: Path) -> Page:
        """Load ``path`` (a file) with the network blocked, and wait for its load event and its fonts."""
        url = _file_url(path)
        devtools = self._devtools
        target = await devtools.send("Target.createTarget", {"url": "about:blank"})
        attached = await devtools.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        page = Page(url, devtools, attached["sessionId"])
        loaded = asyncio.get_running_loop().create_future()
        devtools.listeners.append(lambda message: self._on_event(page, message, loaded))
        width, height = self._size
        for method, params in (
            ("Page.enable", {}),
            ("Runtime.enable", {}),
            ("Log.enable", {}),
            ("Network.enable", {}),
            ("Fetch.enable", {"patterns": [{"urlPattern": "*"}]}),
            (
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            ),
        ):
            await page._send(method, params)
        navigated = await page._send("Page.navigate", {"url": url})
        if navigated.get("errorText"):
            raise RuntimeError(f"could not open {url}: {navigated['errorText']}")
        await asyncio.wait_for(loaded, COMMAND_SECONDS)
        await page.evaluate("document.fonts.ready.then(() => true)")
        return page

    def _on_event(self, page: Page, message: dict[str, Any], loaded: asyncio.Future[None]) -> None:
        if message.get("sessionId") != page._session:
            return
        method, params = message["method"], message.get("params", {})
        if method == "Page.loadEventFired" and not loaded.done():
            loaded.set_result(None)
        elif method == "Network.requestWillBeSent":
            page.requests.append(params["request"]["url"])
        elif method == "Fetch.requestPaused":
            allowed = params["request"]["url"] == page.url
            reply = (
                ("Fetch.continueRequest", {}) if allowed else ("Fetch.failRequest", {"errorReason": "BlockedByClient"})
            )
            task = asyncio.create_task(page._send(reply[0], {"requestId": params["requestId"], **reply[1]}))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", ()))
            page.console.append(ConsoleMessage(params["type"], text))
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            page.console.append(
                ConsoleMessage("exception", details.get("exception", {}).get("description", details["text"]))
            )
        elif method == "Log.entryAdded":
            entry = params["entry"]
            page.console.append(ConsoleMessage(entry["level"], f"{entry['text']} {entry.get('url', '')}".strip()))


@contextlib.asynccontextmanager
async def headless_chromium(*, width: int = 1280, height: int = 900) -> AsyncIterator[Browser]:
    """Start headless Chromium with a throwaway profile, reachable only over loopback; stop it on exit."""
    with tempfile.TemporaryDirectory(prefix="reconcile-chromium-") as profile:
        process = await asyncio.create_subprocess_exec(
            chromium_binary(),
            "--headless",
            "--remote-debugging-port=0",  # Chromium picks a free port and writes it to DevToolsActivePort
            "--remote-debugging-address=127.0.0.1",
            f"--user-data-dir={profile}",
            "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--proxy-server=127.0.0.1:9",  # should the Fetch block miss a request, it goes nowhere
            "--font-render-hinting=none",
            "--hide-scrollbars",
            "about:blank",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            endpoint = await _endpoint(Path(profile), process)
            async with aiohttp.ClientSession() as session, session.ws_connect(endpoint, max_msg_size=0) as socket:
                devtools = _DevTools(socket)
                try:
                    yield Browser(devtools, width, height)
                finally:
                    with contextlib.suppress(Exception):
                        await devtools.send("Browser.close")
                    await devtools.close()
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _endpoint(profile: Path, process: asyncio.subprocess.Process) -> str:
    """The browser's websocket URL, once Chromium has written DevToolsActivePort (its port, then its path)."""
    for _ in range(START_SECONDS * 20):
        if process.returncode is not None:
            error = await process.stderr.read() if process.stderr else b""
            raise RuntimeError(
                f"Chromium exited {process.returncode} at start: {error.decode(errors='replace')[-2000:]}"
            )
        lines = _port_lines(profile / "DevToolsActivePort")
        if len(lines) == 2:
            return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        await asyncio.sleep(0.05)
    raise RuntimeError(f"Chromium did not open its DevTools port within {START_SECONDS} s")


def _file_url(path: Path) -> str:
    return path.absolute().as_uri()


def _port_lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@dataclass(frozen=True, slots=True)
class Picture:
    """What a PNG shows, roughly: its size, how many colours, how many pixels are not near-white."""

    width: int
    height: int
    colours: int
    ink: int  # pixels darker than near-white


def look_at(png: bytes | Path) -> Picture:
    """Decode a PNG (Pillow) and measure it."""
    with Image.open(io.BytesIO(png) if isinstance(png, bytes) else png) as image:
        rgb = image.convert("RGB")
        width, height = rgb.size
        colours = rgb.getcolors(maxcolors=width * height) or []
        ink = sum(rgb.convert("L").histogram()[:245])
        return Picture(width, height, len(colours), ink)


def pdf_pages(pdf: Path, out_dir: Path, *, dpi: int = 50) -> list[Path]:
    """Every page of ``pdf`` rendered to a PNG by poppler's pdftoppm, in page order."""
    out_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run([_poppler("pdftoppm"), "-png", "-r", str(dpi), str(pdf), str(out_dir / "page")], check=True)
    return sorted(out_dir.glob("page-*.png"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))


def pdf_text(pdf: Path, page: int) -> str:
    """The text of one page of ``pdf`` (1-based), by poppler's pdftotext."""
    command = [_poppler("pdftotext"), "-f", str(page), "-l", str(page), "-layout", str(pdf), "-"]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def pdf_attachment(pdf: Path, name: str, out_dir: Path) -> bytes:
    """The file embedded in ``pdf`` under ``name``, by poppler's pdfdetach."""
    target = out_dir / f"attached-{name}"
    subprocess.run([_poppler("pdfdetach"), "-savefile", name, "-o", str(target), str(pdf)], check=True)
    return target.read_bytes()


def pdf_metadata(pdf: Path) -> str:
    """The XMP metadata of ``pdf`` (where its PDF/A conformance is declared), by poppler's pdfinfo."""
    return subprocess.run([_poppler("pdfinfo"), "-meta", str(pdf)], check=True, capture_output=True, text=True).stdout


def _poppler(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        raise RuntimeError(f"{tool} is not on PATH. {APT_HINT}")
    return found


async def demo_screenshot(scratch: Path) -> bytes:
    """The demo's report.html as the README shows it: its top, 1200 pixels wide.

    The manifests are read from ``sample_manifests/`` under ``scratch`` (the working directory), so the page names
    them as a user of a checkout sees them, not by where this machine keeps the package.
    """
    from reconcile.api import run
    from reconcile.emulator import Emulator
    from reconcile.engine import RunOptions
    from reconcile.ops._demo import demo_settings, sample_manifests

    manifests = _copy_samples(sample_manifests(), scratch / "sample_manifests")
    out = scratch / "reconcile-demo"
    async with Emulator() as emulator:
        await run(manifests, out, settings=demo_settings(emulator), options=RunOptions(label="demo (bundled emulator)"))
    async with headless_chromium(width=1200) as browser:
        page = await browser.open(out / "report.html")
        return await page.screenshot(max_height=2000)


def _copy_samples(samples: list[Path], directory: Path) -> list[Path]:
    directory.mkdir()
    for sample in samples:
        shutil.copyfile(sample, directory / sample.name)
    return [Path(directory.name, sample.name) for sample in samples]


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/report.png").absolute()
    with tempfile.TemporaryDirectory() as scratch:
        os.chdir(scratch)
        target.write_bytes(asyncio.run(demo_screenshot(Path(scratch))))
