"""Every error reconcile raises, in one tree.

    ReconcileError                 base of everything below; ``exit_code`` is what the CLI exits with
    ├── UsageError                 exit 2: the command line or its inputs are wrong
    │   ├── ManifestError          a manifest cannot be read as asked (names file and line)
    │   │   └── JournalMismatch    --out holds a journal of other manifests (use --fresh)
    │   ├── CredentialConflict     two credential kinds configured at once (names both)
    │   └── OutDirError            --out cannot be created or written, or is not reconcile's (use --force)
    │       └── OutDirBusy         another command holds --out (its PID, host and start time named)
    ├── FatalError                 exit 4: the run cannot go on; no row is ever called missing because of it
    │   ├── ConfigError            settings missing or unsafe (plain http to a remote host, no secret, ...)
    │   ├── JournalError           the journal in --out is corrupt or not ours
    │   ├── TokenError             the identity provider refused to issue a token (Azure AD details attached)
    │   ├── AuthorizationError     the API refused a freshly issued token (401 twice, or 403)
    │   ├── EndpointNotFound       404: the API path does not exist; a configuration error, never "missing"
    │   ├── HostUnreachable        could not connect to a host after every retry
    │   ├── ProxyError             the proxy refused: 407, connection refused, a CONNECT it would not open
    │   └── PlatformUnavailable    the platform kept failing: the shared retry budget ran out
    ├── InternalError              exit 5: a bug; the crash file it names holds what to report
    ├── RunStopped                 a stop was asked before the row was sent: the row stays ``unchecked``
    └── RowError                   one row could not be checked; the row ends with status ``error``
        ├── RequestRejected        400: the platform refused this row's body
        ├── BadResponse            200 whose body is not {"exists": bool, "callId": str}
        └── TransientError         worth retrying: 408/429/5xx, connection reset, timeout
            ├── RetryableStatus    an HTTP status worth retrying, with the server's Retry-After if any
            └── TransportError     the connection failed or timed out (``connect`` tells which)

Messages end with what to do next where there is something to do.  No exception carries the client
secret, a token, an assertion, a private key or a proxy password: they are built from status codes, Azure AD
error codes and server messages only, and proxies are named by their redacted URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ReconcileError(Exception):
    """Base class of every error raised by reconcile."""

    exit_code = 1


class UsageError(ReconcileError):
    """The command line or its inputs are wrong; nothing was checked."""

    exit_code = 2


class ManifestError(UsageError):
    """A manifest cannot be read as asked."""

    def __init__(self, path: object, message: str, *, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class JournalMismatch(ManifestError):
    """The output directory holds a journal of different manifests."""


class OutDirError(UsageError):
    """The output directory cannot be used: not creatable, not writable, or someone else's files."""


class OutDirBusy(OutDirError):
    """Another reconcile command holds the output directory's lock."""


class InternalError(ReconcileError):
    """An unexpected exception: never a user's mistake, never mistaken for a finished report (exit 0 or 1)."""

    exit_code = 5


class CredentialConflict(UsageError):
    """More than one kind of credential is configured; which one was meant cannot be guessed."""


class FatalError(ReconcileError):
    """The run cannot go on."""

    exit_code = 4


class ConfigError(FatalError):
    """Settings are missing, malformed or unsafe."""


class JournalError(FatalError):
    """The journal file is corrupt or was not written by reconcile."""


class TokenError(FatalError):
    """The identity provider refused to issue a token.

    Carries Azure AD's ``error``, ``error_codes``, ``trace_id`` and ``correlation_id`` so an administrator
    can find the sign-in in the tenant's logs.
    """

    def __init__(self, message: str, *, status: int | None = None, details: Mapping[str, Any] | None = None):
        details = dict(details or {})
        self.status = status
        self.error = str(details.get("error", ""))
        self.error_codes = list(details.get("error_codes") or [])
        self.trace_id = str(details.get("trace_id", ""))
        self.correlation_id = str(details.get("correlation_id", ""))
        self.description = str(details.get("error_description", ""))
        parts = [message]
        if self.error:
            parts.append(f"error={self.error}")
        if self.error_codes:
            parts.append("error_codes=" + ",".join(str(c) for c in self.error_codes))
        if self.trace_id:
            parts.append(f"trace_id={self.trace_id}")
        if self.correlation_id:
            parts.append(f"correlation_id={self.correlation_id}")
        super().__init__("; ".join(parts))


class AuthorizationError(FatalError):
    """The API refused a token the identity provider had just issued."""


class EndpointNotFound(FatalError):
    """The API answered 404: the base URL or endpoint path is wrong."""


class HostUnreachable(FatalError):
    """No connection could be made to a host, after every retry."""


class ProxyError(FatalError):
    """The proxy refused the connection or the tunnel; never a row's fault, so the run stops."""


class PlatformUnavailable(FatalError):
    """The platform kept failing and the run stopped instead of hammering it."""


class RunStopped(ReconcileError):
    """The run is stopping: a row that waited for a slot or a retry is not sent, and stays unchecked."""


class RowError(ReconcileError):
    """One row could not be checked."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class RequestRejected(RowError):
    """The platform answered 400 for this row."""


class BadResponse(RowError):
    """The platform answered 200 with a body that is not the documented shape."""


class TransientError(RowError):
    """A failure worth retrying."""

    #: Seconds the server asked us to wait (Retry-After), already capped; ``None`` if it said nothing.
    retry_after: float | None = None
    #: Whether the failure is charged to the row's attempts: a throttle (429/503) and an outage's are not.
    counted: bool = True


class RetryableStatus(TransientError):
    """An HTTP status worth retrying (408, 429, 5xx)."""

    def __init__(self, message: str, *, status: int, retry_after: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class TransportError(TransientError):
    """The connection failed, was reset, or timed out."""

    def __init__(self, message: str, *, connect: bool = False, timeout: bool = False) -> None:
        super().__init__(message)
        self.connect = connect
        self.timeout = timeout
