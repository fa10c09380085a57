"""TradingView's UDF datafeed (/udf) over a store the real engine filled, through real HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tickpipe.serve.app import ROUTES, ApiContext, create_app
from tickpipe.serve.params import MAX_CANDLES
from tickpipe.serve.precision import PRECISION_TRADES
from tickpipe.serve.udf import MAX_SEARCH
from tickpipe.stores.duckdb import DuckDBStore

from .conftest import VENUES, ApiThread, Served

S = 1_000_000
# The UDF spelling of each interval the fixture stores (TradingView: seconds "NS", minutes
# as numbers, hours as minutes).
UDF_SPELLING = {"1s": "1S", "5s": "5S", "1m": "1", "5m": "5", "1h": "60"}
TOKEN = "udf-token"


def get(served: Served, path: str, **params: object) -> httpx.Response:
    return httpx.get(served.url + "/udf" + path, params=params, timeout=10)


def ok(served: Served, path: str, **params: object) -> dict | list:
    answer = get(served, path, **params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def stored_bars(
    served: Served, exchange: str, symbol: str, interval: str, where: str, params: list,
    order: str = "ASC", limit: int = MAX_CANDLES,
) -> list[tuple]:  # fmt: skip
    """(t in seconds, open, high, low, close, volume) of stored candles, oldest first."""
    rows = served.store.query(
        "SELECT start, open, high, low, close, volume FROM candles WHERE exchange = ? AND "
        f"symbol = ? AND interval = ? AND {where} ORDER BY start {order} LIMIT ?",
        [exchange, symbol, interval, *params, limit],
    )
    return sorted((start // S, *rest) for start, *rest in rows)


def columns(body: dict) -> list[tuple]:
    assert body["s"] == "ok"
    return list(zip(body["t"], body["o"], body["h"], body["l"], body["c"], body["v"], strict=True))


def places(values: list[float]) -> int:
    return max(max(0, -Decimal(repr(v)).normalize().as_tuple().exponent) for v in values)


def test_openapi_documents_every_udf_route(served: Served) -> None:
    doc = httpx.get(served.url + "/openapi.json", timeout=10).json()
    udf_paths = {r.path for r in ROUTES if r.path.startswith("/udf/")}
    assert udf_paths == {"/udf/config", "/udf/symbols", "/udf/search", "/udf/history", "/udf/time"}
    assert udf_paths <= set(doc["paths"])
    names = {p["name"] for p in doc["paths"]["/udf/history"]["get"]["parameters"]}
    assert names == {"symbol", "resolution", "from", "to", "countback"}
    assert "UdfError" in doc["components"]["schemas"]


def test_config_lists_exactly_the_stored_intervals_as_resolutions(served: Served) -> None:
    body = ok(served, "/config")
    stored = {i for (i,) in served.store.query("SELECT DISTINCT interval FROM candles")}
    assert stored == set(UDF_SPELLING)
    assert sorted(body["supported_resolutions"]) == sorted(UDF_SPELLING[i] for i in stored)
    assert body["supports_search"] is True and body["supports_group_request"] is False
    assert body["supports_time"] is True
    assert body["supports_marks"] is body["supports_timescale_marks"] is False


def test_config_lists_the_stored_exchanges(served: Served) -> None:
    body = ok(served, "/config")
    stored = {e for (e,) in served.store.query("SELECT DISTINCT exchange FROM trades")}
    assert {e["value"] for e in body["exchanges"]} == {"", *stored}


def test_symbols_describe_a_known_symbol_with_precision_from_its_trades(served: Served) -> None:
    info = ok(served, "/symbols", symbol="alpha:SOL-USDT")
    newest = served.store.query(
        "SELECT price, size FROM trades WHERE exchange = 'alpha' AND symbol = 'SOL-USDT' "
        "ORDER BY ts DESC, seq DESC LIMIT ?",
        [PRECISION_TRADES],
    )
    assert info["pricescale"] == 10 ** places([p for p, _ in newest])
    assert info["volume_precision"] == places([s for _, s in newest])
    assert info["pricescale"] > 1  # the simulated SOL price has cents at least
    assert (info["name"], info["ticker"], info["exchange"]) == ("SOL-USDT", "alpha:SOL-USDT",
                                                                "alpha")  # fmt: skip
    assert (info["type"], info["session"], info["timezone"]) == ("crypto", "24x7", "Etc/UTC")
    assert info["has_intraday"] is True and info["has_seconds"] is True
    assert sorted(info["supported_resolutions"]) == sorted(UDF_SPELLING.values())
    assert sorted(info["seconds_multipliers"]) == ["1", "5"]
    assert info["data_status"] == "streaming" and info["minmov"] == 1


def test_a_bare_symbol_that_one_exchange_has_resolves_to_it(served: Served) -> None:
    assert ok(served, "/symbols", symbol="xrpusdt")["ticker"] == "beta:XRP-USDT"


def test_a_bare_symbol_on_several_exchanges_is_refused_naming_them(served: Served) -> None:
    answer = get(served, "/symbols", symbol="BTC-USDT")
    assert answer.status_code == 400
    assert "alpha:BTC-USDT, beta:BTC-USDT" in answer.json()["errmsg"]


@pytest.mark.parametrize("symbol", ["alpha:NOPE-USDT", "gamma:BTC-USDT", "NOPE-USDT"])
def test_an_unknown_symbol_is_404_in_udf_shape(served: Served, symbol: str) -> None:
    answer = get(served, "/symbols", symbol=symbol)
    assert answer.status_code == 404
    body = answer.json()
    assert body["s"] == "error" and "unknown symbol" in body["errmsg"]


def test_search_finds_symbols_by_any_case_substring(served: Served) -> None:
    found = ok(served, "/search", query="Btc")
    assert {f["full_name"] for f in found} == {f"{e}:BTC-USDT" for e in VENUES}
    assert all(f["symbol"] == "BTC-USDT" and f["type"] == "crypto" for f in found)
    assert {f["full_name"] for f in ok(served, "/search", query="dogeusdt")} == {"alpha:DOGE-USDT"}
    everything = ok(served, "/search", query="")
    stored = served.store.query("SELECT DISTINCT exchange, symbol FROM trades")
    assert {(f["exchange"], f["symbol"]) for f in everything} == set(stored)
    assert all(f["ticker"] == f["full_name"] for f in everything)


def test_search_filters_by_exchange_and_type_and_caps_the_limit(served: Served) -> None:
    assert {f["full_name"] for f in ok(served, "/search", query="usdt", exchange="beta")} == {
        "beta:BTC-USDT", "beta:XRP-USDT"
    }  # fmt: skip
    assert len(ok(served, "/search", query="usdt", limit=2)) == 2
    assert ok(served, "/search", query="btc", type="stock") == []
    stored = served.store.query("SELECT count(DISTINCT (exchange, symbol)) FROM trades")[0][0]
    assert len(ok(served, "/search", limit=10 * MAX_SEARCH)) == min(stored, MAX_SEARCH)


@pytest.mark.parametrize(("resolution", "interval", "span_s"),
                         [("1", "1m", 600), ("1S", "1s", 90), ("60", "1h", 7200)])  # fmt: skip
def test_history_columns_equal_the_stored_candles_of_the_range(
    served: Served, resolution: str, interval: str, span_s: int
) -> None:
    to_s = served.end // S - 17  # not on a bar boundary: bars starting before `to` count
    from_s = to_s - span_s
    body = ok(served, "/history", symbol="alpha:ETH-USDT", resolution=resolution,
              **{"from": from_s, "to": to_s})  # fmt: skip
    expected = stored_bars(served, "alpha", "ETH-USDT", interval, "start >= ? AND start < ?",
                           [from_s * S, to_s * S])  # fmt: skip
    assert expected
    assert columns(body) == expected


def test_countback_gives_the_last_bars_before_to_and_ignores_from(served: Served) -> None:
    to_s = served.end // S
    body = ok(served, "/history", symbol="beta:BTC-USDT", resolution="1", countback=7,
              **{"from": to_s - 60, "to": to_s})  # fmt: skip
    expected = stored_bars(served, "beta", "BTC-USDT", "1m", "start < ?", [to_s * S], "DESC", 7)
    assert len(expected) == 7
    assert columns(body) == expected


def test_countback_reaches_past_empty_seconds(served: Served) -> None:
    # The quietest symbol: its 1-second candles have holes, so N bars span more than N s.
    ((exchange, symbol, stored),) = served.store.query(
        "SELECT exchange, symbol, count(*) FROM candles WHERE interval = '1s' "
        "GROUP BY ALL ORDER BY count(*) LIMIT 1"
    )
    to_s = served.end // S
    half = stored // 2
    body = ok(served, "/history", symbol=f"{exchange}:{symbol}", resolution="1S",
              countback=half, to=to_s)  # fmt: skip
    expected = stored_bars(served, exchange, symbol, "1s", "start < ?", [to_s * S], "DESC", half)
    assert len(expected) == half and expected[0][0] < to_s - half
    assert columns(body) == expected
    # More than are stored: every stored bar, however far back.
    body = ok(served, "/history", symbol=f"{exchange}:{symbol}", resolution="1S",
              countback=stored + 50, to=to_s)  # fmt: skip
    assert columns(body) == stored_bars(served, exchange, symbol, "1s", "start < ?", [to_s * S])
    assert len(body["t"]) == stored


def test_no_data_gives_next_time_of_the_newest_earlier_bar(served: Served) -> None:
    from_s = served.end // S + 3600  # an hour after the newest stored bar
    answer = ok(served, "/history", symbol="alpha:BTC-USDT", resolution="5",
                **{"from": from_s, "to": from_s + 3600})  # fmt: skip
    ((newest,),) = served.store.query(
        "SELECT max(start) FROM candles WHERE exchange = 'alpha' AND symbol = 'BTC-USDT' "
        "AND interval = '5m' AND start < ?",
        [from_s * S],
    )
    assert answer == {"s": "no_data", "nextTime": newest // S}


def test_no_data_before_the_first_bar_has_no_next_time(served: Served) -> None:
    ((first,),) = served.store.query(
        "SELECT min(start) FROM candles WHERE exchange = 'alpha' AND symbol = 'BTC-USDT' "
        "AND interval = '1m'"
    )
    to_s = first // S
    answer = ok(served, "/history", symbol="alpha:BTC-USDT", resolution="1",
                **{"from": to_s - 3600, "to": to_s})  # fmt: skip
    assert answer == {"s": "no_data"}


def test_an_unstored_resolution_is_400_naming_the_stored_ones(served: Served) -> None:
    answer = get(served, "/history", symbol="alpha:BTC-USDT", resolution="15", to=1, countback=5)
    assert answer.status_code == 400
    body = answer.json()
    assert body["s"] == "error"
    assert body["errmsg"] == "resolution='15': not stored (stored: 1S, 5S, 1, 5, 60)"


BTC = {"symbol": "alpha:BTC-USDT", "resolution": "1"}
BAD = [
    ({"resolution": "1", "from": 1, "to": 2}, 400, "symbol is required"),
    ({"symbol": "alpha:BTC-USDT", "from": 1, "to": 2}, 400, "resolution is required"),
    ({**BTC, "from": 1}, 400, "to is required"),
    ({**BTC, "to": 100}, 400, "from is required"),
    ({**BTC, "from": "yesterday", "to": 100}, 400, "from='yesterday': not an integer"),
    ({**BTC, "from": 100, "to": 100}, 400, "from must be before to"),
    ({**BTC, "from": 0, "to": 10**9}, 400, "range too large"),
    ({**BTC, "to": 100, "countback": -1}, 400, "countback=-1: must be between 0 and"),
    ({**BTC, "to": 100, "countback": MAX_CANDLES + 1}, 400, "countback=100001"),
    ({**BTC, "resolution": "1M", "to": 100, "countback": 5}, 400, "not stored"),
    ({**BTC, "symbol": "alpha:NOPE-USDT", "to": 100, "countback": 5}, 404, "unknown symbol"),
]


@pytest.mark.parametrize(("params", "status", "reason"), BAD)
def test_a_bad_history_parameter_gets_a_udf_error_that_says_why(
    served: Served, params: dict, status: int, reason: str
) -> None:
    answer = get(served, "/history", **params)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["s"] == "error" and reason in body["errmsg"], body


def test_time_is_the_server_clock_in_unix_seconds(served: Served) -> None:
    before = int(time.time())
    answer = get(served, "/time")
    assert answer.headers["content-type"].startswith("text/plain")
    assert before <= int(answer.text) <= time.time() + 1


@pytest.fixture(scope="module")
def guarded(stored_path: tuple[Path, int]) -> Iterator[str]:
    store = DuckDBStore(stored_path[0], read_only=True)
    api = ApiThread(create_app(ApiContext(store), token=TOKEN))
    try:
        yield api.url
    finally:
        api.stop()
        store.close()


@pytest.mark.parametrize("path", ["/udf/config", "/udf/time", "/udf/history"])
def test_the_access_token_is_required_when_configured(guarded: str, path: str) -> None:
    refused = httpx.get(guarded + path, timeout=10)
    assert refused.status_code == 401
    assert "access token required" in refused.json()["error"]
    allowed = httpx.get(guarded + "/udf/config", params={"token": TOKEN}, timeout=10)
    by_header = httpx.get(guarded + "/udf/time", headers={"Authorization": f"Bearer {TOKEN}"},
                          timeout=10)  # fmt: skip
    assert allowed.status_code == by_header.status_code == 200
