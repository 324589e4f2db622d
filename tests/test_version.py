"""_version: one version, read from the installed metadata, and the report bug reports ask for."""

from __future__ import annotations

import importlib.metadata
import platform

from reconcile._version import DISTRIBUTION, __version__, installed_version, version_report


def test_the_version_is_the_installed_distributions() -> None:
    """__version__ is what pip installed as calljourney-reconcile."""
    assert __version__ == importlib.metadata.version(DISTRIBUTION)


def test_an_absent_distribution_reads_as_not_installed() -> None:
    """A library that is not installed is reported as such, not as an exception."""
    assert installed_version("no-such-distribution-for-reconcile") == "not installed"
    assert installed_version("aiohttp") == importlib.metadata.version("aiohttp")


def test_the_version_report_names_ours_the_interpreter_and_the_libraries() -> None:
    """reconcile --version prints our version and distribution, Python's, then aiohttp's and pandas'."""
    lines = version_report().splitlines()
    assert lines[0] == f"reconcile {__version__} ({DISTRIBUTION})"
    assert lines[1].startswith(f"Python {platform.python_version()} ")
    assert [line.split()[0] for line in lines[2:]] == ["aiohttp", "pandas"]
