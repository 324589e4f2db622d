"""Shards: a stable partition of rows (every row in exactly one shard, on every machine), and `run --shard/--shards`."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reconcile.api import run
from reconcile.cli import cli
from reconcile.emulator import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TENANT_ID, Dataset, Emulator
from reconcile.errors import JournalMismatch, UsageError
from reconcile.input._shard import Shard
from tests.conftest import read_results, settings_for, write_manifest

KEYS = [("acme", f"org-{n % 7}", f"2026/11/{n % 28 + 1:02d}", f"call-{n}.mp3") for n in range(3000)]


def documented_index(key: tuple[str, str, str, str], count: int) -> int:
    """The partition as documented: BLAKE2b-128 of the four values joined by U+001F, first 8 bytes, mod N."""
    digest = hashlib.blake2b("\x1f".join(key).encode("utf-8"), digest_size=16).digest()
    return int.from_bytes(digest[:8], "big") % count


@pytest.mark.parametrize(("text", "index", "count"), [("0/1", 0, 1), ("2/3", 2, 3), ("0/4", 0, 4), (" 1/2", 1, 2)])
def test_parse_reads_k_of_n(text: str, index: int, count: int) -> None:
    """--shard K/N is parsed into shard K of N, and prints back as K/N."""
    shard = Shard.parse(text)
    assert (shard.index, shard.count) == (index, count)
    assert str(shard) == f"{index}/{count}"


@pytest.mark.parametrize("text", ["3/3", "-1/3", "1/0"])
def test_parse_refuses_a_shard_that_does_not_exist(text: str) -> None:
    """An impossible K/N is a usage error with a HINT."""
    with pytest.raises(UsageError, match="HINT") as caught:
        Shard.parse(text)
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("text", ["1", "a/b", "1/2/3", ""])
def test_parse_refuses_malformed_text_with_a_hint(text: str) -> None:
    """Malformed K/N is a usage error whose message ends with a HINT, like every user mistake."""
    with pytest.raises(UsageError, match=r"e\.g\. --shard 0/4") as caught:
        Shard.parse(text)
    assert "HINT" in str(caught.value)


def test_from_environment_reads_job_completion_index() -> None:
    """--shards N takes K from JOB_COMPLETION_INDEX, as Kubernetes Indexed Jobs set it."""
    assert Shard.from_environment(4, {"JOB_COMPLETION_INDEX": "3"}) == Shard(3, 4)
    for bad in ({}, {"JOB_COMPLETION_INDEX": ""}, {"JOB_COMPLETION_INDEX": "one"}):
        with pytest.raises(UsageError, match="--shard K/N"):
            Shard.from_environment(4, bad)
    with pytest.raises(UsageError, match="does not exist"):
        Shard.from_environment(4, {"JOB_COMPLETION_INDEX": "4"})


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8])
def test_every_key_is_in_exactly_one_shard_and_shards_are_balanced(count: int) -> None:
    """N shards cover every key exactly once, each within 15% of an even share."""
    shards = [Shard(k, count) for k in range(count)]
    holders = [[s.index for s in shards if s.holds(key)] for key in KEYS]
    assert all(len(h) == 1 for h in holders)
    sizes = Counter(h[0] for h in holders)
    assert set(sizes) == set(range(count))
    even = len(KEYS) / count
    assert all(abs(size - even) <= 0.15 * even for size in sizes.values()), sizes


def test_the_partition_is_the_documented_hash() -> None:
    """Shard membership is BLAKE2b of the values mod N, so any machine (or another tool) can compute it."""
    for count in (2, 3, 7):
        for key in KEYS[:500]:
            assert Shard(documented_index(key, count), count).holds(key)


@pytest.mark.slow
def test_the_partition_does_not_depend_on_the_process() -> None:
    """Two interpreters with different hash seeds put every key in the same shard (no salted hash())."""
    script = (
        "import json, sys\nfrom reconcile.input._shard import Shard\n"
        "keys = [tuple(k) for k in json.load(sys.stdin)]\n"
        "print(json.dumps([[k for k in range(5) if Shard(k, 5).holds(key)][0] for key in keys]))"
    )
    keys = json.dumps(KEYS[:300])
    answers = []
    for seed in ("1", "2"):
        result = subprocess.run(
            [sys.executable, "-c", script],
            input=keys,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        answers.append(json.loads(result.stdout))
    assert answers[0] == answers[1] == [documented_index(key, 5) for key in KEYS[:300]]


def test_duplicates_fall_in_the_same_shard_as_their_original() -> None:
    """Equal keys are in one shard, so each shard can tell a duplicate from its original by itself."""
    key = KEYS[42]
    assert [Shard(k, 3).holds(key) for k in range(3)] == [Shard(k, 3).holds(tuple(key)) for k in range(3)]  # type: ignore[arg-type]
    assert sum(Shard(k, 3).holds(key) for k in range(3)) == 1


async def test_shards_together_check_every_row_once(emulator: Emulator, tmp_path: Path) -> None:
    """Two shards of one manifest: disjoint rows, together all of them; each key asked once over both."""
    present = list(Dataset.demo())[:20]
    rows = [*present, *[("acme", "acme-ca", "2026/11/25", f"gone-{n}.mp3") for n in range(20)], present[0], present[1]]
    manifest = write_manifest(tmp_path / "m.csv", [*rows, ("", "o", "f", "blank.mp3")])
    seen: list[set[int]] = []
    requests = 0
    for k in range(2):
        summary = await run([manifest], tmp_path / f"s{k}", settings=settings_for(emulator), shard=Shard(k, 2))
        results = read_results(tmp_path / f"s{k}" / "results.csv")
        assert summary.summary.to_dict()["shard"] == f"{k}/2"
        assert all(Shard(k, 2).holds((r["company"], r["organisation"], r["folder"], r["filename"])) for r in results)
        seen.append({int(r["row"]) for r in results})
        requests += summary.summary.to_dict()["requests"]
    assert seen[0].isdisjoint(seen[1])
    assert seen[0] | seen[1] == set(range(1, len(rows) + 2))
    assert requests == 40  # 40 distinct valid keys: duplicates and the blank row are never sent


async def test_an_out_dir_of_one_shard_refuses_another(emulator: Emulator, tmp_path: Path) -> None:
    """Re-using a shard's --out for a different shard is refused (exit 2), naming both."""
    manifest = write_manifest(tmp_path / "m.csv", list(Dataset.demo())[:5])
    await run([manifest], tmp_path / "out", settings=settings_for(emulator), shard=Shard(0, 2))
    with pytest.raises(JournalMismatch, match="'0/2', not '1/2'"):
        await run([manifest], tmp_path / "out", settings=settings_for(emulator), shard=Shard(1, 2))


@pytest.fixture
def env(emulator_process_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str | None]:
    """Reach the subprocess emulator with the demo credentials, from a clean working directory."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("CALLJOURNEY_") or n == "JOB_COMPLETION_INDEX"]:
        monkeypatch.delenv(name)
    return {
        "CALLJOURNEY_TENANT_ID": DEMO_TENANT_ID,
        "CALLJOURNEY_CLIENT_ID": DEMO_CLIENT_ID,
        "CALLJOURNEY_CLIENT_SECRET": DEMO_CLIENT_SECRET,
        "CALLJOURNEY_BASE_URL": emulator_process_url,
        "CALLJOURNEY_AUTHORITY": emulator_process_url,
    }


def invoke(args: list[str], env: dict[str, str | None]) -> Result:
    result = CliRunner().invoke(cli, args, env=env)
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_cli_shards_from_job_completion_index_equals_shard(env: dict[str, str | None], tmp_path: Path) -> None:
    """`run --shards 3` with JOB_COMPLETION_INDEX=1 checks exactly the rows of `run --shard 1/3`."""
    manifest = write_manifest(tmp_path / "m.csv", list(Dataset.demo())[:30])
    by_flag = invoke(["run", str(manifest), "--out", "a", "--shard", "1/3"], env)
    by_index = invoke(["run", str(manifest), "--out", "b", "--shards", "3"], {**env, "JOB_COMPLETION_INDEX": "1"})
    assert by_flag.exit_code == by_index.exit_code == 0, by_flag.output + by_index.output
    rows = [[r["row"] for r in read_results(tmp_path / d / "results.csv")] for d in ("a", "b")]
    assert rows[0] == rows[1]
    assert 0 < len(rows[0]) < 30
    assert json.loads((tmp_path / "b" / "summary.json").read_text(encoding="utf-8"))["shard"] == "1/3"


@pytest.mark.parametrize(
    ("args", "index", "message"),
    [
        (["--shard", "1/3", "--shards", "3"], "1", "alternatives"),
        (["--shards", "3"], None, "JOB_COMPLETION_INDEX"),
        (["--shards", "3"], "3", "does not exist"),
        (["--shard", "3/3"], None, "does not exist"),
        (["--shard", "two"], None, "is not K/N"),
    ],
)
def test_cli_refuses_bad_shard_options(
    env: dict[str, str | None], tmp_path: Path, args: list[str], index: str | None, message: str
) -> None:
    """Impossible or conflicting shard options exit 2 with the reason, before any request."""
    manifest = write_manifest(tmp_path / "m.csv", list(Dataset.demo())[:3])
    result = invoke(["run", str(manifest), "--out", "out", *args], {**env, "JOB_COMPLETION_INDEX": index})
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "out").exists()
