"""The layout: stages import downward only (the import-linter contracts in pyproject.toml), and no cycles."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_the_import_contracts_are_kept() -> None:
    """lint-imports keeps every contract in pyproject.toml: an upward import (input importing platform) breaks it."""
    linter = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert linter, "HINT: pip install -e '.[test]' (import-linter)"
    done = subprocess.run([linter, "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout
