"""A finished report as pandas DataFrames, for notebooks and scripts that work on the results.

    report = reconcile.load_report("reports/2026-11-26")
    report.present[["filename", "call_id"]]          # every recording the platform holds, with its callId
    report.missing.groupby("company").size()         # what is missing, per company
    report.summary.run_id, report.summary.counts.missing

results.csv is read back exactly as it was written: every column as text, so a filename ``00123`` stays
``00123`` and a company called ``NA`` stays ``NA`` (pandas' defaults would make them the number 123 and a
missing value), and ``row`` and ``attempts`` as integers.  pandas is imported here, on first use, and nowhere
on the path of a run: writing the report needs none of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from reconcile.errors import UsageError
from reconcile.model import Status

from ._summary import SUMMARY_NAME, Summary, load_summary

if TYPE_CHECKING:
    import pandas as pd

INTEGER_COLUMNS = ("row", "attempts")


@dataclass(frozen=True, eq=False, slots=True)
class ReportFrames:
    """Every row of results.csv (``results``), its present and missing rows, and summary.json (None when the
    report has none: a run stopped at once)."""

    results: pd.DataFrame
    summary: Summary | None

    @property
    def present(self) -> pd.DataFrame:
        return self.results[self.results["status"] == Status.PRESENT]

    @property
    def missing(self) -> pd.DataFrame:
        return self.results[self.results["status"] == Status.MISSING]


def load_report(out_dir: str | Path) -> ReportFrames:
    """Read the report in ``out_dir`` (a run's ``--out``, or ``reconcile merge``'s) into DataFrames."""
    directory = Path(out_dir)
    results = directory / "results.csv"
    if not results.is_file():
        raise UsageError(f"{results}: no report there. HINT: give the --out directory of a finished run")
    import pandas as pd

    frame = pd.read_csv(results, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8")
    for column in INTEGER_COLUMNS:
        if column in frame.columns:
            frame[column] = frame[column].astype("int64")
    summary = load_summary(directory) if (directory / SUMMARY_NAME).is_file() else None
    return ReportFrames(frame, summary)
