"""The top-level `store` key (where trades and candles are kept) and how long writes retry.

`store_retry_for` arrives decoded, in seconds (`tickpipe.durations`).
"""

from __future__ import annotations

from typing import Annotated

from tickpipe.durations import Seconds, allowing
from tickpipe.settings import Fail

RetryFor = Annotated[Seconds, allowing("not a duration (e.g. 30s, 5m)")]


def store_url(text: str, fail: Fail) -> str:
    """`text` as `store` keeps it: "" (the DuckDB file; also for `duckdb`) or a PostgreSQL URL.

    `fail(key, value, why)` raises the one-line config error, which never shows a password.
    """
    url = text.strip()
    if not url or url == "duckdb":
        return ""
    # Imported here: only a URL needs them, and the PostgreSQL store loads its driver.
    from tickpipe.stores.base import is_mongodb_url, is_postgres_url
    from tickpipe.stores.postgresql import redact

    allowed = (
        "use a postgresql://user@host:port/dbname or mongodb://host:port/dbname URL, or leave "
        "it empty for the DuckDB file under data_dir"
    )
    if is_mongodb_url(url):
        return _mongodb_url(url, fail)
    if not is_postgres_url(url):
        fail("store", url if "@" not in url else url.split("://", 1)[0] + "://...", allowed)
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
