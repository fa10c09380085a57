"""Update latency on the page: a trade received by tickpipe to the chart showing its candle, in
headless Chromium, with a WebSocket client's receive time as the baseline in the same run.

    python benchmarks/page_latency.py --rates 1000,10000 --seconds 10 --runs 3
    python benchmarks/page_latency.py --before /work/main/src   # and the page of another checkout

With `--before SRC`, each run is made twice, back to back: once with `tickpipe run` from SRC
(another checkout's `src`, e.g. main's: its page is the "before") and once from this checkout,
so both meet the same load.

Per rate and run: the fake Binance (tests/fakes, a source checkout is needed) feeds `--rate`
trades/s round-robin over BTCUSDT and ETHUSDT into `tickpipe run` (a subprocess, as a user runs
it; see benchmarks/latency.py, whose fake and setup this reuses). Two clients watch BTC-USDT's
1 s candles at once:
- the dashboard in Chromium (1440x900: chart and trades tape shown); each drawing of the chart
  records the newest candle's `last_seq` and the time after the next animation frame (the chart
  is on screen then), through the page's `tickpipe.onDrawn` hook, or on a page without it (before
  the newest candle was drawn on its own) by wrapping `Plotly.react`;
- this process, on /api/live: every trade's `seq` and `recv_ts` (when tickpipe's source got
  it) and its own receive time of each candle update: the baseline, "pushed to a client".

For each candle update first drawn, latency = draw time - `recv_ts` of the trade its `last_seq`
names (the newest trade the candle holds); the baseline is the same for the Python client's
receive time. All on one machine and one wall clock. Printed: p50/p95/p99 in ms per run and
over all runs. Never asserted: the machine is shared, the figures move with its load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latency import _free_port

CHROMIUM = Path(os.environ.get("TICKPIPE_CHROMIUM", "/usr/bin/chromium"))
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update"]  # fmt: skip
SYMBOLS = ("BTCUSDT", "ETHUSDT")
WATCHED = "BTC-USDT"
LATENCY = Path(__file__).resolve().parent / "latency.py"

# After each drawing, on the next animation frame, record the newest candle's last_seq and the
# wall clock in microseconds: through the page's hook, or by wrapping Plotly.react.
INSTRUMENT = """() => {
    window.__draws = [];
    const note = (newest, how) => {
        if (newest && newest.last_seq !== undefined) {
            const seq = newest.last_seq;
            requestAnimationFrame(() => setTimeout(() => window.__draws.push(
                [seq, Math.round((performance.timeOrigin + performance.now()) * 1000),
                 how || "whole"]
            ), 0));
        }
    };
    window.__received = [];
    if ("onReceived" in window.tickpipe) {  // when each update reached the page's handler
        window.tickpipe.onReceived = (candle) => window.__received.push(
            [candle.last_seq, Math.round((performance.timeOrigin + performance.now()) * 1000)]);
    }
    if ("onDrawn" in window.tickpipe) {
        window.tickpipe.onDrawn = note;
        return;
    }
    const react = Plotly.react;
    Plotly.react = function (...args) {
        const out = react.apply(this, args);
        const candles = window.tickpipe.state.series.candles;
        note(candles[candles.length - 1], "whole");
        return out;
    };
}"""


def chromium_cpu_s() -> float:
    """CPU seconds (user + system) used so far by the Chromium processes this one started."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        pid = int(entry.name)
        parents[pid], names[pid] = int(fields[1]), name
        times[pid] = (int(fields[11]) + int(fields[12])) / tick
    mine = {os.getpid()}
    for _ in range(10):  # the tree is shallow: us -> playwright's driver -> chromium -> its helpers
        mine |= {pid for pid, parent in parents.items() if parent in mine}
    return sum(times[p] for p in mine if "chrom" in names[p].lower())


def percentiles(ms: list[float]) -> str:
    if not ms:
        return "no samples"
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return f"p50 {p50:7.1f}  p95 {p95:7.1f}  p99 {p99:7.1f} ms  (n={len(ms)})"


async def watch(url: str, seconds: float) -> tuple[list[float], list[float]]:
    """(page latencies, client latencies) in ms over `seconds` of the running feed."""
    import aiohttp
    from playwright.async_api import async_playwright

    recv: dict[int, int] = {}
    client_at: dict[int, int] = {}  # last_seq -> first receive by this client (µs)
    async with aiohttp.ClientSession() as session, async_playwright() as pw:
        ws = await session.ws_connect(url.replace("http", "ws", 1) + "/api/live", max_msg_size=0)
        key = {"exchange": "binance", "symbol": WATCHED, "interval": "1s"}
        while True:
            await ws.send_str(json.dumps({"subscribe": key}))
            answer = json.loads((await ws.receive(timeout=30)).data)
            if answer.get("type") == "subscribed":
                break
            await asyncio.sleep(0.1)
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        page = await browser.new_page(viewport={"width": 1440, "height": 900})
        await page.goto(f"{url}/?exchange=binance&symbol={WATCHED}&tf=1s&lookback=10m")
        await page.wait_for_function("() => document.getElementById('chart')?.data?.length")
        await page.evaluate(INSTRUMENT)
        cpu_start = chromium_cpu_s()
        start_us = time.time_ns() // 1000
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                msg = await ws.receive(timeout=left)
            except TimeoutError:
                break
            now = time.time_ns() // 1000
            data = json.loads(msg.data)
            if data.get("type") == "trades":
                recv.update((t["seq"], t["recv_ts"]) for t in data["trades"])
            elif data.get("type") == "candle" and data["interval"] == "1s":
                client_at.setdefault(data["last_seq"], now)
        cpu_s = chromium_cpu_s() - cpu_start
        await asyncio.sleep(1.0)  # the page's last drawings
        draws = await page.evaluate("() => window.__draws")
        received = await page.evaluate("() => window.__received")
        counts = await page.evaluate("() => window.tickpipe.stats")
        await browser.close()
        await ws.close()
    drawn: dict[int, tuple[int, str]] = {}
    for seq, at, how in draws:
        drawn.setdefault(seq, (at, how))
    mine = {s: d for s, d in drawn.items() if s in recv and recv[s] > start_us}
    page_ms = [(at - recv[s]) / 1000 for s, (at, _) in mine.items()]
    for how, label in (("whole", "a whole redraw"), ("alone", "the newest candle alone")):
        part = [(at - recv[s]) / 1000 for s, (at, h) in mine.items() if h == how]
        if part:
            print(f"    drawn by {label}: {percentiles(part)}")
    handled: dict[int, int] = {}
    for seq, at in received:
        handled.setdefault(seq, at)
    split = [(s, handled[s]) for s in mine if s in handled]
    if split:  # where the time goes: to the page's handler, then from there to the screen
        to_page = [(h - recv[s]) / 1000 for s, h in split]
        to_screen = [(mine[s][0] - h) / 1000 for s, h in split]
        print(f"    trade -> page's handler: {percentiles(to_page)}")
        print(f"    handler -> drawn:        {percentiles(to_screen)}")
    client_ms = [(at - recv[s]) / 1000 for s, at in client_at.items()
                 if s in recv and recv[s] > start_us]  # fmt: skip
    whole, alone = counts["renders"], counts.get("lastDraws", 0)
    cost = ""
    if "renderMs" in counts:  # the page times its drawings (main thread, ms each)
        cost = (f" (main thread {counts['renderMs'] / max(whole, 1):.1f} ms each, newest alone "
                f"{counts['lastDrawMs'] / max(alone, 1):.2f} ms each)")  # fmt: skip
    print(f"    Chromium {cpu_s:.1f} CPU s in {seconds:g} s; whole redraws {whole}, "
          f"newest candle alone {alone}{cost}")  # fmt: skip
    if counts.get("redraws"):  # why the page redrew the whole figure on live updates
        print(f"    whole redraws by why: {counts['redraws']}")
    return page_ms, client_ms


def wait_until_up(url: str, timeout_s: float = 120.0) -> None:
    """Until `tickpipe run`'s API answers (a loaded machine starts it slowly)."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            httpx.get(url + "/api/health", timeout=5).raise_for_status()
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def run_once(
    rate: float, seconds: float, src: str | None = None
) -> tuple[list[float], list[float]]:
    """One run; `src`: start `tickpipe run` from that source tree (None: this one)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKPIPE_")}
    fake = subprocess.Popen(
        [sys.executable, str(LATENCY), "--fake-server", "--rate", str(rate), "--symbols",
         ",".join(SYMBOLS)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    tickpipe = None
    try:
        assert fake.stdout is not None and fake.stdin is not None
        urls = json.loads(fake.stdout.readline())
        port = _free_port()
        run_env = {**env, "PYTHONPATH": src} if src else env
        with tempfile.TemporaryDirectory(prefix="tickpipe-page-latency-") as tmp:
            tickpipe = subprocess.Popen(
                [sys.executable, "-m", "tickpipe", "run", "--quiet", "--data-dir", tmp,
                 "--exchange", "binance", "--endpoint", f"binance={urls['url']}",
                 "--rest-endpoint", f"binance={urls['rest_url']}", "--no-symbol-check",
                 "--port", str(port), "--symbol", "BTC-USDT", "--symbol", "ETH-USDT"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=run_env,
            )  # fmt: skip
            fake.stdin.write("go\n")
            fake.stdin.flush()
            wait_until_up(f"http://127.0.0.1:{port}")
            time.sleep(2)  # the first candles are stored
            result = asyncio.run(watch(f"http://127.0.0.1:{port}", seconds))
            fake.stdin.write("stop\n")
            fake.stdin.flush()
            tickpipe.send_signal(signal.SIGINT)
            tickpipe.wait(timeout=30)
            return result
    finally:
        for proc in (tickpipe, fake):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="1000,10000", help="trades/s over both symbols")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--before", metavar="SRC", help="also run the page of this source tree")
    args = parser.parse_args(argv)
    variants: list[tuple[str, str | None]] = [("this", None)]
    if args.before:
        variants.insert(0, ("before", str(Path(args.before).resolve())))
    for rate in (float(r) for r in args.rates.split(",")):
        pages: dict[str, list[float]] = {name: [] for name, _ in variants}
        clients: dict[str, list[float]] = {name: [] for name, _ in variants}
        print(f"rate {rate:,.0f} trades/s, {args.runs} runs of {args.seconds:g} s "
              f"({WATCHED} 1s, desktop page with the tape)", flush=True)  # fmt: skip
        for run in range(args.runs):
            for name, src in variants:
                page_ms, client_ms = run_once(rate, args.seconds, src)
                pages[name] += page_ms
                clients[name] += client_ms
                print(f"  run {run + 1} {name:6}: trade -> drawn on the page   "
                      f"{percentiles(page_ms)}")  # fmt: skip
                print(f"  run {run + 1} {name:6}: trade -> pushed to a client  "
                      f"{percentiles(client_ms)}", flush=True)  # fmt: skip
        for name, _ in variants:
            print(f"  all runs {name:6}: trade -> drawn on the page   {percentiles(pages[name])}")
            print(f"  all runs {name:6}: trade -> pushed to a client  "
                  f"{percentiles(clients[name])}", flush=True)  # fmt: skip
        print(f"  (load average {os.getloadavg()[0]:.1f} at the end)", flush=True)


if __name__ == "__main__":
    main()
