"""`reconcile emulator`: serve the emulated tenant and platform until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import ssl
from collections.abc import Callable
from pathlib import Path

import click

from reconcile.emulator.app import DEFAULT_ENDPOINT_PATH, EmulatorConfig
from reconcile.emulator.assertions import FederatedIssuer
from reconcile.emulator.dataset import Dataset
from reconcile.emulator.faults import Faults
from reconcile.emulator.server import Emulator


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="0 picks a free port.")
@click.option(
    "--latency-ms",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    help="Added to every API answer.",
)
@click.option(
    "--jitter-ms",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    help="Random extra latency, 0..N ms.",
)
@click.option("--token-lifetime", type=click.IntRange(min=1), default=3599, show_default=True, help="Seconds.")
@click.option(
    "--fault-rate",
    type=click.FloatRange(0, 1),
    default=0,
    show_default=True,
    help="Share of API requests failed, split evenly over 500, 503, 429, reset and token revocation.",
)
@click.option("--max-rps", type=click.FloatRange(min=0, min_open=True), help="Answer 429 above this request rate.")
@click.option(
    "--burst",
    "burst_seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=0.1,
    show_default=True,
    help="Seconds' worth of requests --max-rps lets through at once.",
)
@click.option("--endpoint-path", default=DEFAULT_ENDPOINT_PATH, show_default=True)
@click.option(
    "--dataset",
    "dataset_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV of existing recordings (company,organisation,folder,filename,call_id). Default: the demo set.",
)
@click.option(
    "--synthetic-present-ratio",
    type=click.FloatRange(0, 1),
    help="Serve the synthetic benchmark dataset instead, where this share of generated rows exists.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds fault decisions and synthetic data.")
@click.option("--certfile", type=click.Path(exists=True, dir_okay=False), help="PEM certificate: serve HTTPS.")
@click.option("--keyfile", type=click.Path(exists=True, dir_okay=False), help="PEM key, if not in --certfile.")
@click.option(
    "--client-certificate",
    "client_certificates",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Also accept client assertions signed with this certificate (PEM; only its certificate is read).",
)
@click.option(
    "--federated-credential",
    "federated",
    multiple=True,
    nargs=3,
    type=(str, str, click.Path(exists=True, dir_okay=False, path_type=Path)),
    metavar="ISSUER SUBJECT KEY_PEM",
    help="Also accept federated tokens from ISSUER about SUBJECT (audience api://AzureADTokenExchange) signed by "
    "the key whose public part is in KEY_PEM.",
)
@click.option("--uvloop/--no-uvloop", "use_uvloop", default=True, show_default=True, help="Use uvloop if installed.")
@click.option("--access-log/--no-access-log", default=False, show_default=True, help="Log every request.")
def emulator(
    host: str,
    port: int,
    latency_ms: float,
    jitter_ms: float,
    token_lifetime: int,
    fault_rate: float,
    max_rps: float | None,
    burst_seconds: float,
    endpoint_path: str,
    dataset_path: Path | None,
    synthetic_present_ratio: float | None,
    seed: int,
    certfile: str | None,
    keyfile: str | None,
    client_certificates: tuple[Path, ...],
    federated: tuple[tuple[str, str, Path], ...],
    use_uvloop: bool,
    access_log: bool,
) -> None:
    """Run a local Azure AD token endpoint and platform API, for demos, tests and benchmarks.

    It accepts the public demo credentials printed on stderr. The first stdout line is
    `emulator listening on URL`; use URL as both the authority and the API base URL.

    \b
    Example:
        reconcile emulator --port 8080 --fault-rate 0.05 --latency-ms 20
    """
    if dataset_path is not None and synthetic_present_ratio is not None:
        raise click.UsageError("--dataset and --synthetic-present-ratio are alternatives; pass one.")
    if synthetic_present_ratio is not None:
        dataset = Dataset.synthetic(None, synthetic_present_ratio, seed)
    elif dataset_path is not None:
        try:
            dataset = Dataset.from_csv(dataset_path)
        except (ValueError, UnicodeDecodeError) as exc:
            raise click.ClickException(str(exc)) from exc
    else:
        dataset = Dataset.demo()
    ssl_context = None
    if certfile is not None:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(certfile, keyfile)
    elif keyfile is not None:
        raise click.UsageError("--keyfile needs --certfile.")
    config = EmulatorConfig(
        endpoint_path=endpoint_path,
        token_lifetime=token_lifetime,
        latency_ms=latency_ms,
        jitter_ms=jitter_ms,
        max_rps=max_rps,
        burst_seconds=burst_seconds,
        faults=Faults.uniform(fault_rate),
        seed=seed,
        certificates=tuple(_certificate_pem(path) for path in client_certificates),
        federated=tuple(FederatedIssuer(issuer, subject, key.read_bytes()) for issuer, subject, key in federated),
    )
    server = Emulator(config, dataset, host=host, port=port, ssl_context=ssl_context, access_log=access_log)
    with asyncio.Runner(loop_factory=_loop_factory(use_uvloop)) as runner:
        try:
            runner.run(_serve(server))
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {host}:{port}: {exc}. HINT: pass --port 0") from exc


def _certificate_pem(path: Path) -> bytes:
    """The first certificate of a PEM file (which may also hold a private key: it is not read)."""
    data = path.read_bytes()
    start = data.find(b"-----BEGIN CERTIFICATE-----")
    end = data.find(b"-----END CERTIFICATE-----", start)
    if start < 0 or end < 0:
        raise click.BadParameter(f"{path} holds no PEM certificate", param_hint="--client-certificate")
    return data[start : end + len(b"-----END CERTIFICATE-----")] + b"\n"


def _loop_factory(use_uvloop: bool) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if not use_uvloop:
        return None
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


async def _serve(server: Emulator) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        # Tests and benchmarks parse the URL from this exact line; click.echo flushes it.
        click.echo(f"emulator listening on {server.base_url}")
        config = server.config
        click.echo(
            f"demo credentials: tenant_id={config.tenant_id} client_id={config.client_id} "
            f"client_secret={config.client_secret} (public, for the emulator only)",
            err=True,
        )
        if config.certificates or config.federated:
            click.echo(
                f"also accepted: assertions of {len(config.certificates)} client certificate(s), tokens of "
                f"{len(config.federated)} federated credential(s)",
                err=True,
            )
        await stop.wait()
    stats = server.stats
    click.echo(
        f"emulator stopped: {stats.api_requests} API requests, {stats.token_requests} token requests, "
        f"{sum(stats.faults.values())} faults injected, {stats.rate_limited} rate-limited",
        err=True,
    )
