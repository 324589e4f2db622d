"""What every stage shares: a recording's key and its digest, the statuses a row can end in, the exit codes, and
how a file is written so that its final name always holds a whole one.

A key is the four values that name a recording on the platform; the digest is how the journal, the shards, the
comparison with an earlier report and ``validate`` find a key again without holding its text.
"""

from __future__ import annotations

import enum
import hashlib
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

KEY_FIELDS = ("company", "organisation", "folder", "filename")

Key = tuple[str, str, str, str]


def key_digest(key: Key) -> bytes:
    """A 128-bit digest of a record's four values: exact for any practical purpose, 16 bytes on disk.

    The separator is a control character, which no valid key holds (the manifest refuses them), so two keys
    never join to the same text.
    """
    return hashlib.blake2b("\x1f".join(key).encode("utf-8", "surrogatepass"), digest_size=16).digest()


class Status(enum.StrEnum):
    """How a row ended: the ``status`` column of results.csv and the keys of summary.json's ``counts``."""

    PRESENT = "present"  # the platform holds it (with its callId)
    MISSING = "missing"  # the platform answered exists: false
    INVALID = "invalid"  # not sendable: an empty value or a control character
    ERROR = "error"  # could not be checked: the platform failed for this row
    UNCHECKED = "unchecked"  # the run stopped before reaching it


class ExitCode(enum.IntEnum):
    """What the process exits with: the README's "Exit codes" table (a test holds the two equal)."""

    OK = 0  # every row present (validate: clean; doctor: every step passed)
    MISSING = 1  # complete; some rows missing
    USAGE = 2  # bad flags, an unreadable manifest, an --out that cannot be used, ...
    ROW_PROBLEMS = 3  # some rows invalid, error or unchecked
    FATAL = 4  # credentials refused, endpoint not found, host unreachable, bad configuration, ...
    INTERNAL = 5  # a bug in reconcile: a crash file was written
    SIGINT = 130  # stopped by SIGINT (128 + 2)
    SIGTERM = 143  # stopped by SIGTERM (128 + 15)

    @classmethod
    def for_counts(cls, counts: Mapping[str, int]) -> ExitCode:
        """A finished report's code, from its counts: 3 for any row not settled, else 1 for any missing, else 0."""
        if any(counts.get(status, 0) for status in (Status.INVALID, Status.ERROR, Status.UNCHECKED)):
            return cls.ROW_PROBLEMS
        return cls.MISSING if counts.get(Status.MISSING, 0) else cls.OK


def partial_path(path: Path) -> Path:
    """Where ``path`` is written until it is complete: a hidden ``.NAME.partial`` beside it."""
    return path.with_name(f".{path.name}.partial")


@contextmanager
def written_whole(path: Path) -> Iterator[Path]:
    """Write ``path`` through the file this yields: renamed into place when the block ends, removed if it fails."""
    temporary = partial_path(path)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
