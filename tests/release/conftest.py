"""The wheel and sdist, built once per session the way a release is: the sdist from a copy of the
files git tracks (a clean clone), then the wheel from that sdist alone."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Dist:
    wheel: Path
    sdist: Path


def clean_env() -> dict[str, str]:
    """The environment without the PYTHONPATH the test run may set, so a subprocess imports
    tickpipe from where it was installed, never from the source tree."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def tracked_files() -> list[str]:
    listing = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=30
    )
    return [name for name in listing.stdout.decode().split("\0") if name]


def build(kind: str, source: Path, out: Path) -> Path:
    result = subprocess.run(
        [sys.executable, "-m", "build", kind, "--outdir", str(out), str(source)],
        capture_output=True, text=True, timeout=300, check=False, env=clean_env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (made,) = out.glob("*.whl" if kind == "--wheel" else "*.tar.gz")
    return made


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    root = tmp_path_factory.mktemp("release")
    clone = root / "clone"
    for name in tracked_files():
        target = clone / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((ROOT / name).read_bytes())
    sdist = build("--sdist", clone, root / "dist")
    with tarfile.open(sdist) as archive:
        archive.extractall(root / "unpacked", filter="data")
    (unpacked,) = (root / "unpacked").iterdir()
    wheel = build("--wheel", unpacked, root / "dist")
    return Dist(wheel=wheel, sdist=sdist)
