"""The command line: options declared once (:mod:`._options`), commands that parse, call the library and print
(:mod:`._commands`, :mod:`._output`), configuration profiles (:mod:`._profiles`)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import NoReturn

from ._commands import cli

__all__ = ["cli", "main"]


def main() -> None:
    """The console script.

    It leaves with ``os._exit`` once the command is done and its output flushed, as mypy does: the report is
    written and closed by then, and unwinding the interpreter's modules would add ~50–90 ms to every run.
    """
    try:
        cli()
    except SystemExit as done:
        _leave(done.code)
    _leave(0)


def _leave(code: object) -> NoReturn:
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message"): Python prints it and exits 1
        print(code, file=sys.stderr)
        status = 1
    logging.shutdown()  # flushes and closes --log-file, as the atexit hook os._exit skips would
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (| head) or a closed stream
            stream.flush()
    os._exit(status)
