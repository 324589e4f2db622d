"""`python -m reconcile`: the console script, for environments without it on PATH."""

from __future__ import annotations

from reconcile.cli import main

if __name__ == "__main__":
    main()
