"""The composite price and the data-quality figures in a real embedded pipeline: three venues
replayed from one file into DuckDB, one of them 30% off the others."""

from __future__ import annotations

import asyncio
import random
import statistics
from collections import defaultdict
from pathlib import Path

import httpx
import msgspec
import pytest

from tickpipe.config import Config
from tickpipe.engine.composite_settings import COMPOSITE, CompositeSettings
from tickpipe.monitor.alerts.config import AlertRule, AlertsConfig
from tickpipe.records import Candle, Trade
from tickpipe.runners.embedded import Pipeline
from tickpipe.runtime.clock import ManualClock
from tickpipe.serve.app import create_app
from tickpipe.sources.replay import FileReplay, write_trades
from tickpipe.verify import verify

S = 1_000_000
T0 = 1_800_000_000 * S
VENUES = {"binance": "BTC-USDT", "coinbase": "BTC-USD", "kraken": "BTC-USD"}


def market(seconds: int = 20) -> dict[str, list[Trade]]:
    """Per venue: trades of one random walk; Kraken prints 30% above it."""
    rng = random.Random(11)
    price, seq = 60_000.0, 0
    out: dict[str, list[Trade]] = defaultdict(list)
    for k in range(seconds * 10):
        price *= 1 + rng.uniform(-5e-4, 5e-4)
        ts = T0 + k * 100_000
        for venue, symbol in VENUES.items():
            seq += 1
            p = price * (1.3 if venue == "kraken" else 1 + rng.uniform(-1e-4, 1e-4))
            out[venue].append(Trade(
                source=venue, exchange=venue, symbol=symbol, trade_id=str(seq), seq=seq,
                price=round(p, 2), size=0.01 * (1 + seq % 5), side="buy", ts=ts,
                recv_ts=ts + 1000 * (1 + seq % 7),
            ))  # fmt: skip
    return out


@pytest.fixture
def pipeline(tmp_path: Path):
    trades = market()
    path = tmp_path / "tape.jsonl"  # the three venues' trades in event-time order, as live
    write_trades(path, sorted((t for rows in trades.values() for t in rows), key=lambda t: t.ts))
    sources = [FileReplay(path, speed=None, batch_size=50, name="tape")]
    rule = AlertRule(name="venue-off", kind="venue_deviation", threshold=5.0)
    config = Config(
        data_dir=str(tmp_path / "data"), intervals=["1s", "5s"],
        composite=CompositeSettings(equivalent_quotes=["USD/USDT"]),
        alerts=AlertsConfig(rules=[rule]),
    )  # fmt: skip
    last = max(t.recv_ts for rows in trades.values() for t in rows)
    clock = ManualClock(now_us=last + S)
    p = Pipeline(config, sources, "run", clock=clock)
    try:
        assert p.restore()
        asyncio.run(asyncio.wait_for(p.run(), timeout=60))
    except BaseException:
        p.close()
        raise
    yield p, trades
    p.close()


def reference(venue_candles: list[Candle]) -> dict[tuple[str, int], dict]:
    """The composite of each stored window from the stored venue candles: the venues whose
    close is within 1% of the median close, averaged."""
    windows: dict[tuple[str, int], list[Candle]] = defaultdict(list)
    for c in venue_candles:
        windows[(c.interval, c.start)].append(c)
    out = {}
    for key, candles in windows.items():
        median = statistics.median(c.close for c in candles)
        used = [c for c in candles if abs(c.close - median) <= median / 100]
        out[key] = {
            "close": statistics.fmean(c.close for c in used),
            "high": statistics.fmean(c.high for c in used),
            "volume": sum(c.volume for c in used),
            "final": all(c.final for c in candles),
            "exchanges": sorted(c.exchange for c in used),
        }
    return out


def test_the_stored_composite_follows_the_two_good_venues_and_verify_passes(pipeline) -> None:
    p, _ = pipeline
    store = p.store
    p.writer.flush()
    candles = [c for i in ("1s", "5s") for c in store.stored_candles(i)]
    composite = {(c.interval, c.start): c for c in candles if c.exchange == COMPOSITE}
    want = reference([c for c in candles if c.exchange != COMPOSITE])
    assert composite.keys() == want.keys() and len(want) > 20
    for key, c in composite.items():
        assert c.symbol == "BTC-USD"
        assert want[key]["exchanges"] == ["binance", "coinbase"]
        for name in ("close", "high", "volume"):
            assert getattr(c, name) == pytest.approx(want[key][name], rel=1e-12)
        assert c.final == want[key]["final"]
    assert verify(store).ok  # composites are not recomputed from trades, nor reported extra


def test_the_status_metrics_and_alerts_show_quality_and_the_deviating_venue(pipeline) -> None:
    p, trades = pipeline
    status = p.status()
    assert {v: q.received for v, q in status.quality.items()} == {
        v: len(rows) for v, rows in trades.items()
    }
    for venue, q in status.quality.items():
        delays_ms = sorted((t.recv_ts - t.ts) / 1000 for t in trades[venue])
        assert delays_ms[0] <= q.delay_p50_ms <= 1.2 * delays_ms[len(delays_ms) // 2]
        assert (q.out_of_order, q.duplicates, q.future, q.gaps) == (0, 0, 0, 0)
    (btc,) = status.composites
    rows = {v.exchange: v for v in btc.venues}
    assert not rows["kraken"].included and rows["binance"].included
    assert rows["kraken"].deviation_pct == pytest.approx(
        (rows["kraken"].price - btc.price) / btc.price * 100
    )
    assert rows["kraken"].deviation_pct > 25
    text = p.monitor.metrics.render().decode()
    assert (
        f'tickpipe_venue_trades_received_total{{exchange="kraken"}} {len(trades["kraken"])}.0'
        in text
    )
    assert 'tickpipe_venue_deviation_percent{composite="BTC-USD",exchange="kraken"' in text
    changed = p.monitor.step(p.clock.now_us())
    assert [(a.rule, a.labels["exchange"], a.state) for a in changed] == [
        ("venue-off", "kraken", "firing")
    ]
    assert msgspec.json.encode(changed[0])  # kept and notified like any alert


def test_the_api_answers_quality_composite_and_the_composite_candles(pipeline) -> None:
    p, trades = pipeline
    p.writer.flush()
    app = create_app(p.api_context())

    async def fetch() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return [
                await client.get("/api/quality"),
                await client.get("/api/composite"),
                await client.get("/api/candles", params={
                    "exchange": "composite", "symbol": "BTC-USD", "interval": "1s",
                    "start": T0 // 1000, "end": (T0 + 60 * S) // 1000}),
            ]  # fmt: skip

    quality, composite, candles = asyncio.run(fetch())
    venues = {v["exchange"]: v for v in quality.json()["venues"]}
    assert {v: q["received"] for v, q in venues.items()} == {v: len(t) for v, t in trades.items()}
    (btc,) = composite.json()["composites"]
    assert btc["symbol"] == "BTC-USD" and btc["price"] == p.status().composites[0].price
    assert [v["exchange"] for v in btc["venues"] if not v["included"]] == ["kraken"]
    stored = [c for c in p.store.stored_candles("1s") if c.exchange == COMPOSITE]
    assert [c["close"] for c in candles.json()["candles"]] == [c.close for c in stored]
