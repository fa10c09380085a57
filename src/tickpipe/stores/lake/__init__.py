"""The Parquet data lake: trades and final candles beside any primary store.

Layout (Hive-partitioned, readable as is by DuckDB over pyarrow datasets, polars and Spark)::

    ROOT/trades/exchange=binance/symbol=BTC-USDT/date=2026-12-05/part-<ts>-<ts>-<digest>.parquet
    ROOT/candles/exchange=binance/symbol=BTC-USDT/date=2026-12-05/part-<start>-<start>-<digest>.parquet

(`<ts>-<ts>`: the oldest and newest trade time in the file, microseconds; candles: start.)

`exchange`, `symbol` and `date` (UTC day of the trade's `ts`, of the candle's `start`) live in
the path only. Files roll per partition when their buffer reaches `lake_roll_bytes` or its
oldest row `lake_roll_every`.

Only ever visible complete: a local file is written under a hidden temporary name
(`.part-….parquet.tmp`, which every reader skips) and renamed; an S3 object is one finished
upload, which S3 shows only once complete.

Nothing written twice, the rule:

1. The lake follows the primary store: it is handed trades and final candles only after the
   store committed them (`StoreWriter.after_write`). A crash before that commit loses nothing
   from the lake that the store has.
2. A crash after the store's commit but before the lake's file leaves the lake short. At
   start-up (`catch_up`), per instrument, the lake's newest trade time is read from its file
   names; everything the store holds from that time minus the correction horizon on is
   compared with what the lake holds there, by key ((exchange, symbol, trade_id) for trades,
   (exchange, symbol, interval, start, revision) for candles), and only the missing rows are
   written. Only after that does the live path feed the lake, so restored candles are not
   re-sent. (`tickpipe process` does the same on each assignment: see its runner.)
3. File names are made from the content (its time range and a digest of its keys): writing the
   same rows again replaces a file instead of adding one.

`tickpipe export` is the same comparison over a chosen range, so running it twice, or over a
range the live lake already holds, writes nothing twice either.

A final candle corrected later (a late trade within the correction horizon, or a window a
stopping processor closed that its restart reopens) is a new revision: the lake appends it as a
row of its own, as a changelog, and readers take the newest revision of each (exchange, symbol,
interval, start), e.g. DuckDB's `QUALIFY row_number() OVER (PARTITION BY exchange, symbol,
interval, start ORDER BY revision DESC) = 1`; `tickpipe verify --lake` does.
"""
