"""Bytes per second /api/live pushes for one 1 s chart, with and without the symbol's trades.

    python benchmarks/live_push.py --seconds 10 --runs 3

Starts `tickpipe demo` (a subprocess: 30 symbols, 2,000 trades/s by default, free port,
temporary data dir) and, in each run, two WebSocket clients at once on the same chart (the
demo's busiest symbol, BTC-USDT, 1s candles): one subscribed as the dashboard did before
`trades` existed (candles and every trade: the baseline) and one with `"trades": false`, as the
dashboard now subscribes while its tape is hidden. Both measure over the same seconds, so the
market is the same for both. Printed per client: KiB/s of message payloads (what the page
must receive and parse; WebSocket framing adds 2-10 bytes a message), split by message type,
as median, min and max over the runs. Never asserted: the figures depend on the machine and
on the simulated market's activity.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import websockets

KEY = {"exchange": "simulated", "symbol": "BTC-USDT", "interval": "1s"}


def start_demo(data_dir: Path, symbols: int, rate: float) -> tuple[subprocess.Popen, str]:
    args = [sys.executable, "-m", "tickpipe", "demo", "--quiet", "--port", "0", "--data-dir",
            str(data_dir), "--symbols", str(symbols), "--rate", str(rate)]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    found = re.search(r"dashboard and API at (http://\S+)", proc.stdout.readline())
    if not found:
        proc.kill()
        raise SystemExit("tickpipe demo printed no URL")
    return proc, found.group(1)


async def measure(url: str, trades: bool | None, seconds: float) -> Counter[str]:
    """Payload bytes by message type over `seconds` once subscribed (`trades` None: omitted)."""
    key = dict(KEY) if trades is None else {**KEY, "trades": trades}
    received: Counter[str] = Counter()
    async with websockets.connect(url.replace("http", "ws", 1) + "/api/live") as ws:
        while True:  # a fresh demo may not have seen the symbol yet
            await ws.send(json.dumps({"subscribe": key}))
            answer = json.loads(await ws.recv())
            while answer["type"] not in ("subscribed", "error"):
                answer = json.loads(await ws.recv())
            if answer["type"] == "subscribed":
                break
            await asyncio.sleep(0.2)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                raw = await asyncio.wait_for(ws.recv(), left)
            except TimeoutError:
                break
            size = len(raw.encode() if isinstance(raw, str) else raw)
            received[json.loads(raw)["type"]] += size
    return received


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--symbols", type=int, default=30, help="simulated symbols")
    parser.add_argument("--rate", type=float, default=2000.0, help="trades/s over all symbols")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_demo(Path(tmp), args.symbols, args.rate)
        try:
            time.sleep(3)  # the demo's first windows; its symbols known to the engine
            results: dict[str, list[Counter[str]]] = {"baseline": [], "no trades": []}
            for run in range(args.runs):

                async def both() -> tuple[Counter[str], Counter[str]]:
                    base = measure(url, None, args.seconds)
                    lean = measure(url, False, args.seconds)
                    return await asyncio.gather(base, lean)

                base, lean = asyncio.run(both())
                results["baseline"].append(base)
                results["no trades"].append(lean)
                base_kib_s = sum(base.values()) / 1024 / args.seconds
                lean_kib_s = sum(lean.values()) / 1024 / args.seconds
                print(f"run {run + 1}/{args.runs}: baseline {base_kib_s:.1f} KiB/s, "
                      f"trades false {lean_kib_s:.1f} KiB/s", file=sys.stderr)  # fmt: skip
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
    print(f"/api/live payload for one chart ({KEY['symbol']} {KEY['interval']}), demo with "
          f"{args.symbols} symbols at {args.rate:,.0f} trades/s, {args.runs} runs of "
          f"{args.seconds:g} s: KiB/s median (min-max)")  # fmt: skip
    for name, runs in results.items():
        label = "baseline (candles and trades, as before)" if name == "baseline" else \
            'trades false (tape hidden)'  # fmt: skip
        total = [sum(c.values()) / 1024 / args.seconds for c in runs]
        kinds = sorted({k for c in runs for k in c})
        split = ", ".join(
            f"{k} {statistics.median(c[k] / 1024 / args.seconds for c in runs):.1f}" for k in kinds
        )
        print(f"  {label:42} {statistics.median(total):7.1f} ({min(total):.1f}-{max(total):.1f})"
              f"   by type: {split}")  # fmt: skip


if __name__ == "__main__":
    main()
