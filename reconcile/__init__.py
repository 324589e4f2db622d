"""reconcile: check call-recording manifests against the CallJourney platform.

The library API: :func:`run` reconciles manifests into a report directory; :class:`Settings` says where to
connect and with which credentials; :class:`RunOptions` how the run behaves;
:func:`load_report` opens a finished report in pandas.
"""

from ._version import __version__
from .config import Secret, Settings
from .engine import Progress, Reconciler, RunOptions
from .errors import ReconcileError
from .frames import ReportFrames, load_report
from .manifest import Manifest, Record
from .report import Summary
from .runner import run

__all__ = [
    "Manifest",
    "Progress",
    "ReconcileError",
    "Reconciler",
    "Record",
    "ReportFrames",
    "RunOptions",
    "Secret",
    "Settings",
    "Summary",
    "__version__",
    "load_report",
    "run",
]
