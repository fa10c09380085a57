"""`tickpipe` run as a user runs it against a secured store server: the password from the file
TICKPIPE_STORE_PASSWORD_FILE names, and what a refusal must look like (one line, no secret)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def tickpipe(*args: str, password: str | None, tmp_path: Path) -> subprocess.CompletedProcess:
    """`tickpipe ARGS` in a subprocess; `password`, if any, in a secret file as Docker and
    Kubernetes hand it over (with a trailing newline, as `echo` writes it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKPIPE_STORE_PASSWORD")}
    if password is not None:
        path = tmp_path / "store-password"
        path.write_text(password + "\n")
        env["TICKPIPE_STORE_PASSWORD_FILE"] = str(path)
    return subprocess.run(
        [sys.executable, "-m", "tickpipe", *args],
        capture_output=True, text=True, timeout=240, check=False, env=env,
    )  # fmt: skip


def refusal_line(run: subprocess.CompletedProcess, *secrets: str) -> str:
    """The one line a refused run printed: non-zero exit, no traceback, no retry warnings,
    none of `secrets` anywhere."""
    assert run.returncode != 0, run.stdout
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    for secret in secrets:
        assert secret not in run.stdout + run.stderr
    return lines[0]
