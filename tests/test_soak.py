"""Soak: `tickpipe demo` at 50,000 trades/s, SIGKILLed at random moments and restarted on the
same data dir while clients hammer the API and the live WebSocket, then stopped with Ctrl-C.

Afterwards every trade is stored once and none that the pipeline had committed is lost, `tickpipe
verify` passes with nothing stale, each run's resident memory stayed under the bound, and the
restart times (process start until `/api/health` answers) are printed with the other figures
(`-s` shows them).

How "no trade lost or doubled" is checked. The simulated market numbers each symbol's trades
consecutively from one first id, the start time in µs times `SEQ_PER_US`, the same for every
symbol of a run; a restarted demo starts a new market, so run k's ids lie in
[launch_k, launch_k+1) x SEQ_PER_US (launch: when the test started that process). The store
writes trades in the order they were generated, so what a run stored is a prefix of what it
generated, and per run and symbol the stored ids must be exactly first_id, first_id + 1, ...
with one first_id for all symbols: a trade lost in the middle is a hole, a doubled one a repeat.
What a SIGKILL may lose is the tail the store had not committed yet (the market started from
scratch never generates it again); the test reads `tickpipe_trades_stored` from `/metrics` just
before each kill, and each symbol must have at least that many trades of that run afterwards.
The last run ends with SIGINT, so nothing may be missing there: its stored trades equal the
trades its summary says were accepted.

Settings (environment): TICKPIPE_SOAK_KILLS (3), TICKPIPE_SOAK_SECONDS of pipeline time over
all runs (60), TICKPIPE_SOAK_RATE (50000 trades/s), TICKPIPE_SOAK_RSS_MB (400),
TICKPIPE_SOAK_CLIENTS (4 HTTP clients; one WebSocket client besides), TICKPIPE_SOAK_SEED (14).

The RSS bound is 400 MB, not the 300 MB issue 14 aims at: runs on their own peaked at 225 - 288
MB, but in CI's full suite, with the other tests' servers beside it, a restarted run reached
381 MB. 400 MB still fails the replay restart this test caught before (403 - 665 MB).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from servers.demo import DemoServer, RssSampler
from websockets.exceptions import WebSocketException
from websockets.sync.client import connect

from tickpipe.sources.simulated import SEQ_PER_US, symbol_names


@dataclass(frozen=True)
class SoakSettings:
    kills: int = 3
    seconds: float = 60.0
    rate: float = 50_000.0
    rss_mb: float = 400.0  # see the module docstring
    clients: int = 4
    seed: int = 14

    @classmethod
    def from_env(cls) -> SoakSettings:
        """Defaults are CI's short soak; TICKPIPE_SOAK_<NAME> overrides each."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = os.environ.get(f"TICKPIPE_SOAK_{f.name.upper()}")
            if raw is not None:
                values[f.name] = int(raw) if f.type == "int" else float(raw)
        return cls(**values)


SOAK = SoakSettings.from_env()
BUSY_SYMBOLS = symbol_names(10)  # of the demo's 20: these trade many times a second
INTERVALS = ("1s", "5s", "1m")
HTTP_TIMEOUT_S = 30.0
MB = 2**20  # as ps and top count

pytestmark = [
    pytest.mark.slow,
    pytest.mark.soak,
    pytest.mark.timeout(round(SOAK.seconds + 120 * (SOAK.kills + 1) + 600)),
]


def now_us() -> int:
    return time.time_ns() // 1000


@dataclass
class Run:
    """One demo process: when the test launched it, when its API answered, how it ended."""

    launched_us: int
    ready_us: int
    started_in_s: float
    pid: int
    ended_us: int = 0
    committed: dict[str, int] = field(default_factory=dict)  # trades/symbol /metrics said stored


@dataclass
class Tally:
    """What the hammering clients got: acceptable answers by kind, and the unacceptable."""

    ok: int = 0
    over_budget: int = 0  # 503 with a reason: the API's read budget, acceptable
    unreachable: int = 0  # connection refused or cut: the demo was killed or restarting
    timeouts: int = 0
    ws_sessions: int = 0
    ws_frames: int = 0
    failures: int = 0
    first_failures: list[str] = field(default_factory=list)  # what the first few were
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str) -> None:
        with self.lock:
            setattr(self, kind, getattr(self, kind) + 1)

    def fail(self, what: str) -> None:
        with self.lock:
            self.failures += 1
            if len(self.first_failures) < 10:
                self.first_failures.append(what)

    def judge(self, path: str, answer: httpx.Response) -> None:
        """200 with JSON, or 503 with a JSON reason; anything else is a failure."""
        try:
            body = answer.json()
        except ValueError:
            body = None
        if answer.status_code == 200 and body is not None:
            self.add("ok")
        elif answer.status_code == 503 and isinstance(body, dict) and body.get("error"):
            self.add("over_budget")
        else:
            self.fail(f"GET {path}: {answer.status_code} {answer.text[:300]}")


def _request(rng: random.Random) -> tuple[str, dict[str, str]]:
    """One of the reads a dashboard user (or a script) makes, with random arguments."""
    symbol = {"exchange": "simulated", "symbol": rng.choice(BUSY_SYMBOLS)}
    return rng.choice([
        ("/api/candles", {**symbol, "interval": rng.choice(INTERVALS)}),
        ("/api/candles", {**symbol, "bucket": "1m", "lookback": "1h"}),
        ("/api/trades", {**symbol, "limit": "500"}),
        ("/api/analytics/top-exchanges", {"period": "1h"}),
        ("/api/analytics/top-tickers", {"period": "1h", "by": rng.choice(["trades", "volume"])}),
        ("/api/analytics/exchange/simulated", {"period": "1h"}),
        ("/api/kpis", {}),
    ])  # fmt: skip


def http_client(url: str, rng: random.Random, tally: Tally, stop: threading.Event) -> None:
    """GETs back to back until `stop`; through kills and restarts."""
    with httpx.Client(base_url=url, timeout=HTTP_TIMEOUT_S) as client:
        while not stop.is_set():
            path, params = _request(rng)
            try:
                answer = client.get(path, params=params)
            except httpx.TimeoutException:
                tally.add("timeouts")
                continue
            except httpx.TransportError:
                tally.add("unreachable")
                stop.wait(0.05)
                continue
            tally.judge(path, answer)


def ws_client(url: str, rng: random.Random, tally: Tally, stop: threading.Event) -> None:
    """Connect, subscribe to a few candles, read for a while, leave (the protocol's only
    unsubscribe), and again, until `stop`."""
    ws_url = url.replace("http://", "ws://") + "/api/live"
    while not stop.is_set():
        symbols = rng.sample(BUSY_SYMBOLS, 3)
        wanted = [{"exchange": "simulated", "symbol": s, "interval": rng.choice(INTERVALS)}
                  for s in symbols]  # fmt: skip
        try:
            with connect(ws_url, open_timeout=HTTP_TIMEOUT_S, close_timeout=5) as ws:
                tally.add("ws_sessions")
                ws.send(json.dumps({"subscribe": wanted}))
                leave = time.monotonic() + rng.uniform(0.2, 3.0)
                while time.monotonic() < leave and not stop.is_set():
                    try:
                        frame = json.loads(ws.recv(timeout=1.0))
                    except TimeoutError:
                        continue
                    kind = frame.get("type")
                    if kind in ("subscribed", "dropped") or (
                        kind in ("candle", "trades") and frame.get("symbol") in symbols
                    ):
                        tally.add("ws_frames")
                    else:
                        tally.fail(f"WebSocket frame {str(frame)[:300]} (asked for {wanted})")
        except (OSError, WebSocketException):
            tally.add("unreachable")
            stop.wait(0.05)


@contextmanager
def hammering(url: str, clients: int, seed: int) -> Iterator[Tally]:
    """`clients` HTTP clients and one WebSocket client on threads, for the `with` block."""
    tally, stop = Tally(), threading.Event()
    targets: list[Callable[..., None]] = [*[http_client] * clients, ws_client]
    threads = [
        threading.Thread(target=target, args=(url, random.Random(seed + i), tally, stop),
                         name=f"soak-client-{i}", daemon=True)
        for i, target in enumerate(targets)
    ]  # fmt: skip
    for thread in threads:
        thread.start()
    try:
        yield tally
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=HTTP_TIMEOUT_S + 10)


def committed_per_symbol(url: str) -> dict[str, int]:
    """Trades per symbol the running demo counts as written to the store (`/metrics`)."""
    text = httpx.get(url + "/metrics", timeout=HTTP_TIMEOUT_S).text
    return {
        sample.labels["symbol"]: int(sample.value)
        for family in text_string_to_metric_families(text)
        if family.name == "tickpipe_trades_stored"
        for sample in family.samples
        if sample.name == "tickpipe_trades_stored_total"
    }


def wait_for_stored_trades(demo: DemoServer, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answer = httpx.get(demo.url + "/api/exchanges", timeout=HTTP_TIMEOUT_S).json()
        names = {s["symbol"] for e in answer["exchanges"] for s in e["symbols"]}
        if set(BUSY_SYMBOLS) <= names and set(INTERVALS) <= set(answer["intervals"]):
            return
        time.sleep(0.1)
    pytest.fail(f"the first run stored no {INTERVALS} candles of {BUSY_SYMBOLS} in {timeout_s:g} s")


def accepted_by_last_run(log: str) -> int:
    """The trade count of the last summary in the demo's log (its clean stop)."""
    counts = re.findall(r"^\s+trades ([\d,]+) \(avg", log, re.MULTILINE)
    assert counts, f"no summary in the demo's log:\n{log[-3000:]}"
    return int(counts[-1].replace(",", ""))


def stored_by_run(db: Path, runs: list[Run]) -> list[dict[str, tuple[int, int, int, int]]]:
    """Per run, per symbol: (min id, max id, trades, distinct ids) of the ids in its range."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        out = []
        for k, run in enumerate(runs):
            low = run.launched_us * SEQ_PER_US
            high = runs[k + 1].launched_us * SEQ_PER_US if k + 1 < len(runs) else 2**63 - 1
            rows = con.execute(
                "SELECT symbol, min(seq), max(seq), count(*), count(DISTINCT seq) FROM trades "
                "WHERE exchange = 'simulated' AND seq >= $low AND seq < $high GROUP BY symbol",
                {"low": low, "high": high},
            ).fetchall()
            out.append({row[0]: row[1:] for row in rows})
        return out
    finally:
        con.close()


def store_totals(db: Path, first_id: int) -> tuple[int, int, int]:
    """Trades stored, distinct (exchange, symbol, trade_id), and trades that are not the
    market's: an id below the first run's or a trade_id other than its seq."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        row = con.execute(
            "SELECT count(*), count(DISTINCT (exchange, symbol, trade_id)), count(*) FILTER "
            "(WHERE seq < $first OR trade_id IS DISTINCT FROM CAST(seq AS VARCHAR)) FROM trades",
            {"first": first_id},
        ).fetchone()
    finally:
        con.close()
    assert row is not None
    return row


def id_problems(runs: list[Run], stored: list[dict[str, tuple[int, int, int, int]]]) -> list[str]:
    """What is wrong with each run's stored ids (see the module docstring); [] if nothing."""
    problems = []
    for k, (run, by_symbol) in enumerate(zip(runs, stored, strict=True)):
        firsts = {first for first, *_ in by_symbol.values()}
        earliest, latest = run.launched_us * SEQ_PER_US, run.ready_us * SEQ_PER_US
        if len(firsts) > 1:
            problems.append(f"run {k}: its symbols start at {len(firsts)} different ids")
        elif firsts and not earliest <= min(firsts) <= latest:
            problems.append(f"run {k}: first id {min(firsts)} is not its start time's")
        for symbol, (first, last, count, distinct) in sorted(by_symbol.items()):
            if distinct != count:
                problems.append(f"run {k} {symbol}: {count - distinct} trade ids stored twice")
            if last - first + 1 != distinct:
                problems.append(f"run {k} {symbol}: {last - first + 1 - distinct} ids missing "
                                f"between {first} and {last}")  # fmt: skip
        for symbol, committed in sorted(run.committed.items()):
            count = by_symbol.get(symbol, (0, 0, 0, 0))[2]
            if count < committed:
                problems.append(f"run {k} {symbol}: {count} trades stored, but /metrics said "
                                f"{committed} before the kill")  # fmt: skip
    return problems


def verify(data: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    """`tickpipe verify` on `data`, and how long it took (s)."""
    started = time.monotonic()
    check = subprocess.run(
        [sys.executable, "-m", "tickpipe", "verify", "--data-dir", str(data)],
        capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    return check, time.monotonic() - started


def test_demo_killed_at_random_and_restarted_under_load_loses_and_doubles_nothing(
    tmp_path: Path,
) -> None:
    rng = random.Random(SOAK.seed)
    data = tmp_path / "data"
    demo = DemoServer(data, "--rate", f"{SOAK.rate:g}", "--seed", str(SOAK.seed))
    mean_live_s = SOAK.seconds / (SOAK.kills + 1)
    runs: list[Run] = []
    tally: Tally | None = None
    with ExitStack() as stack:
        rss = stack.enter_context(RssSampler(lambda: demo.pid))
        stack.callback(demo.stop, kill=True)  # a failure leaves no demo behind
        for k in range(SOAK.kills + 1):
            launched_us = now_us()
            demo.start()
            assert demo.pid is not None
            runs.append(Run(launched_us, now_us(), demo.started_in_s, demo.pid))
            if tally is None:
                wait_for_stored_trades(demo)
                tally = stack.enter_context(hammering(demo.url, SOAK.clients, SOAK.seed))
            time.sleep(mean_live_s * rng.uniform(0.25, 1.75))
            if k < SOAK.kills:
                runs[-1].committed = committed_per_symbol(demo.url)
                code = demo.end(signal.SIGKILL)
                assert code == -signal.SIGKILL, demo.log_tail()
            else:
                code = demo.end(signal.SIGINT)
                assert code == 0, demo.log_tail()
            runs[-1].ended_us = now_us()
    assert tally is not None

    db = data / "tickpipe.duckdb"
    trades, distinct, foreign = store_totals(db, runs[0].launched_us * SEQ_PER_US)
    stored = stored_by_run(db, runs)
    per_run = [sum(count for _, _, count, _ in by_symbol.values()) for by_symbol in stored]
    check, verify_s = verify(data)
    peaks_mb = [rss.peak_bytes.get(run.pid, 0) / MB for run in runs]
    restarts_s = [run.started_in_s for run in runs[1:]]
    live_s = sum(run.ended_us - run.ready_us for run in runs) / 1e6
    print(
        f"\nsoak: {len(runs)} runs ({SOAK.kills} SIGKILLs, then SIGINT), {trades:,} trades "
        f"stored ({', '.join(f'{n:,}' for n in per_run)}), {trades / live_s:,.0f} trades/s "
        f"while live (asked {SOAK.rate:,.0f}), seed {SOAK.seed}\n"
        f"start until /api/health answers: first {runs[0].started_in_s:.2f} s; restarts "
        + (f"min {min(restarts_s):.2f} / median {statistics.median(restarts_s):.2f} / "
           f"max {max(restarts_s):.2f} s\n" if restarts_s else "none\n")
        + f"peak RSS per run (MB): {', '.join(f'{p:.0f}' for p in peaks_mb)} "
        f"(bound {SOAK.rss_mb:g})\nverify: {verify_s:.1f} s\n"
        f"clients: {tally.ok:,} answers, {tally.over_budget:,} over budget (503), "
        f"{tally.failures:,} unacceptable, "
        f"{tally.unreachable:,} unreachable, {tally.timeouts:,} timeouts; WebSocket "
        f"{tally.ws_sessions:,} sessions, {tally.ws_frames:,} frames"
    )  # fmt: skip

    assert trades == distinct, f"{trades - distinct} trades stored twice"
    assert foreign == 0, "trades whose ids the simulated market did not give"
    assert id_problems(runs, stored) == []
    assert per_run[0] > 0 and per_run[-1] > 0, per_run
    assert per_run[-1] == accepted_by_last_run(demo.log_path.read_text()), (
        "the cleanly stopped run did not store every trade it accepted"
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "0 mismatches" in check.stdout and "stale" not in check.stdout, check.stdout
    assert tally.failures == 0, tally.first_failures
    assert tally.ok > 0 and tally.ws_frames > 0, "the clients got no answer: they tested nothing"
    assert max(peaks_mb) <= SOAK.rss_mb, f"peak RSS {max(peaks_mb):.0f} MB"
