"""The report: rows joined with results, statistics, the writers of each format, report.html, the delta; the history
of many runs."""

from ._build import Report, RunReport, check_options, supersede, write_rows
from ._history import History, HistoryRun, default_out_dir, load_history, write_history
from ._load import ReportFrames, load_report
from ._rows import ATTEMPTS, CHUNK, DETAIL, OUR_COLUMNS, ROW, SOURCE, STATUS, Layout
from ._statistics import ReportStatistics, day_reader
from ._summary import (
    SUMMARY_NAME,
    Attempt,
    Counts,
    Delta,
    ErrorInfo,
    GroupCounts,
    ManifestEntry,
    MergedShard,
    PacingSummary,
    Proxy,
    Summary,
    load_summary,
)
from ._writers import FORMATS

__all__ = [
    "ATTEMPTS",
    "CHUNK",
    "DETAIL",
    "FORMATS",
    "OUR_COLUMNS",
    "ROW",
    "SOURCE",
    "STATUS",
    "SUMMARY_NAME",
    "Attempt",
    "Counts",
    "Delta",
    "ErrorInfo",
    "GroupCounts",
    "History",
    "HistoryRun",
    "Layout",
    "ManifestEntry",
    "MergedShard",
    "PacingSummary",
    "Proxy",
    "Report",
    "ReportFrames",
    "ReportStatistics",
    "RunReport",
    "Summary",
    "check_options",
    "day_reader",
    "default_out_dir",
    "load_history",
    "load_report",
    "load_summary",
    "supersede",
    "write_history",
    "write_rows",
]
