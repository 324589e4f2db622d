"""The run: the engine that checks every record, its journal, the commit watermark, the output directory."""

from ._engine import (
    Pacing,
    Progress,
    Reconciler,
    RunOutcome,
)
from ._journal import FILENAME as JOURNAL_NAME
from ._journal import PAGE, Journal, ResultRow
from ._options import ReportOptions, RunOptions, format_names
from ._outdir import LOCK_NAME, claim
from ._watermark import END, CommitWatermark, Position

__all__ = [
    "END",
    "JOURNAL_NAME",
    "LOCK_NAME",
    "PAGE",
    "CommitWatermark",
    "Journal",
    "Pacing",
    "Position",
    "Progress",
    "Reconciler",
    "ReportOptions",
    "ResultRow",
    "RunOptions",
    "RunOutcome",
    "claim",
    "format_names",
]
