"""The dashboard's cold load in Chromium: bytes transferred, first paint, chart drawn.

    python benchmarks/page_load.py --runs 3

Starts `tickpipe demo` as a user does (a subprocess on a free port, a temporary data dir), waits
until it has candles, then opens the page in Debian's headless Chromium with an empty cache,
once per run and variant:

- `now`: the page as tickpipe serves it (compressed files, plotly.js deferred);
- `before`: the same server asked for uncompressed files (`Accept-Encoding: identity`) and
  plotly.js loaded as a blocking script again (the page's HTML rewritten on the way in): the
  page as it was, measured in the same run as the baseline.

Per load it reads the browser's own figures (Resource Timing's `transferSize`, Paint Timing's
`first-paint` and `first-contentful-paint`) and the time until the candle chart holds candles.
Printed per run, then min / median / max. One warm-up load first, outside the figures: the
server compresses each file on its first request and keeps the result. Note the machine's
load (`uptime`) beside the figures.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import Browser, Route, sync_playwright

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
# Plotly keeps the figure's traces on the div: drawn with candles, not only an empty frame.
CHART_DRAWN = "(document.querySelector('#chart')?.data?.[0]?.x?.length ?? 0) > 0"
FIGURES_JS = """() => {
  const paint = Object.fromEntries(
    performance.getEntriesByType("paint").map(e => [e.name, e.startTime]));
  const nav = performance.getEntriesByType("navigation")[0];
  let staticBytes = nav.transferSize, apiBytes = 0;
  for (const e of performance.getEntriesByType("resource")) {
    if (new URL(e.name).pathname.startsWith("/api/")) apiBytes += e.transferSize;
    else staticBytes += e.transferSize;
  }
  return {first_paint_ms: paint["first-paint"],
          first_contentful_paint_ms: paint["first-contentful-paint"], chart_ms: performance.now(),
          static_kb: staticBytes / 1024, api_kb: apiBytes / 1024};
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_candles(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/api/analytics/top-tickers", timeout=5).json().get("tickers"):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("the demo's API did not answer with candles within 60 s")


def _blocking_page(route: Route) -> None:
    """The page with plotly.js as a blocking script again, as it was before it was deferred."""
    answer = route.fetch()
    html = re.sub(r"<script defer ", "<script ", answer.text())
    route.fulfill(response=answer, body=html)


def load(browser: Browser, url: str, variant: str) -> dict[str, float]:
    """One cold load (a fresh context: empty cache) of `url`; the browser's own figures."""
    headers = {"Accept-Encoding": "identity"} if variant == "before" else {}
    context = browser.new_context(
        extra_http_headers=headers, viewport={"width": 1440, "height": 900}
    )
    try:
        page = context.new_page()
        if variant == "before":
            page.route(url + "/", _blocking_page)
        page.goto(url + "/", wait_until="commit")
        page.wait_for_function(CHART_DRAWN, timeout=60_000, polling="raf")
        # A figure the browser did not record (no paint entry yet) is shown as nan.
        return {k: float("nan") if v is None else v for k, v in page.evaluate(FIGURES_JS).items()}
    finally:
        context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=1000, help="demo trades/s")
    args = parser.parse_args()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    print(f"load before: {os.getloadavg()[0]:.2f}; {args.runs} runs", flush=True)
    with tempfile.TemporaryDirectory() as data_dir:
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        demo = subprocess.Popen(
            [sys.executable, "-m", "tickpipe", "demo", "--quiet", "--data-dir", data_dir,
             "--port", str(port), "--rate", str(args.rate)],
            env=env, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            _wait_for_candles(url)
            results: dict[str, list[dict[str, float]]] = {"before": [], "now": []}
            with sync_playwright() as p:
                browser = p.chromium.launch(
                    executable_path=CHROMIUM,
                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
                )
                load(browser, url, "now")  # warm-up: the server compresses each file once
                for run in range(args.runs):
                    for variant in results:
                        figures = load(browser, url, variant)
                        results[variant].append(figures)
                        print(f"run {run + 1} {variant}: " + ", ".join(
                            f"{k} {v:.1f}" for k, v in figures.items()), flush=True)  # fmt: skip
                browser.close()
        finally:
            demo.terminate()
            demo.wait(timeout=30)
    print(f"\n{'':28}" + "".join(f"{name:>28}" for name in results))
    for key in results["now"][0]:
        cells = []
        for runs in results.values():
            values = sorted(r[key] for r in runs)
            cells.append(f"{values[0]:.1f} / {statistics.median(values):.1f} / {values[-1]:.1f}")
        print(f"{key:28}" + "".join(f"{c:>28}" for c in cells))
    print("(min / median / max over the runs; KiB transferred, ms since navigation start)")


if __name__ == "__main__":
    main()
