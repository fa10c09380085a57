"""The base of both SQL stores: the shared reads (`reads.py`) and the front of every write.

`write` turns what the pipeline hands over into one `Flush` (`flush.py`) and hands it to the
store's own bulk path (`_write`: DuckDB's Arrow inserts, PostgreSQL's binary COPY), which
stores it in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

from tickpipe.records import CANDLE_FIELDS, Candle, PipelineMetric, RollingStat, TradeBatch
from tickpipe.stores.flush import Flush
from tickpipe.stores.reads import SqlReads


def upsert_sql(
    table: str, fields: tuple[str, ...], key: tuple[str, ...], where: str, in_key_order: bool = True
) -> str:
    """An upsert of `fields` from `{source}` into `table` on `key`, the row replaced only
    `where` it holds (`stored`: the row in the table, `excluded`: the incoming one)."""
    # In key order: two writers upserting the same rows then lock them in the same order, so
    # they wait for each other instead of deadlocking (a store with one writer skips the sort).
    cols, keys = ", ".join(fields), ", ".join(key)
    sets = ", ".join(f"{f} = excluded.{f}" for f in fields if f not in key)
    order = f" ORDER BY {keys}" if in_key_order else ""
    return (
        f"INSERT INTO {table} AS stored ({cols}) SELECT {cols} FROM {{source}}{order} "
        f"ON CONFLICT ({keys}) DO UPDATE SET {sets}{where}"
    )


def candle_upsert(source: str, in_key_order: bool = True) -> str:
    """The candle upsert from the table `source`, keeping the revision rule: the stored candle
    loses unless the incoming one is newer, a higher revision, or the same revision and final
    where the stored one is provisional. Equal rows replace each other (replays converge)."""
    return upsert_sql(
        "candles", CANDLE_FIELDS, ("exchange", "symbol", "interval", "start"),
        " WHERE stored.revision < excluded.revision OR (stored.revision = excluded.revision"
        " AND NOT (stored.final AND NOT excluded.final))", in_key_order,
    ).format(source=source)  # fmt: skip


class SqlStore(SqlReads):
    """A store over SQL: the store provides `_write` (and `_rows`, `_dicts` for the reads)."""

    def write(
        self,
        trades: Iterable[TradeBatch | pa.Table] = (),
        candles: Iterable[Candle] = (),
        rolling: Iterable[RollingStat] = (),
        events: Iterable[tuple[int, str, str, str]] = (),
        metrics: Iterable[PipelineMetric] = (),
    ) -> None:
        """Store one flush in one transaction: trades appended, candles, rolling statistics
        and KPIs upserted (the last update per key wins), events stored."""
        self._write(Flush.of(trades, candles, rolling, events, metrics))

    def write_flush(self, flush: Flush) -> None:
        """As `write`, and the parts of the engine snapshot replaced (None: deleted) in the
        same transaction, so the snapshot matches the rows."""
        self._write(flush)

    def load_snapshot(self) -> dict[str, bytes]:
        """The stored parts of the engine snapshot (none: {})."""
        return {part: bytes(data) for part, data in self._rows(
            "SELECT part, data FROM engine_snapshot")}  # fmt: skip

    def _write(self, flush: Flush) -> None:
        raise NotImplementedError
