"""The version, read from the installed distribution's metadata: pyproject.toml is its one source.

Modules import ``__version__`` from here rather than from the package, whose ``__init__`` imports them back.
"""

from __future__ import annotations

import platform
import sys
from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "calljourney-reconcile"  # `reconcile` on PyPI is someone else's project


def installed_version(distribution: str) -> str:
    """The installed version of ``distribution``, or ``not installed``."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


try:
    __version__ = version(DISTRIBUTION)
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"


def version_report() -> str:
    """What ``reconcile --version`` prints: ours, the interpreter's, and the libraries' bug reports ask for."""
    return "\n".join(
        [
            f"reconcile {__version__} ({DISTRIBUTION})",
            f"Python {platform.python_version()} ({platform.python_implementation()}, {sys.executable})",
            *(f"{name} {installed_version(name)}" for name in ("aiohttp", "pandas")),
        ]
    )
