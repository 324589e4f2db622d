"""The exception tree: one base class, the tree drawn in the docstring matches the code, exit codes, safe messages."""

from __future__ import annotations

import inspect
import re

import pytest

import reconcile.errors as errors
from reconcile.errors import (
    ConfigError,
    FatalError,
    JournalMismatch,
    ManifestError,
    ReconcileError,
    RetryableStatus,
    TokenError,
    TransportError,
    UsageError,
)

CLASSES = {
    name: obj
    for name, obj in vars(errors).items()
    if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == errors.__name__
}


def docstring_tree() -> dict[str, str | None]:
    """Each class named in the module docstring's tree, mapped to its parent in the drawing."""
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in (errors.__doc__ or "").splitlines():
        match = re.match(r"^(\s*(?:[│├└─ ]\s*)*)([A-Z]\w+)\s", line)
        if not match or match.group(2) not in CLASSES:
            continue
        depth = len(match.group(1))
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[match.group(2)] = stack[-1][1] if stack else None
        stack.append((depth, match.group(2)))
    return parents


def test_every_error_class_is_drawn_in_the_docstring_tree() -> None:
    """No exception class is missing from the tree in the module docstring, and the tree names no stray class."""
    assert set(docstring_tree()) == set(CLASSES)


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_drawn_parent_is_the_real_base_class(name: str) -> None:
    """Each class's parent in the drawing is its actual base class, so the picture can be trusted."""
    parent = docstring_tree()[name]
    cls = CLASSES[name]
    if parent is None:
        assert cls is ReconcileError
    else:
        assert cls.__bases__ == (CLASSES[parent],)


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_every_error_derives_from_reconcile_error(name: str) -> None:
    """Catching ReconcileError catches everything the package raises."""
    assert issubclass(CLASSES[name], ReconcileError)


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_exit_codes_follow_the_branch(name: str) -> None:
    """Usage errors exit 2 and fatal errors exit 4, down the whole branch."""
    cls = CLASSES[name]
    if issubclass(cls, UsageError):
        assert cls.exit_code == 2
    elif issubclass(cls, FatalError):
        assert cls.exit_code == 4


def test_manifest_error_names_file_and_line() -> None:
    """A ManifestError message starts with the file and the line, and keeps them as attributes."""
    exc = ManifestError("exports/a.csv", "bad things", line=7)
    assert str(exc) == "exports/a.csv, line 7: bad things"
    assert (exc.path, exc.line, exc.exit_code) == ("exports/a.csv", 7, 2)
    assert str(ManifestError("b.csv", "unreadable")) == "b.csv: unreadable"
    assert JournalMismatch("out/journal.sqlite", "x").exit_code == 2


AAD_BODY = {
    "error": "invalid_client",
    "error_description": "AADSTS7000215: Invalid client secret provided. Trace ID: t Correlation ID: c",
    "error_codes": [7000215],
    "timestamp": "2026-11-26 10:00:00Z",
    "trace_id": "0b8f3f0e-1111-2222-3333-444455556666",
    "correlation_id": "9d2e7c1a-7777-8888-9999-000011112222",
}


def test_token_error_message_carries_the_azure_ad_details() -> None:
    """TokenError's text shows error, error_codes, trace_id and correlation_id; attributes hold them too."""
    exc = TokenError("identity provider refused the credentials (401)", status=401, details=AAD_BODY)
    text = str(exc)
    for fragment in (
        "error=invalid_client",
        "error_codes=7000215",
        f"trace_id={AAD_BODY['trace_id']}",
        f"correlation_id={AAD_BODY['correlation_id']}",
    ):
        assert fragment in text
    assert exc.error == "invalid_client"
    assert exc.error_codes == [7000215]
    assert exc.status == 401
    assert exc.exit_code == 4


def test_token_error_never_shows_the_secret_even_if_the_details_carry_it() -> None:
    """Only the named Azure AD fields reach the message: a secret anywhere else in the body stays out."""
    secret = "hunter2-super-secret"
    details = {**AAD_BODY, "client_secret": secret, "echo": f"client_secret={secret}"}
    exc = TokenError("refused", status=401, details=details)
    assert secret not in str(exc)
    assert secret not in repr(exc)


def test_token_error_without_details_is_just_the_message() -> None:
    """A TokenError with no Azure AD body is its message alone."""
    assert str(TokenError("no token")) == "no token"


def test_transient_errors_carry_retry_hints() -> None:
    """RetryableStatus keeps the status and Retry-After; TransportError says whether it was connect or timeout."""
    status = RetryableStatus("HTTP 503", status=503, retry_after=1.5)
    assert (status.status, status.retry_after) == (503, 1.5)
    assert TransportError("x").retry_after is None
    refused = TransportError("refused", connect=True)
    assert (refused.connect, refused.timeout) == (True, False)
    slow = TransportError("slow", timeout=True)
    assert (slow.connect, slow.timeout) == (False, True)


def test_config_error_is_fatal() -> None:
    """Bad configuration stops the run with exit 4."""
    assert issubclass(ConfigError, FatalError)
    assert ConfigError("x").exit_code == 4
