"""The API under heavy reads, and what they cost the pipeline writing beside it.

    python benchmarks/api_under_load.py --rate 10000 --seconds 20 --readers 16 --runs 3

Each run starts `tickpipe demo` as a user does (a subprocess: simulated market at `--rate`
trades/s, DuckDB store, API on a free port) twice: once with only a probe client (the
baseline), once with `--readers` clients that ask heavy questions back to back (the analytics
routes, the exchange list, an hour of 1s candles; after a 503 "busy" each waits the
Retry-After it was given). In both, the probe asks `/api/kpis` every
100 ms; its answers give the KPI latency and the write backlog: trades the engine accepted
minus trades the store holds (what waits in the writer). Reported per phase, min / median /
max over the runs: /api/kpis p50/p99, heavy-read p50/p99 and how many were answered 200 or 503
(busy or over budget), the backlog's mean and max, and the demo's CPU time per 1,000 stored
trades. All processes share the machine: note its load (`uptime`) with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Phase:
    kpis_ms: list[float] = field(default_factory=list)
    heavy_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    backlog: list[int] = field(default_factory=list)
    stored: int = 0
    cpu_s: float = 0.0

    def figures(self) -> dict[str, float]:
        def pct(values: list[float], q: float) -> float:
            return float(np.percentile(values, q)) if values else float("nan")

        return {
            "kpis p50 ms": pct(self.kpis_ms, 50), "kpis p99 ms": pct(self.kpis_ms, 99),
            "heavy p50 ms": pct(self.heavy_ms, 50), "heavy p99 ms": pct(self.heavy_ms, 99),
            "heavy 200": self.statuses.get(200, 0), "heavy 503": self.statuses.get(503, 0),
            "backlog mean": statistics.fmean(self.backlog) if self.backlog else float("nan"),
            "backlog max": max(self.backlog, default=0),
            "cpu ms/1k trades": 1e6 * self.cpu_s / self.stored if self.stored else float("nan"),
        }  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _probe(client: httpx.AsyncClient, phase: Phase, until: float) -> None:
    while time.monotonic() < until:
        t = time.perf_counter()
        answer = await client.get("/api/kpis")
        phase.kpis_ms.append(1000 * (time.perf_counter() - t))
        body = answer.json()
        if body.get("pipeline"):
            phase.backlog.append(body["pipeline"]["trades"] - body["stored_trades"])
            phase.stored = body["stored_trades"]
        await asyncio.sleep(0.1)


async def _reader(client: httpx.AsyncClient, paths: list[str], phase: Phase, until: float) -> None:
    i = 0
    while time.monotonic() < until:
        t = time.perf_counter()
        answer = await client.get(paths[i % len(paths)])
        phase.heavy_ms.append(1000 * (time.perf_counter() - t))
        phase.statuses[answer.status_code] = phase.statuses.get(answer.status_code, 0) + 1
        i += 1
        if answer.status_code == 503 and "Retry-After" in answer.headers:
            await asyncio.sleep(float(answer.headers["Retry-After"]))  # as a client should


async def _measure(url: str, readers: int, seconds: float, phase: Phase) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        deadline = time.monotonic() + 30
        while True:  # the API answers, and the store holds candles
            try:
                tops = (await client.get("/api/analytics/top-tickers")).json()
                if tops.get("tickers"):
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the demo's API did not answer with candles within 30 s")
            await asyncio.sleep(0.2)
        exchange = (await client.get("/api/analytics/top-exchanges")).json()["exchanges"][0]
        symbol = tops["tickers"][0]["symbol"]
        paths = [
            "/api/analytics/top-exchanges?period=1h", "/api/analytics/top-tickers?period=1h",
            f"/api/analytics/exchange/{exchange['exchange']}?period=1h", "/api/exchanges",
            f"/api/candles?exchange={exchange['exchange']}&symbol={symbol}&interval=1s"
            "&lookback=1h",
        ]  # fmt: skip
        until = time.monotonic() + seconds
        await asyncio.gather(
            _probe(client, phase, until),
            *(_reader(client, paths, phase, until) for _ in range(readers)),
        )


def run_phase(rate: float, symbols: int, seconds: float, readers: int) -> Phase:
    """One demo process, measured for `seconds` with `readers` heavy clients."""
    phase = Phase()
    port = _free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        demo = subprocess.Popen(
            [sys.executable, "-m", "tickpipe", "demo", "--quiet", "--data-dir", data_dir,
             "--port", str(port), "--rate", str(rate), "--symbols", str(symbols)],
            env=env, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            asyncio.run(_measure(f"http://127.0.0.1:{port}", readers, seconds, phase))
        finally:
            demo.terminate()
            _, _, usage = os.wait4(demo.pid, 0)
            phase.cpu_s = usage.ru_utime + usage.ru_stime
    return phase


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=10_000, help="demo trades/s")
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20, help="measured per phase")
    parser.add_argument("--readers", type=int, default=16, help="heavy-read clients")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"load before: {os.getloadavg()[0]:.2f}; rate {args.rate:,.0f}/s, {args.symbols} "
          f"symbols, {args.seconds:g} s per phase, {args.runs} runs", flush=True)  # fmt: skip
    results: dict[str, list[dict[str, float]]] = {"baseline": [], "readers": []}
    for run in range(args.runs):
        for name, readers in (("baseline", 0), ("readers", args.readers)):
            figures = run_phase(args.rate, args.symbols, args.seconds, readers).figures()
            results[name].append(figures)
            print(f"run {run + 1} {name}: " + ", ".join(f"{k} {v:.1f}" for k, v in
                                                      figures.items()), flush=True)  # fmt: skip
    print(f"\n{'':22}" + "".join(f"{name:>30}" for name in results))
    for key in results["baseline"][0]:
        cells = []
        for runs in results.values():
            values = sorted(r[key] for r in runs)
            cells.append(f"{values[0]:.1f} / {statistics.median(values):.1f} / {values[-1]:.1f}")
        print(f"{key:22}" + "".join(f"{c:>30}" for c in cells))
    print("(min / median / max over the runs)")


if __name__ == "__main__":
    main()
