"""The Spark side of the candle semantics, as DataFrame transformations (no I/O here).

- `parse`: Kafka records -> one row per message: a trade message (the JSON encoding of
  transport/schema.py), a watermark heartbeat, or malformed (counted, dead-lettered).
- `trade_rows`: trade messages exploded into one row per trade, heartbeats kept as rows that
  carry only an event time (they advance the watermark, then are filtered out).
- `candles`: every configured window's candles in one aggregation, every Candle field as
  tickpipe's engine computes it. Open and close are the min and max of a (ts, seq, price)
  struct, so they follow the (ts, seq) order whatever the arrival order; Spark's
  `first`/`last` depend on it.

Trades are de-duplicated on (exchange, symbol, trade_id) within the watermark, which is the
newest event time seen minus `allowed_lateness` (Spark keeps one per query, where the engine
keeps one per instrument: the README's Spark section says what that changes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from tickpipe.engine.windows import Window

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

HEARTBEAT = "heartbeat"
TRADES = "trades"
MALFORMED = "malformed"

# Trade messages (docs/schema/trade.v1.json) and heartbeats (`kind`, `event_ts`) in one schema.
MESSAGE_SCHEMA = StructType(
    [
        StructField("v", LongType()),
        StructField("kind", StringType()),
        StructField("event_ts", LongType()),
        StructField("source", StringType()),
        StructField("exchange", StringType()),
        StructField("symbol", StringType()),
        StructField("raw_symbol", StringType()),
        StructField("seq", ArrayType(LongType())),
        StructField("price", ArrayType(DoubleType())),
        StructField("size", ArrayType(DoubleType())),
        StructField("side", ArrayType(IntegerType())),
        StructField("ts", ArrayType(LongType())),
        StructField("recv_ts", ArrayType(LongType())),
        StructField("trade_id", ArrayType(StringType())),
    ]
)
_COLUMNS = ("seq", "price", "size", "side", "ts", "recv_ts")
_FINITE = 1e300  # as transport/schema.py: JSON has no NaN, and 1e999 would be infinity


def _same_length(m: Column) -> Column:
    n = F.size(m["seq"])
    same = n >= 1
    for name in _COLUMNS[1:]:
        same = same & (F.size(m[name]) == n)
    return same & (m["trade_id"].isNull() | (F.size(m["trade_id"]) == n))


def _all(array: Column, test) -> Column:
    return F.forall(array, lambda x: x.isNotNull() & test(x))


def _valid_trades(m: Column) -> Column:
    """What transport/schema.py's decoder accepts, checked column-wise."""
    named = F.lit(True)
    for name in ("source", "exchange", "symbol"):
        named = named & m[name].isNotNull() & (F.length(m[name]) > 0)
    return (
        (m["v"] == 1)
        & m["kind"].isNull()
        & named
        & F.coalesce(_same_length(m), F.lit(False))
        & _all(m["seq"], lambda _x: F.lit(True))
        & _all(m["ts"], lambda _x: F.lit(True))
        & _all(m["recv_ts"], lambda _x: F.lit(True))
        & _all(m["price"], lambda x: F.abs(x) <= _FINITE)
        & _all(m["size"], lambda x: F.abs(x) <= _FINITE)
        & _all(m["side"], lambda x: x.between(-1, 1))
    )


def parse(records: DataFrame) -> DataFrame:
    """Kafka records -> (kind, message, value, partition, offset); `kind` is trades, heartbeat
    or malformed. JSON that is not a valid message of version 1 (binary messages included:
    the Spark job reads the JSON encoding) is malformed."""
    text = F.col("value").cast("string")
    m = F.from_json(text, MESSAGE_SCHEMA, {"mode": "PERMISSIVE"})
    parsed = records.select(m.alias("m"), F.col("value"), F.col("partition"), F.col("offset"))
    m = F.col("m")
    heartbeat = (m["v"] == 1) & (m["kind"] == HEARTBEAT) & m["event_ts"].isNotNull()
    kind = (
        F.when(m.isNull(), F.lit(MALFORMED))
        .when(heartbeat, F.lit(HEARTBEAT))
        .when(_valid_trades(m), F.lit(TRADES))
        .otherwise(F.lit(MALFORMED))
    )
    return parsed.select(kind.alias("kind"), "m", "value", "partition", "offset")


def trade_rows(messages: DataFrame) -> DataFrame:
    """One row per trade (and one per heartbeat), with `event_time` (a timestamp of `ts`)."""
    m = F.col("m")
    ids = F.coalesce(m["trade_id"], F.transform(m["seq"], lambda s: s.cast("string")))
    zipped = F.arrays_zip(*(m[c].alias(c) for c in _COLUMNS), ids.alias("trade_id"))
    beat = F.array(
        F.struct(
            F.lit(0).cast("long").alias("seq"), F.lit(0.0).alias("price"),
            F.lit(0.0).alias("size"), F.lit(0).cast("int").alias("side"),
            m["event_ts"].alias("ts"), m["event_ts"].alias("recv_ts"),
            F.concat(F.lit("heartbeat:"), m["event_ts"].cast("string")).alias("trade_id"),
        )
    )  # fmt: skip
    rows = F.when(F.col("kind") == HEARTBEAT, beat).otherwise(zipped)
    exploded = messages.where(F.col("kind") != MALFORMED).select(
        "kind",
        F.coalesce(m["source"], F.lit("")).alias("source"),
        F.coalesce(m["exchange"], F.lit("")).alias("exchange"),
        F.coalesce(m["symbol"], F.lit("")).alias("symbol"),
        F.coalesce(m["raw_symbol"], F.lit("")).alias("raw_symbol"),
        F.explode(rows).alias("t"),
    )
    return exploded.select(
        "kind", "source", "exchange", "symbol", "raw_symbol", "t.*",
        F.timestamp_micros(F.col("t.ts")).alias("event_time"),
    )  # fmt: skip


def stored_trades(rows: DataFrame) -> DataFrame:
    """Trade rows in the columns of the trades table (records.TRADE_SCHEMA)."""
    side = (
        F.when(F.col("side") == 1, F.lit("buy"))
        .when(F.col("side") == -1, F.lit("sell"))
        .otherwise(F.lit("unknown"))
    )
    return rows.where(F.col("kind") == TRADES).select(
        "source", "exchange", "symbol", "raw_symbol", "trade_id", "seq", "price", "size",
        side.alias("side"), "ts", "recv_ts",
    )  # fmt: skip


def deduplicated(rows: DataFrame, allowed_lateness_us: int) -> DataFrame:
    """Each (exchange, symbol, trade_id) once within the watermark.

    Heartbeats stay in (exchange "", their own ids): a filter on `kind` here would be pushed
    below the watermark by Spark's optimizer (it does not refer to the event time), and the
    heartbeats would never advance it. Their candles, exchange "", are dropped by the sink
    (`real_candles`)."""
    watermarked = rows.withWatermark("event_time", f"{allowed_lateness_us} microseconds")
    return watermarked.dropDuplicatesWithinWatermark(["exchange", "symbol", "trade_id"])


def real_candles(candles: DataFrame) -> DataFrame:
    """Candle rows without the heartbeats' (exchange "")."""
    return candles.where(F.col("exchange") != "")


def spans(windows: tuple[Window, ...]) -> Column:
    """Every (interval, start, size) of the configured windows that holds the row's `ts`:
    the engine's `Window.starts`, epoch-aligned."""
    parts = []
    for w in windows:
        last = F.col("ts") - F.pmod(F.col("ts"), F.lit(w.slide))
        for k in range(w.size // w.slide):
            parts.append(F.struct(F.lit(w.name).alias("interval"),
                                  (last - k * w.slide).alias("start"),
                                  F.lit(w.size).cast("long").alias("size")))  # fmt: skip
    return F.array(*parts)


def candles(trades: DataFrame, windows: tuple[Window, ...]) -> DataFrame:
    """Candle rows of every window in one aggregation (without final, revision, updated_at:
    the sink sets them).

    Each trade is exploded to one row per window holding it and grouped by (exchange, symbol,
    interval, start, window_end). `window()` takes only literal durations, so the window end
    is computed; Spark emits (append) and forgets (both modes) a group once the grouping
    column that carries the event-time watermark's metadata is at or below the watermark,
    and a computed column carries none, while a second `withWatermark` on it is refused
    (Spark 4: "Redefining watermark is disallowed"). So `window_end` gets `event_time`'s
    watermark metadata: its group closes when the watermark reaches the window's end, the
    rule `window()` applies to its own end (and the engine to its windows).
    """
    watermark = trades.schema["event_time"].metadata
    if not watermark:
        raise ValueError("candles: the trades need an event-time watermark (deduplicated)")
    exploded = trades.select("*", F.explode(spans(windows)).alias("span"))
    end = F.timestamp_micros(F.col("span.start") + F.col("span.size"))
    rows = exploded.select(
        "exchange", "symbol", "ts", "seq", "price", "size", "side",
        F.col("span.interval").alias("interval"), F.col("span.start").alias("start"),
        end.alias("window_end", metadata=watermark),
    )  # fmt: skip
    first = F.min(F.struct("ts", "seq", "price"))
    last = F.max(F.struct("ts", "seq", "price"))
    buy = F.sum(F.when(F.col("side") == 1, F.col("size")).otherwise(F.lit(0.0)))
    sell = F.sum(F.when(F.col("side") == -1, F.col("size")).otherwise(F.lit(0.0)))
    grouped = rows.groupBy("exchange", "symbol", "interval", "start", "window_end").agg(
        first.alias("o"), last.alias("c"), F.max("price").alias("high"),
        F.min("price").alias("low"), F.sum("size").alias("volume"),
        F.sum(F.col("price") * F.col("size")).alias("quote_volume"),
        F.sum("price").alias("price_sum"), F.count(F.lit(1)).alias("trades"),
        buy.alias("buy_volume"), sell.alias("sell_volume"),
    )  # fmt: skip
    volume, close = F.col("volume"), F.col("c.price")
    vwap = F.when(volume > 0, F.col("quote_volume") / volume).otherwise(close)
    return grouped.select(
        "exchange", "symbol", "interval", "start",
        F.col("o.price").alias("open"), "high", "low", close.alias("close"), "volume",
        "quote_volume", vwap.alias("vwap"),
        (F.col("price_sum") / F.col("trades")).alias("mean_price"), "trades", "buy_volume",
        "sell_volume", F.col("o.seq").alias("first_seq"), F.col("c.seq").alias("last_seq"),
    )  # fmt: skip
