"""The Cassandra store's client settings, all in its `store` URL, checked without the driver.

    cassandra://[user[:password]@]host[,host...][:port]/keyspace[?option=value&...]

Options: `consistency` (a cassandra-driver level name such as `local_quorum`; default
`local_quorum`, which on one node is that node), `replication_factor` (of the keyspace tickpipe
creates; default 1), `datacenter` (the local one: NetworkTopologyStrategy and DC-aware routing),
`tls` (`true` to connect over TLS), `tls_ca` (a CA file to verify the server with; implies TLS).
One URL keeps the `store` key one setting for every store; a bad part stops start-up with one
line naming it (`check` below, called from `stores/settings.py`), never with the password.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

DEFAULT_PORT = 9042
CONSISTENCY_LEVELS = (
    "any", "one", "two", "three", "quorum", "all", "local_quorum", "each_quorum", "local_one",
)  # fmt: skip
OPTIONS = ("consistency", "replication_factor", "datacenter", "tls", "tls_ca")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,47}")  # a keyspace name CQL takes unquoted


class CassandraUrlError(ValueError):
    """A part of a cassandra:// URL tickpipe cannot use; `part` names it."""

    def __init__(self, part: str, why: str) -> None:
        super().__init__(f"{part} {why}")
        self.part = part
        self.why = why


@dataclass(frozen=True)
class CassandraSettings:
    """What the store connects with; `describe()` is the URL without its password."""

    hosts: tuple[str, ...]
    port: int
    keyspace: str
    user: str | None = None
    password: str | None = None
    consistency: str = "local_quorum"
    replication_factor: int = 1
    datacenter: str | None = None
    tls: bool = False
    tls_ca: str | None = None

    def describe(self) -> str:
        user = f"{self.user}@" if self.user else ""
        return f"cassandra://{user}{','.join(self.hosts)}:{self.port}/{self.keyspace}"


def is_cassandra_url(url: str) -> bool:
    return url.startswith("cassandra://")


def parse(url: str) -> CassandraSettings:
    """The settings of `url`, or a CassandraUrlError naming the part that is wrong."""
    parts = urlsplit(url)
    if parts.scheme != "cassandra":
        raise CassandraUrlError("scheme", "use cassandra://host:port/keyspace")
    where = parts.netloc.rpartition("@")[2]
    if not where:
        raise CassandraUrlError("host", "missing (cassandra://host:port/keyspace)")
    names, _, port_text = where.rpartition(":") if ":" in where else (where, "", "")
    if port_text and not (port_text.isdigit() and 0 < int(port_text) < 65536):
        raise CassandraUrlError("port", f"{port_text!r} is not a port number")
    hosts = tuple(h for h in names.split(",") if h)
    if not hosts:
        raise CassandraUrlError("host", "missing (cassandra://host:port/keyspace)")
    keyspace = parts.path.strip("/")
    if not _NAME.fullmatch(keyspace):
        raise CassandraUrlError(
            "keyspace", f"{keyspace!r}: use letters, digits and _ (a letter first, 48 at most)"
        )
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise CassandraUrlError(f"option {unknown[0]!r}", f"is unknown; use {', '.join(OPTIONS)}")
    consistency = options.get("consistency", "local_quorum").lower()
    if consistency not in CONSISTENCY_LEVELS:
        raise CassandraUrlError(
            "consistency", f"{consistency!r}: use one of {', '.join(CONSISTENCY_LEVELS)}"
        )
    rf_text = options.get("replication_factor", "1")
    if not rf_text.isdigit() or int(rf_text) < 1:
        raise CassandraUrlError("replication_factor", f"{rf_text!r}: a whole number, 1 or more")
    tls_text = options.get("tls", "").lower()
    if tls_text not in ("", "true", "false", "1", "0"):
        raise CassandraUrlError("tls", f"{tls_text!r}: use true or false")
    tls_ca = options.get("tls_ca") or None
    if tls_ca is not None and not Path(tls_ca).is_file():
        raise CassandraUrlError("tls_ca", f"{tls_ca!r}: no such file")
    return CassandraSettings(
        hosts=hosts,
        port=int(port_text) if port_text else DEFAULT_PORT,
        keyspace=keyspace,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        consistency=consistency,
        replication_factor=int(rf_text),
        datacenter=options.get("datacenter") or None,
        tls=tls_text in ("true", "1") or tls_ca is not None,
        tls_ca=tls_ca,
    )
