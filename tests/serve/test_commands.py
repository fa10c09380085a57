"""`tickpipe demo` serves the API next to its pipeline; `tickpipe serve` serves a stored file."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

TICKPIPE = [sys.executable, "-m", "tickpipe"]


def start(*args: str) -> tuple[subprocess.Popen, str, str]:
    """Start tickpipe; return it, the API URL from its first line, and that line."""
    proc = subprocess.Popen(
        [*TICKPIPE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    found = re.search(r"http://127\.0\.0\.1:\d+", line)
    if not found:
        proc.kill()
        pytest.fail(f"no API URL in {line!r}: {proc.stderr.read() if proc.stderr else ''}")
    return proc, found.group(0), line


def test_demo_serves_the_api_with_the_pipelines_kpis_and_prints_its_url(tmp_path: Path) -> None:
    proc, url, line = start("demo", "--quiet", "--duration", "4", "--port", "0",
                            "--data-dir", str(tmp_path))  # fmt: skip
    try:
        time.sleep(1.5)
        health = httpx.get(url + "/api/health", timeout=5).json()
        kpis = httpx.get(url + "/api/kpis", timeout=5).json()
    finally:
        _out, err = proc.communicate(timeout=60)
    assert "API at http://127.0.0.1:" in line
    assert health["live"] is True
    assert kpis["pipeline"]["mode"] == "demo" and kpis["pipeline"]["trades"] > 0
    assert proc.returncode == 0, err


def test_serve_answers_over_a_stored_file_read_only_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    demo = subprocess.run(
        [*TICKPIPE, "demo", "--quiet", "--duration", "2", "--no-serve", "--data-dir",
         str(tmp_path)], capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr
    assert "dashboard" not in demo.stdout  # --no-serve: no API
    proc, url, line = start("serve", "--port", "0", "--data-dir", str(tmp_path))
    try:
        exchanges = httpx.get(url + "/api/exchanges", timeout=5).json()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert "read-only" in line and "no live pushes" in line
    assert [e["name"] for e in exchanges["exchanges"]] == ["simulated"]


def test_a_busy_port_stops_start_up_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [*TICKPIPE, "demo", "--quiet", "--duration", "1", "--port", str(port),
             "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith(f"config error: serve.port = {port}: cannot listen")
    assert result.stderr.count("\n") == 1
