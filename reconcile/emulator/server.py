"""Run the emulator on loopback for the length of an `async with` block."""

from __future__ import annotations

import ssl
from types import TracebackType

from aiohttp import web
from aiohttp.log import access_logger

from reconcile.emulator.app import STATE, STATS_PATH, EmulatorConfig, EmulatorState, Stats, create_app
from reconcile.emulator.dataset import Dataset
from reconcile.emulator.faults import Faults

_LOOPBACK = ("127.0.0.1", "::1", "localhost")


class Emulator:
    """An emulated tenant and platform; `async with Emulator() as emu:` serves on a free port."""

    def __init__(
        self,
        config: EmulatorConfig = EmulatorConfig(),  # noqa: B008 - frozen, so sharing the default is safe
        dataset: Dataset | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        url_host: str | None = None,
        access_log: bool = False,
    ) -> None:
        self.config = config
        self.dataset = dataset if dataset is not None else Dataset.demo()
        self.stats = Stats()
        self._host = host
        self._port = port
        self._ssl_context = ssl_context
        # Certificates name "localhost" far more often than an IP, so TLS URLs use the name.
        self._url_host = url_host or ("localhost" if ssl_context is not None and host in _LOOPBACK else host)
        self._access_log = access_log
        self._runner: web.AppRunner | None = None
        self._state: EmulatorState | None = None
        self.base_url = ""
        self.authority = ""
        self.port = 0

    @property
    def faults(self) -> Faults:
        return self._require_state().picker.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._require_state().picker.faults = faults

    @property
    def api_url(self) -> str:
        return self.base_url + self.config.endpoint_path

    @property
    def stats_url(self) -> str:
        """GET it for :meth:`Stats.summary` as JSON (what a subprocess emulator's driver reads)."""
        return self.base_url + STATS_PATH

    @property
    def token_url(self) -> str:
        return f"{self.authority}/{self.config.tenant_id}/oauth2/v2.0/token"

    def revoke_all_tokens(self) -> None:
        """Invalidate every token issued so far; tokens issued afterwards are good."""
        self._require_state().tokens.revoke_all()

    def _require_state(self) -> EmulatorState:
        if self._state is None:
            raise RuntimeError("The emulator is not running. HINT: use it as `async with Emulator() as emu:`")
        return self._state

    async def start(self) -> None:
        app = create_app(self.config, self.dataset, self.stats)
        self._state = app[STATE]
        runner = web.AppRunner(
            app,
            # Off by default: a benchmark would otherwise log thousands of lines a second.
            access_log=access_logger if self._access_log else None,
            # Cancel a handler when its client goes away, so a client timeout during a slow fault
            # does not leave a 30 s sleep behind that delays shutdown.
            handler_cancellation=True,
            shutdown_timeout=1.0,
        )
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port, ssl_context=self._ssl_context)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        scheme = "https" if self._ssl_context is not None else "http"
        host = f"[{self._url_host}]" if ":" in self._url_host else self._url_host
        self.base_url = f"{scheme}://{host}:{self.port}"
        self.authority = self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
