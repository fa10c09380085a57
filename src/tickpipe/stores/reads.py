"""The API's reads, written once in SQL that DuckDB and PostgreSQL both speak.

Where the dialects part (first/last value by an order, median), each store fills in its own
spelling, so both answer every route with the same numbers. Ties in event time are broken by
`seq`, so "last price" does not depend on the order rows happen to be scanned in.
"""

from __future__ import annotations

from typing import Any


class SqlReads:
    """Mixin: the store provides `_rows` and `_dicts` (SQL with `?` placeholders)."""

    FIRST = "arg_min({0}, (ts, seq))"  # the value of the earliest trade
    LAST = "arg_max({0}, (ts, seq))"
    MEDIAN = "median({0})"

    def _rows(self, sql: str, params: list | None = None) -> list[tuple]:
        raise NotImplementedError

    def _dicts(self, sql: str, params: list | None = None) -> list[dict[str, Any]]:
        raise NotImplementedError

    def ping(self) -> None:
        self._rows("SELECT 1")

    def intervals(self) -> list[str]:
        return [r[0] for r in self._rows("SELECT DISTINCT interval FROM candles ORDER BY 1")]

    def has_instrument(self, exchange: str, symbol: str) -> bool:
        rows = self._rows(
            "SELECT 1 FROM candles WHERE exchange = ? AND symbol = ? LIMIT 1", [exchange, symbol]
        )
        return bool(rows)

    def has_exchange(self, exchange: str) -> bool:
        return bool(self._rows("SELECT 1 FROM candles WHERE exchange = ? LIMIT 1", [exchange]))

    def instrument_summary(self) -> list[tuple[str, str, int, int, int]]:
        return self._rows(
            "SELECT exchange, symbol, count(*), min(ts), max(ts) FROM trades "
            "GROUP BY exchange, symbol ORDER BY exchange, symbol"
        )

    def recent_trades(self, exchange: str, symbol: str, limit: int) -> list[dict[str, Any]]:
        return self._dicts(
            "SELECT source, exchange, symbol, raw_symbol, trade_id, seq, price, size, side, ts, "
            "recv_ts FROM trades WHERE exchange = ? AND symbol = ? ORDER BY ts DESC, seq DESC "
            "LIMIT ?",
            [exchange, symbol, limit],
        )

    def rolling_history(self, exchange: str, symbol: str, limit: int) -> list[dict[str, Any]]:
        return self._dicts(
            "SELECT exchange, symbol, ts, avg_close_30m, min_price_5m, max_price_5m, "
            "avg_price_5m FROM rolling_stats WHERE exchange = ? AND symbol = ? "
            "ORDER BY ts DESC LIMIT ?",
            [exchange, symbol, limit],
        )

    def totals(self) -> dict[str, Any]:
        ((trades, last_ts, last_recv),) = self._rows(
            "SELECT count(*), max(ts), max(recv_ts) FROM trades"
        )
        ((candles,),) = self._rows("SELECT count(*) FROM candles")
        events = self._rows("SELECT kind, count(*) FROM events GROUP BY kind ORDER BY kind")
        return {
            "stored_trades": trades, "stored_candles": candles, "last_trade_ts": last_ts,
            "last_recv_ts": last_recv, "events": dict(events),
        }  # fmt: skip

    def top_exchanges(self, start: int, end: int, by: str, limit: int) -> list[dict[str, Any]]:
        order = _order(by)
        return self._dicts(
            f"SELECT exchange, count(*) AS trades, sum(price * size) AS quote_volume, "
            f"count(DISTINCT symbol) AS symbols FROM trades WHERE ts >= ? AND ts < ? "
            f"GROUP BY exchange ORDER BY {order} DESC, exchange LIMIT ?",
            [start, end, limit],
        )

    def top_tickers(self, start: int, end: int, by: str, limit: int) -> list[dict[str, Any]]:
        order = _order(by)
        return self._dicts(
            f"SELECT symbol, count(*) AS trades, sum(size) AS volume, "
            f"sum(price * size) AS quote_volume, count(DISTINCT exchange) AS exchanges, "
            f"{self.LAST.format('price')} AS last_price, "
            f"{self.FIRST.format('price')} AS first_price "
            f"FROM trades WHERE ts >= ? AND ts < ? "
            f"GROUP BY symbol ORDER BY {order} DESC, symbol LIMIT ?",
            [start, end, limit],
        )

    def exchange_breakdown(
        self, exchange: str, start: int, end: int
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        params = [exchange, start, end]
        (totals,) = self._dicts(
            "SELECT count(*) AS trades, coalesce(sum(price * size), 0) AS quote_volume, "
            "count(*) FILTER (WHERE side = 'buy') AS buys, "
            "count(*) FILTER (WHERE side = 'sell') AS sells, "
            f"avg(price * size) AS mean_trade_value, "
            f"{self.MEDIAN.format('price * size')} AS median_trade_value, "
            "max(price * size) AS max_trade_value FROM trades "
            "WHERE exchange = ? AND ts >= ? AND ts < ?",
            params,
        )
        tickers = self._dicts(
            "SELECT symbol, count(*) AS trades, "
            "CAST(count(*) AS DOUBLE PRECISION) / sum(count(*)) OVER () AS trade_share, "
            "sum(price * size) AS quote_volume, "
            "sum(price * size) / sum(sum(price * size)) OVER () AS volume_share, "
            "sum(price * size) / nullif(sum(size), 0) AS vwap, min(price) AS low, "
            "max(price) AS high, avg(size) AS mean_size "
            "FROM trades WHERE exchange = ? AND ts >= ? AND ts < ? "
            "GROUP BY symbol ORDER BY trades DESC, symbol",
            params,
        )
        return totals, tickers


def _order(by: str) -> str:
    if by not in ("trades", "volume"):
        raise ValueError(f"by={by!r}: use trades or volume")
    return "trades" if by == "trades" else "quote_volume"
