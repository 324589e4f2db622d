"""Is a report exact? Every row of results.csv against what the emulator's synthetic dataset knows."""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reconcile.emulator import Dataset
from reconcile.model import Status


@dataclass(frozen=True, slots=True)
class Exactness:
    """How many rows of a report are right, wrong, in error, or never checked (a run cut off by its timeout)."""

    rows: int
    right: int
    wrong: int
    errors: int
    unchecked: int

    @property
    def exact(self) -> bool:
        """Every row right: none wrong, none in error, none left unchecked."""
        return self.right == self.rows

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "exact": self.exact}


def check_results(results_csv: Path, dataset: Dataset) -> Exactness:
    """Compare each row's status and callId with what ``dataset`` answers: present with its callId, or missing."""
    right = wrong = errors = unchecked = rows = 0
    with open(results_csv, encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            rows += 1
            status = row["status"]
            if status == Status.ERROR:
                errors += 1
                continue
            if status == Status.UNCHECKED:
                unchecked += 1
                continue
            key = (row["company"], row["organisation"], row["folder"], row["filename"])
            call_id = dataset.lookup(key)
            expected = (Status.MISSING, "") if call_id is None else (Status.PRESENT, call_id)
            if (status, row["call_id"]) == expected:
                right += 1
            else:
                wrong += 1
    return Exactness(rows, right, wrong, errors, unchecked)
