"""Another version of tickpipe to measure beside this one: the `src` folder of a git ref."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # benchmarks/ -> the checkout


def baseline_src(ref: str, into: Path) -> Path:
    """The `src` folder of git `ref` of this checkout, extracted into `into` (`git archive`)."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "src"], capture_output=True, check=False
    )
    if archive.returncode:
        raise SystemExit(f"--baseline {ref}: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into / "src"


def env_running(src: Path, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's environment) with `src`'s tickpipe first on the import
    path: a child started with it imports that version, whatever is installed."""
    paths = [str(src), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**(os.environ if env is None else env), "PYTHONPATH": os.pathsep.join(paths)}
