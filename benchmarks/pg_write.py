"""Where PostgreSQL spends its time storing trades: the write path taken apart, index by index.

    python benchmarks/pg_write.py                   # 10 flushes of 100,000 trades per variant
    python benchmarks/pg_write.py --flushes 20 --rows 50000

Starts a throwaway cluster (tests/servers/postgres.py). For each variant a fresh database gets
tickpipe's schema, then the same simulated trades (200 symbols) are written flush by flush,
each flush as the store writes it: a binary COPY into a staging table, then `INSERT ... SELECT
... ON CONFLICT DO NOTHING` into `trades`. Timed apart, per flush: the client's COPY (CPU
seconds of this process: building rows, psycopg encoding them) and the server's statements
(wall time of each while this client waits: the server's own work). Variants drop one index
at a time, so the difference is that index's cost. The `copy-` variants are a plain binary COPY
into the table (no staging, no sort, no conflict check): `copy-unique` with every index (a
duplicate then fails the COPY: the optimistic path the store takes), `copy-direct` without the
unique key, `copy-bare` without any index (the ceiling). `store` is the store's own `write`,
`store-offsets` the same with a Kafka group's offsets (6 partitions) in each transaction, as a
processor writes.

Besides wall times (meaningless on a loaded machine), each variant reports CPU seconds per
million rows of the server's backend (read from /proc) and of this client: those hold under
load. `--schema 3` measures the layout before migration 4 (for before/after figures). Run on
an idle machine; the figures print with the load average beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from servers.postgres import PostgresServer, find_bin_dir  # noqa: E402

from tickpipe.sources.simulated import MarketSimulator  # noqa: E402
from tickpipe.stores.flush import trade_columns  # noqa: E402

BASE_TS = 1_750_000_000_000_000


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of process `pid` so far, from /proc (any user's)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


ALL_INDEXES = [f"DROP INDEX IF EXISTS {i}" for i in ("trades_time", "trades_key",
                                                      "trades_instrument_time")]  # fmt: skip


def run_variant(pg: PostgresServer, variant: str, batches: list) -> dict:
    import psycopg

    from tickpipe.stores import postgresql as pgs

    name = f"w_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg.dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    store = pgs.PostgresStore(pg.dsn_for(name), read_connections=1)
    store.close()
    drops = {
        "no-brin": ["DROP INDEX IF EXISTS trades_time"],
        "no-instrument-time": ["DROP INDEX IF EXISTS trades_instrument_time"],
        "no-unique": ["DROP INDEX IF EXISTS trades_key"],
        "no-indexes": ALL_INDEXES,
        "copy-direct": ["DROP INDEX IF EXISTS trades_key"],
        "copy-bare": ALL_INDEXES,
    }.get(variant, [])
    copy_cpu = copy_wall = insert_wall = 0.0
    rows = 0
    with psycopg.connect(pg.dsn_for(name), autocommit=True) as con:
        for sql in drops:
            con.execute(sql)
        days = sorted({d for b in batches for d in (b.ts // pgs.DAY_US).tolist()})
        if con.execute("SELECT to_regproc('tickpipe_trades_partition')").fetchone()[0]:
            con.execute("SELECT tickpipe_trades_partition(d) FROM unnest(%s::bigint[]) d", [days])
        con.execute(pgs.STAGING)
        backend = con.info.backend_pid
        server0 = proc_cpu_s(backend)
        for batch in batches if not variant.startswith("store") else []:
            values = trade_columns([batch])
            with con.transaction(), con.cursor() as cur:
                direct = variant.startswith("copy-")
                table = "trades" if direct else "stage_trades"
                c0, w0 = _cpu_s(), time.perf_counter()
                rows_in = zip(*values, strict=True)
                copy = pgs._copy  # noqa: SLF001
                copy(cur, table, pgs.TRADE_FIELDS, pgs.TRADE_TYPES, rows_in)
                copy_cpu += _cpu_s() - c0
                copy_wall += time.perf_counter() - w0
                if not direct:
                    w1 = time.perf_counter()
                    cur.execute(pgs.TRADE_INSERT)
                    insert_wall += time.perf_counter() - w1
            rows += len(batch)
        if variant.startswith("store"):  # the store's own write (trade_columns included)
            from tickpipe.stores.flush import Flush, StreamOffsets

            store = pgs.PostgresStore(pg.dsn_for(name), read_connections=1)
            # store-offsets: as a Kafka processor writes, 6 partitions' offsets in each flush
            offsets = variant == "store-offsets"
            if offsets:
                store.stream_offsets("bench", "trades", list(range(6)))
            writer = store._writer.con  # noqa: SLF001
            assert writer is not None
            backend = writer.info.backend_pid
            server0 = proc_cpu_s(backend)
            c0, w0 = _cpu_s(), time.perf_counter()
            for i, batch in enumerate(batches):
                if offsets:
                    at = {p: ((i + 1) * 1000, '{"v": 1, "replay": 0}') for p in range(6)}
                    flush = Flush.of([batch], offsets=StreamOffsets("bench", "trades", at))
                    store.write_flush(flush)
                else:
                    store.write([batch])
            copy_cpu, copy_wall = _cpu_s() - c0, time.perf_counter() - w0
            rows = sum(len(b) for b in batches)
            server_cpu = proc_cpu_s(backend) - server0
            store.close()
        else:
            server_cpu = proc_cpu_s(backend) - server0
        size = con.execute(
            "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), "
            "pg_total_relation_size('trades')) FROM pg_inherits "
            "WHERE inhparent = 'trades'::regclass"
        ).fetchone()[0]
    with psycopg.connect(pg.dsn, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "{name}"')
    total = copy_wall + insert_wall
    return {
        "variant": variant, "rows": rows,
        "copy_client_cpu_s": round(copy_cpu, 3), "copy_wall_s": round(copy_wall, 3),
        "insert_server_s": round(insert_wall, 3),
        "insert_us_per_row": round(insert_wall / rows * 1e6, 2),
        "rows_per_s": round(rows / total), "table_bytes_per_row": round(size / rows),
        "server_cpu_s_per_million": round(server_cpu / rows * 1e6, 2),
        "client_cpu_s_per_million": round(copy_cpu / rows * 1e6, 2),
    }  # fmt: skip


OLD_SCHEMA: int | None = None  # --schema N: the schema as of migration N (before/after)

VARIANTS = ["as-is", "no-brin", "no-instrument-time", "no-unique", "no-indexes", "copy-unique",
            "copy-direct", "copy-bare", "store", "store-offsets"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flushes", type=int, default=10)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--variants", nargs="*", default=VARIANTS, choices=VARIANTS)
    parser.add_argument("--schema", type=int, help="stop at this migration (3: before the "
                        "partitioned trades) to measure the old layout")  # fmt: skip
    args = parser.parse_args()
    if args.schema is not None:
        from tickpipe.stores import postgresql as pgs

        global OLD_SCHEMA
        OLD_SCHEMA = args.schema
        pgs.MIGRATIONS[:] = [m for m in pgs.MIGRATIONS if m[0] <= args.schema]
    sim = MarketSimulator(200, 100_000.0, seed=3, exchange="sim", source="sim")
    batches = [
        sim.trades(args.rows, BASE_TS + i * 1_000_000, 1_000_000) for i in range(args.flushes)
    ]
    bin_dir = find_bin_dir()
    assert bin_dir is not None, "PostgreSQL is not installed (scripts/setup/postgresql.sh)"
    pg = PostgresServer(bin_dir)
    try:
        pg.init()
        pg.start()
        for variant in [v for v in args.variants if not (v.startswith("store") and OLD_SCHEMA)]:
            result = run_variant(pg, variant, batches)
            result["loadavg"] = round(os.getloadavg()[0], 2)
            print(json.dumps(result), flush=True)
    finally:
        pg.close()


if __name__ == "__main__":
    main()
