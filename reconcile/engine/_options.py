"""What a run is asked to do: :class:`RunOptions` (how the run behaves) holding :class:`ReportOptions` (what the
report writes besides results.csv, missing.csv and summary.json).

Where to connect and with which credentials is :class:`~reconcile.config.Settings`; a run may change how hard it
pushes (``concurrency``, ``max_rps``, ``max_attempts``, ...) without building new settings: those fields of
``RunOptions`` are None unless given, and a value given replaces the settings' for this run only.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import InitVar, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from reconcile.config import Settings
from reconcile.input import ReadOptions, Shard

#: RunOptions fields that, when given, replace the Settings' value of the same name for the run.
PACING_FIELDS = ("concurrency", "max_concurrency", "max_rps", "timeout", "max_attempts", "outage_tolerance")


def format_names(formats: str | Sequence[str]) -> tuple[str, ...]:
    """Report format names as given (``"csv, XLSX"`` or a list), lower-cased, blanks dropped; checked later."""
    wanted = formats.split(",") if isinstance(formats, str) else formats
    return tuple(name.strip().lower() for name in wanted if name.strip())


@dataclass(frozen=True, slots=True)
class ReportOptions:
    """What the report writes: extra formats, a comparison with an earlier run, an operator's label."""

    formats: tuple[str, ...] = ("csv",)  # csv, parquet, xlsx, json; a "csv,xlsx" string is split
    compare_to: Path | None = None  # an earlier run's --out, for delta.csv
    label: str = ""  # recorded in summary.json and the reports

    def __post_init__(self) -> None:
        object.__setattr__(self, "formats", format_names(self.formats))
        if self.compare_to is not None and not isinstance(self.compare_to, Path):
            object.__setattr__(self, "compare_to", Path(self.compare_to))


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How a run behaves, apart from where it connects (``Settings``) and where it writes (``out_dir``).

    ``formats``, ``compare_to`` and ``label`` may be given here directly, as before ``report`` held them:
    ``RunOptions(label="nightly")`` is ``RunOptions(report=ReportOptions(label="nightly"))``.
    """

    fresh: bool = False  # ignore an earlier run's journal in out_dir and start over
    retry_errors: bool = False  # only re-ask the rows of a finished run that ended in error
    force: bool = False  # write into an out_dir that holds files but no reconcile run
    shard: Shard | None = None  # check only this shard's rows; "K/N" is parsed
    read: ReadOptions = field(default_factory=ReadOptions)
    concurrency: int | Literal["auto"] | None = None  # None: the settings' (a number, or automatic)
    max_concurrency: int | None = None
    max_rps: float | None = None
    timeout: float | None = None
    max_attempts: int | None = None
    outage_tolerance: float | None = None
    report: ReportOptions = field(default_factory=ReportOptions)
    formats: InitVar[Sequence[str] | str | None] = None
    compare_to: InitVar[str | Path | None] = None
    label: InitVar[str | None] = None

    def __post_init__(
        self, formats: Sequence[str] | str | None, compare_to: str | Path | None, label: str | None
    ) -> None:
        if isinstance(self.shard, str):
            object.__setattr__(self, "shard", Shard.parse(self.shard))
        given = {"formats": formats, "compare_to": compare_to, "label": label}
        changes: dict[str, Any] = {name: value for name, value in given.items() if value is not None}
        if changes:
            object.__setattr__(self, "report", replace(self.report, **changes))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Every keyword RunOptions takes, as ``reconcile.run(..., **options)`` does."""
        return tuple(inspect.signature(cls).parameters)

    @classmethod
    def from_keywords(cls, base: RunOptions | None = None, **changes: Any) -> RunOptions:
        """``base`` (or the defaults) with ``changes``; an unknown keyword is a TypeError naming the valid ones."""
        unknown = sorted(set(changes) - set(cls.names()))
        if unknown:
            raise TypeError(
                f"unknown run option(s) {', '.join(repr(name) for name in unknown)}; "
                f"the options are {', '.join(cls.names())}"
            )
        if base is None:
            return cls(**changes)
        return replace(base, **changes) if changes else base

    def settings_for(self, settings: Settings) -> Settings:
        """``settings`` with this run's pacing fields that were given; checked as :meth:`Settings.load` checks."""
        changes: dict[str, Any] = {}
        for name in PACING_FIELDS:
            value = getattr(self, name)
            if value is not None:
                changes[name] = None if value == "auto" else value
        if not changes:
            return settings
        paced = settings.with_(**changes)
        paced.validate()
        return paced
