"""`tickpipe ingest` and `tickpipe process` stop at start-up with one line naming a bad setting,
before they touch Kafka or a database."""

from __future__ import annotations

import subprocess
import sys

import pytest


def tickpipe(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tickpipe", *args],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip


@pytest.mark.parametrize("command", ["ingest", "process"])
def test_a_bad_bootstrap_address_is_one_line_naming_the_setting(command, tmp_path):
    done = tickpipe(command, "--kafka", "localhost", "--data-dir", str(tmp_path))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("config error: kafka.bootstrap = 'localhost'")


def test_an_unknown_client_property_stops_process_naming_it(tmp_path):
    config = tmp_path / "t.toml"
    config.write_text('[kafka.properties]\n"fetch.max.bytez" = "1"\n')
    done = tickpipe("process", "--config", str(config), "--data-dir", str(tmp_path))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "kafka.properties.fetch.max.bytez" in lines[0]


def test_an_unknown_encoding_is_a_usage_error(tmp_path):
    done = tickpipe("ingest", "--simulated", "--encoding", "xml", "--data-dir", str(tmp_path))
    assert done.returncode == 2 and "--encoding" in done.stderr
