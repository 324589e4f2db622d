"""emulator/dataset: the demo and synthetic datasets, and the sample manifests they match."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import aiohttp
import pytest

from reconcile.emulator import (
    Dataset,
    Emulator,
    make_call_id,
    synthetic_manifest_rows,
)
from tests.emulator.conftest import (
    FIELDS,
    PRESENT_KEY,
    SAMPLES,
    ask,
    get_token,
)


def test_make_call_id_is_stable_and_platform_shaped() -> None:
    """callIds are 20 URL-safe base64 characters and depend only on the key."""
    call_id = make_call_id(PRESENT_KEY)
    assert re.fullmatch(r"[A-Za-z0-9_-]{20}", call_id)
    assert call_id == make_call_id(tuple(PRESENT_KEY))  # type: ignore[arg-type]
    assert call_id != make_call_id(("initech", "initech-ca", "2026/11/24", "smoke-01.mp3"))


def test_synthetic_rows_match_synthetic_dataset() -> None:
    """Exactly floor(n * ratio) synthetic rows exist, and rows beyond n do not."""
    rows = list(synthetic_manifest_rows(1000, 0.25, seed=3))
    assert len(set(rows)) == 1000
    dataset = Dataset.synthetic(1000, 0.25, seed=3)
    assert sum(row in dataset for row in rows) == 250
    assert all(dataset.lookup(row) in (None, make_call_id(row)) for row in rows)
    assert len(dataset) == 0  # nothing stored: membership is computed
    beyond = list(synthetic_manifest_rows(12, 1.0, seed=3))
    assert beyond[11] not in Dataset.synthetic(11, 1.0, seed=3)
    assert beyond[11] in Dataset.synthetic(None, 1.0, seed=3)


async def test_emulator_serves_synthetic_dataset(session: aiohttp.ClientSession) -> None:
    """Over HTTP, a synthetic-rule dataset answers present rows with their callId."""
    rows = list(synthetic_manifest_rows(20, 0.5, seed=1))
    async with Emulator(dataset=Dataset.synthetic(20, 0.5, seed=1)) as emu:
        token = await get_token(session, emu)
        answers = [(await ask(session, emu, token, dict(zip(FIELDS, row, strict=True))))[1] for row in rows]
    assert sum(answer["exists"] for answer in answers) == 10
    assert all(a["callId"] == (make_call_id(row) if a["exists"] else "") for a, row in zip(answers, rows, strict=True))


def test_dataset_from_csv(tmp_path: Path) -> None:
    """from_csv reads the five columns (BOM tolerated) and refuses a file without them."""
    path = tmp_path / "recordings.csv"
    path.write_text("\ufeffcompany,organisation,folder,filename,call_id\nco,org,f,a b.mp3,ID1\n", encoding="utf-8")
    assert Dataset.from_csv(path).lookup(("co", "org", "f", "a b.mp3")) == "ID1"
    (tmp_path / "bad.csv").write_text("company,filename\nco,x\n", encoding="utf-8")
    with pytest.raises(ValueError, match="HINT"):
        Dataset.from_csv(tmp_path / "bad.csv")


def _readme_counts() -> dict[str, tuple[int, ...]]:
    table = {}
    for line in (SAMPLES / "README.md").read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"\| `(.+\.csv)` \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \|", line)
        if match:
            table[match[1]] = tuple(int(value) for value in match.groups()[1:])
    return table


def _manifest_counts(path: Path, dataset: Dataset) -> tuple[int, ...]:
    with path.open(encoding="utf-8-sig", newline="") as stream:
        rows = list(csv.DictReader(stream))
    seen: set[tuple[str, ...]] = set()
    invalid = duplicates = present = 0
    for row in rows:
        key = tuple(row.get(name) or "" for name in ("company", "organisation", "folder", "filename"))
        if any(not value.strip() for value in key):
            invalid += 1
        elif key in seen:
            duplicates += 1
        else:
            seen.add(key)
            present += key in dataset
    return (len(rows), invalid, duplicates, len(seen), present, len(seen) - present)


def test_demo_dataset_matches_sample_manifest_readme() -> None:
    """Every sample manifest's counts, computed against Dataset.demo(), match the README table."""
    documented = _readme_counts()
    files = sorted(path.name for path in SAMPLES.glob("*.csv"))
    assert sorted(documented) == files
    dataset = Dataset.demo()
    for name in files:
        assert _manifest_counts(SAMPLES / name, dataset) == documented[name], name


def test_sample_manifests_have_the_promised_quirks() -> None:
    """One manifest has a BOM and CRLF, and the set has quoted commas, embedded newlines and Unicode."""
    raw = {path.name: path.read_bytes() for path in SAMPLES.glob("*.csv")}
    crlf = [name for name, data in raw.items() if data.startswith(b"\xef\xbb\xbf") and b"\r\n" in data]
    assert crlf == ["archive-audit-emea.csv"]
    text = "".join(data.decode("utf-8-sig") for data in raw.values())
    assert '"Call 2026-11-25, 09h14.mp3"' in text
    assert '"Customer asked for a callback\nre: invoice 4471"' in text
    assert all(char in text for char in "éüñ回🌟")
