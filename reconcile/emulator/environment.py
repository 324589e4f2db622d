"""The settings that point reconcile at a running emulator, as shell exports and as a ``.env`` file."""

from __future__ import annotations

import os
import shlex
import tempfile
from pathlib import Path

from reconcile.config import DEFAULT_ENDPOINT_PATH, ENV_PREFIX
from reconcile.emulator.server import Emulator

# The first line of every .env the emulator writes: only such a file may be overwritten, never a user's own.
ENV_FILE_MARKER = "# Written by `reconcile emulator`"
# A client cannot connect to a wildcard address, and plain http must name loopback: the local address instead.
_WILDCARD_TO_LOOPBACK = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]"}


def client_environment(server: Emulator, host: str) -> dict[str, str]:
    """The CALLJOURNEY_* variables that reach ``server`` (listening on ``host``) with its demo credentials."""
    url = server.base_url
    if host in _WILDCARD_TO_LOOPBACK:
        scheme = url.split("://", 1)[0]
        address = "localhost" if scheme == "https" else _WILDCARD_TO_LOOPBACK[host]
        url = f"{scheme}://{address}:{server.port}"
    config = server.config
    values = {
        "tenant_id": config.tenant_id,
        "client_id": config.client_id,
        "client_secret": config.client_secret,  # the public demo secret, not a real one
    }
    if config.endpoint_path != DEFAULT_ENDPOINT_PATH:
        values["endpoint_path"] = config.endpoint_path
    values["base_url"] = url
    values["authority"] = url  # last: whoever reads the printed lines knows it has them all at this one
    return {ENV_PREFIX + name.upper(): value for name, value in values.items()}


def _tls_note(environment: dict[str, str]) -> list[str]:
    if not environment.get(ENV_PREFIX + "BASE_URL", "").startswith("https://"):
        return []
    return [f"# TLS: also set {ENV_PREFIX}CA_BUNDLE to the CA that signed --certfile, unless the system trusts it"]


def export_lines(environment: dict[str, str]) -> list[str]:
    """``export NAME=VALUE`` lines, quoted for a POSIX shell: copy, paste, run."""
    return [
        "# Paste into the shell that runs reconcile (the emulator's public demo credentials, not secrets):",
        *_tls_note(environment),
        *(f"export {name}={shlex.quote(value)}" for name, value in environment.items()),
    ]


def check_env_file(path: Path) -> str | None:
    """Why ``path`` cannot be written (no such directory; it exists and is not one of ours), or None."""
    if not path.parent.is_dir():
        return f"{path.parent} is not a directory. HINT: create it, or pass another path"
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            first = handle.readline()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}"
    if first.startswith(ENV_FILE_MARKER):
        return None
    return (
        f"{path} exists and was not written by `reconcile emulator`: it may hold real credentials. "
        "HINT: move it away, or pass another path"
    )


def write_env_file(path: Path, environment: dict[str, str]) -> None:
    """Write ``environment`` as a .env file (``NAME=VALUE``, as python-dotenv reads it), replacing it whole."""
    lines = [
        f"{ENV_FILE_MARKER} (its public demo credentials, not secrets), valid while it runs on "
        f"{environment[ENV_PREFIX + 'BASE_URL']}",
        *_tls_note(environment),
        *(f"{name}={shlex.quote(value)}" for name, value in environment.items()),
    ]
    # Atomic and private (0600, as mkstemp makes it): a reader never sees half a file, and a .env is where
    # secrets usually live.
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
