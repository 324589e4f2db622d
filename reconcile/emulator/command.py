"""`reconcile emulator`: serve the emulated tenant and platform until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
from collections.abc import Callable
from pathlib import Path

import click

from reconcile.emulator.app import DEFAULT_ENDPOINT_PATH, EmulatorConfig
from reconcile.emulator.assertions import FederatedIssuer
from reconcile.emulator.dataset import Dataset
from reconcile.emulator.environment import check_env_file, client_environment, export_lines, write_env_file
from reconcile.emulator.faults import FAULT_MIXES, ApiFault, Faults
from reconcile.emulator.server import Emulator

STATS_LINE = "emulator stats: "  # prefix of the JSON line printed on stop


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
    help="Share of API requests failed at random, whatever the load; --fault-mix says how it is split.",
)
@click.option(
    "--fault-mix",
    type=click.Choice(FAULT_MIXES),
    default="uniform",
    show_default=True,
    help="uniform: evenly over 500, 503 (Retry-After: 1), 429 (Retry-After: 1, every other one as an HTTP-date), "
    "connection reset and token revocation (401). gateway: 30% 429, 30% 503, 20% 500, 19% reset, 1% revocation. "
    "flaky: evenly over 500, 503, 429, reset and a stray 401 that revokes nothing.",
)
@click.option(
    "--fault",
    "fault_rates",
    multiple=True,
    metavar="KIND=RATE",
    help=f"Fail this share of API requests with one kind of fault; repeatable, instead of --fault-rate. "
    f"KIND: {', '.join(kind.value for kind in ApiFault)} (slow: an answer after {Faults().slow_seconds:g} s).",
)
@click.option(
    "--max-rps",
    type=click.FloatRange(min=0, min_open=True),
    help="A gateway's rate cap: above this request rate, answer 429 with Retry-After (whole seconds until a "
    "request would pass, at least 1) before the request reaches the backend.",
)
@click.option(
    "--burst",
    "burst_seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=0.1,
    show_default=True,
    help="Seconds' worth of requests --max-rps lets through at once.",
)
@click.option(
    "--capacity",
    type=click.IntRange(min=1),
    help="Backend capacity: at most K requests worked on at once (each for --latency-ms); the rest wait in "
    "arrival order, so latency grows with load. Default: no limit.",
)
@click.option(
    "--queue-limit",
    type=click.IntRange(min=0),
    help="With --capacity: a request that finds Q already waiting is shed with 503 at once. Default: no limit.",
)
@click.option(
    "--shed-retry-after",
    type=click.IntRange(min=0),
    help="Retry-After seconds on the 503s --queue-limit sheds. Default: no Retry-After, as most backends.",
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
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the printed settings to this .env file (reconcile reads ./.env); never over one it did not write.",
)
def emulator(
    host: str,
    port: int,
    latency_ms: float,
    jitter_ms: float,
    token_lifetime: int,
    fault_rate: float,
    fault_mix: str,
    fault_rates: tuple[str, ...],
    max_rps: float | None,
    burst_seconds: float,
    capacity: int | None,
    queue_limit: int | None,
    shed_retry_after: int | None,
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
    env_file: Path | None,
) -> None:
    """Run a local Azure AD token endpoint and platform API, for demos, tests and benchmarks.

    The first stdout line is `emulator listening on URL`; then come `export CALLJOURNEY_...` lines (its
    public demo credentials, URL as both base URL and authority) to paste into the shell that runs reconcile.
    GET URL/_emulator/stats answers what the platform saw so far (answers by status, faults,
    429s of the cap, 503s shed, peak in flight and queued, latency of correct answers) as
    JSON; on SIGINT/SIGTERM the same JSON is the last stderr line, after `emulator stats: `.

    \b
    Examples:
        reconcile emulator --port 8080 --fault-rate 0.05 --latency-ms 20
        reconcile emulator --latency-ms 40 --capacity 32 --queue-limit 16
        reconcile emulator --latency-ms 20 --max-rps 300 --fault 503=0.02 --fault reset=0.01
        reconcile emulator --port 0 --env-file .env   # then, in this directory: reconcile doctor
    """
    if env_file is not None and (problem := check_env_file(env_file)):
        raise click.BadParameter(problem, param_hint="--env-file")
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
    if queue_limit is not None and capacity is None:
        raise click.UsageError("--queue-limit needs --capacity: without a capacity nothing waits.")
    if shed_retry_after is not None and queue_limit is None:
        raise click.UsageError("--shed-retry-after needs --queue-limit: without one nothing is shed.")
    try:
        config = EmulatorConfig(
            endpoint_path=endpoint_path,
            token_lifetime=token_lifetime,
            latency_ms=latency_ms,
            jitter_ms=jitter_ms,
            max_rps=max_rps,
            burst_seconds=burst_seconds,
            capacity=capacity,
            queue_limit=queue_limit,
            shed_retry_after=shed_retry_after,
            faults=_faults(fault_rate, fault_mix, fault_rates),
            seed=seed,
            certificates=tuple(_certificate_pem(path) for path in client_certificates),
            federated=tuple(FederatedIssuer(issuer, subject, key.read_bytes()) for issuer, subject, key in federated),
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    server = Emulator(config, dataset, host=host, port=port, ssl_context=ssl_context, access_log=access_log)
    with asyncio.Runner(loop_factory=_loop_factory(use_uvloop)) as runner:
        try:
            runner.run(_serve(server, host, env_file))
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {host}:{port}: {exc}. HINT: pass --port 0") from exc


def _faults(rate: float, mix: str, explicit: tuple[str, ...]) -> Faults:
    if not explicit:
        return Faults.mix(mix, rate)
    if rate:
        raise ValueError("--fault and --fault-rate are alternatives. HINT: give every kind as --fault KIND=RATE")
    rates: dict[str, float] = {}
    for item in explicit:
        kind, _, value = item.partition("=")
        try:
            rates[kind.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--fault {item!r} is not KIND=RATE. HINT: e.g. --fault 503=0.02") from None
    return Faults.from_rates(rates)


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


async def _serve(server: Emulator, host: str, env_file: Path | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        environment = client_environment(server, host)
        if env_file is not None:  # before the URL line: whoever waits for that line can read the file
            try:
                write_env_file(env_file, environment)
            except OSError as exc:
                raise click.ClickException(f"cannot write --env-file {env_file}: {exc.strerror}") from exc
        # Tests and benchmarks parse the URL from this exact first line; click.echo flushes it.
        click.echo(f"emulator listening on {server.base_url}")
        click.echo("\n".join(export_lines(environment)))
        config = server.config
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
        f"{sum(stats.faults.values())} faults injected, {stats.rate_limited} rate-limited, {stats.shed} shed",
        err=True,
    )
    # Benchmarks read this line: keep it last, one line of JSON.
    click.echo(f"{STATS_LINE}{json.dumps(stats.summary())}", err=True)
