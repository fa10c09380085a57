"""Take docs/dashboard.png: a live `tickpipe demo` in Debian's headless Chromium, dark theme.

    .venv/bin/python scripts/dashboard-screenshot.py [--seconds 120] [--out docs/dashboard.png]
    .venv/bin/python scripts/dashboard-screenshot.py --phone --out docs/dashboard-phone.png

The demo runs first for `--seconds` (so the chart has history and the 30-minute average its
first points), then the page is opened and left to update live for a few seconds.
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from servers.chromium import launch_chromium  # noqa: E402  (the tests' launcher and flags)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="demo history first")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    parser.add_argument("--query", default="symbol=BTC-USDT&tf=1s&lookback=10m")
    parser.add_argument("--phone", action="store_true", help="390x844 at 2x, touch (a phone)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        demo = subprocess.Popen(
            [sys.executable, "-m", "tickpipe", "demo", "--quiet", "--port", "0",
             "--data-dir", data], stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert demo.stdout is not None
            url = re.search(r"http://127\.0\.0\.1:\d+", demo.stdout.readline())
            if not url:
                sys.exit("tickpipe demo printed no URL")
            time.sleep(args.seconds)
            with sync_playwright() as playwright:
                browser = launch_chromium(playwright)
                screen = (
                    {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2,
                     "is_mobile": True, "has_touch": True}
                    if args.phone else {"viewport": {"width": 1600, "height": 900}}
                )  # fmt: skip
                page = browser.new_page(**screen)
                page.add_init_script("localStorage.setItem('tickpipe.theme', 'dark')")
                page.goto(f"{url.group(0)}/?{args.query}")
                page.wait_for_function("() => document.getElementById('chart').data?.length")
                page.wait_for_timeout(6000)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out))
                browser.close()
        finally:
            demo.send_signal(signal.SIGINT)
            demo.wait(timeout=30)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
