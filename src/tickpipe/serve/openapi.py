"""The OpenAPI 3.1 document of the API, written by hand: small, and exactly what the routes do."""

from __future__ import annotations

from typing import Any

from tickpipe import __version__
from tickpipe.serve.params import MAX_CANDLES, MAX_TRADES

_TIME = "ISO 8601 (e.g. 2026-11-21T06:00:00Z; no zone = UTC) or epoch milliseconds"


def _param(name: str, description: str, required: bool = False, where: str = "query") -> dict:
    return {
        "name": name, "in": where, "required": required, "description": description,
        "schema": {"type": "string"},
    }  # fmt: skip


_SYMBOL = [
    _param("exchange", "venue, e.g. binance", required=True),
    _param("symbol", "BASE-QUOTE, e.g. BTC-USDT (any spelling: btcusdt, BTC/USDT)", True),
]
_PERIOD = [
    _param("period", "how far back from `end`, e.g. 15m, 1h, 1d (default 1h, at most 30d)"),
    _param("end", f"end of the period (default now): {_TIME}"),
]
_RANK = [_param("by", "trades (default) or volume (quote volume)"), _param("limit", "1-1000")]


def _get(
    summary: str,
    params: list[dict] | None = None,
    errors: tuple[int, ...] = (),
    error: str = "Error",
    answer: str = "JSON",
) -> dict:
    """A GET path; `error` names the schema its refusals have (`Error`, or `UdfError`)."""
    responses: dict[str, Any] = {"200": {"description": answer}}
    shape = '{"error": reason}' if error == "Error" else '{"s": "error", "errmsg": reason}'
    for status in errors:
        responses[str(status)] = {
            "description": f"JSON {shape}",
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{error}"}}},
        }
    return {"get": {"summary": summary, "parameters": params or [], "responses": responses}}


def _udf(summary: str, params: list[dict] | None = None, errors: tuple[int, ...] = ()) -> dict:
    """A route of TradingView's UDF datafeed (`serve/udf.py`): its refusals are UDF's shape."""
    return _get(f"UDF: {summary}", params, errors, "UdfError")


_UDF_SYMBOL = _param("symbol", "EXCHANGE:SYMBOL (e.g. binance:BTC-USDT), or a symbol one "
                     "exchange alone has", True)  # fmt: skip
_UDF_PATHS = {
    "/udf/config": _udf(
        "supported resolutions (the stored intervals), exchanges, search and time", None, (503,)
    ),
    "/udf/symbols": _udf(
        "one symbol's information; pricescale and volume_precision from its newest trades",
        [_UDF_SYMBOL],
        (400, 404, 503),
    ),
    "/udf/search": _udf(
        "instruments whose EXCHANGE:SYMBOL contains the query, any case",
        [
            _param("query", "text to find, e.g. btc"),
            _param("type", "crypto (any other type finds nothing)"),
            _param("exchange", "one exchange (default: all)"),
            _param("limit", "at most 100 (default 30)"),
        ],
        (400, 503),
    ),
    "/udf/history": _udf(
        'bars as columns {"s": "ok", "t" (UNIX s), "o", "h", "l", "c", "v"}; without bars '
        '{"s": "no_data", "nextTime": the newest earlier bar, if one is within '
        f"{MAX_CANDLES:,} bars}}",
        [
            _UDF_SYMBOL,
            _param("resolution", "a stored interval in UDF spelling: 1S, 1 (minute), 60, 1D", True),
            _param("from", "UNIX seconds, first bar (ignored with countback)"),
            _param("to", "UNIX seconds, bars before it", True),
            _param("countback", f"the last N bars before `to`, 1-{MAX_CANDLES:,}"),
        ],
        (400, 404, 503),
    ),
    "/udf/time": _get("UDF: the server's time in UNIX seconds", answer="text/plain"),
}


def openapi_document() -> dict[str, Any]:
    """The document served at /openapi.json."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tickpipe API",
            "version": __version__,
            "description": (
                "Candles, trades, rolling statistics, KPIs and analytics from tickpipe's store. "
                "Times in answers are integer microseconds since the epoch (UTC). Live pushes: "
                'WebSocket /api/live, send {"subscribe": {"exchange", "symbol", '
                '"interval", "trades"}} (or a list) and receive {"type": "candle"|"trades"|'
                '"dropped"|"error", ...} messages; "trades" (default true) says whether the '
                "symbol's trades are pushed too, and subscribing again to a key with another "
                '"trades" changes only that. With an access token configured, send '
                "`Authorization: Bearer TOKEN` or `?token=TOKEN` (WebSocket: closed with 4401). "
                "A read over serve.read_timeout, or a heavy read beyond serve.heavy_reads at "
                "once (with Retry-After), is answered 503 with the reason. Analytics are "
                "summed from candles over the period widened to whole candles (the answer's "
                "start and end). TradingView's UDF datafeed is under /udf (its base URL: "
                "http://HOST:PORT/udf), answering in UDF's shapes."
            ),
        },
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                },
                "UdfError": {
                    "type": "object",
                    "required": ["s", "errmsg"],
                    "properties": {"s": {"const": "error"}, "errmsg": {"type": "string"}},
                },
            }
        },
        "paths": {
            "/api/health": _get("the API answers and the store reads"),
            "/api/exchanges": _get(
                "exchanges and their symbols (each with its price and size precision: "
                "price_decimals, size_decimals, tick_size, lot_size), and the stored intervals",
                errors=(503,),
            ),
            "/api/candles": _get(
                f"candles of one symbol, at most {MAX_CANDLES:,} per answer",
                [
                    *_SYMBOL,
                    _param("interval", "a stored interval, e.g. 1m (default 1m)"),
                    _param(
                        "bucket", "any multiple of a stored interval, e.g. 15m (not with interval)"
                    ),
                    _param("start", _TIME),
                    _param("end", f"{_TIME} (default now)"),
                    _param("lookback", "instead of start: e.g. 1h before end"),
                    _param("fill", "true: empty buckets carry the previous close, volume 0"),
                ],
                (400, 404, 503),
            ),
            "/api/trades": _get(
                "recent trades, newest first",
                [*_SYMBOL, _param("limit", f"1-{MAX_TRADES} (default 100)")],
                (400, 404, 503),
            ),
            "/api/rolling": _get(
                "rolling statistics: 30-minute average close, 5-minute min/max/avg price",
                [*_SYMBOL, _param("limit", "history rows (default 60)")],
                (400, 404),
            ),
            "/api/kpis": _get("stored totals, events, live hub and pipeline counters"),
            "/api/quality": _get(
                "data quality per venue: receive delay p50/p99, out of order, gaps, duplicates,"
                " future-stamped trades (a stored file: live false, none)",
            ),
            "/api/composite": _get(
                "consolidated prices: each composite symbol's price, each venue's price, "
                "deviation and staleness (a stored file: live false, none)",
            ),
            "/api/kpis/history": _get(
                "KPIs kept in the store (throughput, lag, volume), oldest first",
                [
                    _param("lookback", "how far back, e.g. 15m, 1h (default 1h, at most 30d)"),
                    _param("process", "one process's KPIs (default: all)"),
                    _param("limit", "1-100000 (default 10000)"),
                ],
                (400,),
            ),
            "/api/alerts": _get(
                "active alerts and alert history (newest first)",
                [_param("limit", "history items, 1-100000 (default 1000)")],
                (400,),
            ),
            "/api/analytics/top-exchanges": _get(
                "exchanges by trade count or quote volume", [*_PERIOD, *_RANK], (400, 503)
            ),
            "/api/analytics/top-tickers": _get(
                "symbols by trade count or quote volume", [*_PERIOD, *_RANK], (400, 503)
            ),
            "/api/analytics/exchange/{name}": _get(
                "one exchange: trade statistics and each ticker's share",
                [_param("name", "exchange", True, "path"), *_PERIOD],
                (400, 404, 503),
            ),
            "/api/forecasts": _get(
                "next-candle forecasts of one symbol (close and 80 % band, oldest first) and "
                "its scoreboard: per interval, the model's and the baselines' MAE, RMSE, "
                "directional accuracy, and whether the model beats the last close",
                [
                    *_SYMBOL,
                    _param("interval", "a stored tumbling interval, e.g. 1m", True),
                    _param(
                        "lookback",
                        "forecasts of candles starting this far back from `end` "
                        "(default 1h, at most 30d)",
                    ),
                    _param("end", f"end of the range (default: the next candle): {_TIME}"),
                ],
                (400, 404, 503),
            ),
            **_UDF_PATHS,
        },
    }
