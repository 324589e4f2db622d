"""summary.json: its schema as frozen dataclasses, the one writer of the file and its one loader.

A run (:mod:`reconcile.report._build`) and ``reconcile merge`` (:mod:`reconcile.shards._merge`) build a
:class:`Summary`; :meth:`Summary.to_dict` gives the JSON's keys in the order the file has always had them.
:func:`load_summary` reads one back, for ``merge``, ``--compare-to`` and :func:`reconcile.load_report`; a
summary written by an older reconcile lacks later keys, which read as their defaults.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconcile.engine import Pacing
from reconcile.errors import UsageError
from reconcile.model import Status, written_whole

SUMMARY_NAME = "summary.json"

# A field so marked is left out of the JSON when it is None: the platform a merge's shards disagree on.
_OMITTED_WHEN_NONE = {"omitted_when_none": True}


@dataclass(frozen=True, slots=True)
class Counts:
    """Rows by status; they always add up to the records."""

    present: int = 0
    missing: int = 0
    invalid: int = 0
    error: int = 0
    unchecked: int = 0

    @classmethod
    def of(cls, counts: Mapping[str, int]) -> Counts:
        return cls(**{status.value: int(counts.get(status, 0)) for status in Status})

    def as_dict(self) -> dict[str, int]:
        return {status.value: getattr(self, status.value) for status in Status}

    @property
    def total(self) -> int:
        return sum(self.as_dict().values())


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One manifest the run read: where, its content's SHA-256 and size, its records and columns."""

    path: str
    sha256: str
    bytes: int
    records: int
    columns: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """The error that stopped a run; Azure AD's details when it was a refused token."""

    type: str
    message: str
    error: str | None = field(default=None, metadata=_OMITTED_WHEN_NONE)
    error_codes: tuple[int, ...] | None = field(default=None, metadata=_OMITTED_WHEN_NONE)
    trace_id: str | None = field(default=None, metadata=_OMITTED_WHEN_NONE)
    correlation_id: str | None = field(default=None, metadata=_OMITTED_WHEN_NONE)
    shard: str | None = field(default=None, metadata=_OMITTED_WHEN_NONE)  # in a merge: whose error

    @classmethod
    def of(cls, exc: BaseException) -> ErrorInfo:
        codes = getattr(exc, "error_codes", None)
        return cls(
            type=type(exc).__name__,
            message=str(exc),
            error=getattr(exc, "error", None) or None,
            error_codes=tuple(codes) if codes else None,
            trace_id=getattr(exc, "trace_id", None) or None,
            correlation_id=getattr(exc, "correlation_id", None) or None,
        )


@dataclass(frozen=True, slots=True)
class Proxy:
    """How the API and the identity provider were reached: a redacted proxy URL, or ``direct``."""

    api: str
    identity_provider: str


@dataclass(frozen=True, slots=True)
class PacingSummary:
    """The run's concurrency and rate, and what the platform answered (:class:`reconcile.engine.Pacing`)."""

    concurrency: int | str  # the fixed --concurrency, or "auto"
    concurrency_final: int
    concurrency_lowest: int
    concurrency_highest: int
    concurrency_changes: int
    rate_limit: float | None
    rate_limit_lowest: float | None
    rate_cuts: int
    throttled: int
    faults: int
    pauses: int
    outages: int
    outage_seconds: float

    @classmethod
    def of(cls, pacing: Pacing) -> PacingSummary:
        rates = {
            name: None if value is None else round(value, 1)
            for name, value in (("rate_limit", pacing.rate_limit), ("rate_limit_lowest", pacing.rate_limit_lowest))
        }
        concurrency: int | str = "auto" if pacing.concurrency is None else pacing.concurrency
        return cls(**{**dataclasses.asdict(pacing), "concurrency": concurrency, **rates})


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt of a resumable run: when it started and ended, and how (complete, interrupted, fatal)."""

    attempt: int
    started_at: str
    finished_at: str | None
    outcome: str | None
    shard: str | None = field(default=None, metadata=_OMITTED_WHEN_NONE)  # in a merge: whose attempt


@dataclass(frozen=True, slots=True)
class Delta:
    """The comparison with an earlier run (``--compare-to``): which, and how many rows changed in each way."""

    compared_to: str = ""
    run_id: str | None = None
    engine_version: str | None = None
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GroupCounts:
    """Rows by status of one company, or of one company's organisation."""

    company: str
    organisation: str | None
    counts: Counts

    def to_dict(self) -> dict[str, Any]:
        names = {"company": self.company} | ({} if self.organisation is None else {"organisation": self.organisation})
        return names | self.counts.as_dict()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GroupCounts:
        return cls(str(data["company"]), data.get("organisation"), Counts.of(data))


@dataclass(frozen=True, slots=True)
class MergedShard:
    """One shard a merged report was made of."""

    shard: str
    directory: str
    run_id: str | None
    outcome: str | None
    complete: bool
    started_at: str | None
    finished_at: str | None
    engine_version: str | None
    counts: Counts


@dataclass(frozen=True, slots=True)
class Summary:
    """summary.json: what a run or a merge found, how it went, and what it was run against."""

    counts: Counts = field(default_factory=Counts)
    records: int = 0
    duplicates: int = 0
    complete: bool = False
    outcome: str = "complete"  # complete, interrupted or fatal
    error: ErrorInfo | None = None
    run_id: str | None = None
    label: str = ""
    engine_version: str | None = None
    started_at: str = ""
    finished_at: str = ""
    duration_seconds: float = 0.0
    rows_per_second: float = 0.0
    manifests: tuple[ManifestEntry, ...] = ()
    # The platform asked; a merge leaves out what its shards disagree on.
    endpoint: str | None = field(default=None, metadata=_OMITTED_WHEN_NONE)
    base_url: str | None = field(default=None, metadata=_OMITTED_WHEN_NONE)
    endpoint_path: str | None = field(default=None, metadata=_OMITTED_WHEN_NONE)
    authority: str | None = field(default=None, metadata=_OMITTED_WHEN_NONE)
    tenant_id: str | None = field(default=None, metadata=_OMITTED_WHEN_NONE)
    client_id: str | None = field(default=None, metadata=_OMITTED_WHEN_NONE)
    credential: str | None = field(default=None, metadata=_OMITTED_WHEN_NONE)
    proxy: Proxy | None = field(default=None, metadata=_OMITTED_WHEN_NONE)
    concurrency: int = 0
    max_attempts: int = 0
    timeout_seconds: float = 0.0
    max_rps: float | None = None
    requests: int = 0
    token_fetches: int = 0
    retries: int = 0
    throttled: int = 0
    pacing: PacingSummary | None = field(default=None, metadata=_OMITTED_WHEN_NONE)
    resumed: bool = False
    attempts: tuple[Attempt, ...] = ()
    delta: Delta | None = None
    by_company: tuple[GroupCounts, ...] = ()
    by_organisation: tuple[GroupCounts, ...] = ()
    outputs: dict[str, str] = field(default_factory=dict)
    shard: str | None = None  # "K/N" for a shard's report
    merged_from: tuple[MergedShard, ...] | None = field(default=None, metadata=_OMITTED_WHEN_NONE)

    def run_fields(self) -> list[tuple[str, object]]:
        """The run's identity as report.html and the XLSX Summary sheet title it: id, label, platform, times."""
        return [
            ("Run id", self.run_id),
            ("Label", self.label),
            ("Outcome", self.outcome),
            ("Engine version", self.engine_version),
            ("Endpoint", self.endpoint),
            ("Base URL", self.base_url),
            ("Started at", self.started_at),
            ("Finished at", self.finished_at),
        ]

    def to_dict(self) -> dict[str, Any]:
        """The JSON object summary.json holds, keys in their order."""
        return _to_json(self)  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Summary:
        """A summary from its JSON object; absent keys take their defaults. A TypeError, ValueError or KeyError
        says the object is not a summary."""
        values = _known(cls, data)
        values["counts"] = Counts.of(data.get("counts") or {})
        values["records"] = int(data.get("records") or 0)
        sections: dict[str, Any] = {
            "error": lambda v: _make(ErrorInfo, v, error_codes=tuple(v.get("error_codes") or ()) or None),
            "manifests": lambda v: tuple(_make(ManifestEntry, m, columns=tuple(m.get("columns", ()))) for m in v),
            "proxy": lambda v: _make(Proxy, v),
            "pacing": lambda v: _make(PacingSummary, v),
            "attempts": lambda v: tuple(_make(Attempt, a) for a in v),
            "delta": lambda v: _make(Delta, v),
            "by_company": lambda v: tuple(GroupCounts.from_dict(g) for g in v),
            "by_organisation": lambda v: tuple(GroupCounts.from_dict(g) for g in v),
            "merged_from": lambda v: tuple(_make(MergedShard, m, counts=Counts.of(m["counts"])) for m in v),
        }
        for name, make in sections.items():
            if values.get(name) is not None:
                values[name] = make(values[name])
        return cls(**values)

    def write(self, path: Path) -> None:
        """Write summary.json at ``path``, whole or not at all."""
        with written_whole(path) as temporary, open(temporary, "w", encoding="utf-8") as handle:
            json.dump(self.to_dict(), handle, indent=2, ensure_ascii=False)
            handle.write("\n")


def load_summary(
    directory: str | Path,
    *,
    required: Sequence[str] = (),
    hint: str = "HINT: give the --out directory of a finished run (re-run it to rewrite its summary)",
) -> Summary:
    """The summary.json in ``directory`` (a run's ``--out``, or ``reconcile merge``'s); a UsageError naming the
    file, ending with ``hint``, when it is not there or not a summary (or lacks one of the ``required`` keys)."""
    directory = Path(directory)
    path = directory / SUMMARY_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{directory} holds no {SUMMARY_NAME}, so no report of a run. {hint}") from None
    except json.JSONDecodeError as exc:  # where it breaks: a file cut short or edited by hand
        where = f"line {exc.lineno}, column {exc.colno}: {exc.msg}"
        raise UsageError(f"{path}: not valid JSON ({where}), so it is not a reconcile summary. {hint}") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path} is not a reconcile summary ({exc!r}). {hint}") from None
    try:
        if not isinstance(data, dict):
            raise TypeError(f"a JSON {type(data).__name__}, not an object")
        absent = [key for key in required if key not in data]
        if absent:
            raise KeyError(", ".join(absent))
        return Summary.from_dict(data)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise UsageError(f"{path} is not a reconcile summary ({exc!r}). {hint}") from None


def _known(cls: type[Any], data: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``data`` that are fields of ``cls``: a key a later reconcile added is passed over."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {name: value for name, value in data.items() if name in names}


def _make(cls: type[Any], data: Mapping[str, Any], **values: Any) -> Any:
    return cls(**(_known(cls, data) | values))


def _to_json(value: Any) -> Any:
    if isinstance(value, GroupCounts):
        return value.to_dict()
    if isinstance(value, Counts):
        return value.as_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _to_json(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not (f.metadata.get("omitted_when_none") and getattr(value, f.name) is None)
        }
    if isinstance(value, tuple | list):
        return [_to_json(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _to_json(item) for key, item in value.items()}
    return value
