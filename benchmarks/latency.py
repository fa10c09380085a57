"""End-to-end live latency: a trade frame reaching the source to its candle update reaching a
dashboard WebSocket client, with `tickpipe run` as a user runs it (a subprocess, untouched).

    python benchmarks/latency.py --rate 10000 --seconds 10

Three processes on one machine (one wall clock, so differences of `time.time_ns()` are valid):
- the fake Binance (`tests/fakes/binance_server.py`, so a source checkout is needed), feeding
  trades round-robin over the symbols at `--rate` (it starts once the live socket is open: a
  symbol can be subscribed only once the engine has seen it);
- `tickpipe run --endpoint binance=<fake> --no-symbol-check --quiet --port <free>`;
- this process: a WebSocket client on `/api/live`, subscribed to every symbol's 1s candles.

What is measured. The hub pushes each trade (`seq`, `recv_ts`: when the source's WebSocket
client got the frame batch) and each candle update (`last_seq`: its newest trade, `updated_at`:
the engine's wall clock when it built the update). For every pushed candle update the latency
is `client receive time - recv_ts of the trade last_seq names`. Reported separately:
- live updates (`final` false): the headline figure, compared with the 5 ms target;
- final updates (the window closed): they wait for `allowed_lateness` (2 s by default) by
  design, so their newest trade is seconds old; not a pipeline delay;
- the split of live updates into source -> engine emit (`updated_at - recv_ts`) and engine
  emit -> client (`receive - updated_at`);
- pushed trades (`receive - recv_ts`);
- per trade, the wait until the first candle update that includes it reaches the client. Open
  candles are pushed at most every `provisional_every` (250 ms by default), so this is mostly
  that throttle, not processing time; `--provisional-every 1ms` shows the figure without it.

Caveats. With the default throttle, 2 symbols give only ~10 live 1s-candle updates a second,
so the p99 of a 10 s run rests on ~100 samples (use `--seconds 60`). A subscription to candles
is also one to every trade of the symbol (the hub's rule), so the server pushes each trade too:
at 10,000 trades/s that is most of the send work. `recv_ts` is stamped per frame batch, and
batches queued behind a busy consumer are merged under the first one's stamp, which can only
make the figures larger. All three processes share the machine's CPUs (the report shows the
CPU seconds each used), so on a small machine they compete.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from baseline import baseline_src, env_running  # benchmarks/baseline.py

TARGET_P99_MS = 5.0
SYMBOLS = ("BTCUSDT", "ETHUSDT")
INTERVAL = "1s"
REPO = Path(__file__).resolve().parents[1]  # benchmarks/latency.py -> the checkout
_TEXT: Any = None  # picows's text frame type, in the fake's process


@dataclass
class Stats:
    count: int
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None

    @classmethod
    def of(cls, micros: list[int] | np.ndarray) -> Stats:
        values = np.asarray(micros, np.float64) / 1000.0
        if not len(values):
            return cls(0)
        p50, p90, p99 = np.percentile(values, [50, 90, 99]).tolist()
        return cls(len(values), p50, p90, p99, float(values.max()))

    def line(self, label: str) -> str:
        if not self.count:
            return f"{label:<34} count 0"
        return (
            f"{label:<34} count {self.count:>8}  p50 {self.p50_ms:8.2f}  p90 {self.p90_ms:8.2f}"
            f"  p99 {self.p99_ms:8.2f}  max {self.max_ms:8.2f}  (ms)"
        )


@dataclass
class LatencyResult:
    rate: float
    seconds: float
    warmup: float
    symbols: list[str]
    interval: str
    provisional_every: str | None
    fed_trades: int  # trades the fake wrote while measuring and warming up
    fed_rate: float  # what the fake achieved, trades per second
    pushed_trades: int  # trade messages the client got inside the measured window
    dropped: int  # messages the hub dropped for this client (it read too slowly)
    unmatched_candles: int  # candle updates whose newest trade was never pushed to the client
    live_updates: Stats = field(default_factory=lambda: Stats(0))
    final_updates: Stats = field(default_factory=lambda: Stats(0))
    source_to_emit: Stats = field(default_factory=lambda: Stats(0))
    emit_to_client: Stats = field(default_factory=lambda: Stats(0))
    trades: Stats = field(default_factory=lambda: Stats(0))
    trade_to_candle: Stats = field(default_factory=lambda: Stats(0))
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU seconds used, per process
    target_p99_ms: float = TARGET_P99_MS
    meets_target: bool | None = None
    label: str = "current"  # which tickpipe ran: "current" or the baseline's git ref
    cpu_window_s: float = 0.0  # CPU seconds of `tickpipe run` over the measured window
    wall_window_s: float = 0.0  # that window's wall seconds
    watched: int = 0  # symbols the client subscribed to (0: all)

    @property
    def processed_rate(self) -> float:
        """Trades/s tickpipe handled: every trade of a subscribed symbol is pushed to the
        client, and the feed goes round-robin over the symbols, so the pushed ones scaled by
        symbols / subscribed symbols."""
        share = len(self.symbols) / self.watched if self.watched else 1.0
        return self.pushed_trades * share / self.seconds if self.seconds else 0.0

    @property
    def cpu_s_per_million(self) -> float | None:
        """CPU seconds of `tickpipe run` per million trades it handled in the window."""
        handled = self.processed_rate * self.wall_window_s
        return self.cpu_window_s / handled * 1e6 if handled else None

    @property
    def core_pct(self) -> float:
        """`tickpipe run`'s share of one core over the window."""
        return 100 * self.cpu_window_s / self.wall_window_s if self.wall_window_s else 0.0

    def row(self) -> str:
        """One line of the live-efficiency table."""
        per_m = self.cpu_s_per_million
        live = self.live_updates
        return (
            f"{self.rate:>9,.0f} {self.label:>10} {self.fed_rate:>10,.0f} "
            f"{self.processed_rate:>10,.0f} {self.core_pct:>7.1f}% "
            f"{per_m if per_m is not None else float('nan'):>9.2f} "
            f"{live.p50_ms or float('nan'):>8.2f} {live.p99_ms or float('nan'):>8.2f} "
            f"{self.trades.p99_ms or float('nan'):>9.2f} {live.count:>7}"
        )

    def as_dict(self) -> dict:
        return {**asdict(self), "processed_rate": self.processed_rate,
                "cpu_s_per_million": self.cpu_s_per_million, "core_pct": self.core_pct}  # fmt: skip

    def report(self) -> str:
        setting = self.provisional_every or "default (250ms)"
        lines = [
            f"tickpipe live latency: {self.rate:g} trades/s asked, {self.fed_rate:,.0f} fed, "
            f"{len(self.symbols)} symbols, {self.interval} candles, {self.seconds:g} s measured "
            f"after {self.warmup:g} s warm-up, provisional_every {setting}",
            f"pushed trades {self.pushed_trades}, hub drops {self.dropped}, "
            f"unmatched candle updates {self.unmatched_candles}",
            f"CPU seconds on {os.cpu_count()} CPUs: "
            + ", ".join(f"{k} {v:.1f}" for k, v in self.cpu_s.items()),
            f"tickpipe run ({self.label}) over the measured window: {self.cpu_window_s:.2f} "
            f"CPU s in {self.wall_window_s:.2f} s ({self.core_pct:.1f}% of a core), "
            f"{self.processed_rate:,.0f} trades/s handled, "
            + (
                f"{self.cpu_s_per_million:.2f} CPU s per million trades"
                if self.cpu_s_per_million is not None
                else "no trades handled"
            ),
            "",
            "trade frame at source -> candle update at dashboard client:",
            self.live_updates.line("  live (open-candle) updates"),
            self.final_updates.line("  final updates (wait for lateness)"),
            "live updates, split:",
            self.source_to_emit.line("  source -> engine emit"),
            self.emit_to_client.line("  engine emit -> client"),
            self.trades.line("pushed trades: source -> client"),
            self.trade_to_candle.line("each trade -> first update with it"),
            "",
        ]
        p99 = self.live_updates.p99_ms
        if p99 is None:
            lines.append("verdict: no live candle updates were measured")
        else:
            verdict = "MET" if self.meets_target else "NOT MET"
            lines.append(
                f"verdict: target p99 <= {self.target_p99_ms:g} ms {verdict} "
                f"(live updates p99 {p99:.2f} ms)"
            )
        return "\n".join(lines)


# -- the fake exchange, in its own process --------------------------------------------------


async def _lean_feed(server: Any, rate: float, fed: list[int]) -> None:
    """Trade frames round-robin over the server's symbols at `rate`, one trade per frame,
    written straight to the subscribed connections: the fake's own `feed` makes and keeps a
    dict per trade (about 10 µs), which at 100,000 trades/s would need a core of its own.
    The frames are those of `FakeBinance.trade` (combined-stream form); `fed[0]` counts them."""
    symbols = list(server.symbols)
    heads = [f'{{"stream":"{s.lower()}@trade","data":{{"e":"trade","E":'.encode() for s in symbols]
    mids = [f',"s":"{s}","t":'.encode() for s in symbols]
    ids = [1_000_000] * len(symbols)
    prices = [100.0 * (n + 1) for n in range(len(symbols))]
    streams = [f"{s.lower()}@trade" for s in symbols]
    route: list[Any] = [None] * len(symbols)
    start = time.monotonic()
    next_route = 0.0
    n = 0
    while True:
        now_s = time.monotonic()
        if now_s >= next_route:  # who subscribed what (a reconnect subscribes anew)
            next_route = now_s + 0.1
            conns = [c for c in server.open_connections() if c.combined]
            route = [next((c for c in conns if st in c.streams), None) for st in streams]
        due = int((now_s - start) * rate) + 1 - n
        now_ms = str(time.time_ns() // 1_000_000).encode()
        for _ in range(max(due, 0)):
            k = n % len(symbols)
            n += 1
            conn = route[k]
            if conn is None or not conn.open:
                continue
            ids[k] += 1
            price = prices[k] * (1 + ((n * 7919) % 201 - 100) * 1e-6)
            frame = b"".join((
                heads[k], now_ms, mids[k], str(ids[k]).encode(),
                f',"p":"{price:.8f}","q":"{(n % 97 + 1) * 0.001:.8f}","T":'.encode(), now_ms,
                b',"m":true,"M":true}}' if n & 1 else b',"m":false,"M":true}}',
            ))  # fmt: skip
            conn.transport.send(_TEXT, frame)
            fed[0] += 1
        await asyncio.sleep(min(0.001, 1 / rate))


def _fake_main(rate: float, symbols: list[str], lean: bool = False) -> None:
    """Serve the fake Binance; feed on `go` (stdin), print what was fed on `stop` or EOF.

    `lean`: feed with `_lean_feed` (the live-efficiency runs at up to 100,000 trades/s)."""
    sys.path.insert(0, str(REPO / "tests"))
    from fakes.binance_server import FakeBinance  # a test helper: needs the source checkout

    global _TEXT
    from picows import WSMsgType

    _TEXT = WSMsgType.TEXT

    async def serve() -> None:
        async with FakeBinance(symbols) as server:
            print(json.dumps({"url": server.url, "rest_url": server.rest_url}), flush=True)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, sys.stdin.readline)  # "go"
            start = time.monotonic()
            counter = [0]
            feed = _lean_feed(server, rate, counter) if lean else server.feed(rate)
            feeding = asyncio.create_task(feed)
            await loop.run_in_executor(None, sys.stdin.readline)  # "stop" or EOF
            elapsed = time.monotonic() - start
            feeding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeding
            fed = counter[0] if lean else len(server.published)
            print(json.dumps({"fed": fed, "elapsed": elapsed}), flush=True)

    asyncio.run(serve())


# -- the benchmark ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux); -1 when unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return -1.0


def _normalized(raw: str) -> str:
    for quote in ("USDT", "USDC", "BTC", "ETH"):
        if raw.endswith(quote) and len(raw) > len(quote):
            return f"{raw[: -len(quote)]}-{quote}"
    raise ValueError(f"cannot split {raw!r}")


async def _client(
    url: str, symbols: list[str], fake: subprocess.Popen, tickpipe: subprocess.Popen,
    warmup: float, seconds: float,
) -> tuple[list, list, int, int, tuple[float, float]]:  # fmt: skip
    """Subscribe, start the feed, record every push; (trades, candles, t_start_us, dropped,
    (CPU seconds of `tickpipe run`, wall seconds) over the measured window)."""
    import aiohttp

    trades: list[tuple[str, int, int, int]] = []  # symbol, seq, recv_ts, client receive
    candles: list[tuple[str, int, bool, int, int]] = []  # symbol, last_seq, final, upd, receive
    dropped = 0
    cpu_from: tuple[float, float] | None = None  # tickpipe's CPU seconds, monotonic time
    decode = msgspec.json.decode
    async with aiohttp.ClientSession() as session:
        deadline = time.monotonic() + 60
        while True:
            if tickpipe.poll() is not None:
                raise RuntimeError(f"tickpipe run exited with {tickpipe.returncode}")
            try:
                ws = await session.ws_connect(url, max_msg_size=0)
                break
            except aiohttp.ClientError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        async with ws:
            # A symbol can be subscribed once the engine has seen it: feed first, then ask
            # until every symbol is known. Pushes before the answer are not recorded.
            assert fake.stdin is not None
            fake.stdin.write("go\n")
            fake.stdin.flush()
            wanted = [{"exchange": "binance", "symbol": s, "interval": INTERVAL} for s in symbols]
            while True:
                await ws.send_str(json.dumps({"subscribe": wanted}))
                answer = json.loads((await ws.receive(timeout=30)).data)
                if answer.get("type") == "subscribed":
                    break
                if answer.get("status") != 404 or time.monotonic() > deadline:
                    raise RuntimeError(f"subscribe refused: {answer}")
                await asyncio.sleep(0.05)
            start_us = time.time_ns() // 1000
            measure_at = time.monotonic() + warmup
            end = measure_at + seconds
            while (left := end - time.monotonic()) > 0:
                if cpu_from is None and time.monotonic() >= measure_at:
                    cpu_from = (_cpu_s(tickpipe.pid), time.monotonic())
                wait = left if cpu_from else min(left, max(0.001, measure_at - time.monotonic()))
                try:
                    msg = await ws.receive(timeout=wait)
                except TimeoutError:
                    continue
                now = time.time_ns() // 1000
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise RuntimeError(f"the live socket ended: {msg.type} {msg.data!r}")
                data = decode(msg.data)
                kind = data.get("type")
                if kind == "trades":
                    trades.extend((data["symbol"], t["seq"], t["recv_ts"], now)
                                  for t in data["trades"])  # fmt: skip
                elif kind == "candle":
                    if data["interval"] == INTERVAL:
                        candles.append((data["symbol"], data["last_seq"], data["final"],
                                        data["updated_at"], now))  # fmt: skip
                elif kind == "dropped":
                    dropped = int(data["count"])
            cpu_to = (_cpu_s(tickpipe.pid), time.monotonic())
    if cpu_from is None:
        cpu_from = cpu_to
    window = (cpu_to[0] - cpu_from[0], cpu_to[1] - cpu_from[1])
    return trades, candles, start_us, dropped, window


def _analyse(trades: list, candles: list, measure_from: int) -> dict[str, Stats | int]:
    recv = {(sym, seq): recv_ts for sym, seq, recv_ts, _ in trades}
    # The subscription starts once the engine has seen a symbol, so the first updates may
    # name a trade pushed before it: those cannot be matched and are not counted.
    first_pushed: dict[str, int] = {}
    for sym, seq, _, _ in trades:
        first_pushed[sym] = min(seq, first_pushed.get(sym, seq))
    live, final, to_emit, to_client = [], [], [], []
    unmatched = 0
    for sym, last_seq, is_final, updated_at, got in candles:
        if got < measure_from or last_seq < first_pushed.get(sym, last_seq + 1):
            continue
        recv_ts = recv.get((sym, last_seq))
        if recv_ts is None:
            unmatched += 1
            continue
        if is_final:
            final.append(got - recv_ts)
        else:
            live.append(got - recv_ts)
            to_emit.append(updated_at - recv_ts)
            to_client.append(got - updated_at)
    pushed = [got - recv_ts for _, _, recv_ts, got in trades if got >= measure_from]
    # Each trade's wait for the first candle update (of its symbol) that includes it.
    waits: list[int] = []
    by_symbol: dict[str, list[tuple[int, int]]] = {}
    for sym, last_seq, _, _, got in candles:
        by_symbol.setdefault(sym, []).append((last_seq, got))
    trades_of: dict[str, list[tuple[int, int]]] = {}
    for s, seq, r, got in trades:
        if got >= measure_from:
            trades_of.setdefault(s, []).append((seq, r))
    for sym, updates in by_symbol.items():
        seqs = np.array([u[0] for u in updates], np.int64)
        times = np.array([u[1] for u in updates], np.int64)
        covered = np.maximum.accumulate(seqs)  # updates arrive in order; a final may repeat
        mine = trades_of.get(sym, [])
        if not mine:
            continue
        tseq = np.array([m[0] for m in mine], np.int64)
        trecv = np.array([m[1] for m in mine], np.int64)
        first = np.searchsorted(covered, tseq, side="left")
        ok = first < len(covered)
        waits.extend((times[first[ok]] - trecv[ok]).tolist())
    return {
        "live_updates": Stats.of(live), "final_updates": Stats.of(final),
        "source_to_emit": Stats.of(to_emit), "emit_to_client": Stats.of(to_client),
        "trades": Stats.of(pushed), "trade_to_candle": Stats.of(waits),
        "unmatched_candles": unmatched, "pushed_trades": len(pushed),
    }  # fmt: skip


def measure_latency(
    rate: float = 10_000, seconds: float = 10.0, warmup: float = 1.0,
    symbols: tuple[str, ...] = SYMBOLS, provisional_every: str | None = None,
    log=print, src: Path | None = None, label: str = "current", lean: bool = False,
    watch: int | None = None,
) -> LatencyResult:  # fmt: skip
    """Run the fake exchange, `tickpipe run` and a live client; measure (see the module doc).

    `src`: the `src` folder of the tickpipe to run (default: this checkout's); `lean`: the
    fake feeds with `_lean_feed` (cheap enough for 100,000 trades/s); `watch`: the client
    subscribes to the first this many symbols only (default: all)."""
    if not (REPO / "tests" / "fakes" / "binance_server.py").exists():
        raise RuntimeError(f"needs a source checkout: {REPO / 'tests/fakes'} is missing")
    env = env_running(
        src or REPO / "src", {k: v for k, v in os.environ.items() if not k.startswith("TICKPIPE_")}
    )
    if provisional_every is not None:
        env["TICKPIPE_PROVISIONAL_EVERY"] = provisional_every
    names = [_normalized(s) for s in symbols]
    fake = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--fake-server", "--rate", str(rate),
         "--symbols", ",".join(symbols), *(["--lean-feed"] if lean else [])],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    tickpipe: subprocess.Popen | None = None
    try:
        assert fake.stdout is not None
        urls = json.loads(fake.stdout.readline() or "null")
        if not urls:
            raise RuntimeError("the fake exchange did not start")
        port = _free_port()
        with tempfile.TemporaryDirectory(prefix="tickpipe-bench-latency-") as tmp:
            argv = [sys.executable, "-m", "tickpipe", "run", "--quiet", "--data-dir", tmp,
                    "--exchange", "binance", "--endpoint", f"binance={urls['url']}",
                    "--rest-endpoint", f"binance={urls['rest_url']}", "--no-symbol-check",
                    "--port", str(port), *[a for n in names for a in ("--symbol", n)]]  # fmt: skip
            log(f"running: tickpipe run ... --port {port} against the fake at {urls['url']}")
            errors = open(Path(tmp) / "stderr.txt", "w+")  # noqa: SIM115 (a pipe could fill)
            tickpipe = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=errors, text=True, env=env
            )
            try:
                trades, candles, start_us, dropped, window = asyncio.run(_client(
                    f"ws://127.0.0.1:{port}/api/live", names[:watch], fake, tickpipe, warmup,
                    seconds,
                ))  # fmt: skip
            except Exception as exc:
                if tickpipe.poll() is None:
                    raise
                errors.seek(0)
                err = errors.read()[-2000:]
                raise RuntimeError(f"{exc}; tickpipe run said: {err.strip()}") from exc
            cpu = {"fake exchange": _cpu_s(fake.pid), "tickpipe run": _cpu_s(tickpipe.pid),
                   "client": time.process_time()}  # fmt: skip
            assert fake.stdin is not None
            fake.stdin.write("stop\n")
            fake.stdin.flush()
            fed = json.loads(fake.stdout.readline() or '{"fed": 0, "elapsed": 0}')
            tickpipe.send_signal(signal.SIGINT)
            try:
                tickpipe.wait(timeout=30)
            except subprocess.TimeoutExpired:
                tickpipe.kill()
                tickpipe.wait()
            errors.seek(0)
            err = errors.read()
            errors.close()
            if err.strip():
                log("tickpipe run stderr (tail): " + err.strip()[-1000:])
            if tickpipe.returncode != 0:
                raise RuntimeError(f"tickpipe run exited with {tickpipe.returncode}: {err[-2000:]}")
    finally:
        for proc in (tickpipe, fake):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    figures = _analyse(trades, candles, start_us + int(warmup * 1e6))
    result = LatencyResult(
        rate=rate, seconds=seconds, warmup=warmup, symbols=names, interval=INTERVAL,
        provisional_every=provisional_every, fed_trades=int(fed["fed"]),
        fed_rate=fed["fed"] / fed["elapsed"] if fed["elapsed"] else 0.0, dropped=dropped,
        cpu_s={k: round(v, 2) for k, v in cpu.items() if v >= 0},
        label=label, cpu_window_s=window[0], wall_window_s=window[1],
        watched=len(names[:watch]),
        **figures,  # type: ignore[arg-type]
    )  # fmt: skip
    p99 = result.live_updates.p99_ms
    result.meets_target = None if p99 is None else p99 <= TARGET_P99_MS
    return result


TABLE_HEAD = (
    f"{'trades/s':>9} {'tickpipe':>10} {'fed/s':>10} {'handled/s':>10} {'core':>8} "
    f"{'CPU-s/M':>9} {'p50 ms':>8} {'p99 ms':>8} {'trade p99':>9} {'updates':>7}"
)


def _symbol_names(spec: str) -> list[str]:
    """`--symbols`: Binance raw symbols, comma-separated, or a count (`50`: 50 made-up ones)."""
    if spec.strip().isdigit():
        count = int(spec)
        letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        return [f"Q{letters[n // 26 % 26]}{letters[n % 26]}USDT" for n in range(count)]
    return [s.strip().upper() for s in spec.split(",") if s.strip()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=10_000, help="trades/s over all symbols")
    parser.add_argument(
        "--rates", default=None,
        help="several rates in one run, comma-separated (e.g. 1000,10000,100000): one table row "
        "per rate and tickpipe, CPU-s per million trades",
    )  # fmt: skip
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds not measured first")
    parser.add_argument(
        "--symbols", default=",".join(SYMBOLS),
        help="Binance raw symbols, comma-separated, or a count (50: made-up symbols)",
    )  # fmt: skip
    parser.add_argument(
        "--watch", type=int, default=None, metavar="N",
        help="the client subscribes to the first N symbols only (a dashboard shows a few "
        "charts; default all)",
    )  # fmt: skip
    parser.add_argument(
        "--baseline", default=None, metavar="REF",
        help="also run the tickpipe of this git ref (its src/, via git archive) at each rate",
    )  # fmt: skip
    parser.add_argument(
        "--provisional-every",
        default=None,
        help="tickpipe's provisional_every (default: tickpipe's own, 250ms)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--fake-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--lean-feed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    symbols = _symbol_names(args.symbols)
    if args.fake_server:
        _fake_main(args.rate, symbols, args.lean_feed)
        return

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if args.rates is None and args.baseline is None:
        result = measure_latency(
            args.rate, args.seconds, args.warmup, tuple(symbols), args.provisional_every, log,
            watch=args.watch,
        )  # fmt: skip
        print(json.dumps(result.as_dict(), indent=2) if args.json else result.report())
        return
    rates = [float(r) for r in (args.rates or str(args.rate)).split(",") if r.strip()]
    results: list[LatencyResult] = []
    with tempfile.TemporaryDirectory(prefix="tickpipe-bench-baseline-") as tmp:
        variants: list[tuple[str, Path | None]] = [("current", None)]
        if args.baseline:
            variants.insert(0, (args.baseline, baseline_src(args.baseline, Path(tmp))))
        for rate in rates:
            for label, src in variants:
                log(f"-- {rate:,.0f} trades/s, tickpipe {label}")
                result = measure_latency(
                    rate, args.seconds, args.warmup, tuple(symbols), args.provisional_every,
                    log, src=src, label=label, lean=True, watch=args.watch,
                )  # fmt: skip
                log(result.report())
                results.append(result)
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
        return
    load = os.getloadavg()
    print(
        f"live efficiency and latency: `tickpipe run` fed one trade per frame over "
        f"{len(symbols)} symbols ({args.watch or len(symbols)} watched by the /api/live "
        f"client), {args.seconds:g} s measured after {args.warmup:g} s, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} CPUs"
    )
    print("core: CPU of `tickpipe run` / wall; CPU-s/M: its CPU seconds per million trades; "
          "p50/p99: trade received -> live candle update at an /api/live client")  # fmt: skip
    print(TABLE_HEAD)
    for result in results:
        print(result.row())
    if args.baseline:
        for rate in rates:
            base, now = (next(r for r in results if r.rate == rate and r.label == lab)
                         for lab in (args.baseline, "current"))  # fmt: skip
            if base.cpu_s_per_million and now.cpu_s_per_million:
                ratio = now.cpu_s_per_million / base.cpu_s_per_million
                print(f"{rate:>9,.0f} trades/s: CPU per trade {ratio:.2f}x the baseline's")


if __name__ == "__main__":
    main()
