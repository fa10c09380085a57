"""A server the tests run as a child process: started, waited for until it answers, stopped.

The Cassandra, FerretDB and S3 (moto) fixtures share it. A server that exits or does not answer
in time fails with its log's path and tail, so a broken install is read off the test report.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

POLL_S = 0.25


def cache_dir() -> Path:
    """Where scripts/setup/*.sh keep what they fetch or build, outside git."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tickpipe"


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
    """

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        log_path: Path,
        ready: Callable[[], bool],
        start_timeout_s: float,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.cmd = list(cmd)
        self.log_path = log_path
        self.ready = ready
        self.start_timeout_s = start_timeout_s
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_in_s = 0.0  # how long the last start took, until the server answered

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
            time.sleep(POLL_S)
        self.stop(kill=True)
        raise RuntimeError(
            f"{self.name} did not answer within {self.start_timeout_s:g} s; "
            f"its log is {self.log_path}:\n{self.log_tail()}"
        )

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
