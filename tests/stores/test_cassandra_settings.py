"""The Cassandra store's URL: every client setting read from it, a bad one named in one line
(no node needed), and the write time that keeps the newest candle."""

from __future__ import annotations

import pytest

from stores.rows import T0, candle
from tickpipe.config import ConfigError, load_config
from tickpipe.stores.cassandra_settings import CassandraSettings, CassandraUrlError, parse


def test_every_setting_is_read_from_the_url(tmp_path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-")
    url = (f"cassandra://me:p%40ss@a.example,b.example:9142/ticks?consistency=QUORUM"
           f"&replication_factor=3&datacenter=dc1&tls_ca={ca}")  # fmt: skip
    assert parse(url) == CassandraSettings(
        hosts=("a.example", "b.example"), port=9142, keyspace="ticks", user="me",
        password="p@ss", consistency="quorum", replication_factor=3, datacenter="dc1",
        tls=True, tls_ca=str(ca),
    )  # fmt: skip
    assert parse(url).describe() == "cassandra://me@a.example,b.example:9142/ticks"


def test_the_defaults_are_one_replica_local_quorum_and_port_9042() -> None:
    s = parse("cassandra://127.0.0.1/ticks")
    assert (s.port, s.replication_factor, s.consistency, s.tls) == (9042, 1, "local_quorum", False)


@pytest.mark.parametrize(
    "url, part",
    [
        ("cassandra://h:9042/ticks?consistency=most", "consistency"),
        ("cassandra://h:9042/ticks?replication_factor=0", "replication_factor"),
        ("cassandra://h:9042/ticks?tls=maybe", "tls"),
        ("cassandra://h:9042/ticks?tls_ca=/no/such/ca.pem", "tls_ca"),
        ("cassandra://h:9042/ticks?colour=red", "option 'colour'"),
        ("cassandra://h:99999/ticks", "port"),
        ("cassandra://h:9042/", "keyspace"),
        ("cassandra://h:9042/tick-data", "keyspace"),
        ("cassandra:///ticks", "host"),
    ],
)
def test_a_bad_setting_is_one_config_line_naming_it(url: str, part: str) -> None:
    with pytest.raises(CassandraUrlError) as caught:
        parse(url)
    assert caught.value.part == part
    with pytest.raises(ConfigError) as config:
        load_config(overrides={"store": url}, env={})
    line = str(config.value)
    assert line.startswith("config error: store = ") and f": {part} " in line
    assert "\n" not in line


def test_a_password_never_shows_in_the_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(overrides={"store": "cassandra://me:secret@h/ks?consistency=x"}, env={})
    assert "secret" not in str(caught.value)


def test_a_good_url_is_kept_as_the_store_setting() -> None:
    url = "cassandra://127.0.0.1:9042/ticks?consistency=one"
    assert load_config(overrides={"store": url}, env={}).store == url


def test_write_times_order_candles_by_revision_then_final_then_update_time() -> None:
    from tickpipe.stores.cassandra import candle_write_time

    versions = [
        candle(T0, updated_at=T0 + 1),
        candle(T0, updated_at=T0 + 99),
        candle(T0, final=True, updated_at=T0 + 2),
        candle(T0, revision=1, updated_at=T0),
        candle(T0, revision=1, final=True, updated_at=T0),
        candle(T0, revision=1023, final=True, updated_at=2**52 + 5),
    ]
    times = [candle_write_time(c) for c in versions]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert times[-1] < 2**63
    with pytest.raises(ValueError, match="revision 1024"):
        candle_write_time(candle(T0, revision=1024))


def test_without_the_driver_the_store_says_how_to_install_it() -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['cassandra'] = None\n"
        "from tickpipe.stores.base import StoreError, open_store\n"
        "try:\n    open_store('cassandra://127.0.0.1/ks', None)\n"
        "except StoreError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == (
        "the Cassandra store needs cassandra-driver: pip install 'tickpipe[cassandra]'\n"
    )
