"""The README: its two opening commands, every CLI command documented, and its library examples run."""

from __future__ import annotations

import ast
import asyncio
import json
import shutil
import ssl
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconcile.cli import cli, main  # noqa: F401 - main registers the emulator command
from reconcile.emulator import Emulator, EmulatorConfig
from tests.conftest import REPO, SAMPLES, tls_environment

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


def library_examples() -> list[str]:
    """The Python blocks of "Using it as a library": the notebook's, then the Airflow task's."""
    section = README.split("## Using it as a library", 1)[1].split("\n## ", 1)[0]
    return [block.split("```", 1)[0] for block in section.split("```python\n")[1:]]


@pytest.fixture
def library_environment(ca_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[Emulator], None]:
    """Point the process environment at an emulator over TLS, as a deployment sets CALLJOURNEY_* for a task."""

    def point(emulator: Emulator) -> None:
        tls_environment(emulator.base_url, ca_bundle, tmp_path, monkeypatch)

    return point


def copy_samples(directory: Path) -> None:
    directory.mkdir(parents=True)
    for sample in sorted(SAMPLES.glob("*.csv")):
        shutil.copy(sample, directory / sample.name)


def test_the_library_section_has_the_notebook_and_the_airflow_examples() -> None:
    """Two Python blocks: a notebook cell that awaits reconcile.run, an Airflow task that calls run_sync."""
    notebook, airflow = library_examples()
    assert "await reconcile.run(" in notebook
    assert "reconcile.run_sync(" in airflow
    assert "PythonOperator(" in airflow


async def test_the_notebook_example_runs(
    server_ssl: ssl.SSLContext, library_environment: Callable[[Emulator], None], tmp_path: Path
) -> None:
    """The notebook cell, top-level await and all, reconciles exports/*.csv and shows the missing rows per company."""
    copy_samples(tmp_path / "exports")
    notebook, _ = library_examples()
    namespace: dict[str, Any] = {}
    code = compile(notebook, "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    async with Emulator(EmulatorConfig(), ssl_context=server_ssl) as emulator:
        library_environment(emulator)
        cell = eval(code, namespace)  # a coroutine, as IPython runs a cell that awaits
        await cell
    summary = namespace["summary"]
    assert summary.records == sum(summary.counts.values())
    assert summary.counts["missing"] > 0
    assert (tmp_path / "reports" / "notebook" / "results.parquet").is_file()
    assert len(namespace["report"].missing) == summary.counts["missing"]


async def test_the_airflow_example_runs_as_a_python_operator_would(
    server_ssl: ssl.SSLContext,
    library_environment: Callable[[Emulator], None],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The task's function, called as PythonOperator calls it (in a worker thread, op_kwargs rendered), reports."""
    operators: list[dict[str, Any]] = []
    airflow = types.ModuleType("airflow")
    airflow_operators = types.ModuleType("airflow.operators")
    python_operators = types.ModuleType("airflow.operators.python")
    python_operators.PythonOperator = lambda **kwargs: operators.append(kwargs)  # type: ignore[attr-defined]
    for module in (airflow, airflow_operators, python_operators):
        monkeypatch.setitem(sys.modules, module.__name__, module)
    copy_samples(tmp_path / "exports" / "2026-11-26")
    _, dag = library_examples()
    exec(compile(dag, "README.md", "exec"), {"__name__": "dag"})
    (task,) = operators
    assert task["op_kwargs"] == {"ds": "{{ ds }}"}
    async with Emulator(EmulatorConfig(), ssl_context=server_ssl) as emulator:
        library_environment(emulator)
        counts = await asyncio.to_thread(task["python_callable"], ds="2026-11-26")
    summary = json.loads((tmp_path / "reports" / "2026-11-26" / "summary.json").read_text(encoding="utf-8"))
    assert counts == summary["counts"]
    assert summary["label"] == "nightly 2026-11-26"
    assert summary["pacing"]["concurrency"] == 32
