"""What every stage shares: statuses, exit codes (equal to the README's table), the key digest, whole-file writes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reconcile import errors
from reconcile.model import KEY_FIELDS, ExitCode, Status, key_digest, partial_path, written_whole
from tests.conftest import REPO


def readme_exit_codes() -> dict[int, str]:
    """The README's "Exit codes" table: each code and its meaning (``130 / 143`` is two codes)."""
    section = (REPO / "README.md").read_text(encoding="utf-8").split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    codes: dict[int, str] = {}
    for cells in re.findall(r"^\| ([0-9 /]+) \| (.+) \|$", section, flags=re.MULTILINE):
        for code in cells[0].split("/"):
            codes[int(code)] = cells[1]
    return codes


def test_the_exit_codes_are_the_readmes_table() -> None:
    """Every code the README documents is an ExitCode, and every ExitCode is documented."""
    assert sorted(readme_exit_codes()) == sorted(code.value for code in ExitCode)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.UsageError, ExitCode.USAGE),
        (errors.ManifestError, ExitCode.USAGE),
        (errors.OutDirBusy, ExitCode.USAGE),
        (errors.FatalError, ExitCode.FATAL),
        (errors.TokenError, ExitCode.FATAL),
        (errors.EndpointNotFound, ExitCode.FATAL),
        (errors.InternalError, ExitCode.INTERNAL),
    ],
)
def test_each_error_exits_with_its_documented_code(error: type[errors.ReconcileError], code: ExitCode) -> None:
    """The error tree's exit codes are the ExitCode of their kind (errors.py sits beside model, not above it)."""
    assert error.exit_code == code


@pytest.mark.parametrize(
    ("counts", "code"),
    [
        ({"present": 3}, ExitCode.OK),
        ({"present": 3, "missing": 1}, ExitCode.MISSING),
        ({"missing": 1, "invalid": 1}, ExitCode.ROW_PROBLEMS),
        ({"present": 1, "error": 2}, ExitCode.ROW_PROBLEMS),
        ({"unchecked": 1}, ExitCode.ROW_PROBLEMS),
        ({}, ExitCode.OK),
    ],
)
def test_a_reports_exit_code_follows_its_counts(counts: dict[str, int], code: ExitCode) -> None:
    """3 when any row is invalid, error or unchecked; else 1 when any is missing; else 0."""
    assert ExitCode.for_counts(counts) == code


def test_statuses_are_their_text() -> None:
    """A Status is the text results.csv and summary.json hold, and finds a plain string's entry in a dict."""
    assert [str(s) for s in Status] == ["present", "missing", "invalid", "error", "unchecked"]
    assert {Status.MISSING: 1}["missing"] == 1
    assert Status("present") is Status.PRESENT


def test_the_key_digest_tells_keys_apart() -> None:
    """16 bytes; the same four values give the same digest, a value moved across fields another."""
    digest = key_digest(("acme", "acme-ca", "2026/11/25", "a.mp3"))
    assert len(digest) == 16
    assert digest == key_digest(("acme", "acme-ca", "2026/11/25", "a.mp3"))
    assert digest != key_digest(("acme", "acme-ca2026/11/25", "", "a.mp3"))
    assert digest != key_digest(("acme", "acme-ca", "2026/11/25", "A.mp3"))


def test_a_file_written_whole_appears_only_complete(tmp_path: Path) -> None:
    """Until the block ends the content is under the hidden partial name; then under the final one."""
    target = tmp_path / "summary.json"
    with written_whole(target) as temporary:
        assert temporary == partial_path(target) == tmp_path / ".summary.json.partial"
        temporary.write_text("{}", encoding="utf-8")
        assert not target.exists()
    assert target.read_text(encoding="utf-8") == "{}"
    assert not temporary.exists()


def test_a_failed_write_leaves_neither_file(tmp_path: Path) -> None:
    """An error inside the block removes the partial file and leaves an earlier file untouched."""
    target = tmp_path / "report.html"
    target.write_text("before", encoding="utf-8")

    def write_half() -> None:
        with written_whole(target) as temporary:
            temporary.write_text("half", encoding="utf-8")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_half()
    assert target.read_text(encoding="utf-8") == "before"
    assert not partial_path(target).exists()


def test_the_key_fields_are_the_four_values_the_platform_is_asked_about() -> None:
    """company, organisation, folder, filename: the order of a Key and of the API's body."""
    assert KEY_FIELDS == ("company", "organisation", "folder", "filename")


def test_the_digest_is_16_bytes_and_tells_keys_apart_at_the_field_boundaries() -> None:
    """Text moved across a field boundary, or a letter in another case, gives another 16-byte digest."""
    key = ("acme", "acme-ca", "2026/11/25", "rec-0001.mp3")
    assert len(key_digest(key)) == 16
    assert key_digest(("ab", "c", "d", "e")) != key_digest(("a", "bc", "d", "e"))
    assert key_digest(("a", "b", "c", "d")) != key_digest(("a", "b", "c", "D"))  # values are exact, case and all


def test_a_lone_surrogate_has_a_digest_too() -> None:
    """A value no UTF-8 encoder accepts (a lone surrogate read from a damaged export) still digests, distinctly."""
    assert key_digest(("a", "b", "c", "\udcff")) != key_digest(("a", "b", "c", "\udcfe"))
