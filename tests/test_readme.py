"""The README: its two opening commands, and every CLI command documented."""

from __future__ import annotations

from reconcile.cli import cli, main  # noqa: F401 - main registers the emulator command
from tests.conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")


def test_readme_opens_with_the_demo_and_the_test_commands() -> None:
    """The first code block is the install-and-demo command, then the install-and-test command CI runs."""
    block = README.split("```sh\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert block[0].endswith("reconcile demo")
    assert "pip install" in block[0]
    assert block[1].endswith("pytest")
    assert "'.[test]'" in block[1]
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert block[1] in ci


def test_every_command_is_documented() -> None:
    """Each `reconcile` subcommand is named in the README, as sqlite-utils checks its docs."""
    from reconcile.emulator.command import emulator

    commands = set(cli.commands) | {emulator.name}
    assert commands >= {"run", "demo", "validate", "doctor", "merge", "emulator"}
    for name in commands:
        assert f"reconcile {name}" in README, name


def test_every_command_has_help_with_an_example() -> None:
    """Every command's help text carries an example block."""
    for name, command in cli.commands.items():
        assert command.help, name
        assert "Example" in command.help, name


def test_every_connection_option_is_in_the_configuration_table() -> None:
    """Each flag of `run` and `doctor` that configures the connection has a row in the README's configuration table."""
    import click

    from reconcile.cli._options import CONNECTION

    table = README.split("## Configuration", 1)[1].split("\n\n- ", 1)[0]
    command = click.command()(CONNECTION(lambda **_: None))
    flags = [opt for param in command.params for opt in param.opts if opt.startswith("--")]
    assert "--client-certificate" in flags
    assert [flag for flag in flags if f"`{flag}" not in table and flag not in ("--config", "--profile")] == []
