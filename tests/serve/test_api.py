"""Every HTTP route over a store the real engine filled, through real HTTP on 127.0.0.1."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from tickpipe.serve.app import ROUTES
from tickpipe.serve.params import MAX_CANDLES

from .conftest import VENUES, Served

S = 1_000_000
M = 60 * S


def get(served: Served, path: str, **params: object) -> httpx.Response:
    return httpx.get(served.url + path, params=params, timeout=10)


def ok(served: Served, path: str, **params: object) -> dict:
    answer = get(served, path, **params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_openapi_document_describes_every_http_route(served: Served) -> None:
    doc = ok(served, "/openapi.json")
    assert doc["openapi"].startswith("3.")
    http_paths = {r.path for r in ROUTES if r.path.startswith("/api/") and r.path != "/api/live"}
    assert http_paths <= set(doc["paths"])
    names = {p["name"] for p in doc["paths"]["/api/candles"]["get"]["parameters"]}
    assert {"exchange", "symbol", "interval", "bucket", "start", "end", "lookback", "fill"} <= names


def test_health_reads_the_store_and_says_a_stored_file_has_no_live_pushes(served: Served) -> None:
    body = ok(served, "/api/health")
    assert body["status"] == "ok"
    assert body["live"] is False


def test_exchanges_list_every_stored_exchange_with_its_symbols(served: Served) -> None:
    body = ok(served, "/api/exchanges")
    listed = {e["name"]: {s["symbol"] for s in e["symbols"]} for e in body["exchanges"]}
    stored = {}
    for exchange, symbol in served.store.query("SELECT DISTINCT exchange, symbol FROM trades"):
        stored.setdefault(exchange, set()).add(symbol)
    assert listed == stored
    assert set(listed) == set(VENUES)
    assert body["intervals"] == ["1h", "1m", "1s", "5m", "5s"]


def test_candles_of_a_stored_interval_are_the_stored_rows(served: Served) -> None:
    end = served.end
    start = (end - 10 * M) // M * M  # the API answers whole candles: the start is aligned
    body = ok(served, "/api/candles", exchange="alpha", symbol="BTC-USDT", interval="1m",
              start=start // 1000, end=end // 1000)  # fmt: skip
    rows = served.store.query(
        "SELECT start, close, trades FROM candles WHERE exchange = 'alpha' AND "
        "symbol = 'BTC-USDT' AND interval = '1m' AND start >= ? AND start < ? ORDER BY start",
        [start, end],
    )
    assert len(rows) >= 9
    assert [(c["start"], c["close"], c["trades"]) for c in body["candles"]] == rows


def test_any_symbol_spelling_finds_the_same_candles(served: Served) -> None:
    a = ok(served, "/api/candles", exchange="alpha", symbol="BTC-USDT", interval="1m",
           lookback="15m", end=served.end // 1000)  # fmt: skip
    b = ok(served, "/api/candles", exchange="ALPHA", symbol="btcusdt", interval="1m",
           lookback="15m", end=served.end // 1000)  # fmt: skip
    assert a["candles"] and a["candles"] == b["candles"]


def test_bucket_rolls_stored_candles_up_into_whole_multiples(served: Served) -> None:
    # A start inside a 2-minute bucket: the answer still begins with that whole bucket.
    start = (served.end - 10 * M) // (2 * M) * (2 * M) + M + 30 * S
    body = ok(served, "/api/candles", exchange="alpha", symbol="ETH-USDT", bucket="2m",
              start=start // 1000, end=served.end // 1000)  # fmt: skip
    assert body["interval"] == "2m" and body["from_interval"] == "1m"
    candles = body["candles"]
    assert candles[0]["start"] == start // (2 * M) * (2 * M)
    rows = served.store.query(
        "SELECT ts - ts % ? AS b, count(*), sum(size) FROM trades WHERE exchange = 'alpha' "
        "AND symbol = 'ETH-USDT' AND ts >= ? AND ts < ? GROUP BY b ORDER BY b",
        [2 * M, candles[0]["start"], candles[-1]["start"] + 2 * M],
    )
    assert [(c["start"], c["trades"]) for c in candles] == [(b, n) for b, n, _ in rows]
    for c, (_, _, volume) in zip(candles, rows, strict=True):
        assert c["volume"] == pytest.approx(volume, rel=1e-9)


def test_a_bucket_reads_the_largest_stored_interval_that_divides_it(served: Served) -> None:
    body = ok(served, "/api/candles", exchange="alpha", symbol="BTC-USDT", bucket="10s",
              lookback="2m", end=served.end // 1000)  # fmt: skip
    assert body["from_interval"] == "5s"


def test_fill_gives_empty_buckets_the_previous_close_and_zero_volume(served: Served) -> None:
    # The quietest symbol: its 1-second candles have holes.
    ((exchange, symbol),) = served.store.query(
        "SELECT exchange, symbol FROM candles WHERE interval = '1s' "
        "GROUP BY ALL ORDER BY count(*) LIMIT 1"
    )
    params = dict(exchange=exchange, symbol=symbol, interval="1s", lookback="10m",
                  end=served.end // 1000)  # fmt: skip
    plain = ok(served, "/api/candles", **params)["candles"]
    filled = ok(served, "/api/candles", **params, fill="true")["candles"]
    starts = [c["start"] for c in filled]
    assert starts == list(range(starts[0], starts[-1] + S, S))  # no holes left
    assert [c for c in filled if not c["filled"]] == [{**c, "filled": False} for c in plain]
    holes = [i for i, c in enumerate(filled) if c["filled"]]
    assert holes, "the quietest symbol should have empty seconds"
    for i in holes:
        before, hole = filled[i - 1], filled[i]
        assert hole["open"] == hole["high"] == hole["low"] == hole["close"] == before["close"]
        assert hole["volume"] == 0 and hole["trades"] == 0


def test_start_and_end_as_iso_8601_or_epoch_ms_mean_the_same(served: Served) -> None:
    start, end = served.end - 5 * M, served.end

    def iso(us: int) -> str:
        return datetime.fromtimestamp(us / S, UTC).isoformat().replace("+00:00", "Z")

    by_ms = ok(served, "/api/candles", exchange="beta", symbol="BTC-USDT", interval="5s",
               start=start // 1000, end=end // 1000)  # fmt: skip
    by_iso = ok(served, "/api/candles", exchange="beta", symbol="BTC-USDT", interval="5s",
                start=iso(start), end=iso(end))  # fmt: skip
    by_lookback = ok(served, "/api/candles", exchange="beta", symbol="BTC-USDT", interval="5s",
                     lookback="5m", end=iso(end))  # fmt: skip
    assert by_ms["candles"]
    assert by_ms["candles"] == by_iso["candles"] == by_lookback["candles"]


def test_recent_trades_come_newest_first_and_limited(served: Served) -> None:
    body = ok(served, "/api/trades", exchange="alpha", symbol="SOL-USDT", limit=25)
    trades = body["trades"]
    assert len(trades) == 25
    assert [t["ts"] for t in trades] == sorted((t["ts"] for t in trades), reverse=True)
    ((newest,),) = served.store.query(
        "SELECT max(ts) FROM trades WHERE exchange = 'alpha' AND symbol = 'SOL-USDT'"
    )
    assert trades[0]["ts"] == newest
    assert {t["symbol"] for t in trades} == {"SOL-USDT"}


def test_rolling_statistics_are_the_latest_stored_ones(served: Served) -> None:
    body = ok(served, "/api/rolling", exchange="alpha", symbol="BTC-USDT")
    ((ts, avg),) = served.store.query(
        "SELECT ts, avg_close_30m FROM rolling_stats WHERE exchange = 'alpha' AND "
        "symbol = 'BTC-USDT' ORDER BY ts DESC LIMIT 1"
    )
    assert body["latest"]["ts"] == ts
    assert body["latest"]["avg_close_30m"] == avg
    assert len(body["history"]) > 5


def test_kpis_count_what_the_store_holds(served: Served) -> None:
    body = ok(served, "/api/kpis")
    ((trades,),) = served.store.query("SELECT count(*) FROM trades")
    ((candles,),) = served.store.query("SELECT count(*) FROM candles")
    assert (body["stored_trades"], body["stored_candles"]) == (trades, candles)
    assert body["pipeline"] is None  # a stored file: no running pipeline


@pytest.mark.parametrize("by", ["trades", "volume"])
def test_top_exchanges_rank_by_trade_count_and_by_volume(served: Served, by: str) -> None:
    body = ok(served, "/api/analytics/top-exchanges", period="1h", end=served.end // 1000 + 1,
              by=by)  # fmt: skip
    rows = served.store.query(
        "SELECT exchange, count(*), sum(price * size) FROM trades GROUP BY exchange"
    )
    key = 1 if by == "trades" else 2
    expected = [r[0] for r in sorted(rows, key=lambda r: -r[key])]
    assert [e["exchange"] for e in body["exchanges"]] == expected
    counts = {r[0]: r[1] for r in rows}
    assert {e["exchange"]: e["trades"] for e in body["exchanges"]} == counts


def test_a_shorter_period_counts_only_its_trades(served: Served) -> None:
    end = served.end
    body = ok(served, "/api/analytics/top-exchanges", period="1m", end=end // 1000)
    ((count,),) = served.store.query(
        "SELECT count(*) FROM trades WHERE exchange = 'alpha' AND ts >= ? AND ts < ?",
        [end - M, end],
    )
    alpha = next(e for e in body["exchanges"] if e["exchange"] == "alpha")
    assert alpha["trades"] == count


def test_top_tickers_rank_symbols_across_exchanges(served: Served) -> None:
    body = ok(served, "/api/analytics/top-tickers", period="1h", end=served.end // 1000 + 1)
    tickers = body["tickers"]
    assert tickers[0]["symbol"] == "BTC-USDT"  # traded on both venues, the busiest on each
    assert tickers[0]["exchanges"] == 2
    counts = [t["trades"] for t in tickers]
    assert counts == sorted(counts, reverse=True)
    ((total,),) = served.store.query("SELECT count(*) FROM trades")
    assert sum(counts) == total


def test_exchange_breakdown_gives_each_tickers_share_and_trade_statistics(served: Served) -> None:
    body = ok(served, "/api/analytics/exchange/alpha", period="1h", end=served.end // 1000 + 1)
    tickers = body["tickers"]
    assert {t["symbol"] for t in tickers} == set(VENUES["alpha"][0])
    assert sum(t["trade_share"] for t in tickers) == pytest.approx(1.0)
    assert sum(t["volume_share"] for t in tickers) == pytest.approx(1.0)
    totals = body["totals"]
    assert totals["trades"] == sum(t["trades"] for t in tickers)
    assert totals["mean_trade_value"] == pytest.approx(totals["quote_volume"] / totals["trades"])
    for t in tickers:  # taker sides: buy and sell volume add up to at most the volume
        assert t["buy_volume"] + t["sell_volume"] <= t["mean_size"] * t["trades"] * (1 + 1e-9)


def test_exchange_breakdown_equals_what_the_stored_trades_give(served: Served) -> None:
    body = ok(served, "/api/analytics/exchange/beta", period="7m", end=served.end // 1000 - 1234)
    assert body["start"] % S == 0 and body["end"] % S == 0  # widened to whole candles
    rows = served.store.query(
        "SELECT symbol, count(*), sum(price * size), sum(size), min(price), max(price), "
        "sum(size) FILTER (WHERE side = 'buy'), sum(size) FILTER (WHERE side = 'sell'), "
        "first(price ORDER BY ts, seq), last(price ORDER BY ts, seq) "
        "FROM trades WHERE exchange = 'beta' AND ts >= ? AND ts < ? GROUP BY symbol",
        [body["start"], body["end"]],
    )
    got = {t["symbol"]: t for t in body["tickers"]}
    assert set(got) == {r[0] for r in rows}
    for symbol, n, quote, size, low, high, buys, sells, first, last in rows:
        t = got[symbol]
        assert t["trades"] == n
        assert (t["open"], t["close"]) == (first, last)
        assert t["volume"] == pytest.approx(size, rel=1e-9)
        assert (t["low"], t["high"]) == (low, high)
        assert t["quote_volume"] == pytest.approx(quote, rel=1e-9)
        assert t["vwap"] == pytest.approx(quote / size, rel=1e-9)
        assert t["buy_volume"] == pytest.approx(buys or 0.0, rel=1e-9)
        assert t["sell_volume"] == pytest.approx(sells or 0.0, rel=1e-9)
    assert body["totals"]["trades"] == sum(r[1] for r in rows)


BTC = {"exchange": "alpha", "symbol": "BTC-USDT"}
BAD = [
    ("/api/candles", {"exchange": "alpha", "symbol": "BTC-USDX"}, 404, "unknown symbol"),
    ("/api/candles", {"exchange": "gamma", "symbol": "BTC-USDT"}, 404, "unknown symbol"),
    ("/api/candles", {"symbol": "BTC-USDT"}, 400, "exchange is required"),
    ("/api/candles", {**BTC, "interval": "7m"}, 400, "not allowed"),
    ("/api/candles", {**BTC, "interval": "soon"}, 400, "not an interval"),
    ("/api/candles", {**BTC, "bucket": "1500ms"}, 400, "not a multiple of a stored interval"),
    ("/api/candles", {**BTC, "bucket": "15m", "interval": "1m"}, 400, "not both"),
    ("/api/candles", {**BTC, "interval": "1s", "lookback": "30d"}, 400, "range too large"),
    ("/api/candles", {**BTC, "start": "yesterday"}, 400, "malformed time"),
    ("/api/candles", {**BTC, "end": "2026-13-45T00:00:00Z"}, 400, "malformed time"),
    ("/api/candles", {**BTC, "lookback": "a while"}, 400, "not a duration"),
    ("/api/candles", {**BTC, "start": "2026-01-02", "end": "2026-01-01"}, 400, "before end"),
    ("/api/candles", {**BTC, "fill": "maybe"}, 400, "true or false"),
    ("/api/trades", {**BTC, "limit": "0"}, 400, "between 1 and"),
    ("/api/trades", {**BTC, "limit": "lots"}, 400, "not an integer"),
    ("/api/rolling", {"exchange": "alpha", "symbol": "NOPE-USDT"}, 404, "unknown symbol"),
    ("/api/analytics/top-exchanges", {"period": "forever"}, 400, "not a duration"),
    ("/api/analytics/top-exchanges", {"period": "90d"}, 400, "at most 30d"),
    ("/api/analytics/top-tickers", {"by": "price"}, 400, "use trades or volume"),
    ("/api/analytics/top-tickers", {"end": "noon"}, 400, "malformed time"),
    ("/api/analytics/exchange/gamma", {}, 404, "unknown exchange"),
    ("/api/analytics/exchange/alpha", {"period": "0s"}, 400, "not a duration"),
    ("/api/nothing-here", {}, 404, "Not Found"),
]


@pytest.mark.parametrize(("path", "params", "status", "reason"), BAD)
def test_a_bad_parameter_gets_a_4xx_json_answer_that_says_why(
    served: Served, path: str, params: dict, status: int, reason: str
) -> None:
    answer = get(served, path, **params)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert reason in answer.json()["error"]


def test_the_range_limit_is_the_documented_number_of_candles(served: Served) -> None:
    end = served.end // 1000
    at_limit = get(served, "/api/candles", **BTC, interval="1s", end=end,
                   start=end - MAX_CANDLES * 1000)  # fmt: skip
    beyond = get(served, "/api/candles", **BTC, interval="1s", end=end,
                 start=end - (MAX_CANDLES + 1) * 1000)  # fmt: skip
    assert at_limit.status_code == 200
    assert beyond.status_code == 400


def test_a_huge_bucket_is_refused_with_400_not_an_overflow(served: Served) -> None:
    answer = get(served, "/api/candles", **BTC, bucket="200000000d")
    assert answer.status_code == 400, answer.text
    assert "bucket='200000000d': at most 3650d" in answer.json()["error"]
