"""The report: rows joined with results, statistics, the writers of each format, report.html, the delta; the history
of many runs."""

from ._build import RunReport, Summary, check_options, supersede, write_rows
from ._history import History, HistoryRun, default_out_dir, load_history, write_history
from ._load import ReportFrames, load_report
from ._rows import ATTEMPTS, CHUNK, DETAIL, OUR_COLUMNS, ROW, SOURCE, STATUS, rename_clash
from ._statistics import ReportStatistics, day_reader
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
    "History",
    "HistoryRun",
    "ReportFrames",
    "ReportStatistics",
    "RunReport",
    "Summary",
    "check_options",
    "day_reader",
    "default_out_dir",
    "load_history",
    "load_report",
    "rename_clash",
    "supersede",
    "write_history",
    "write_rows",
]
