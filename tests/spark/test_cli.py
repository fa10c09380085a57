"""`tickpipe spark` when what it needs is missing: one line saying what to install or run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_spark(tmp: Path, *args: str, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "tickpipe", "spark", "--data-dir", str(tmp), *args],
        capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_without_pyspark_it_says_in_one_line_how_to_install_it(tmp_path):
    # A pyspark that cannot be imported, first on the path: as if the extra were not installed.
    blocked = tmp_path / "blocked" / "pyspark"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('No module named pyspark')\n")
    path = os.pathsep.join([str(blocked.parent), os.environ.get("PYTHONPATH", "")])
    done = run_spark(tmp_path, "--store", "postgresql://u@127.0.0.1:1/db",
                     env={"PYTHONPATH": path})  # fmt: skip
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines == ["tickpipe spark: the Spark job needs pyspark: pip install 'tickpipe[spark]' "
                     "(pyspark==4.2.0)"], done.stderr  # fmt: skip


def test_without_the_connector_jars_it_says_which_script_fetches_them(tmp_path):
    done = run_spark(tmp_path, "--store", "postgresql://u@127.0.0.1:1/db",
                     env={"XDG_CACHE_HOME": str(tmp_path / "empty-cache")})  # fmt: skip
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "scripts/setup/spark.sh" in lines[0], done.stderr


def test_the_binary_encoding_is_refused_in_one_line_from_the_flag_or_the_config(tmp_path):
    config = tmp_path / "binary.toml"
    config.write_text('[kafka]\nencoding = "binary"\n')
    for args in (["--encoding", "binary"], ["--config", str(config)]):
        done = run_spark(tmp_path, "--store", "postgresql://u@127.0.0.1:1/db", *args)
        assert done.returncode == 1, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "JSON encoding only, not binary" in lines[0], done.stderr
