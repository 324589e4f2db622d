"""The report: rows joined with results, statistics, the writers of each format, report.html, the delta."""

from ._build import RunReport, Summary, check_options, supersede, write_rows
from ._load import ReportFrames, load_report
from ._rows import ATTEMPTS, CHUNK, DETAIL, OUR_COLUMNS, ROW, SOURCE, STATUS, Layout
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
    "Layout",
    "ReportFrames",
    "ReportStatistics",
    "RunReport",
    "Summary",
    "check_options",
    "day_reader",
    "load_report",
    "supersede",
    "write_rows",
]
