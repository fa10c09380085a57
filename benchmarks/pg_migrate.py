"""How long an existing PostgreSQL store takes to migrate to the partitioned trades table.

    python benchmarks/pg_migrate.py                          # 10M trades over 30 days
    python benchmarks/pg_migrate.py --trades 2000000 --days 7

Migration 4 (stores/postgresql.py) moves every stored trade from the one-table layout of
schema 3 into day partitions and builds the new unique key and the BRIN index, all in one
transaction under the migration lock: `tickpipe process` and `tickpipe run` against that
database wait until it is done. This measures that wait on a store of `--trades` trades spread
over `--days` days and 200 instruments, written server-side (generate_series) into schema 3.

Starts a throwaway cluster (tests/servers/postgres.py, fsync off as in the tests: a server
with fsync on spends more on the WAL). Printed: wall seconds of the migration, the server's
CPU seconds (from /proc: they hold on a loaded machine, wall time does not), trades per second
moved, and the trades' size before and after. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from pg_write import proc_cpu_s  # noqa: E402
from servers.postgres import PostgresServer, find_bin_dir  # noqa: E402

BASE_TS = 1_750_000_000_000_000
DAY_US = 86_400_000_000

# Schema 3's trades, filled in the server: 200 instruments (10 exchanges x 20 symbols), one
# trade every `step` µs, numeric ids as text (as exchanges send them).
FILL = """
INSERT INTO trades (source, exchange, symbol, raw_symbol, trade_id, seq, price, size, side,
                    ts, recv_ts)
SELECT 'sim', 'ex' || (i %% 10), 'SYM' || (i / 10 %% 20) || '-USDT',
       'SYM' || (i / 10 %% 20) || 'USDT', i::text, i, 100 + (i %% 1000) / 100.0,
       0.001 * (1 + i %% 50), CASE WHEN i %% 2 = 0 THEN 'buy' ELSE 'sell' END,
       %(base)s + i * %(step)s, %(base)s + i * %(step)s + 1000
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i
"""
CHUNK = 1_000_000


def trades_bytes(con: Any) -> int:
    """The trades' size on disk: the table, or the sum of its partitions, with indexes."""
    return int(
        con.execute(
            "SELECT coalesce((SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits "
            "WHERE inhparent = 'trades'::regclass), pg_total_relation_size('trades'))"
        ).fetchone()[0]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trades", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()

    import psycopg

    from tickpipe.stores import postgresql as pgs

    newest = pgs.MIGRATIONS[-1][0]
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise SystemExit("PostgreSQL is not installed: run scripts/setup/postgresql.sh")
    pg = PostgresServer(bin_dir)
    try:
        pg.init()
        pg.start()
        all_migrations = list(pgs.MIGRATIONS)
        with psycopg.connect(pg.dsn, autocommit=True) as con:
            pgs.MIGRATIONS[:] = [m for m in all_migrations if m[0] <= 3]
            pgs.migrate(con)
            step = args.days * DAY_US // args.trades
            # Filled without its indexes, which are built once after (as they stood): faster.
            indexes = [row[0] for row in con.execute(
                "SELECT indexdef FROM pg_indexes WHERE tablename = 'trades'")]  # fmt: skip
            for (name,) in con.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'trades'"
            ).fetchall():
                con.execute(f'DROP INDEX "{name}"')
            started = time.monotonic()
            for first in range(0, args.trades, CHUNK):
                last = min(first + CHUNK, args.trades) - 1
                con.execute(FILL, {"base": BASE_TS, "step": step, "first": first, "last": last})
                took_s = time.monotonic() - started
                print(f"  filled {last + 1:,} of {args.trades:,} trades ({took_s:.0f} s)",
                      file=sys.stderr, flush=True)  # fmt: skip
            for index in indexes:
                con.execute(index)
            con.execute("VACUUM ANALYZE trades")
            before = trades_bytes(con)
            pgs.MIGRATIONS[:] = all_migrations
            server = con.info.backend_pid
            cpu0, wall0, load0 = proc_cpu_s(server), time.monotonic(), os.getloadavg()[0]
            pgs.migrate(con)
            wall = time.monotonic() - wall0
            cpu = proc_cpu_s(server) - cpu0
            after = trades_bytes(con)
            moved = con.execute("SELECT count(*) FROM trades").fetchone()[0]
        print(json.dumps({
            "trades": moved, "days": args.days, "to_schema": newest,
            "wall_s": round(wall, 1), "server_cpu_s": round(cpu, 1),
            "trades_per_s": round(moved / wall),
            "server_cpu_s_per_million": round(cpu / moved * 1e6, 2),
            "bytes_before": before, "bytes_after": after,
            "loadavg": [round(load0, 2), round(os.getloadavg()[0], 2)],
        }))  # fmt: skip
        if moved != args.trades:
            raise SystemExit(f"the migration kept {moved:,} of {args.trades:,} trades")
    finally:
        pg.close()


if __name__ == "__main__":
    main()
