"""The release artifacts: `python -m build` makes the sdist and, from it alone, the wheel;
`twine check --strict` passes on both (what PyPI would accept); the wheel holds every module
and the dashboard's static files, and the sdist what a build and its README need."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tomllib
import zipfile
from email.parser import Parser

import pytest

from tests.release.conftest import ROOT, clean_env, tracked_files

pytestmark = pytest.mark.release

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def package_files() -> set[str]:
    """What git tracks under src/, as paths inside an installed tickpipe."""
    return {name.removeprefix("src/") for name in tracked_files() if name.startswith("src/")}


def test_twine_check_strict_passes_on_wheel_and_sdist(dist):
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(dist.wheel), str(dist.sdist)],
        capture_output=True, text=True, timeout=120, check=False, env=clean_env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASSED") == 2, result.stdout


def test_wheel_holds_every_module_and_the_dashboards_static_files(dist):
    with zipfile.ZipFile(dist.wheel) as wheel:
        names = set(wheel.namelist())
    missing = package_files() - names
    assert not missing, f"not in the wheel: {sorted(missing)}"
    static = {n for n in package_files() if n.startswith("tickpipe/serve/static/")}
    assert any(n.endswith("index.html") for n in static)
    assert any(n.endswith(".js") for n in static)
    assert not any(n.startswith(("tests/", "benchmarks/", "scripts/")) for n in names)


def test_wheel_metadata_names_the_extras_and_the_command(dist):
    with zipfile.ZipFile(dist.wheel) as wheel:
        info = f"tickpipe-{PYPROJECT['project']['version']}.dist-info"
        metadata = Parser().parsestr(wheel.read(f"{info}/METADATA").decode())
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    assert set(metadata.get_all("Provides-Extra")) == set(
        PYPROJECT["project"]["optional-dependencies"]
    )
    assert metadata["Requires-Python"] == PYPROJECT["project"]["requires-python"]
    assert metadata["License-Expression"] == PYPROJECT["project"]["license"]
    assert metadata.get_payload().startswith((ROOT / "README.md").read_text()[:200])
    script = PYPROJECT["project"]["scripts"]["tickpipe"]
    assert f"tickpipe = {script}" in entry_points


def test_sdist_holds_what_a_build_from_it_needs(dist):
    with tarfile.open(dist.sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"pyproject.toml", "README.md", "PKG-INFO"} <= names
    missing = {f"src/{n}" for n in package_files()} - names
    assert not missing, f"not in the sdist: {sorted(missing)}"
