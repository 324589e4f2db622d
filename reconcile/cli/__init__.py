"""The command line: a thin layer of options and output over the library."""

from ._main import main

__all__ = ["main"]
