"""`tickpipe ingest` and `tickpipe process` stop at start-up with one line naming a bad setting,
before they touch Kafka or a database, or naming the broker that does not answer."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

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


@pytest.mark.parametrize("command", ["ingest --simulated", "process"])
def test_an_unreachable_broker_is_one_line_naming_it(command, tmp_path):
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{closed.getsockname()[1]}"
    started = time.monotonic()
    done = tickpipe(*command.split(), "--kafka", address, "--duration", "30",
                    "--data-dir", str(tmp_path))  # fmt: skip
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"tickpipe: error: kafka {address} unreachable")
    assert time.monotonic() - started < 25, "it waited for the broker instead of saying so"
