"""`tickpipe demo` run as a server by the end-to-end tests: started until its API answers, ended
by a signal (SIGKILL: a crash; SIGINT: Ctrl-C), started again on the same data dir and port.

`RssSampler` watches its resident memory from another thread, across restarts.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import httpx

from servers.process import ServerProcess, free_port


class DemoServer(ServerProcess):
    """`tickpipe demo --quiet` on one free port and data dir; `started_in_s` is the time from
    the process's start until `/api/health` answered (the restore included)."""

    name = "tickpipe demo"
    poll_s = 0.02
    start_timeout_s = 120.0

    def __init__(self, data_dir: Path, *args: str) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "tickpipe", "demo", "--quiet", "--port", str(self.port),
               "--data-dir", str(data_dir), *args]  # fmt: skip
        # Every run appends its start line, summary or error to one log in the data dir.
        super().__init__(cmd, data_dir / "demo.log")

    def ready(self) -> bool:
        try:
            return httpx.get(self.url + "/api/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def end(self, sig: signal.Signals, timeout_s: float = 60.0) -> int:
        """Send `sig` and wait for the exit; its exit status (-9 after SIGKILL)."""
        assert self.proc is not None, "the demo is not running"
        proc, self.proc = self.proc, None
        proc.send_signal(sig)
        return proc.wait(timeout=timeout_s)


class RssSampler:
    """The peak resident memory (VmRSS, bytes) of every process `pid()` named while it ran.

    Sampled on a thread every `every_s`, so a restart's short peak is caught too; use it as a
    context manager around the runs it watches.
    """

    def __init__(self, pid: Callable[[], int | None], every_s: float = 0.05) -> None:
        self.pid = pid
        self.every_s = every_s
        self.peak_bytes: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            pid = self.pid()
            rss = vm_rss_bytes(pid) if pid is not None else None
            if pid is not None and rss is not None:
                self.peak_bytes[pid] = max(rss, self.peak_bytes.get(pid, 0))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def vm_rss_bytes(pid: int) -> int | None:
    """The process's resident memory now, or None once it has gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024  # the kernel counts in kB
    return None  # a zombie: no memory left
