"""Live pushes from a running Pipeline, over a real WebSocket on 127.0.0.1, in the same loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import websockets

from tickpipe.config import Config
from tickpipe.records import Trade, TradeBatch
from tickpipe.runners.embedded import Pipeline
from tickpipe.serve.live import Hub
from tickpipe.serve.server import bind, run_with_api, url_of
from tickpipe.serve.settings import ServeConfig
from tickpipe.sources.simulated import SimulatedMarket


def demo_pipeline(tmp_path: Path, hub: Hub, symbols: int, rate: float) -> Pipeline:
    config = Config(data_dir=str(tmp_path), intervals=["1s", "1m"], allowed_lateness_us=200_000,
                    idle_timeout_us=500_000)  # fmt: skip
    return Pipeline(config, [SimulatedMarket(symbols, rate, seed=3)], "demo", hub)


async def subscribe(ws, keys: list[dict]) -> dict:
    """Subscribe, retrying until the pipeline has seen the symbols (it starts empty)."""
    deadline = time.monotonic() + 5
    while True:
        await ws.send(json.dumps({"subscribe": keys}))
        while True:
            answer = json.loads(await ws.recv())
            if answer["type"] in ("subscribed", "error"):
                break
        if answer["type"] == "subscribed" or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(0.05)


BTC_1S = {"exchange": "simulated", "symbol": "BTC-USDT", "interval": "1s"}


def watch_live(
    pipeline: Pipeline,
    serve: ServeConfig | None = None,
    trusting: ssl.SSLContext | None = None,
    key: dict | None = None,
) -> tuple[dict, list[dict]]:
    """Run `pipeline` for 3 s with the API and one client subscribed to BTC-USDT 1s until the
    server stops: the subscription's answer and every message after it. With `serve`'s
    certificate the API is on TLS and the client (`trusting` its CA) is the dashboard's own
    https:// page: wss://, with the page's Origin."""
    sock = bind("127.0.0.1", 0)
    page = url_of(sock, tls=bool(serve and serve.tls_cert))
    url = page.replace("http", "ws", 1) + "/api/live"  # ws:// or wss://
    connect: dict[str, Any] = {"ssl": trusting, "origin": page} if trusting else {}
    received: list[dict] = []

    async def client() -> dict:
        async with websockets.connect(url, **connect) as ws:
            answer = await subscribe(ws, [key or BTC_1S])
            with contextlib.suppress(websockets.ConnectionClosed):
                async for raw in ws:
                    received.append(json.loads(raw))
            return answer

    async def main() -> dict:
        serving = asyncio.create_task(
            run_with_api(pipeline.api_context(), sock, None, pipeline.run(3.0), serve)
        )
        answer = await asyncio.wait_for(client(), 30)  # ends when the server stops
        await serving
        return answer

    try:
        return asyncio.run(main()), received
    finally:
        sock.close()


def test_live_websocket_receives_every_candle_update_and_trade_a_running_pipeline_pushes(
    tmp_path: Path,
) -> None:
    hub = Hub()
    pipeline = demo_pipeline(tmp_path, hub, symbols=5, rate=500)
    try:
        answer, received = watch_live(pipeline)
        pushed_trades = hub.published_trades
    finally:
        pipeline.close()

    assert answer == {"type": "subscribed", "keys": [["simulated", "BTC-USDT", "1s"]]}
    candles = [m for m in received if m["type"] == "candle"]
    batches = [m for m in received if m["type"] == "trades"]
    trades = [{**t, "symbol": m["symbol"]} for m in batches for t in m["trades"]]
    assert {(c["exchange"], c["symbol"], c["interval"]) for c in candles} == {
        ("simulated", "BTC-USDT", "1s")
    }
    assert len({c["start"] for c in candles}) >= 2  # updates over several seconds
    assert trades and {t["symbol"] for t in trades} == {"BTC-USDT"}
    assert not [m for m in received if m["type"] == "dropped"]
    assert len(trades) == pushed_trades  # every trade pushed reached this client
    for m in batches:  # each message: one instrument's trades in event-time order
        assert [t["ts"] for t in m["trades"]] == sorted(t["ts"] for t in m["trades"])

    # What was pushed is what the pipeline stored: each trade once, each final candle as stored.
    from tickpipe.stores.duckdb import DuckDBStore

    store = DuckDBStore(tmp_path / "tickpipe.duckdb", read_only=True)
    try:
        stored_ids = {r[0] for r in store.query(
            "SELECT trade_id FROM trades WHERE symbol = 'BTC-USDT'")}  # fmt: skip
        stored = {r[0]: r[1:] for r in store.query(
            "SELECT start, close, trades, volume FROM candles WHERE symbol = 'BTC-USDT' "
            "AND interval = '1s'")}  # fmt: skip
    finally:
        store.close()
    assert len({t["trade_id"] for t in trades}) == len(trades)
    assert {t["trade_id"] for t in trades} <= stored_ids
    finals = [c for c in candles if c["final"]]
    assert finals, "1-second windows close within the run"
    for c in finals:
        assert (c["close"], c["trades"], c["volume"]) == stored[c["start"]]


def run_busy_demo(tmp_path: Path, hub: Hub, slow_client: bool) -> Pipeline:
    """3 s of a busy market (20,000 trades/s); with `slow_client`, one subscriber to every
    symbol that stops reading after subscribing, so its socket buffers fill up."""
    pipeline = demo_pipeline(tmp_path, hub, symbols=20, rate=20_000)
    sock = bind("127.0.0.1", 0)
    url = url_of(sock).replace("http://", "ws://") + "/api/live"
    keys = [{"exchange": "simulated", "symbol": s, "interval": "1s"}
            for s in pipeline.sources[0].simulator.symbols]  # fmt: skip

    # Small socket buffers on both ends (an accepted socket inherits the listener's), so the
    # server's sends back up within the run instead of filling megabytes of kernel buffers.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

    async def client() -> None:
        tcp = socket.socket()
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        tcp.connect(sock.getsockname())
        tcp.setblocking(False)
        async with websockets.connect(
            url, sock=tcp, max_queue=1, max_size=2**20, close_timeout=0.5
        ) as ws:
            answer = await subscribe(ws, keys)
            assert answer["type"] == "subscribed", answer
            await asyncio.sleep(30)  # never reads again

    async def main() -> None:
        serving = asyncio.create_task(
            run_with_api(pipeline.api_context(), sock, None, pipeline.run(3.0))
        )
        reader = asyncio.create_task(client()) if slow_client else None
        await serving
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    try:
        asyncio.run(main())
    finally:
        sock.close()
        pipeline.close()
    return pipeline


def test_a_slow_websocket_client_loses_its_oldest_updates_and_never_slows_the_pipeline(
    tmp_path: Path,
) -> None:
    # The simulated market skips the time it waited in `emit`, so a pipeline slowed by the
    # slow client would show up as fewer trades than the same market without any client.
    alone = run_busy_demo(tmp_path / "alone", Hub(max_queue=100), slow_client=False)
    hub = Hub(max_queue=100)
    watched = run_busy_demo(tmp_path / "watched", hub, slow_client=True)

    assert hub.published_trades > 10_000
    assert hub.dropped > 0  # the slow client lost its oldest updates, counted...
    assert watched.counters.trades >= 0.8 * alone.counters.trades  # ...the pipeline kept up
    assert watched.counters.trades >= 0.99 * watched.stats["simulated"].trades


def test_a_full_subscriber_queue_drops_the_oldest_and_counts_it() -> None:
    from tickpipe.records import Candle

    hub = Hub(max_queue=3)
    sub = hub.connect()
    hub.subscribe(sub, "ex", "BTC-USDT", "1s")
    base = dict(exchange="ex", symbol="BTC-USDT", interval="1s", open=1.0, high=1.0, low=1.0,
                close=1.0, volume=1.0, quote_volume=1.0, vwap=1.0, mean_price=1.0, trades=1,
                buy_volume=1.0, sell_volume=0.0, first_seq=1, last_seq=1, final=False,
                revision=0, updated_at=0)  # fmt: skip
    hub.publish([Candle(start=s, **base) for s in range(5)])
    hub.publish([Candle(**{**base, "symbol": "ETH-USDT"}, start=9)])  # nobody asked for it
    assert [json.loads(m)["start"] for m in sub.queue] == [2, 3, 4]
    assert sub.dropped == hub.dropped == 2
    hub.disconnect(sub)
    assert hub.dropped == 2 and not hub.subscribers


def test_a_subscription_without_trades_gets_every_candle_update_and_no_trade(
    tmp_path: Path,
) -> None:
    hub = Hub()
    pipeline = demo_pipeline(tmp_path, hub, symbols=5, rate=500)
    try:
        answer, received = watch_live(pipeline, key={**BTC_1S, "trades": False})
        candles_pushed, trades_pushed = hub.published_candles, hub.published_trades
    finally:
        pipeline.close()
    assert answer == {"type": "subscribed", "keys": [["simulated", "BTC-USDT", "1s"]]}
    assert [m for m in received if m["type"] == "trades"] == []
    candles = [m for m in received if m["type"] == "candle"]
    assert len({c["start"] for c in candles}) >= 2
    assert len(candles) == candles_pushed and trades_pushed == 0


def _trades_of(*symbols: str) -> TradeBatch:
    return TradeBatch.from_trades([
        Trade(source="ex", exchange="ex", symbol=symbol, trade_id=f"{symbol}-{i}", seq=i,
              price=100.0 + i, size=1.0, ts=1_000_000 + i, recv_ts=2_000_000 + i)
        for symbol in symbols for i in range(3)
    ])  # fmt: skip


def test_the_newest_subscription_of_an_instrument_decides_whether_its_trades_are_pushed() -> None:
    hub = Hub()
    tape, chart_only = hub.connect(), hub.connect()
    hub.subscribe(tape, "ex", "BTC-USDT", "1s")  # as before `trades` existed: trades too
    hub.subscribe(chart_only, "ex", "BTC-USDT", "1s", trades=False)
    hub.publish([], _trades_of("BTC-USDT", "ETH-USDT"))
    pushed = [json.loads(m) for m in tape.queue]
    assert [(m["symbol"], [t["trade_id"] for t in m["trades"]]) for m in pushed] == [
        ("BTC-USDT", ["BTC-USDT-0", "BTC-USDT-1", "BTC-USDT-2"])
    ]
    assert not chart_only.queue

    hub.subscribe(tape, "ex", "BTC-USDT", "1m", trades=False)  # the tape was hidden
    hub.subscribe(chart_only, "ex", "BTC-USDT", "1s", trades=True)  # the tape was shown
    tape.queue.clear()
    hub.publish([], _trades_of("BTC-USDT"))
    assert not tape.queue
    assert [len(json.loads(m)["trades"]) for m in chart_only.queue] == [3]
    assert tape.candle_keys == {("ex", "BTC-USDT", "1s"), ("ex", "BTC-USDT", "1m")}
    hub.disconnect(chart_only)
    hub.disconnect(tape)
    hub.publish([], _trades_of("BTC-USDT"))
    assert hub.published_trades == 6
