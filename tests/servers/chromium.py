"""Debian's headless Chromium, driven by Playwright (the dashboard tests' `chromium` fixture).

Playwright is only the driver here: it launches /usr/bin/chromium (installed by
scripts/setup/chromium.sh) and never downloads a browser of its own. Each launch gets a fresh
profile directory from Playwright (the --user-data-dir it passes), so no state leaks between runs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from servers.require import server_missing

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = Path(os.environ.get("TICKPIPE_CHROMIUM", "/usr/bin/chromium"))
# Without the background-networking flags Chromium keeps calling home, on a closed network.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio",
]  # fmt: skip


def launch_chromium(playwright) -> Browser:
    """Debian's Chromium, headless, with the flags above."""
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True, timeout=60_000
    )


@contextlib.contextmanager
def running_chromium() -> Iterator[Browser]:
    """A running headless Chromium; skipped (or failed in CI) when it cannot start."""
    if not CHROMIUM.exists():
        server_missing(f"{CHROMIUM} is missing: run scripts/setup/chromium.sh")
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        browser = launch_chromium(playwright)
    except Exception as exc:
        playwright.stop()
        server_missing(f"{CHROMIUM} did not start: {exc}")
    try:
        yield browser
    finally:
        browser.close()
        playwright.stop()
