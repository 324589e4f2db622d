"""The output directory: reconcile's own, and one command's at a time.

Every command that writes into ``--out`` (``run``, ``merge``) first :func:`claim`\\ s it, before anything there
is read, cleared or opened:

- the directory is created, or the command stops naming it and why (a parent that is a file, no permission);
- a directory that holds files but no mark of reconcile (its journal, the lock file every command leaves, or a
  summary.json of its own) is refused unless ``force``: it is someone's own directory, and reconcile would
  overwrite a ``results.csv`` there;
- an exclusive ``flock`` on :data:`LOCK_NAME` makes a second command on the same directory stop at once, naming
  the holder's PID, host and start time.  The kernel drops the lock when the holder's process ends, however it
  ends, so ``kill -9`` leaves nothing stale to clear; the file stays, as the directory's mark.

Each refusal is a :class:`~reconcile.errors.OutDirError` (exit 2).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from reconcile.errors import OutDirBusy, OutDirError

from ._journal import FILENAME as JOURNAL_NAME

LOCK_NAME = ".reconcile.lock"
_LISTED = 5  # files a refusal names


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds an output directory: written into the lock file for the command refused next to say."""

    pid: int
    host: str
    started_at: str
    command: str


class OutDirLock:
    """An output directory claimed by this process; :meth:`release` (or the process ending) gives it up."""

    def __init__(self, directory: Path, fd: int, holder: Holder) -> None:
        self.directory, self.holder, self._fd = directory, holder, fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = -1

    def __enter__(self) -> OutDirLock:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def claim(directory: Path, *, command: str, force: bool = False) -> OutDirLock:
    """Create ``directory`` if need be, check it is reconcile's (or empty, or ``force``), and lock it."""
    _create(directory)
    if not force:
        _check_ours(directory)
    return _lock(directory, command)


def _create(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutDirError(
            f"--out {directory} cannot be used: it is a file, not a directory. HINT: give a directory path"
        ) from None
    except OSError as exc:
        raise OutDirError(
            f"--out {directory} cannot be created: {_reason(exc)}. HINT: choose a directory under one you can write "
            "to, or create it first"
        ) from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OutDirError(
            f"--out {directory} is not writable (permission denied). HINT: fix its permissions, or choose another --out"
        )


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ENOTDIR:
        return "a part of its path is a file, not a directory"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.EROFS:
        return "the file system is read-only"
    return exc.strerror or str(exc)


def _check_ours(directory: Path) -> None:
    names = sorted(entry.name for entry in os.scandir(directory))
    if not names or LOCK_NAME in names or JOURNAL_NAME in names or _reconcile_summary(directory / "summary.json"):
        return
    shown = ", ".join(names[:_LISTED]) + (f" and {len(names) - _LISTED} more" if len(names) > _LISTED else "")
    raise OutDirError(
        f"--out {directory} holds files reconcile did not write ({shown}) and no reconcile run: reconcile would "
        "overwrite its own file names there (results.csv, summary.json, report.html, ...). HINT: choose an empty "
        "or new directory, or pass --force to write there anyway (other files are never touched)"
    )


def _reconcile_summary(path: Path) -> bool:
    """Whether ``path`` is a summary.json reconcile wrote: a merged report from before the lock file has no other
    mark (a merge keeps no journal)."""
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_text(encoding="utf-8"))
        return isinstance(data, dict) and {"run_id", "engine_version", "counts"} <= data.keys()
    return False


def _lock(directory: Path, command: str) -> OutDirLock:
    path = directory / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise OutDirError(
            f"--out {directory}: cannot create {LOCK_NAME}: {_reason(exc)}. HINT: choose another --out"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise OutDirBusy(_busy(directory, _read_holder(path))) from None
    except OSError as exc:  # a file system without locks: say so rather than run unguarded
        os.close(fd)
        raise OutDirError(
            f"--out {directory}: cannot lock {LOCK_NAME} ({_reason(exc)}). HINT: use a local directory for --out"
        ) from None
    holder = Holder(os.getpid(), socket.gethostname(), _now(), command)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(asdict(holder)) + "\n").encode(), 0)
    except OSError:
        os.close(fd)
        raise
    return OutDirLock(directory, fd, holder)


def _read_holder(path: Path) -> Holder | None:
    with contextlib.suppress(OSError, ValueError, TypeError):
        data = json.loads(path.read_text(encoding="utf-8"))
        return Holder(int(data["pid"]), str(data["host"]), str(data["started_at"]), str(data["command"]))
    return None  # the holder has not written its details yet


def _busy(directory: Path, holder: Holder | None) -> str:
    who = (
        f"reconcile {holder.command} (PID {holder.pid} on {holder.host}, started {holder.started_at})"
        if holder is not None
        else "another reconcile command (just starting)"
    )
    return (
        f"--out {directory} is in use by {who}; two commands on one directory would destroy each other's work. "
        "HINT: wait for it to finish (then re-run to resume), or give this command another --out"
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
