"""Logging: where log lines go, in which format, and the guarantee that no secret reaches any of them.

:func:`configure_logging` installs reconcile's handlers on the root logger (so aiohttp's and asyncio's
records are formatted and redacted like reconcile's own):

* without ``log_file``: one handler on stderr at WARNING, INFO (``-v``) or DEBUG (``-vv``);
* with ``log_file``: the file gets INFO (or DEBUG at ``-vv``) and stderr keeps warnings only, so a terminal
  shows the progress display and what needs attention while the file keeps the detail.

``text`` lines read ``2026-11-26T23:59:01.123Z WARNING reconcile.engine._engine: message``; ``json`` lines are objects
with ``ts``, ``level``, ``logger``, ``message`` and the record's structured extras (``row``, ``status``,
``wait``, ``error_codes``, ``correlation_id`` ...).  Every handler carries :class:`RedactingFilter`, and both
formatters redact their whole output again, extras and tracebacks included: a secret must get past both.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from reconcile.errors import TokenError, UsageError

from ._redact import RedactingFilter, redact

LOG_FORMATS = ("text", "json")

#: The manifest row a worker is checking, so a retry logged deep in the client can name it.  The engine sets
#: it per row (a context variable costs tens of nanoseconds; formatting a description would cost more).
ROW: contextvars.ContextVar[Any] = contextvars.ContextVar("reconcile_row", default=None)

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is structured data.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
_OURS = "_reconcile_handler"  # marks handlers configure_logging installed, so a second call replaces them
_level_before: list[int] = []  # the root level configure_logging found, restored by reset_logging


def level_for(verbosity: int) -> int:
    """WARNING, INFO (-v) or DEBUG (-vv and more)."""
    return logging.WARNING - 10 * max(0, min(verbosity, 2))


def configure_logging(
    verbosity: int = 0,
    *,
    log_format: str = "text",
    log_file: Path | None = None,
    stream: TextIO | None = None,
) -> None:
    """Install reconcile's handlers (replacing any it installed before) and redaction on every handler.

    ``stream`` defaults to whatever ``sys.stderr`` is when a line is written: a progress display that
    redirects stderr (rich's live display does) then shows log lines above itself instead of tearing it.
    """
    if log_format not in LOG_FORMATS:
        raise UsageError(f"unknown log format {log_format!r}. HINT: use one of {', '.join(LOG_FORMATS)}")
    reset_logging()
    level = level_for(verbosity)
    formatter: logging.Formatter = JsonFormatter() if log_format == "json" else TextFormatter()
    console = logging.StreamHandler(stream if stream is not None else _Stderr())
    handlers: list[logging.Handler] = [console]
    if log_file is None:
        console.setLevel(level)
    else:
        console.setLevel(logging.WARNING)
        try:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            file_handler = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as exc:
            raise UsageError(
                f"cannot write the log file {log_file}: {exc.strerror}. HINT: choose a writable --log-file path"
            ) from None
        # A log file is read after the fact: it keeps at least token renewals, throttling and retries.
        file_handler.setLevel(min(level, logging.INFO))
        handlers.append(file_handler)
    root = logging.getLogger()
    _level_before.append(root.level)
    for handler in handlers:
        handler.setFormatter(formatter)
        setattr(handler, _OURS, True)
        root.addHandler(handler)
    root.setLevel(min(h.level for h in handlers))
    install_redaction()


def reset_logging() -> None:
    """Remove (and close) the handlers :func:`configure_logging` installed; restore the root logger's level."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _OURS, False):
            root.removeHandler(handler)
            handler.close()
    if _level_before:
        root.setLevel(_level_before.pop())


def install_redaction() -> None:
    """Put a :class:`RedactingFilter` on every handler there is: the root's, any logger's, and the last resort."""
    handlers = list(logging.getLogger().handlers)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            handlers.extend(logger.handlers)
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    for handler in handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def error_fields(exc: BaseException) -> dict[str, Any]:
    """Structured fields of a fatal error for ``extra=``: its kind, and Azure AD's codes and ids if any."""
    fields: dict[str, Any] = {"error": type(exc).__name__}
    if isinstance(exc, TokenError):
        for name in ("status", "error_codes", "trace_id", "correlation_id"):
            value = getattr(exc, name)
            if value:
                fields[name] = value
        if exc.error:
            fields["aad_error"] = exc.error
    return fields


def utc_stamp(created: float, *, millis: bool = True) -> str:
    """``2026-11-26T23:59:01.123Z`` (or without milliseconds) from a ``time.time()`` value."""
    moment = datetime.fromtimestamp(created, UTC)
    return moment.isoformat(timespec="milliseconds" if millis else "seconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """``ts LEVEL logger: message``, UTC, redacted as a whole."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{utc_stamp(record.created)} {record.levelname} {record.name}: {record.getMessage()}"
        trace = _trace(self, record)
        return redact(f"{line}\n{trace}" if trace else line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, then the record's extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": utc_stamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD and not name.startswith("_") and name not in entry:
                entry[name] = _plain(value)
        trace = _trace(self, record)
        if trace:
            entry["exception"] = redact(trace)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _trace(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    """The traceback text of a record, whether still live (``exc_info``) or already rendered by the filter."""
    if record.exc_info and record.exc_info[1] is not None:
        return formatter.formatException(record.exc_info)
    parts = [part for part in (record.exc_text, record.stack_info and formatter.formatStack(record.stack_info)) if part]
    return "\n".join(parts)


def _plain(value: object) -> object:
    """A JSON-ready, redacted copy of an extra's value."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return redact(str(value))


class _Stderr:
    """A stream that is whatever ``sys.stderr`` is at the time of each write."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()
