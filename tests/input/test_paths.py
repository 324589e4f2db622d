"""Path expansion: the files a run reads, from paths, directories and globs."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconcile.errors import ManifestError, UsageError
from reconcile.input._paths import expand_manifest_paths, is_manifest_name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.csv", True),
        ("a.CSV", True),
        ("a.tsv.gz", True),
        ("a.jsonl.gz", True),
        ("a.xlsx", True),
        ("a.parquet", True),
        ("a.ndjson", True),
        ("README.md", False),
        ("a.xlsx.gz", False),
        ("a.gz", False),
        (".hidden.csv", False),
        ("~$book.xlsx", False),
    ],
)
def test_is_manifest_name(name: str, expected: bool) -> None:
    """Directories contribute only files with a manifest extension, never lock or hidden files."""
    assert is_manifest_name(name) is expected


def test_expand_files_directories_and_globs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files as given, directories and globs sorted, each file once."""
    exports = tmp_path / "exports"
    exports.mkdir()
    for name in ("b.csv", "a.csv", "c.xlsx", "README.md", "~$c.xlsx", "d.csv.gz"):
        (exports / name).write_text("x", encoding="utf-8")
    single = tmp_path / "single.csv"
    single.write_text("x", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    found = expand_manifest_paths(["single.csv", exports, "exports/*.csv", Path("single.csv")])
    assert [p.relative_to(tmp_path) if p.is_absolute() else p for p in found] == [
        Path("single.csv"),
        Path("exports/a.csv"),
        Path("exports/b.csv"),
        Path("exports/c.xlsx"),
        Path("exports/d.csv.gz"),
    ]
    assert expand_manifest_paths(["exports/?.csv"]) == [Path("exports/a.csv"), Path("exports/b.csv")]


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("nothing/*.csv", "no file matches this pattern"),
        ("absent.csv", "no such file or directory"),
        ("empty", "the directory holds no manifest files"),
    ],
)
def test_expand_with_nothing_found_is_an_error(
    arg: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pattern, path or directory that yields no manifest is a ManifestError naming it."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt.bak").write_text("x", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ManifestError, match=expected) as caught:
        expand_manifest_paths([arg])
    assert str(caught.value).startswith(arg)


def test_one_path_is_as_good_as_a_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A single str or Path (what a library caller writes) expands as the one-element list would."""
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "a.csv").write_text("x", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert expand_manifest_paths("exports") == expand_manifest_paths(Path("exports")) == [Path("exports/a.csv")]
    assert expand_manifest_paths("exports/*.csv") == [Path("exports/a.csv")]


def test_no_path_at_all_is_a_usage_error() -> None:
    """An empty list names the mistake with a hint instead of running on nothing."""
    with pytest.raises(UsageError, match=r"no manifest given\. HINT"):
        expand_manifest_paths([])


def test_standard_input_twice_is_a_usage_error() -> None:
    """'-' may be read once only."""
    with pytest.raises(UsageError, match="given twice"):
        expand_manifest_paths(["-", "-"])
