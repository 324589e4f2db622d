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
