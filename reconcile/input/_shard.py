"""Shards: a stable partition of manifest rows, so N processes together check every row exactly once.

A row belongs to shard ``hash(company, organisation, folder, filename) mod N``: the same on every machine and
every run (BLAKE2b, not Python's salted ``hash``), and rows with the same four values (duplicates) always fall
in the same shard, so each shard can tell a duplicate from its original by itself.  Kubernetes Indexed Jobs
hand each pod its index in ``JOB_COMPLETION_INDEX``; any scheduler that hands out an index will do.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from reconcile.errors import UsageError
from reconcile.model import Key, key_digest


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise UsageError(f"shard {self.index}/{self.count} does not exist. HINT: use K/N with 0 <= K < N")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, key: Key) -> bool:
        return self.count == 1 or int.from_bytes(key_digest(key)[:8], "big") % self.count == self.index

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"K/N"``, as given to ``--shard``."""
        index, _, count = text.partition("/")
        try:
            return cls(int(index), int(count))
        except ValueError:
            raise UsageError(f"--shard {text!r} is not K/N. HINT: e.g. --shard 0/4") from None

    @classmethod
    def from_environment(cls, count: int, environ: Mapping[str, str] | None = None) -> Shard:
        """Shard ``$JOB_COMPLETION_INDEX`` of ``count``, as a Kubernetes Indexed Job's pod."""
        env = os.environ if environ is None else environ
        raw = env.get("JOB_COMPLETION_INDEX", "").strip()
        if not raw.isdigit():
            raise UsageError(
                "--shards needs JOB_COMPLETION_INDEX (set by Kubernetes Indexed Jobs) to be a number, "
                f"got {raw!r}. HINT: outside Kubernetes use --shard K/N"
            )
        return cls(int(raw), count)

    @classmethod
    def select(
        cls, text: str | None = None, count: int | None = None, environ: Mapping[str, str] | None = None
    ) -> Shard | None:
        """The shard ``--shard K/N`` (``text``) or ``--shards N`` (``count``) names, at most one of them, or None
        for every row."""
        if text is not None and count is not None:
            raise UsageError(
                "--shard and --shards are alternatives. HINT: --shard K/N, or --shards N in an Indexed Job"
            )
        if text is not None:
            return cls.parse(text)
        return cls.from_environment(count, environ) if count is not None else None
