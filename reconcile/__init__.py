"""reconcile: check call-recording manifests against the CallJourney platform.

The library API: :func:`run` reconciles manifests into a report directory; :class:`Settings` says where to
connect and with which credentials; :class:`RunOptions` how the run behaves;
:func:`load_report` opens a finished report in pandas, :func:`load_summary` its summary.json as a :class:`Summary`.
"""

from reconcile.config import Secret
from reconcile.config._settings import Settings
from reconcile.engine._engine import Progress, Reconciler, RunOptions
from reconcile.input._manifest import Manifest, Record
from reconcile.report._build import Report
from reconcile.report._load import ReportFrames, load_report
from reconcile.report._summary import Summary, load_summary

from ._version import __version__
from .api import run
from .errors import ReconcileError

__all__ = [
    "Manifest",
    "Progress",
    "ReconcileError",
    "Reconciler",
    "Record",
    "Report",
    "ReportFrames",
    "RunOptions",
    "Secret",
    "Settings",
    "Summary",
    "__version__",
    "load_report",
    "load_summary",
    "run",
]
