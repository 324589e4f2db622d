"""Check a built sdist and wheel hold what an installed reconcile needs, and nothing of the checkout's own.

    python .ci/check_dist.py DIST_DIR

The wheel: the package with py.typed, the emulator's dataset and the demo's manifests (byte for byte those of
sample_manifests/), the console script, the distribution's own name; no tests, benchmarks or other top-level
packages. The sdist: the same package data, the metadata and the changelog. Exit 1 naming what is wrong.
"""

from __future__ import annotations

import email.parser
import sys
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

REPO = Path(__file__).resolve().parent.parent
DISTRIBUTION = "calljourney-reconcile"
SAMPLES = {path.name: path.read_bytes() for path in sorted((REPO / "sample_manifests").glob("*.csv"))}
PACKAGE_DATA = {
    "reconcile/py.typed",
    "reconcile/__main__.py",
    "reconcile/emulator/demo_dataset.csv",
    *(f"reconcile/ops/demo_manifests/{name}" for name in SAMPLES),
}


def check_wheel(wheel: Path) -> list[str]:
    """What is wrong with ``wheel``, or nothing."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        problems = [f"the wheel lacks {name}" for name in sorted(PACKAGE_DATA - names)]
        for name, content in SAMPLES.items():
            member = f"reconcile/ops/demo_manifests/{name}"
            if member in names and archive.read(member) != content:
                problems.append(f"the wheel's {member} differs from sample_manifests/{name}")
        tops = {PurePosixPath(name).parts[0] for name in names}
        info = next((top for top in tops if top.endswith(".dist-info")), None)
        if info is None:
            return [*problems, "the wheel has no .dist-info"]
        problems += [f"the wheel ships {top}/, which is not the package" for top in sorted(tops - {"reconcile", info})]
        problems += [
            f"the wheel ships a test file: {name}"
            for name in sorted(names)
            if PurePosixPath(name).name.startswith(("test_", "conftest"))
        ]
        metadata = email.parser.Parser().parsestr(archive.read(f"{info}/METADATA").decode())
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    if metadata["Name"] != DISTRIBUTION:
        problems.append(f"the wheel's distribution is {metadata['Name']!r}, not {DISTRIBUTION!r}")
    if "reconcile = reconcile.cli:main" not in entry_points:
        problems.append("the wheel has no `reconcile` console script")
    return problems


def check_sdist(sdist: Path) -> list[str]:
    """What is wrong with ``sdist``, or nothing."""
    with tarfile.open(sdist) as archive:
        names = {PurePosixPath(*PurePosixPath(name).parts[1:]).as_posix() for name in archive.getnames()}
    wanted = {"PKG-INFO", "pyproject.toml", "README.md", "CHANGELOG.md", *PACKAGE_DATA}
    return [f"the sdist lacks {name}" for name in sorted(wanted - names)]


def main(dist: Path) -> int:
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        print(f"{dist}: expected one wheel and one sdist, found {[p.name for p in [*wheels, *sdists]]}")
        return 1
    problems = check_wheel(wheels[0]) + check_sdist(sdists[0])
    for problem in problems:
        print(f"check_dist: {problem}", file=sys.stderr)
    if not problems:
        print(f"check_dist: {wheels[0].name} and {sdists[0].name} hold the package, its data, and no tests")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1])))
