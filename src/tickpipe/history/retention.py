"""`tickpipe retain`: drop data older than an age, per kind, from a store and the lake.

`--trades 30d` drops trades whose event time is more than 30 days before now; `--candles
1s=7d,1m=365d` drops the candles of each named interval whose window starts that long before
now (intervals not named are kept). Ages shorter than the engine's correction horizon (plus
the allowed lateness) are refused: a restart rebuilds open windows from the trades of that
horizon, and a candle of it may still be corrected.

Where the data is partitioned, whole partitions go: the lake's trades by `date=` folder (a day
goes once all of it is older than the cut-off, so up to a day more is kept); the lake's candles
share a day folder across intervals, so a folder goes whole when every row in it is expired,
and is rewritten without the expired rows when only some are. DuckDB and PostgreSQL (tickpipe's
schema has no partitions) delete rows, in one transaction. Cassandra and MongoDB are refused
with one line. Running it twice drops nothing the second time: it can be scheduled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyarrow import fs

from tickpipe.durations import format_duration, parse_duration
from tickpipe.engine.windows import parse_window
from tickpipe.stores.base import Store, StoreError
from tickpipe.stores.lake.layout import CANDLES, DAY_US, TRADES, Lake, day_of


@dataclass(frozen=True)
class Retention:
    """Ages (µs) to keep: trades (None: all), candles by interval name (absent: all)."""

    trades_us: int | None = None
    candles_us: dict[str, int] = field(default_factory=dict)

    def cutoffs(self, now_us: int) -> tuple[int | None, dict[str, int]]:
        """The times before which data goes: trades, candles by interval."""
        trades = None if self.trades_us is None else now_us - self.trades_us
        return trades, {name: now_us - age for name, age in self.candles_us.items()}


class RetentionError(ValueError):
    """A bad retention spec (one line naming the option and what is allowed)."""


def parse_retention(trades: str | None, candles: str | None, min_age_us: int) -> Retention:
    """`--trades 30d`, `--candles 1s=7d,1m=365d`; each age at least `min_age_us`."""
    if trades is None and candles is None:
        raise RetentionError("say what to drop: --trades AGE and/or --candles INTERVAL=AGE,...")
    trades_us = None
    if trades is not None:
        trades_us = _age("--trades", trades, min_age_us)
    by_interval: dict[str, int] = {}
    if candles is not None:
        for item in candles.split(","):
            name, sep, age = item.strip().partition("=")
            if not sep or not name.strip() or not age.strip():
                raise RetentionError(
                    f"--candles: {item.strip()!r} is not INTERVAL=AGE (e.g. 1s=7d,1m=365d)"
                )
            try:
                interval = parse_window(name.strip()).name
            except ValueError as exc:
                raise RetentionError(f"--candles: {exc}") from None
            if interval in by_interval:
                raise RetentionError(f"--candles: interval {interval} is named twice")
            by_interval[interval] = _age(f"--candles {interval}", age.strip(), min_age_us)
    return Retention(trades_us, by_interval)


def _age(option: str, text: str, min_age_us: int) -> int:
    try:
        age = parse_duration(text)
    except ValueError as exc:
        raise RetentionError(f"{option}: {exc}") from None
    if age < min_age_us:
        raise RetentionError(
            f"{option}: {text} is shorter than the correction horizon plus the allowed "
            f"lateness ({format_duration(min_age_us)}): a restart rebuilds open windows from "
            "those trades, and their candles may still change"
        )
    return age


@dataclass
class Dropped:
    """What one retention run removed."""

    trades: int = 0  # rows (a store), or rows in dropped partitions (the lake)
    candles: int = 0
    partitions: int = 0  # whole partitions (folders) dropped
    rewritten: int = 0  # partitions rewritten without their expired rows


def retain_store(store: Store, retention: Retention, now_us: int) -> Dropped:
    """Delete what `retention` drops from `store` (DuckDB or PostgreSQL)."""
    drop = getattr(store, "drop_before", None)
    if drop is None:
        raise StoreError(
            f"tickpipe retain: {store.describe()}: retention is not supported for this store "
            "yet (DuckDB, PostgreSQL and the lake are)"
        )
    trades_before, candles_before = retention.cutoffs(now_us)
    trades, candles = drop(trades_before, candles_before)
    return Dropped(trades=trades, candles=candles)


def retain_lake(lake: Lake, retention: Retention, now_us: int) -> Dropped:
    """Drop the lake's expired partitions; rewrite candle partitions expired in part."""
    trades_before, candles_before = retention.cutoffs(now_us)
    dropped = Dropped()
    if trades_before is not None:
        for folder, day in _day_folders(lake, TRADES):
            if _day_start(day) + DAY_US <= trades_before:  # all of the day is older
                dropped.trades += _rows(lake, folder)
                _delete(lake, folder)
                dropped.partitions += 1
    if candles_before:
        latest = max(candles_before.values())
        for folder, day in _day_folders(lake, CANDLES):
            if _day_start(day) < latest:  # else nothing in it can be expired
                _retain_candles(lake, folder, candles_before, dropped)
    return dropped


def _retain_candles(lake: Lake, folder: str, before: dict[str, int], dropped: Dropped) -> None:
    files = [f for f in lake.list(folder) if f.type == fs.FileType.File and
             f.base_name.endswith(".parquet") and not f.base_name.startswith(".")]  # fmt: skip
    if not files:
        return
    with lake.reading():
        table = pa.concat_tables(pq.read_table(f.path, filesystem=lake.fs) for f in files)
    expired = pa.array([False] * table.num_rows)
    for interval, cutoff in before.items():
        mine = pc.and_(pc.equal(table["interval"], interval), pc.less(table["start"], cutoff))
        expired = pc.or_(expired, mine)
    gone = pc.sum(expired).as_py() or 0
    if not gone:
        return
    dropped.candles += gone
    if gone == table.num_rows:
        _delete(lake, folder)
        dropped.partitions += 1
        return
    lake.replace_files(folder, table.filter(pc.invert(expired)), CANDLES)
    dropped.rewritten += 1


def _day_folders(lake: Lake, kind: str) -> list[tuple[str, str]]:
    """(folder, date) of every day partition of `kind`."""
    out = []
    root = lake.path(kind)
    for exchange in lake.partitions(root, "exchange"):
        by_exchange = f"{root}/exchange={exchange}"
        for symbol in lake.partitions(by_exchange, "symbol"):
            by_symbol = f"{by_exchange}/symbol={symbol}"
            for day in lake.partitions(by_symbol, "date"):
                out.append((f"{by_symbol}/date={day}", day))
    return out


def _day_start(day: str) -> int:
    from datetime import UTC, datetime

    when = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC)
    start = int(when.timestamp()) * 1_000_000
    assert day_of(start) == day
    return start


def _rows(lake: Lake, folder: str) -> int:
    with lake.reading():
        return sum(
            pq.ParquetFile(f.path, filesystem=lake.fs).metadata.num_rows
            for f in lake.list(folder)
            if f.type == fs.FileType.File and f.base_name.endswith(".parquet")
            and not f.base_name.startswith(".")
        )  # fmt: skip


def _delete(lake: Lake, folder: str) -> None:
    with lake.reading():
        lake.fs.delete_dir(folder)
