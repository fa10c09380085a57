"""A fresh virtualenv installs the wheel with every extra (one venv for all three, to keep the
run short; pip's cache serves repeat runs), and its own `tickpipe` runs the demo, serves the
dashboard's files from the wheel, and `tickpipe verify` passes on what the demo stored."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path

import pytest

from tests.release.conftest import ROOT, clean_env

pytestmark = [pytest.mark.release, pytest.mark.slow]

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS = sorted(set(PROJECT["optional-dependencies"]) - {"test"})
# The module each extra's driver is imported as.
DRIVERS = {
    "ccxt": "ccxt", "cassandra": "cassandra.cluster", "mongodb": "pymongo", "forecast": "river",
    "avro": "confluent_kafka.schema_registry.avro",
    "spark": "pyspark.sql",
}  # fmt: skip
STATIC = ROOT / "src" / "tickpipe" / "serve" / "static"


@pytest.fixture(scope="module")
def venv(dist, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=120)
    # --no-compile: the bytecode is written as the tests import modules, not for every file of
    # every extra up front (pyspark's thousands above all), which is not what is tested here.
    result = subprocess.run(
        [str(root / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
         "--quiet", "--no-compile", f"{dist.wheel}[{','.join(EXTRAS)}]"],
        capture_output=True, text=True, timeout=600, check=False, env=clean_env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root


def run(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(venv / "bin" / args[0]), *args[1:]],
        capture_output=True, text=True, timeout=120, check=False, cwd=cwd, env=clean_env(),
    )  # fmt: skip


def test_every_extra_has_a_driver_to_import():
    assert set(DRIVERS) == set(EXTRAS)


def test_each_extras_driver_imports_in_the_venv(venv, tmp_path):
    for extra, module in DRIVERS.items():
        result = run(venv, "python", "-c", f"import {module}", cwd=tmp_path)
        assert result.returncode == 0, f"[{extra}] {module}: {result.stderr[-2000:]}"


def test_tickpipe_is_imported_from_the_venv_not_the_source_tree(venv, tmp_path):
    result = run(venv, "python", "-c", "import tickpipe; print(tickpipe.__file__)", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(venv), result.stdout


def test_demo_then_verify_from_the_venvs_entry_point(venv, tmp_path):
    data = tmp_path / "data"
    demo = subprocess.Popen(
        [str(venv / "bin" / "tickpipe"), "demo", "--duration", "6", "--quiet", "--port", "0",
         "--data-dir", str(data), "--symbols", "3", "--rate", "300"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={**clean_env(), "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert demo.stdout is not None
        first = demo.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:\d+", first)
        assert found, first + demo.stderr.read() if demo.stderr else first
        for path in sorted(STATIC.rglob("*.js")) + sorted(STATIC.glob("*.css")):
            url = f"{found.group()}/static/{path.relative_to(STATIC)}"
            with urllib.request.urlopen(url, timeout=10) as response:
                assert response.read() == path.read_bytes(), url
        out, err = demo.communicate(timeout=60)
    finally:
        demo.kill()
        demo.wait(timeout=30)
    assert demo.returncode == 0, err[-2000:]
    assert (data / "tickpipe.duckdb").exists(), out
    verify = run(venv, "tickpipe", "verify", "--data-dir", str(data), cwd=tmp_path)
    assert verify.returncode == 0, verify.stdout[-2000:] + verify.stderr[-2000:]
    # Every trade the demo accepted is stored, and verify checked them all.
    accepted = re.search(r"trades ([\d,]+)", out)
    checked = re.search(r"from ([\d,]+) stored trades", verify.stdout)
    assert accepted and checked, out + verify.stdout
    assert accepted.group(1) == checked.group(1) != "0"
