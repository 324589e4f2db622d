"""The package's public names."""

from __future__ import annotations

import importlib.metadata

import reconcile


def test_all_names_exist_and_are_exported() -> None:
    """Every name in reconcile.__all__ is an attribute of the package, and __all__ has no duplicates."""
    assert len(set(reconcile.__all__)) == len(reconcile.__all__)
    for name in reconcile.__all__:
        assert hasattr(reconcile, name), name


def test_star_import_gives_exactly_all() -> None:
    """`from reconcile import *` binds the names of __all__."""
    namespace: dict[str, object] = {}
    exec("from reconcile import *", namespace)
    assert set(reconcile.__all__) <= set(namespace)


def test_public_classes_claim_the_package() -> None:
    """The exported classes and the run function are the library's real objects (not re-wrapped copies)."""
    from reconcile.api import run
    from reconcile.config._settings import Settings
    from reconcile.engine._engine import Reconciler
    from reconcile.engine._options import RunOptions

    assert reconcile.Settings is Settings
    assert reconcile.Reconciler is Reconciler
    assert reconcile.RunOptions is RunOptions
    assert reconcile.run is run


def test_version_matches_the_installed_metadata() -> None:
    """__version__ agrees with the version pip installed."""
    assert reconcile.__version__ == importlib.metadata.version("calljourney-reconcile")


def test_all_is_the_documented_surface() -> None:
    """__all__ lists exactly the library's public names (as httpx asserts its own): a change here is an API change."""
    assert reconcile.__all__ == [
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


def test_every_error_class_is_exported_from_the_one_errors_module() -> None:
    """Each exception of reconcile.errors is reconcile.<Name>, the same class, so `except reconcile.X` works."""
    import inspect

    import reconcile.errors

    classes = {
        name: cls
        for name, cls in inspect.getmembers(reconcile.errors, inspect.isclass)
        if issubclass(cls, reconcile.errors.ReconcileError)
    }
    assert len(classes) > 20
    for name, cls in classes.items():
        assert name in reconcile.__all__, name
        assert getattr(reconcile, name) is cls, name
    assert reconcile.run_sync is reconcile.api.run_sync
