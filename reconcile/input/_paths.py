"""Which files a run reads: manifest paths as given, directories as the manifests in them, globs as their matches.

The CLI's arguments and the library's ``paths`` go through :func:`expand_manifest_paths` alike, so
``reconcile run exports/`` and ``reconcile.run("exports/", ...)`` read the same files in the same order.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path

from reconcile.errors import ManifestError, UsageError

from ._table import SUFFIXES, TEXT_FORMATS

STDIN = "-"  # standard input, copied into --out before it is read (see spool_streams)

#: What may name manifests: one path or pattern, or several.
ManifestPaths = str | os.PathLike[str] | Iterable[str | os.PathLike[str]]


def is_manifest_name(name: str) -> bool:
    """Whether a directory entry looks like a manifest reconcile can read (by extension; no hidden/lock files)."""
    lower = name.lower()
    if lower.startswith((".", "~$")):
        return False
    suffixes = Path(lower).suffixes
    if suffixes[-1:] == [".gz"]:
        return len(suffixes) >= 2 and SUFFIXES.get(suffixes[-2]) in TEXT_FORMATS
    return bool(suffixes) and suffixes[-1] in SUFFIXES


def expand_manifest_paths(args: ManifestPaths) -> list[Path]:
    """Files as given, directories as their manifest files, globs as their matches; each file once, in order.

    ``args`` is one path (``str`` or ``Path``) or any number of them; ``-`` (standard input) stays as it is, for
    :func:`~reconcile.input._manifest.spool_streams`.
    """
    given = [args] if isinstance(args, str | os.PathLike) else list(args)
    if not given:
        raise UsageError("no manifest given. HINT: name at least one file, directory or glob, e.g. 'exports/*.csv'")
    paths: list[Path] = []
    seen: set[Path] = set()
    for arg in given:
        text = os.fspath(arg)
        path = Path(text)
        if text == STDIN:
            if STDIN in map(str, paths):
                raise UsageError("- (standard input) is given twice. HINT: give it once")
            paths.append(path)
            continue
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and is_manifest_name(p.name))
            if not found:
                raise ManifestError(
                    path,
                    "the directory holds no manifest files. HINT: manifests end in "
                    + ", ".join(sorted(SUFFIXES))
                    + " (text ones optionally .gz)",
                )
        elif path.exists() or not glob.has_magic(text):
            if not path.exists():
                raise ManifestError(path, "no such file or directory. HINT: check the path")
            found = [path]
        else:
            found = sorted(
                Path(m)
                for m in glob.glob(text, recursive=True)
                if Path(m).is_file() and not Path(m).name.startswith("~$")
            )
            if not found:
                raise ManifestError(
                    text,
                    "no file matches this pattern. HINT: check the directory and the pattern, e.g. 'exports/*.csv'",
                )
        for found_path in found:
            resolved = found_path.resolve()
            if resolved not in seen:
                seen.add(resolved)
                paths.append(found_path)
    return paths
