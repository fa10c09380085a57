"""The MongoDB store's server: FerretDB 1.x standing in for MongoDB
(tests/servers/ferretdb.py), reached through pymongo over the MongoDB wire protocol."""

from __future__ import annotations

import pytest
from servers.ferretdb import FerretDBServer


def test_documents_bulk_written_through_pymongo_read_back_and_a_unique_index_refuses_a_duplicate(
    ferretdb_server: FerretDBServer, mongodb_database: str
) -> None:
    # Imported here: without pymongo the fixture has already skipped (or failed, in CI).
    from pymongo import ASCENDING, InsertOne
    from pymongo.errors import BulkWriteError

    with ferretdb_server.client() as client:
        trades = client[mongodb_database]["trades"]
        trades.create_index(
            [("exchange", ASCENDING), ("symbol", ASCENDING), ("trade_id", ASCENDING)],
            unique=True,
        )
        batch = [
            InsertOne({"exchange": "binance", "symbol": "BTC-USDT", "trade_id": t, "price": p})
            for t, p in (("1", 97_000.5), ("2", 97_001.0), ("1", 1.0))
        ]
        with pytest.raises(BulkWriteError) as refused:
            trades.bulk_write(batch, ordered=False)
        found = trades.find({"symbol": "BTC-USDT"}, {"_id": 0, "trade_id": 1, "price": 1})

        assert refused.value.details["nInserted"] == 2
        assert [e["code"] for e in refused.value.details["writeErrors"]] == [11000]
        assert sorted((d["trade_id"], d["price"]) for d in found) == [
            ("1", 97_000.5),
            ("2", 97_001.0),
        ]
