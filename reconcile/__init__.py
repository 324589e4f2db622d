"""reconcile: check call-recording manifests against the CallJourney platform.

The library API: :func:`run` (``await``) and :func:`run_sync` reconcile manifests into a report directory;
:class:`Settings` says where to connect and with which credentials (``Settings.load()`` reads the environment);
:class:`RunOptions` how the run behaves and :class:`ReportOptions` what the report writes; :func:`load_report`
opens a finished report in pandas, :func:`load_summary` its summary.json as a :class:`Summary`.  Every error is a
:class:`ReconcileError` (the tree is in :mod:`reconcile.errors`), and each one is exported here.
"""

from reconcile.config import Secret
from reconcile.config._settings import Settings
from reconcile.engine._engine import Progress, Reconciler
from reconcile.engine._options import ReportOptions, RunOptions
from reconcile.input._manifest import Manifest, Record
from reconcile.input._table import ReadOptions
from reconcile.report._build import Report
from reconcile.report._load import ReportFrames, load_report
from reconcile.report._summary import Summary, load_summary

from ._version import __version__
from .api import run, run_sync
from .errors import (
    AuthorizationError,
    BadResponse,
    ConfigError,
    CredentialConflict,
    EndpointNotFound,
    FatalError,
    HostUnreachable,
    InternalError,
    JournalError,
    JournalMismatch,
    ManifestError,
    OutDirBusy,
    OutDirError,
    PlatformUnavailable,
    ProxyError,
    ReconcileError,
    RequestRejected,
    RetryableStatus,
    RowError,
    RunStopped,
    TokenError,
    TransientError,
    TransportError,
    UsageError,
)

__all__ = [
    "AuthorizationError",
    "BadResponse",
    "ConfigError",
    "CredentialConflict",
    "EndpointNotFound",
    "FatalError",
    "HostUnreachable",
    "InternalError",
    "JournalError",
    "JournalMismatch",
    "Manifest",
    "ManifestError",
    "OutDirBusy",
    "OutDirError",
    "PlatformUnavailable",
    "Progress",
    "ProxyError",
    "ReadOptions",
    "ReconcileError",
    "Reconciler",
    "Record",
    "Report",
    "ReportFrames",
    "ReportOptions",
    "RequestRejected",
    "RetryableStatus",
    "RowError",
    "RunOptions",
    "RunStopped",
    "Secret",
    "Settings",
    "Summary",
    "TokenError",
    "TransientError",
    "TransportError",
    "UsageError",
    "__version__",
    "load_report",
    "load_summary",
    "run",
    "run_sync",
]
