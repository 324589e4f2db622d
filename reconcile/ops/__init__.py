"""Operations: the doctor, progress display, metrics for the scheduler, crash files and the demo."""

from ._crash import report_crash
from ._demo import run_demo
from ._doctor import can_print_unicode, diagnose, exit_code, parse_probe, render
from ._metrics import MetricsExporter, MetricsOptions, export_metrics
from ._progress import DisplayOptions, Watcher

__all__ = [
    "DisplayOptions",
    "MetricsExporter",
    "MetricsOptions",
    "Watcher",
    "can_print_unicode",
    "diagnose",
    "exit_code",
    "export_metrics",
    "parse_probe",
    "render",
    "report_crash",
    "run_demo",
]
