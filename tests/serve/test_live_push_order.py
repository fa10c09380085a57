"""The hub's `trades` messages, built once per engine step for every instrument: each
subscribed instrument gets exactly its trades of the step, in event-time order (arrival order
among equal times), and nobody gets an instrument it did not subscribe to."""

from __future__ import annotations

import json
import random

from tickpipe.records import SIDE_NAMES, Instrument, Trade, TradeBatch
from tickpipe.serve.live import Hub

SYMBOLS = ("BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT")


def step_of(rng: random.Random, n: int, text_ids: bool) -> tuple[TradeBatch, list[Trade]]:
    trades = [
        Trade(
            source="ex", exchange="ex", symbol=(symbol := rng.choice(SYMBOLS)),
            raw_symbol=symbol.replace("-", ""), trade_id=f"t{k}" if text_ids else str(1000 + k),
            seq=1000 + k, price=rng.uniform(1, 100), size=rng.uniform(0.1, 2),
            side=rng.choice(["buy", "sell", "unknown"]), ts=rng.randrange(5) * 1000,
            recv_ts=10_000 + k,
        )
        for k in range(n)
    ]  # fmt: skip
    return TradeBatch.from_trades(trades), trades


def expected_rows(trades: list[Trade], symbol: str) -> list[dict]:
    mine = sorted((t for t in trades if t.symbol == symbol), key=lambda t: t.ts)  # stable
    return [{"trade_id": t.trade_id, "seq": t.seq, "price": t.price, "size": t.size,
             "side": t.side, "ts": t.ts, "recv_ts": t.recv_ts} for t in mine]  # fmt: skip


def test_each_subscriber_gets_exactly_its_instruments_trades_in_event_time_order() -> None:
    rng = random.Random(7)
    for n, text_ids in [(1, False), (40, False), (40, True), (200, False)]:
        hub = Hub()
        both, one = hub.connect(), hub.connect()
        for symbol in SYMBOLS[:2]:
            hub.subscribe(both, "ex", symbol, "1s")
        hub.subscribe(one, "ex", "SOL-USDT", "1s")
        batch, trades = step_of(rng, n, text_ids)
        hub.publish([], batch)
        for sub, symbols in ((both, SYMBOLS[:2]), (one, ("SOL-USDT",))):
            got = {}
            for raw in sub.queue:
                message = json.loads(raw)
                assert message["type"] == "trades" and message["symbol"] not in got
                assert message["raw_symbol"] == message["symbol"].replace("-", "")
                got[message["symbol"]] = message["trades"]
            wanted = {s: rows for s in symbols if (rows := expected_rows(trades, s))}
            assert got == wanted
        assert hub.published_trades == sum(t.symbol in SYMBOLS[:3] for t in trades)
        assert set(SIDE_NAMES.values()) >= {
            t["side"] for m in both.queue for t in json.loads(m)["trades"]
        }


def test_an_instrument_nobody_watches_costs_no_message() -> None:
    hub = Hub()
    sub = hub.connect()
    hub.subscribe(sub, "ex", "XRP-USDT", "1s")
    batch, _ = step_of(random.Random(1), 30, False)
    batch = batch.take(batch.instrument != batch.instruments.index(
        Instrument("ex", "XRP-USDT", "XRPUSDT")))  # fmt: skip
    hub.publish([], batch)
    assert not sub.queue and hub.published_trades == 0
