"""The top-level `store` key (where trades and candles are kept) and how long writes retry.

`store_retry_for` arrives decoded, in seconds (`tickpipe.durations`).
"""

from __future__ import annotations

from typing import Annotated

from tickpipe.durations import Seconds, allowing
from tickpipe.settings import Fail

RetryFor = Annotated[Seconds, allowing("not a duration (e.g. 30s, 5m)")]


def store_url(text: str, fail: Fail) -> str:
    """`text` as `store` keeps it: "" (the DuckDB file; also for `duckdb`), a PostgreSQL URL,
    a Cassandra URL (`stores/cassandra_settings.py`; the error names the bad part of it) or a
    MongoDB URL (its options checked by pymongo).

    `fail(key, value, why)` raises the one-line config error, which never shows a password.
    """
    url = text.strip()
    if not url or url == "duckdb":
        return ""
    # Imported here: only a URL needs them, and the PostgreSQL store loads its driver.
    from tickpipe.stores.base import is_mongodb_url, is_postgres_url
    from tickpipe.stores.cassandra_settings import CassandraUrlError, is_cassandra_url, parse
    from tickpipe.stores.postgresql import redact

    shown = url if "@" not in url else url.split("://", 1)[0] + "://..."
    if is_cassandra_url(url):
        try:
            parse(url)
        except CassandraUrlError as exc:
            fail("store", shown, f"{exc.part} {exc.why}")
        return url
    allowed = (
        "use a postgresql://user@host:port/dbname, cassandra://host:port/keyspace or "
        "mongodb://host:port/dbname URL, or leave it empty for the DuckDB file under data_dir"
    )
    if is_mongodb_url(url):
        return _mongodb_url(url, fail)
    if not is_postgres_url(url):
        fail("store", shown, allowed)
    if redact(url).endswith("(unparsable URL)"):
        fail("store", "postgresql://...", f"not a valid URL; {allowed}")
    return url


def _mongodb_url(url: str, fail: Fail) -> str:
    """`url` if the MongoDB store can use it; its client options are the URL's own."""
    from tickpipe.stores.base import StoreError

    try:
        from tickpipe.stores.mongodb import check_url, redact
    except StoreError as exc:  # pymongo is not installed
        fail("store", "mongodb://...", str(exc))
    reason = check_url(url)
    if reason:
        fail("store", redact(url), reason)
    return url
