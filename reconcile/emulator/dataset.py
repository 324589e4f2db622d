"""The recordings the emulated platform knows: an explicit table, a computable rule, or both.

Benchmarks ask about a million rows; storing them would dominate the emulator's memory and
start-up, so synthetic membership is a hash rule instead of a table.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.resources
import io
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

Key = tuple[str, str, str, str]
"""(company, organisation, folder, filename), compared exactly: no trimming, no case folding."""

COLUMNS = ("company", "organisation", "folder", "filename", "call_id")

# Basis points give present_ratio a resolution of 0.0001.
_BUCKETS = 10_000
_SYNTHETIC_PREFIX = "rec-"


def make_call_id(key: Key) -> str:
    """A stable, platform-looking callId for *key*, e.g. ``xFcLypwBMZ_pyZ-a8f3p``."""
    digest = hashlib.sha256("\x1f".join(key).encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest)[:20].decode("ascii")


def _bucket(key: Key, seed: int) -> int:
    material = f"{seed}\x1f" + "\x1f".join(key)
    return int.from_bytes(hashlib.sha256(material.encode("utf-8")).digest()[:8], "big") % _BUCKETS


def _threshold(present_ratio: float) -> int:
    if not 0 <= present_ratio <= 1:
        raise ValueError(f"present_ratio must be between 0 and 1, got {present_ratio}")
    return round(present_ratio * _BUCKETS)


@dataclass(frozen=True, slots=True)
class SyntheticRule:
    """A synthetic row exists iff its seeded hash bucket falls under the present ratio."""

    present_ratio: float
    seed: int = 0
    n: int | None = None

    def call_id(self, key: Key) -> str | None:
        filename = key[3]
        if not filename.startswith(_SYNTHETIC_PREFIX):
            return None
        if self.n is not None:
            index = filename[len(_SYNTHETIC_PREFIX) : len(_SYNTHETIC_PREFIX) + 8]
            if not index.isdigit() or int(index) >= self.n:
                return None
        if _bucket(key, self.seed) >= _threshold(self.present_ratio):
            return None
        return make_call_id(key)


class Dataset:
    """Existing recordings: an explicit {key: callId} table, optionally backed by a rule."""

    __slots__ = ("_recordings", "_rule")

    def __init__(self, recordings: Mapping[Key, str] | None = None, rule: SyntheticRule | None = None) -> None:
        self._recordings: dict[Key, str] = dict(recordings or {})
        self._rule = rule

    def lookup(self, key: Key) -> str | None:
        """The callId of *key*, or None when the platform has no such recording."""
        call_id = self._recordings.get(key)
        if call_id is None and self._rule is not None:
            return self._rule.call_id(key)
        return call_id

    def __contains__(self, key: object) -> bool:
        return isinstance(key, tuple) and len(key) == 4 and self.lookup(key) is not None

    def __len__(self) -> int:
        """Explicit recordings only; a rule-backed dataset is unbounded."""
        return len(self._recordings)

    def __iter__(self) -> Iterator[Key]:
        return iter(self._recordings)

    @classmethod
    def from_csv(cls, path: str | Path) -> Dataset:
        """Load a UTF-8 CSV with columns company, organisation, folder, filename, call_id."""
        # utf-8-sig: spreadsheet exports often start with a BOM.
        with open(path, encoding="utf-8-sig", newline="") as stream:
            return cls(_read_rows(stream, str(path)))

    @classmethod
    def demo(cls) -> Dataset:
        """The packaged recordings that match the files in sample_manifests/."""
        resource = importlib.resources.files("reconcile.emulator").joinpath("demo_dataset.csv")
        # Bytes, then decode: Traversable.open() takes no newline="", which csv needs.
        text = resource.read_bytes().decode("utf-8-sig")
        return cls(_read_rows(io.StringIO(text, newline=""), "demo_dataset.csv"))

    @classmethod
    def synthetic(cls, n: int | None, present_ratio: float, seed: int = 0) -> Dataset:
        """Membership for rows from `synthetic_manifest_rows(n, present_ratio, seed)`, computed per lookup.

        n=None accepts synthetic rows of any index (useful when the manifest size is not known).
        """
        _threshold(present_ratio)
        return cls(rule=SyntheticRule(present_ratio, seed, n))


def _read_rows(stream: IO[str], name: str) -> dict[Key, str]:
    reader = csv.DictReader(stream)
    missing = [column for column in COLUMNS if column not in (reader.fieldnames or ())]
    if missing:
        raise ValueError(
            f"{name}: missing column(s) {', '.join(missing)}. HINT: the header must be {','.join(COLUMNS)}"
        )
    recordings: dict[Key, str] = {}
    for row in reader:
        key = (row["company"], row["organisation"], row["folder"], row["filename"])
        recordings[key] = row["call_id"] or make_call_id(key)
    return recordings


_REGIONS = ("ca-east", "ca-west", "us-central", "us-east")


def synthetic_manifest_rows(n: int, present_ratio: float, seed: int = 0) -> Iterable[Key]:
    """Yield *n* manifest rows of which exactly floor(n * present_ratio) exist in `Dataset.synthetic`.

    Present rows are spread evenly; each row's filename carries a nonce chosen so that the
    dataset's hash rule agrees, which takes two hashes per row on average.
    """
    threshold = _threshold(present_ratio)
    for index in range(n):
        want_present = ((index + 1) * threshold) // _BUCKETS > (index * threshold) // _BUCKETS
        company = f"synth{seed}"
        organisation = f"{company}-{_REGIONS[index % len(_REGIONS)]}"
        folder = f"2026/11/{index % 28 + 1:02d}"
        nonce = 0
        while True:
            key = (company, organisation, folder, f"{_SYNTHETIC_PREFIX}{index:08d}-{nonce}.mp3")
            if (_bucket(key, seed) < threshold) == want_present:
                break
            nonce += 1
        yield key
