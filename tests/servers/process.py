"""A server the tests run as a child process: started, waited for until it answers, stopped.

The Kafka, Cassandra, FerretDB and S3 (moto) fixtures subclass `ServerProcess` with their
command line and a `ready()` check. A server that exits or does not answer in time fails with
its log's path and tail, so a broken install is read off the test report; `serving` turns that
into server_missing() (skip locally, fail in CI).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from servers.require import server_missing

POLL_S = 0.25


def cache_dir() -> Path:
    """Where scripts/setup/*.sh keep what they fetch or build, outside git."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tickpipe"


def pinned_version(path: Path, pattern: str) -> str:
    """The version a committed build file pins (the first group of `pattern` in `path`)."""
    found = re.search(pattern, path.read_text(), re.MULTILINE)
    assert found, f"{path} pins no version ({pattern})"
    return found.group(1)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class ServerProcess:
    """One server process: `start()` returns once `ready()` is true; `stop()` ends it.

    `start()` may follow `stop()` (a restart on the same ports and data, for fault tests).
    Subclasses name the server, give its start-up timeout and say when it answers.
    """

    name = "server"
    start_timeout_s = 60.0
    poll_s = POLL_S  # how often `start()` asks `ready()`: the resolution of `started_in_s`

    def __init__(self, cmd: Sequence[str], log_path: Path, cwd: Path | None = None) -> None:
        self.cmd = list(cmd)
        self.log_path = log_path
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_in_s = 0.0  # how long the last start took, until the server answered

    def ready(self) -> bool:
        """Whether the started server answers a real request."""
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        begun = time.monotonic()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                start_new_session=True,
            )
        deadline = begun + self.start_timeout_s
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                self.proc = None
                raise RuntimeError(
                    f"{self.name} exited with code {code} while starting; "
                    f"its log is {self.log_path}:\n{self.log_tail()}"
                )
            if self.ready():
                self.started_in_s = time.monotonic() - begun
                return
            time.sleep(self.poll_s)
        self.stop(kill=True)
        raise RuntimeError(
            f"{self.name} did not answer within {self.start_timeout_s:g} s; "
            f"its log is {self.log_path}:\n{self.log_tail()}"
        )

    def ensure_running(self) -> None:
        """Start the server again if a test (a fault test) left it stopped or killed."""
        if not self.running:
            self.start()

    def stop(self, kill: bool = False) -> None:
        """End the server: SIGTERM (a clean shutdown) or, with `kill`, SIGKILL (a crash)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log written)"


@contextmanager
def serving(server: ServerProcess, kill_at_end: bool = False) -> Iterator[None]:
    """`server` started for a session fixture and stopped after it; one that cannot start is
    missing (skipped locally, failed in CI). `kill_at_end` skips a slow clean shutdown when the
    data is thrown away anyway."""
    try:
        server.start()
    except RuntimeError as exc:
        server_missing(f"cannot start {server.name}: {exc}")
    try:
        yield
    finally:
        server.stop(kill=kill_at_end)


def stop_process(proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """SIGTERM, as an operator stops tickpipe; SIGKILL if it has not exited in `timeout_s`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
