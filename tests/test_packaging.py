"""The package as it is installed: its metadata, its data, `--version`, `python -m reconcile`, and a wheel built
from the project's files that works from a virtual environment and a directory far from the checkout."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

import reconcile
from reconcile.cli import cli
from reconcile.ops._demo import DEMO_MANIFESTS, sample_manifests
from tests.conftest import REPO, SAMPLES

PACKAGE = REPO / "reconcile"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def test_the_demo_manifests_are_the_sample_manifests() -> None:
    """The copies shipped in the package are sample_manifests/ byte for byte, no file more or less."""
    shipped = {path.name: path.read_bytes() for path in DEMO_MANIFESTS.glob("*.csv")}
    samples = {path.name: path.read_bytes() for path in SAMPLES.glob("*.csv")}
    assert shipped == samples, "HINT: cp sample_manifests/*.csv reconcile/ops/demo_manifests/ (and remove any extra)"
    assert [path.name for path in sample_manifests()] == sorted(samples)


def test_an_installation_without_its_manifests_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy whose demo manifests are gone is a broken installation: exit 4 with the fix, not a usage error."""
    monkeypatch.setattr("reconcile.ops._demo.DEMO_MANIFESTS", tmp_path)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["demo", "-q"])
    assert result.exit_code == 4, result.output
    assert f"no sample manifests in {tmp_path}" in result.output
    assert "HINT: reinstall calljourney-reconcile" in result.output


def test_the_distribution_is_ours_with_one_version() -> None:
    """Installed as calljourney-reconcile with the `reconcile` console script; pyproject.toml writes the version
    and nothing in the package spells it again."""
    distribution = importlib.metadata.distribution("calljourney-reconcile")
    assert distribution.metadata["Name"] == "calljourney-reconcile"
    (script,) = [e for e in distribution.entry_points if e.group == "console_scripts"]
    assert (script.name, script.value) == ("reconcile", "reconcile.cli:main")
    assert reconcile.__version__ == distribution.version == PYPROJECT["project"]["version"]
    literal = re.compile(rf"[\"']{re.escape(reconcile.__version__)}[\"']")
    assert not [p for p in PACKAGE.rglob("*.py") if literal.search(p.read_text(encoding="utf-8"))]


def test_no_module_imports_back_from_the_package_init() -> None:
    """`from . import X` and `from reconcile import X` inside the package name submodules only: a name of
    reconcile/__init__ would close an import cycle through it (as __version__ once did)."""
    submodules = {path.stem for path in PACKAGE.glob("*.py")} | {path.parent.name for path in PACKAGE.glob("*/*.py")}
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            from_package = isinstance(node, ast.ImportFrom) and (
                (node.level == 1 and node.module is None and path.parent == PACKAGE)
                or (node.level == 0 and node.module == "reconcile")
            )
            if from_package:
                assert isinstance(node, ast.ImportFrom)
                offenders += [f"{path.name}: {a.name}" for a in node.names if a.name not in submodules]
    assert not offenders


def test_version_names_the_interpreter_and_the_libraries() -> None:
    """`reconcile --version` prints ours with the distribution, then Python's, aiohttp's and pandas' versions."""
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"reconcile {reconcile.__version__} (calljourney-reconcile)",
        f"Python {platform.python_version()} ({platform.python_implementation()}, {sys.executable})",
        f"aiohttp {importlib.metadata.version('aiohttp')}",
        f"pandas {importlib.metadata.version('pandas')}",
    ]


@pytest.mark.slow
@pytest.mark.parametrize(("sample", "code"), [("smoke-10.csv", 0), ("nightly-export-2026-11-25.csv", 3)])
def test_python_dash_m_reconcile_is_the_command(sample: str, code: int, tmp_path: Path) -> None:
    """`python -m reconcile` runs the command line, names itself so in its help, and exits with its code."""
    python_m = [sys.executable, "-m", "reconcile"]
    validate = subprocess.run(
        [*python_m, "validate", str(DEMO_MANIFESTS / sample)], cwd=tmp_path, capture_output=True, text=True
    )
    assert validate.returncode == code, validate.stdout + validate.stderr
    assert f"(exit {code})" in validate.stdout
    usage = subprocess.run([*python_m, "--help"], capture_output=True, text=True, check=True).stdout
    assert usage.startswith("Usage: python -m reconcile ")


# Built without build isolation, from the [test] extra's setuptools: offline, and what the sdist needs.
SDIST_SOURCES = ("pyproject.toml", "README.md", "MANIFEST.in", "CHANGELOG.md", "reconcile")


@pytest.mark.slow
def test_the_wheel_works_from_a_fresh_environment_far_from_the_checkout(tmp_path: Path) -> None:
    """The sdist and wheel built from the project's files pass twine and .ci/check_dist.py; the wheel installed
    into a new virtual environment runs `reconcile demo` in an empty directory (exit 3, report written) and
    `python -m reconcile --version`, importing the installed copy, not the checkout."""
    source, dist, home = tmp_path / "src", tmp_path / "dist", tmp_path / "home"
    for name in SDIST_SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    build = [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(source)]
    subprocess.run(build, check=True, capture_output=True)
    checked = subprocess.run(
        [sys.executable, REPO / ".ci" / "check_dist.py", dist], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr
    twine = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *dist.iterdir()], capture_output=True, text=True
    )
    assert twine.returncode == 0, twine.stdout
    (wheel,) = dist.glob("*.whl")

    # The wheel installed alone into a bare environment; its dependencies are this one's, reached through a .pth
    # (whose paths' own .pth files, among them this checkout's editable install, Python does not run).
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index"]
    subprocess.run([*pip, str(wheel)], check=True, capture_output=True)
    site_packages = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site_packages, "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLJOURNEY_", "PYTHON"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"

    def run(*command: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, cwd=home, env=env, capture_output=True, text=True, timeout=120)

    where = run(python, "-c", "import reconcile; print(reconcile.__file__)")
    assert Path(where.stdout.strip()).is_relative_to(Path(site_packages)), where.stdout + where.stderr
    version = run(python, "-m", "reconcile", "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith(f"reconcile {reconcile.__version__} (calljourney-reconcile)\nPython ")
    demo = run("reconcile", "demo", "-q")
    assert demo.returncode == 3, demo.stdout + demo.stderr
    assert (home / "reconcile-demo" / "summary.json").is_file()
    assert len((home / "reconcile-demo" / "results.csv").read_text(encoding="utf-8").splitlines()) > 100
