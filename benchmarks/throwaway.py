"""A throwaway Kafka broker and PostgreSQL server for one benchmark run, shared by
benchmarks/kafka.py and benchmarks/spark.py (both start the tests' own server classes,
tests/servers/, so they need a source checkout and scripts/setup/kafka.sh and postgresql.sh).
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

from servers.kafka import KafkaBroker, kafka_libs  # noqa: E402
from servers.postgres import PostgresServer, find_bin_dir  # noqa: E402


@contextmanager
def broker_and_postgres(prefix: str) -> Iterator[tuple[Path, KafkaBroker, PostgresServer]]:
    """(a scratch directory, a started broker, a started PostgreSQL); all gone afterwards."""
    bin_dir = find_bin_dir()
    assert bin_dir is not None, "PostgreSQL is not installed (scripts/setup/postgresql.sh)"
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp_name:
        tmp = Path(tmp_name)
        os.chmod(tmp, 0o755)  # the PostgreSQL server's user reads below it
        broker = KafkaBroker(tmp / "kafka", kafka_libs())
        pg = PostgresServer(bin_dir)
        try:
            broker.start()
            pg.init()
            pg.start()
            yield tmp, broker, pg
        finally:
            broker.stop()
            pg.close()


def create_db(pg: PostgresServer) -> str:
    """A fresh database on `pg`: its DSN."""
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg.dsn, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    return pg.dsn_for(name)
