"""`tickpipe backfill` against each exchange's fake REST server: exactly the published trades of
the range, candles equal to the batch recomputation (`tickpipe verify`), through scripted
pagination, rate limits and a failure in the middle; `--gaps` fills only the holes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fakes import async_test
from fakes.binance_server import FakeBinance
from fakes.bitstamp_server import FakeBitstamp
from fakes.coinbase_server import FakeCoinbase
from fakes.kraken_server import FakeKraken
from fakes.okx_server import FakeOkx

from tickpipe.engine.candles import CandleEngine, EngineConfig
from tickpipe.engine.windows import parse_window
from tickpipe.history.backfill import Backfiller, Task
from tickpipe.history.exchanges import HistoryError, history_of
from tickpipe.history.gaps import find_gaps
from tickpipe.history.state import BackfillState
from tickpipe.records import Trade, TradeBatch
from tickpipe.runtime.writer import REPLAY_FROM, STATE
from tickpipe.sources.rest import RestConfig
from tickpipe.stores.base import Store
from tickpipe.stores.duckdb import DuckDBStore
from tickpipe.stores.flush import Flush
from tickpipe.verify import verify

HOUR_US = 3_600_000_000
T0_US = 1_780_000_000_000_000 - 1_780_000_000_000_000 % HOUR_US  # an hour's start, in the past
CONFIG = EngineConfig(windows=tuple(parse_window(w) for w in ("1s", "1m", "5m", "1h", "5m/1m")))
FAST_REST = RestConfig(timeout=5.0, attempts=3, backoff_initial=0.01, backoff_max=0.05)

EXCHANGES = ("binance", "kraken", "okx", "coinbase", "bitstamp", "ccxt")
Row = tuple[str, float, float, int, str]  # trade_id, price, size, ts (µs), side


def stored(store: Store) -> list[Row]:
    rows = []
    for batch in store.trade_batches():
        rows += [(t.trade_id, t.price, t.size, t.ts, t.side) for t in batch.to_trades()]
    return sorted(rows, key=lambda r: (r[3], int(r[0])))


def in_range(rows: list[Row], since_us: int, until_us: int) -> list[Row]:
    return sorted((r for r in rows if since_us <= r[3] < until_us), key=lambda r: (r[3], int(r[0])))


def filler(store: Store, tmp_path: Path, url: str, chunk: int = 400) -> Backfiller:
    return Backfiller(
        store, CONFIG, BackfillState(tmp_path / "backfill-state.json"), rest_url=lambda _: url,
        chunk_trades=chunk, requests_per_s=dict.fromkeys(EXCHANGES, 1e6),
        rest_config=FAST_REST,
    )  # fmt: skip


def assert_exact(store: Store, published: list[Row]) -> None:
    """The store holds exactly `published` (no duplicate, none missing) and its candles
    equal the batch recomputation of those trades."""
    assert stored(store) == published
    report = verify(store)
    assert report.ok, report.mismatches[:3]
    assert report.trades == len(published) and report.candles > 0


# -- the exchanges' histories, as their REST APIs publish them -----------------------------


def binance_history(server: FakeBinance, symbol: str, n: int, step_ms: int) -> list[Row]:
    rows = []
    for k in range(n):
        e = server.trade(symbol, price=100 + (k * 7) % 13, qty=0.5 + k % 5,
                         trade_time=T0_US // 1000 + k * step_ms)  # fmt: skip
        rows.append((str(e["t"]), float(e["p"]), float(e["q"]), e["T"] * 1000,
                     "sell" if e["m"] else "buy"))  # fmt: skip
    return rows


def kraken_history(server: FakeKraken, symbol: str, n: int, step_us: int) -> list[Row]:
    rows = []
    for k in range(n):
        e = server.trade(symbol, price=50.25 + k % 9, qty=0.125 * (1 + k % 4),
                         at_us=T0_US + k * step_us)  # fmt: skip
        rows.append((str(e["trade_id"]), e["price"], e["qty"], e["_us"], e["side"]))
    return rows


def okx_history(server: FakeOkx, inst: str, n: int, step_ms: int) -> list[Row]:
    rows = []
    for k in range(n):
        e = server.trade(inst, price=2000.5 + k % 11, ts_ms=T0_US // 1000 + k * step_ms)
        rows.append((e["tradeId"], float(e["px"]), float(e["sz"]), int(e["ts"]) * 1000, e["side"]))
    return rows


def coinbase_history(server: FakeCoinbase, product: str, n: int, step_us: int) -> list[Row]:
    rows = []
    for k in range(n):
        e = server.trade(product, price=30_000.25 + k % 17, maker_side=("buy", "sell")[k % 2],
                         time_us=T0_US + k * step_us)  # fmt: skip
        taker = "sell" if e["side"] == "buy" else "buy"  # Coinbase names the maker's side
        rows.append((str(e["trade_id"]), float(e["price"]), float(e["size"]), e["time_us"], taker))
    return rows


# -- a range, whole ------------------------------------------------------------------------


@async_test(60)
async def test_binance_backfill_stores_exactly_the_range_with_exact_candles(tmp_path):
    async with FakeBinance(["BTCUSDT"]) as server:
        published = binance_history(server, "BTCUSDT", 3000, 3_100)  # ~2.6 h
        server.rest_page_limit = 170  # pages shorter than asked: paging must not stop early
        server.rest_reject_next(429, retry_after="0", count=2)
        since, until = T0_US + 600_000_000 + 123, T0_US + 2 * HOUR_US + 17_000
        store = DuckDBStore(tmp_path / "t.duckdb")
        report = await filler(store, tmp_path, server.rest_url).run(
            [Task("binance", "BTC-USDT", since, until)]
        )
        assert not report.failed, report.failed[0].error
        assert report.rate_limited == 2
        assert_exact(store, in_range(published, since, until))
        # Every page was asked for by id after the start was found by time.
        paths = {path for path, _ in server.rest_requests}
        assert paths == {"/api/v3/aggTrades", "/api/v3/historicalTrades"}
        store.close()


@async_test(60)
async def test_binance_aggtrade_stream_backfills_aggregate_ids(tmp_path):
    async with FakeBinance(["ETHUSDT"]) as server:
        binance_history(server, "ETHUSDT", 900, 2_000)
        aggs = server.agg_history["ETHUSDT"]
        published = sorted((str(a["a"]), float(a["p"]), float(a["q"]), a["T"] * 1000,
                            "sell" if a["m"] else "buy") for a in aggs)  # fmt: skip
        since, until = T0_US, T0_US + HOUR_US
        store = DuckDBStore(tmp_path / "t.duckdb")
        f = filler(store, tmp_path, server.rest_url)
        f.stream = lambda _: "aggTrade"
        report = await f.run([Task("binance", "ETH-USDT", since, until)])
        assert not report.failed, report.failed[0].error
        assert_exact(store, in_range(published, since, until))
        store.close()


@async_test(60)
async def test_kraken_backfill_pages_its_time_cursor(tmp_path):
    async with FakeKraken(["BTC/USD"]) as server:
        published = kraken_history(server, "BTC/USD", 2500, 1_700_000)
        server.rest_page_limit = 300
        server.rest_reject_next(429, retry_after="0")
        since, until = T0_US + 5_000_000, T0_US + 2500 * 1_700_000 - 4_000_000
        store = DuckDBStore(tmp_path / "t.duckdb")
        report = await filler(store, tmp_path, server.rest_url).run(
            [Task("kraken", "BTC-USD", since, until)]
        )
        assert not report.failed, report.failed[0].error
        assert report.rate_limited == 1
        assert_exact(store, in_range(published, since, until))
        store.close()


@async_test(60)
async def test_okx_backfill_pages_backward_by_time_then_id(tmp_path):
    async with FakeOkx(["BTC-USDT"]) as server:
        published = okx_history(server, "BTC-USDT", 1500, 4_000)
        server.rest_reject_next(429, retry_after="0")
        server.rest_reject_next(418, retry_after="0")
        since, until = T0_US + 300_000_000, T0_US + 5_000_000_000
        store = DuckDBStore(tmp_path / "t.duckdb")
        report = await filler(store, tmp_path, server.rest_url).run(
            [Task("okx", "BTC-USDT", since, until)]
        )
        assert not report.failed, report.failed[0].error
        assert report.rate_limited == 2
        assert_exact(store, in_range(published, since, until))
        store.close()


@async_test(60)
async def test_coinbase_backfill_pages_backward_from_the_newest_trade(tmp_path):
    async with FakeCoinbase(["BTC-USD"]) as server:
        published = coinbase_history(server, "BTC-USD", 3500, 1_300_000)
        server.reject_rest(429, retry_after="0")
        since, until = T0_US + 7_000_000, T0_US + 2 * HOUR_US
        store = DuckDBStore(tmp_path / "t.duckdb")
        report = await filler(store, tmp_path, server.rest_url).run(
            [Task("coinbase", "BTC-USD", since, until)]
        )
        assert not report.failed, report.failed[0].error
        assert report.rate_limited == 1
        assert_exact(store, in_range(published, since, until))
        store.close()


@async_test(60)
async def test_bitstamp_backfill_serves_a_range_inside_its_last_day(tmp_path):
    async with FakeBitstamp(["btcusd"]) as server:
        made = [server.trade("btcusd") for _ in range(400)]
        published = [
            (str(t["id"]), float(t["price_str"]), float(t["amount_str"]),
             int(t["timestamp"]) * 1_000_000, ("buy", "sell")[t["type"]])
            for t in made
        ]  # fmt: skip
        now_us = time.time_ns() // 1000
        since, until = now_us - 600_000_000, now_us + 10_000_000
        store = DuckDBStore(tmp_path / "t.duckdb")
        f = filler(store, tmp_path, server.rest_url)
        report = await f.run([Task("bitstamp", "BTC-USD", since, until)])
        assert not report.failed, report.failed[0].error
        assert_exact(store, sorted(published, key=lambda r: (r[3], int(r[0]))))
        assert [q.get("time") for _, q in server.rest_requests] == ["hour"]
        old = await f.run([Task("bitstamp", "BTC-USD", since - 2 * 86_400_000_000, until)])
        assert "one day only" in old.failed[0].error
        store.close()


@async_test(60)
async def test_ccxt_backfill_pages_fetch_trades_by_time(tmp_path):
    pytest.importorskip("ccxt.pro")
    async with FakeBinance(["BTCUSDT"]) as server:
        binance_history(server, "BTCUSDT", 2600, 4_000)  # ~2.9 h, with a quiet hour below
        for k in range(300):
            server.trade("BTCUSDT", price=101, qty=1, trade_time=T0_US // 1000 + 4 * 3_600_000
                         + k * 1_000)  # fmt: skip
        published = sorted(
            (str(a["a"]), float(a["p"]), float(a["q"]), a["T"] * 1000, "sell" if a["m"] else "buy")
            for a in server.agg_history["BTCUSDT"]
        )
        config = {"urls": {"api": {"public": f"{server.rest_url}/api/v3"}},
                  "options": {"fetchMarkets": {"types": ["spot"]}}}  # fmt: skip
        since, until = T0_US + 1_000_000, T0_US + 5 * HOUR_US
        store = DuckDBStore(tmp_path / "t.duckdb")
        f = filler(store, tmp_path, server.rest_url)
        f.stream, f.ccxt_config = (lambda _: "binance"), config
        report = await f.run([Task("ccxt", "BTC-USDT", since, until)])
        assert not report.failed, report.failed[0].error
        assert_exact(store, in_range(published, since, until))
        store.close()


# -- a crash in the middle, and re-runs ----------------------------------------------------


@async_test(90)
async def test_a_backfill_that_failed_midway_resumes_and_ends_exact(tmp_path):
    async with FakeBinance(["BTCUSDT"]) as server:
        published = binance_history(server, "BTCUSDT", 4000, 2_000)
        server.rest_page_limit = 100
        since, until = T0_US, T0_US + 3 * HOUR_US
        server.rest_reject_after(17, 500, count=FAST_REST.attempts)  # gives up on page 17
        store = DuckDBStore(tmp_path / "t.duckdb")
        first = await filler(store, tmp_path, server.rest_url).run(
            [Task("binance", "BTC-USDT", since, until)]
        )
        assert first.failed and "HTTP 500" in first.failed[0].error
        part = stored(store)
        assert 0 < len(part) < len(published)
        assert part == published[: len(part)]  # whole chunks, in order, nothing doubled
        assert verify(store).ok
        asked = len(server.rest_requests)
        second = await filler(store, tmp_path, server.rest_url).run(
            [Task("binance", "BTC-USDT", since, until)]
        )
        assert not second.failed and second.tasks[0].resumed
        # It went on from the saved cursor: far fewer pages than the whole range takes.
        assert len(server.rest_requests) - asked < 4000 // 100 - 10
        assert_exact(store, in_range(published, since, until))
        third = await filler(store, tmp_path, server.rest_url).run(
            [Task("binance", "BTC-USDT", since, until)]
        )
        assert third.tasks[0].skipped and third.total("new") == 0
        store.close()


async def _kraken() -> tuple[FakeKraken, list[Row], Task]:
    server = await FakeKraken(["BTC/USD"]).start()
    server.rest_page_limit = 100
    rows = kraken_history(server, "BTC/USD", 2000, 2_000_000)
    return server, rows, Task("kraken", "BTC-USD", T0_US, T0_US + 2 * HOUR_US)


async def _okx() -> tuple[FakeOkx, list[Row], Task]:
    server = await FakeOkx(["BTC-USDT"]).start()
    rows = okx_history(server, "BTC-USDT", 2000, 2_000)
    return server, rows, Task("okx", "BTC-USDT", T0_US, T0_US + 2 * HOUR_US)


async def _coinbase() -> tuple[FakeCoinbase, list[Row], Task]:
    server = await FakeCoinbase(["BTC-USD"]).start()
    rows = coinbase_history(server, "BTC-USD", 4000, 1_000_000)
    return server, rows, Task("coinbase", "BTC-USD", T0_US, T0_US + 2 * HOUR_US)


@pytest.mark.parametrize("make", [_kraken, _okx, _coinbase], ids=["kraken", "okx", "coinbase"])
def test_each_exchange_resumes_after_failing_midway_and_ends_exact(tmp_path, make):
    @async_test(90)
    async def run() -> None:
        server, published, task = await make()
        try:
            store = DuckDBStore(tmp_path / "t.duckdb")
            server.rest_reject_after(2, 500, count=FAST_REST.attempts)
            first = await filler(store, tmp_path, server.rest_url, chunk=150).run([task])
            assert first.failed and "HTTP 500" in first.failed[0].error
            assert 0 < first.total("new") < len(in_range(published, task.since_us,
                                                            task.until_us))  # fmt: skip
            second = await filler(store, tmp_path, server.rest_url, chunk=150).run([task])
            assert not second.failed and second.tasks[0].resumed
            assert second.total("new") + first.total("new") == len(
                in_range(published, task.since_us, task.until_us)
            )
            assert_exact(store, in_range(published, task.since_us, task.until_us))
            store.close()
        finally:
            await server.stop()

    run()


@async_test(90)
async def test_an_open_ended_range_resumes_its_own_end_then_goes_on_from_it(tmp_path):
    async with FakeBinance(["BTCUSDT"]) as server:
        published = binance_history(server, "BTCUSDT", 3000, 2_000)  # T0 .. T0 + 100 min
        server.rest_page_limit = 100
        store = DuckDBStore(tmp_path / "t.duckdb")

        def at(now_us: int) -> list[Task]:  # `--since T0` without --until, run at `now_us`
            return [Task("binance", "BTC-USDT", T0_US, now_us, open_ended=True)]

        first_now, second_now = T0_US + 40 * 60_000_000, T0_US + 70 * 60_000_000
        server.rest_reject_after(8, 500, count=FAST_REST.attempts)
        first = await filler(store, tmp_path, server.rest_url).run(at(first_now))
        assert first.failed
        # Started again later, it first finishes the range the stopped run had (up to its
        # "now"), and nothing after it.
        second = await filler(store, tmp_path, server.rest_url).run(at(second_now))
        assert not second.failed and second.tasks[0].resumed
        assert_exact(store, in_range(published, T0_US, first_now))
        # The next run fetches from there on only.
        third = await filler(store, tmp_path, server.rest_url).run(at(second_now))
        assert not third.failed and not third.tasks[0].resumed
        assert third.tasks[0].task.since_us == first_now
        assert third.total("new") == len(in_range(published, first_now, second_now))
        assert_exact(store, in_range(published, T0_US, second_now))
        store.close()


@async_test(60)
async def test_backfill_of_a_range_the_store_partly_holds_corrects_its_candles(tmp_path):
    async with FakeBinance(["BTCUSDT"]) as server:
        published = binance_history(server, "BTCUSDT", 2000, 2_500)
        store = DuckDBStore(tmp_path / "t.duckdb")
        # A live run saw every third trade: its engine stored them and their (final) candles,
        # and its engine snapshot.
        live(store, [r for n, r in enumerate(published) if n % 3 == 0])
        store.write_flush(Flush.of(snapshot={STATE: b"engine", REPLAY_FROM: b"\x90"}))
        assert store.load_snapshot() != {}
        assert verify(store).ok
        since, until = T0_US, T0_US + 2 * HOUR_US
        report = await filler(store, tmp_path, server.rest_url, chunk=10_000).run(
            [Task("binance", "BTC-USDT", since, until)]
        )  # one chunk: each stored candle is corrected once
        assert not report.failed, report.failed[0].error
        assert report.total("new") == len(published) - len(published[::3])
        assert report.total("corrected") > 0
        assert_exact(store, in_range(published, since, until))
        hour = store.candles("binance", "BTC-USDT", "1h", T0_US, T0_US + 1)[0]
        assert hour.final and hour.revision == 1  # a correction of the stored final candle
        # The live run's engine snapshot lacks the backfilled trades: gone, so that a restart
        # rebuilds its windows from the stored trades.
        assert store.load_snapshot() == {}
        store.close()


def live(store: Store, rows: list[Row], exchange: str = "binance",
         symbol: str = "BTC-USDT") -> None:  # fmt: skip
    """Store `rows` as a live pipeline would: its engine's accepted trades and candles."""
    trades = [
        Trade(source=exchange, exchange=exchange, symbol=symbol, trade_id=i, seq=int(i), price=p,
              size=s, side=side, ts=ts, recv_ts=ts)
        for i, p, s, ts, side in rows
    ]  # fmt: skip
    engine = CandleEngine(CONFIG)
    now = rows[-1][3] + 10 * HOUR_US
    out = engine.process(TradeBatch.from_trades(trades), now)
    candles = {(c.interval, c.start): c for c in out.candles}
    for c in engine.tick(now).candles + engine.flush(now):
        candles[(c.interval, c.start)] = c
    store.write(trades=[out.accepted] if out.accepted else [], candles=candles.values())


# -- --gaps ----------------------------------------------------------------------------------


@async_test(60)
async def test_gaps_fills_only_the_holes_in_the_stored_ids(tmp_path):
    async with FakeBinance(["BTCUSDT"]) as server:
        published = binance_history(server, "BTCUSDT", 3000, 1_500)
        holes = [range(400, 460), range(1200, 1201), range(2000, 2300)]
        lost = {n for hole in holes for n in hole}
        kept = [r for n, r in enumerate(published[100:2900], 100) if n not in lost]
        store = DuckDBStore(tmp_path / "t.duckdb")
        live(store, kept)
        tasks = find_gaps(store)
        assert [(t.since_us, t.until_us) for t in tasks] == [
            (published[h.start - 1][3], published[h.stop][3] + 1) for h in holes
        ]
        report = await filler(store, tmp_path, server.rest_url).run(tasks)
        assert not report.failed, report.failed[0].error
        assert report.total("new") == len(lost)
        # The holes are filled; what traded before the first or after the last stored trade
        # is not a hole and stays out.
        assert_exact(store, published[100:2900])
        assert find_gaps(store) == []
        store.close()


def test_a_stream_whose_rows_are_not_single_trades_is_refused_in_one_line():
    for exchange, stream in (("binance", "ticker"), ("okx", "trades")):
        with pytest.raises(HistoryError) as err:
            history_of(exchange, "BTC-USDT", stream)
        assert "\n" not in str(err.value) and f"the {stream} stream" in str(err.value)


def test_an_exchange_without_history_says_so_in_one_line():
    for exchange in ("bybit", "finnhub", "tiingo"):
        with pytest.raises(HistoryError) as err:
            history_of(exchange, "BTC-USD")
        assert "\n" not in str(err.value) and str(err.value).startswith(exchange)


@async_test(120)
async def test_backfill_into_postgresql_is_exact_too(tmp_path, postgres_dsn):
    from tickpipe.stores.postgresql import PostgresStore

    async with FakeBinance(["BTCUSDT"]) as server:
        published = binance_history(server, "BTCUSDT", 1500, 4_000)
        store = PostgresStore(postgres_dsn)
        try:
            live(store, published[::4])
            report = await filler(store, tmp_path, server.rest_url).run(
                [Task("binance", "BTC-USDT", T0_US, T0_US + 2 * HOUR_US)]
            )
            assert not report.failed, report.failed[0].error
            assert report.total("new") == len(published) - len(published[::4])
            assert_exact(store, published)
        finally:
            store.close()
