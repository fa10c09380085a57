"""A real `tickpipe demo` (subprocess, free port, temp data dir, access token) and pages of it
in headless Chromium that collect console errors and leave a screenshot under test-artifacts/."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from servers.chromium import running_chromium

if TYPE_CHECKING:
    from playwright.sync_api import Browser

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "dashboard"
TOKEN = "dash-test-token"
# Routes the monitor adds; until they exist the page asks once and Chromium logs the 404.
OPTIONAL_ROUTES = ("/api/alerts", "/api/kpis/history")


@dataclass
class Demo:
    """A running `tickpipe demo` and how to reach it."""

    proc: subprocess.Popen
    url: str
    data_dir: Path
    token: str | None = None

    def page_url(self, **params: str) -> str:
        query = {**params, **({"token": self.token} if self.token else {})}
        return self.url + "/?" + "&".join(f"{k}={v}" for k, v in query.items())

    def api(self, path: str, **params: Any) -> Any:
        if self.token:
            params["token"] = self.token
        answer = httpx.get(self.url + path, params=params, timeout=10)
        answer.raise_for_status()
        return answer.json()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@contextlib.contextmanager
def serving(data_dir: Path) -> Iterator[str]:
    """`tickpipe serve` over the store in `data_dir` (no live feed) on 127.0.0.1: its URL;
    stopped with Ctrl-C when the block ends."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tickpipe", "serve", "--port", "0", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        found = re.search(r"dashboard and API at (http://127\.0\.0\.1:\d+)", proc.stdout.readline())
        assert found, proc.stderr.read() if proc.stderr else ""
        yield found.group(1)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)


def start_demo(
    data_dir: Path,
    port: int = 0,
    token: str | None = None,
    symbols: int | None = None,
    extra: tuple[str, ...] = (),
) -> Demo:
    """`tickpipe demo` on 127.0.0.1 (`extra`: more arguments); returns once its API answers
    and it has stored trades."""
    args = [sys.executable, "-m", "tickpipe", "demo", "--quiet", "--port", str(port),
            "--data-dir", str(data_dir), *extra]  # fmt: skip
    if symbols is not None:
        args += ["--symbols", str(symbols)]
    env = {**os.environ, "TICKPIPE_SERVE_TOKEN": token} if token else None
    # stderr to a file: nobody reads it while the demo runs, and a full pipe would block it.
    log = data_dir / f"demo-{time.monotonic_ns()}.stderr"
    with log.open("w") as stderr:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    found = re.search(r"dashboard and API at (http://127\.0\.0\.1:\d+)", line)
    if not found:
        proc.kill()
        proc.wait(timeout=10)
        pytest.fail(f"no URL in tickpipe demo's first line {line!r}: {log.read_text()}")
    demo = Demo(proc, found.group(1), data_dir, token)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if demo.api("/api/exchanges")["exchanges"]:
                return demo
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    demo.stop()
    pytest.fail("tickpipe demo stored no trades within 30 s")


@contextlib.contextmanager
def replaying(tape: Path, data_dir: Path, env: dict[str, str] | None = None) -> Iterator[Demo]:
    """`tickpipe run --replay` of the `tape` at wall-clock pace on 127.0.0.1 (`env`: more
    variables), stopped with Ctrl-C when the block ends."""
    args = [sys.executable, "-m", "tickpipe", "run", "--replay", str(tape), "--speed", "1",
            "--quiet", "--port", "0", "--data-dir", str(data_dir / "data")]  # fmt: skip
    with (data_dir / "run.stderr").open("w") as stderr:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr, text=True,
                                env={**os.environ, **(env or {})})  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    found = re.search(r"dashboard and API at (http://127\.0\.0\.1:\d+)", line)
    running = Demo(proc, found.group(1) if found else "", data_dir)
    try:
        if not found:
            pytest.fail(f"no URL in tickpipe run's first line {line!r}")
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """One demo for the dashboard tests, behind an access token (the page must pass it on)."""
    # 30 symbols, as a trader watches: from BTC at five figures to PEPE at 0.00001.
    running = start_demo(tmp_path_factory.mktemp("dashboard"), token=TOKEN, symbols=30)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="package")
def chromium() -> Iterator[Browser]:
    """One headless Chromium for the dashboard tests; each test opens its own context and page
    (`page`), so no cookie, storage or cache is shared. Package-scoped, not session-scoped:
    Playwright's sync API keeps an event loop running in the main thread while it is started,
    and tests of other packages call asyncio.run()."""
    with running_chromium() as browser:
        yield browser


@dataclass
class Console:
    """What the page said on its console: errors fail a test unless it expects them."""

    errors: list[str] = field(default_factory=list)

    def unexpected(self, allowed: Callable[[str], bool] = lambda _: False) -> list[str]:
        return [e for e in self.errors if not allowed(e)]


@pytest.fixture
def console() -> Console:
    return Console()


@pytest.fixture
def page(chromium, console: Console, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context and page (1440x900); screenshot at the end of the test."""
    yield from _tab(chromium, console, request, viewport={"width": 1440, "height": 900})


# A phone: 390x844 CSS pixels at 3x, touch, a phone's user agent (what Chromium's device
# emulation of a recent iPhone-sized screen sets).
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 3,
         "is_mobile": True, "has_touch": True}  # fmt: skip


@pytest.fixture
def phone_page(chromium, console: Console, request: pytest.FixtureRequest) -> Iterator[Any]:
    """`page` on a phone-sized touch screen."""
    yield from _tab(chromium, console, request, **PHONE)


def _tab(
    chromium, console: Console, request: pytest.FixtureRequest, **options: Any
) -> Iterator[Any]:
    context = chromium.new_context(**options)
    tab = context.new_page()

    def on_console(message) -> None:
        if message.type != "error":
            return
        where = (message.location or {}).get("url", "")
        if "404" in message.text and where.split("?")[0].endswith(OPTIONAL_ROUTES):
            return  # the page degrades quietly; Chromium still logs the failed request
        console.errors.append(f"{message.text} ({where})")

    tab.on("console", on_console)
    tab.on("pageerror", lambda exc: console.errors.append(f"uncaught: {exc}"))
    try:
        yield tab
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        try:
            tab.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"))
        finally:
            context.close()


# -- reading the page -----------------------------------------------------------------------


def chart_candles(page) -> list[dict[str, float]]:
    """The candles the Plotly chart draws, read back from its data (start in µs)."""
    return page.evaluate(
        """() => {
            const t = document.getElementById("chart").data?.[0];
            if (!t) return [];
            return t.customdata.map((start, i) => ({
                start, open: t.open[i], high: t.high[i], low: t.low[i], close: t.close[i]}));
        }"""
    )


def page_stats(page) -> dict[str, int]:
    return page.evaluate("() => ({...window.tickpipe.stats})")


def wait_for(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def open_dashboard(page, demo: Demo, **params: str) -> None:
    """Open the page and wait until the chart shows candles."""
    page.goto(demo.page_url(**params))
    wait_for("candles on the chart", lambda: chart_candles(page))
