"""The CLI's option groups: declared once, each a decorator that also knows its options' names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from click.testing import CliRunner

from reconcile.cli import cli
from reconcile.cli._options import (
    CONNECTION,
    METRICS,
    PROFILE,
    READ,
    REPORT,
    RUN,
    SETTINGS,
    SHARDING,
    WATCH,
    OptionGroup,
    flag,
)


def test_a_group_decorates_a_command_and_takes_its_values_back() -> None:
    """The names a group takes are exactly the parameters it added, in its order, and take() removes them."""
    group = OptionGroup(flag("--alpha"), flag("--beta-gamma", "delta", type=int), flag("-q", "--quiet", is_flag=True))
    seen: list[dict[str, Any]] = []

    @click.command()
    @group
    @click.option("--other")
    def command(**values: Any) -> None:
        seen.append({"taken": group.take(values), "left": values})

    result = CliRunner().invoke(command, ["--alpha", "a", "--beta-gamma", "3", "-q", "--other", "o"])
    assert result.exit_code == 0, result.output
    assert group.names == ("alpha", "delta", "quiet")
    assert seen == [{"taken": {"alpha": "a", "delta": 3, "quiet": True}, "left": {"other": "o"}}]


def test_groups_nest_in_order() -> None:
    """CONNECTION is PROFILE then SETTINGS, and WATCH ends with the logging options."""
    assert CONNECTION.names == PROFILE.names + SETTINGS.names
    assert WATCH.names[-3:] == ("verbose", "log_format", "log_file")


def test_run_takes_every_group_and_nothing_twice() -> None:
    """`run`'s parameters are --out, MANIFESTS and its groups' options, each once: no option lives in two lists."""
    run = cli.commands["run"]
    names = [p.name for p in run.params]
    groups = (CONNECTION, RUN, REPORT, SHARDING, READ, WATCH, METRICS)
    assert names == ["manifests", "out_dir", *(name for g in groups for name in g.names)]
    assert len(names) == len(set(names))


def test_a_map_that_is_not_field_equals_column_is_a_usage_error(tmp_path: Path) -> None:
    """--map must be FIELD=COLUMN: click's usage error, exit 2, with an example of the right form."""
    manifest = tmp_path / "m.csv"
    manifest.write_text("company,organisation,folder,filename\n", encoding="utf-8")
    for value in ("filename", "=File", " =File", "filename="):
        result = CliRunner().invoke(cli, ["validate", str(manifest), "--map", value])
        assert result.exit_code == 2, result.output
        assert f"Invalid value for --map: {value!r} is not FIELD=COLUMN, e.g. --map filename=RecordingFile" in (
            result.output
        )


def test_a_map_is_read_as_field_and_column(tmp_path: Path) -> None:
    """--map Filename=Recording File reads the filename from that column (the field lower-cased, the column as is)."""
    manifest = tmp_path / "m.csv"
    manifest.write_text("company,organisation,folder,Recording File\nacme,o,f,a.mp3\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["validate", str(manifest), "--map", " Filename=Recording File"])
    assert result.exit_code == 0, result.output
    assert "1 record" in result.output
