"""Shared fixtures: the bundled emulator on loopback, a throwaway TLS CA, and settings pointing at them."""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import re
import select
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import trustme
from click.testing import CliRunner, Result

from reconcile.config._logs import reset_logging
from reconcile.config._settings import Settings
from reconcile.emulator import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TENANT_ID, Emulator, EmulatorConfig
from reconcile.ops._demo import demo_settings

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "sample_manifests"
HEADER = ("company", "organisation", "folder", "filename")
# The columns of results.csv for a manifest with just those four: the manifest's, then the report's own.
OUR_COLUMNS = ("row", "source", "status", "call_id", "detail", "attempts", "checked_at")
RESULTS_HEADER = [*HEADER, *OUR_COLUMNS]


# Variables of the developer's shell that would change where requests go or which credential is used.
NETWORK_VARIABLES = (
    *(name for base in ("http_proxy", "https_proxy", "no_proxy", "all_proxy") for name in (base, base.upper())),
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_AUTHORITY_HOST",
)


@pytest.fixture(autouse=True)
def _no_proxy_or_identity_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts without the shell's proxies and workload-identity variables (reconcile honours them)."""
    for name in NETWORK_VARIABLES:
        monkeypatch.delenv(name, raising=False)


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


def invoke_cli(args: list[str], env: Mapping[str, str | None]) -> Result:
    """Run the CLI with CliRunner; whatever happens, no traceback reaches the user."""
    from reconcile.cli import cli

    result = CliRunner().invoke(cli, args, env=env)
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


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


def tls_environment(url: str, ca_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The process environment reaching the emulator at ``url`` over TLS, as a deployment sets it for a library
    caller (``settings=None`` reads it): :func:`cli_env`'s variables and the CA bundle."""
    for name, value in cli_env(url, tmp_path, monkeypatch).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CALLJOURNEY_CA_BUNDLE", str(ca_bundle))


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


# -- a real forward proxy --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ForwardProxy:
    """proxy.py running in a subprocess on loopback; its access log tells which requests went through it."""

    url: str
    log: Path

    def requests(self) -> list[str]:
        """One line per request or CONNECT tunnel the proxy has finished, e.g. ``CONNECT localhost:4321``."""
        if not self.log.exists():
            return []
        lines = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        return [line.split(" - ")[3] for line in lines if "access_log" in line and line.count(" - ") >= 3]

    def wait_for(self, predicate: Callable[[list[str]], bool], seconds: float = 20) -> list[str]:
        """The access log once ``predicate`` holds of it (proxy.py logs a tunnel when it closes)."""
        deadline = time.monotonic() + seconds
        while not predicate(found := self.requests()):
            assert time.monotonic() < deadline, f"the proxy's log never matched; it holds {found}"
            time.sleep(0.05)
        return found


@contextlib.contextmanager
def forward_proxy(directory: Path, *args: str) -> Iterator[ForwardProxy]:
    """Start ``python -m proxy`` (the proxy.py package) on a free loopback port with extra ARGS."""
    directory.mkdir(parents=True, exist_ok=True)
    port_file, log = directory / "port", directory / "proxy.log"
    command = [
        sys.executable, "-m", "proxy", "--hostname", "127.0.0.1", "--port", "0", "--port-file", str(port_file),
        "--num-workers", "1", "--num-acceptors", "1", "--log-file", str(log), *args,
    ]  # fmt: skip
    env = {**os.environ, "HOME": str(directory)}  # proxy.py keeps its state under ~/.proxy
    with subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as process:
        try:
            deadline = time.monotonic() + 30
            while not (port_file.exists() and port_file.read_text().strip()):
                assert process.poll() is None, "proxy.py exited at start-up"
                assert time.monotonic() < deadline, "proxy.py did not start within 30 s"
                time.sleep(0.05)
            port = int(port_file.read_text())
            with socket.create_connection(("127.0.0.1", port), timeout=10):
                pass
            yield ForwardProxy(f"http://127.0.0.1:{port}", log)
        finally:
            process.terminate()
            process.wait(timeout=10)


def closed_port() -> int:
    """A loopback port nothing listens on (a refusing proxy)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def tls_emulator_process(ca: trustme.CA, directory: Path, *args: str) -> Iterator[str]:
    """The emulator in a subprocess serving HTTPS with a certificate for localhost signed by ``ca``; its URL."""
    directory.mkdir(parents=True, exist_ok=True)
    certfile = directory / "emulator.pem"
    ca.issue_cert("localhost", "127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(certfile))
    with emulator_process("--certfile", str(certfile), *args) as url:
        yield url


# -- certificates and federated tokens -------------------------------------------------------------------------

SERVICE_ACCOUNT_ISSUER = "https://oidc.prod-aks.azure.com/11111111-2222-3333-4444-555555555555/"
SERVICE_ACCOUNT_SUBJECT = "system:serviceaccount:reconcile:reconcile"


@dataclass(frozen=True)
class CertificateFiles:
    """A self-signed certificate and its RSA key, as an app registration's certificate credential."""

    pem: Path  # certificate and private key in one PEM file
    pfx: Path  # PKCS#12, encrypted with ``password``
    certificate_pem: bytes  # the public part, as uploaded to the app registration
    key_lines: tuple[str, ...]  # the private key's PEM body lines, to look for in outputs
    password: str


def make_certificate(directory: Path, *, days: float = 365, password: str = "pfx-pa55word!") -> CertificateFiles:
    """Generate a real RSA key and self-signed certificate with ``cryptography``, written as PEM and PFX."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import pkcs12
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "reconcile-test")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    certificate_pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pem = directory / "client.pem"
    pem.write_bytes(certificate_pem + key_pem)
    pfx = directory / "client.pfx"
    pfx.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"reconcile", key, certificate, None, serialization.BestAvailableEncryption(password.encode())
        )
    )
    lines = tuple(line for line in key_pem.decode().splitlines() if not line.startswith("-----"))
    return CertificateFiles(pem, pfx, certificate_pem, lines, password)


@dataclass(frozen=True)
class TokenIssuer:
    """A Kubernetes-like service-account token issuer: an RSA key that signs JWTs for api://AzureADTokenExchange."""

    key: Any
    issuer: str = SERVICE_ACCOUNT_ISSUER

    @property
    def public_key_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return bytes(
            self.key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def mint(
        self,
        subject: str = SERVICE_ACCOUNT_SUBJECT,
        *,
        audience: str = "api://AzureADTokenExchange",
        lifetime: int = 3600,
        issued: float | None = None,
    ) -> str:
        """A signed service-account token, as the kubelet writes it to AZURE_FEDERATED_TOKEN_FILE."""
        import jwt

        now = int(time.time() if issued is None else issued)
        claims = {"iss": self.issuer, "sub": subject, "aud": [audience], "iat": now, "nbf": now, "exp": now + lifetime}
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": "test-key"})


def make_token_issuer(issuer: str = SERVICE_ACCOUNT_ISSUER) -> TokenIssuer:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return TokenIssuer(rsa.generate_private_key(public_exponent=65537, key_size=2048), issuer)


class Clock:
    """A clock the test moves by hand, for the controllers that accept one."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
