"""RunOptions and ReportOptions: what a run does apart from what its report writes, built from keywords."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconcile.config import Secret, Settings
from reconcile.engine import ReportOptions, RunOptions, format_names
from reconcile.errors import ConfigError, UsageError
from reconcile.input import Shard

SETTINGS = Settings(tenant_id="t", client_id="c", client_secret=Secret("s"), concurrency=8, max_rps=50.0)


def test_report_fields_given_flat_land_in_the_report_options() -> None:
    """RunOptions(formats=, compare_to=, label=) still works, as before the split, and means report=ReportOptions."""
    flat = RunOptions(formats="csv, XLSX", compare_to="reports/before", label="nightly", fresh=True)
    assert flat.report == ReportOptions(formats=("csv", "xlsx"), compare_to=Path("reports/before"), label="nightly")
    assert flat == RunOptions(report=flat.report, fresh=True)


def test_a_shard_given_as_text_is_parsed() -> None:
    """shard="1/3" is Shard(1, 3); a wrong one is the CLI's usage error with its hint."""
    assert RunOptions(shard="1/3").shard == Shard(1, 3)
    with pytest.raises(UsageError, match=r"is not K/N\. HINT"):
        RunOptions(shard="one of three")


def test_format_names_are_lower_cased_without_blanks() -> None:
    """A comma-separated string and a list give the same names, in order; nothing is checked yet."""
    assert format_names(" csv,,Parquet ") == format_names(["csv", "", "Parquet"]) == ("csv", "parquet")


def test_from_keywords_names_every_valid_option_for_an_unknown_one() -> None:
    """A typo is a TypeError listing every keyword RunOptions takes, the flat report ones included."""
    with pytest.raises(TypeError) as caught:
        RunOptions.from_keywords(retry_error=True)
    message = str(caught.value)
    assert "'retry_error'" in message
    for name in ("fresh", "retry_errors", "shard", "read", "concurrency", "max_rps", "report", "formats", "label"):
        assert name in message


def test_from_keywords_changes_a_base() -> None:
    """Keywords over a base change only the fields named; no keywords give the base itself."""
    base = RunOptions(fresh=True, label="base")
    assert RunOptions.from_keywords(base) is base
    changed = RunOptions.from_keywords(base, label="other", concurrency=4)
    assert (changed.fresh, changed.report.label, changed.concurrency) == (True, "other", 4)


def test_pacing_options_replace_the_settings_for_the_run() -> None:
    """Given pacing fields replace the settings'; "auto" means automatic; none given leaves the settings as they are."""
    assert RunOptions().settings_for(SETTINGS) is SETTINGS
    paced = RunOptions(concurrency=2, max_attempts=3).settings_for(SETTINGS)
    assert (paced.concurrency, paced.max_attempts, paced.max_rps) == (2, 3, 50.0)
    assert RunOptions(concurrency="auto").settings_for(SETTINGS).concurrency is None


def test_a_bad_pacing_option_is_the_settings_error() -> None:
    """max_rps=0 is refused as the settings refuse it, with the same message."""
    with pytest.raises(ConfigError, match="max rps must be positive"):
        RunOptions(max_rps=0).settings_for(SETTINGS)
