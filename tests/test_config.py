"""Configuration: defaults < TOML file < TICKPIPE_* variables < flags, every value checked."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import msgspec
import pytest
from servers.certs import make_tls

from tickpipe.config import (
    KEYS,
    MAX_QUEUE_TRADES,
    Config,
    ConfigError,
    load_config,
    unknown_variables,
)
from tickpipe.engine.windows import parse_window
from tickpipe.monitor.alerts.config import AlertRule
from tickpipe.sources.registry import EXCHANGES, ExchangeOptions, connector
from tickpipe.sources.settings import split_symbol

S = 1_000_000


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tickpipe.toml"
    path.write_text(text)
    return path


def error(**kwargs) -> str:
    """The ConfigError message of load_config(**kwargs), checked to be one line."""
    kwargs.setdefault("env", {})
    with pytest.raises(ConfigError) as info:
        load_config(**kwargs)
    message = str(info.value)
    assert message.strip(), "the error says nothing"
    assert len(message.splitlines()) == 1, f"not one line: {message!r}"
    assert message.startswith("config error: "), message
    return message


def test_defaults_without_file_env_or_flags() -> None:
    config = load_config(env={})
    assert config.intervals == ["1s", "5s", "1m", "5m", "1h"]
    assert config.hopping == []
    assert config.data_dir == "./tickpipe-data"
    assert config.run.exchanges == ["binance", "coinbase"]
    assert config.run.symbols == []  # each exchange's own defaults
    assert config.symbols_by_exchange()["binance"] == ["BTC-USDT", "ETH-USDT"]
    assert config.run.check_symbols is True
    assert config.exchanges == {}
    assert config.exchange_options("binance") == ExchangeOptions(poll_every=5.0)
    assert config.demo.rate == 2000.0
    assert config.quiet is False
    engine = config.engine_config()
    assert [w.name for w in engine.windows] == ["1s", "5s", "1m", "5m", "1h"]
    assert engine.allowed_lateness == 2 * S
    assert engine.idle_timeout == 2 * S
    assert engine.provisional_every == 250_000
    assert engine.horizon == 3600 * S  # no correction_horizon: the largest window


def test_the_environment_of_the_process_is_not_read_when_env_is_given(monkeypatch) -> None:
    monkeypatch.setenv("TICKPIPE_DEMO_RATE", "5")
    assert load_config(env={}).demo.rate == 2000.0
    assert load_config().demo.rate == 5.0  # env=None reads os.environ


def test_a_toml_file_sets_top_level_and_section_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'data_dir = "/data/tp"\nintervals = ["1s", "1m"]\nhopping = ["1m/5s"]\n'
        'allowed_lateness = "500ms"\ncorrection_horizon = "10m"\nquiet = true\n'
        '[run]\nsymbols = ["btcusdt"]\n[demo]\nrate = 50.5\nsymbols = 3\n',
    )
    config = load_config(path, env={})
    assert config.data_dir == "/data/tp"
    assert config.db_path == Path("/data/tp/tickpipe.duckdb")
    assert config.intervals == ["1s", "1m"]
    assert config.run.symbols == ["btcusdt"]
    assert (config.demo.rate, config.demo.symbols, config.demo.seed) == (50.5, 3, 0)
    assert config.quiet is True
    engine = config.engine_config()
    assert engine.windows == (parse_window("1s"), parse_window("1m"), parse_window("1m/5s"))
    assert engine.allowed_lateness == 500_000
    assert engine.horizon == 600 * S


def test_environment_overrides_the_file_and_flags_override_the_environment(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, 'intervals = ["1m"]\n[demo]\nrate = 10.0\nseed = 1\nsymbols = 4\n')
    env = {
        "TICKPIPE_DEMO_RATE": "20",
        "TICKPIPE_DEMO_SEED": "2",
        "TICKPIPE_INTERVALS": "1s, 5s",
        "TICKPIPE_QUIET": "true",
        "TICKPIPE_RUN_SYMBOLS": "BTC-USDT,eth/usdt",
    }
    config = load_config(path, env=env)
    assert (config.demo.rate, config.demo.seed, config.demo.symbols) == (20.0, 2, 4)
    assert config.intervals == ["1s", "5s"]
    assert config.quiet is True
    assert config.run.symbols == ["BTC-USDT", "eth/usdt"]

    config = load_config(path, env=env, overrides={"demo.rate": 30.0, "intervals": ["1h"]})
    assert (config.demo.rate, config.demo.seed) == (30.0, 2)
    assert config.intervals == ["1h"]


def test_a_flag_that_was_not_given_does_not_override(tmp_path: Path) -> None:
    path = write(tmp_path, "[demo]\nrate = 10.0\n")
    config = load_config(path, env={}, overrides={"demo.rate": None, "data_dir": None})
    assert config.demo.rate == 10.0
    assert config.data_dir == "./tickpipe-data"


@pytest.mark.parametrize(
    ("text", "value"), [("1", True), ("yes", True), ("0", False), ("FALSE", False)]
)
def test_boolean_environment_values(text: str, value: bool) -> None:
    assert load_config(env={"TICKPIPE_QUIET": text}).quiet is value


def test_every_setting_can_be_set_from_its_environment_variable(tmp_path: Path) -> None:
    replay = tmp_path / "trades.jsonl"
    replay.write_text("")
    tls = make_tls(tmp_path / "tls")
    values = {
        "data_dir": ("/srv/tp", "/srv/tp"),
        "intervals": ("1s,1m", ["1s", "1m"]),
        "hopping": ("1m/5s", ["1m/5s"]),
        "allowed_lateness": ("1s", 1 * S),
        "correction_horizon": ("1h", 3600 * S),
        "idle_timeout": ("3s", 3 * S),
        "provisional_every": ("100ms", 100_000),
        "future_tolerance": ("10s", 10 * S),
        "composite.enabled": ("0", False),
        "composite.band": ("2.5", 2.5),
        "composite.stale_after": ("30s", 30 * S),
        "composite.min_venues": ("3", 3),
        "composite.equivalent_quotes": ("USD/USDT,EUR/EURC", ["USD/USDT", "EUR/EURC"]),
        "queue_trades": ("5000", 5000),
        "flush_every": ("1s", 1.0),
        "snapshot_every": ("30s", 30.0),
        "duckdb_memory_limit": ("1GB", "1GB"),
        "duckdb_verify_memory_limit": ("2GB", "2GB"),
        "quiet": ("yes", True),
        "forecast": ("true", True),
        "run.exchanges": ("binance", ["binance"]),
        "run.symbols": ("SOL-USDT", ["SOL-USDT"]),
        "run.replay": (str(replay), str(replay)),
        "run.speed": ("2.5", 2.5),
        "demo.symbols": ("7", 7),
        "demo.rate": ("123.5", 123.5),
        "demo.seed": ("42", 42),
        "run.check_symbols": ("0", False),
        "serve.enabled": ("no", False),
        "serve.host": ("0.0.0.0", "0.0.0.0"),
        "serve.port": ("9000", 9000),
        "serve.token": ("tok", "tok"),
        "serve.tls_cert": (str(tls.cert), str(tls.cert)),
        "serve.tls_key": (str(tls.key), str(tls.key)),
        "serve.insecure": ("1", True),
        "serve.allowed_hosts": ("tp.example.org", ["tp.example.org"]),
        "serve.allowed_origins": ("https://tp.example.org", ["https://tp.example.org"]),
        "serve.max_subscriptions": ("50", 50),
        "serve.read_timeout": ("250ms", 0.25),
        "serve.heavy_reads": ("8", 8),
        "store": ("postgresql://tp@db.internal:5432/tickpipe",) * 2,
        "store_retry_for": ("5m", 300.0),
        "lake": ("s3://history/tickpipe/", "s3://history/tickpipe"),
        "lake_endpoint": ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
        "lake_region": ("eu-west-1", "eu-west-1"),
        "lake_roll_bytes": ("1048576", 1_048_576),
        "lake_roll_every": ("1m", 60.0),
        "monitor.kpi_every": ("2s", 2 * S),
        "monitor.process": ("process-1", "process-1"),
        "monitor.metrics_port": ("9100", 9100),
        "monitor.metrics_host": ("0.0.0.0", "0.0.0.0"),
        "alerts.enabled": ("0", False),
        "alerts.evaluate_every": ("2s", 2.0),
        "alerts.renotify_every": ("30m", 1800 * S),
        "alerts.history": ("50", 50),
        "alerts.notifiers": ("log", ["log"]),
        "alerts.rules": (
            '[{"name": "q", "kind": "silence", "threshold": 5}]',
            [AlertRule(name="q", kind="silence", threshold=5)],
        ),
        "alerts.telegram_api": ("http://127.0.0.1:9", "http://127.0.0.1:9"),
        "alerts.telegram_chat_id": ("42", "42"),
        "alerts.smtp_host": ("mail.internal", "mail.internal"),
        "alerts.smtp_port": ("2525", 2525),
        "alerts.smtp_starttls": ("0", False),
        "alerts.smtp_user": ("tickpipe", "tickpipe"),
        "alerts.email_from": ("tp@example.org", "tp@example.org"),
        "alerts.email_to": ("ops@example.org", ["ops@example.org"]),
        "kafka.bootstrap": ("k1:9092,k2:9092", "k1:9092,k2:9092"),
        "kafka.trades_topic": ("t", "t"),
        "kafka.candles_topic": ("c", "c"),
        "kafka.dead_letter_topic": ("d", "d"),
        "kafka.encoding": ("binary", "binary"),
        "kafka.schema_registry": ("http://registry:8081", "http://registry:8081"),
        "kafka.group": ("g", "g"),
        "kafka.message_trades": ("50", 50),
        "kafka.heartbeat_ms": ("250", 250),
        "kafka.partitions": ("12", 12),
        "kafka.replication_factor": ("3", 3),
        "kafka.min_insync_replicas": ("2", 2),
        "kafka.properties": (
            "linger.ms=1, client.rack=r1",
            {"linger.ms": "1", "client.rack": "r1"},
        ),
    }
    for name in EXCHANGES:
        stream = connector(name).INFO.streams[-1]
        values[f"exchanges.{name}.url"] = ("ws://127.0.0.1:9", "ws://127.0.0.1:9")
        values[f"exchanges.{name}.rest_url"] = ("http://127.0.0.1:9", "http://127.0.0.1:9")
        values[f"exchanges.{name}.stream"] = (stream, stream)
        values[f"exchanges.{name}.poll_every"] = ("2s", 2.0)
    assert set(values) == set(KEYS), "a setting was added or removed: cover it here"
    env = {"TICKPIPE_" + key.replace(".", "_").upper(): text for key, (text, _) in values.items()}
    config = load_config(env=env)
    for key, (_, expected) in values.items():
        value = config
        for part in key.split("."):
            value = (
                value[part] if isinstance(value, dict) else getattr(value, attribute(value, part))
            )
        assert value == expected, key


def attribute(struct: msgspec.Struct, key: str) -> str:
    """The attribute that holds setting `key` (durations carry their unit: `flush_every_s`)."""
    return next(f.name for f in msgspec.structs.fields(struct) if f.encode_name == key)


# -- bad values: one line that names the key, where it came from and what is allowed ------


def test_bad_interval_from_the_environment_names_the_variable_and_the_position() -> None:
    message = error(env={"TICKPIPE_INTERVALS": "1m,7x"})
    assert "intervals[1]" in message
    assert "'7x'" in message
    assert "TICKPIPE_INTERVALS" in message
    assert "5s" in message  # an example of what is allowed


def test_bad_interval_from_a_flag_says_command_line() -> None:
    message = error(overrides={"intervals": ["7x"]})
    assert "intervals[0]" in message
    assert "command line" in message


def test_a_hopping_window_under_intervals_is_pointed_to_hopping() -> None:
    message = error(env={"TICKPIPE_INTERVALS": "1m/5s"})
    assert "intervals[0]" in message
    assert "hopping" in message


def test_a_bad_hopping_window_says_the_slide_must_divide_the_size(tmp_path: Path) -> None:
    message = error(path=write(tmp_path, 'hopping = ["1m/7s"]\n'))
    assert "hopping[0]" in message
    assert "divide" in message
    assert str(tmp_path / "tickpipe.toml") in message


def test_no_interval_at_all_is_an_error() -> None:
    message = error(env={"TICKPIPE_INTERVALS": ""})
    assert "intervals" in message


@pytest.mark.parametrize(
    "key", ["allowed_lateness", "idle_timeout", "provisional_every", "flush_every",
            "correction_horizon"],
)  # fmt: skip
def test_a_bad_duration_names_its_key(key: str) -> None:
    name = "TICKPIPE_" + key.upper()
    message = error(env={name: "soon"})
    assert f"{key} = 'soon'" in message
    assert name in message
    assert "1h" in message


def test_an_unknown_top_level_key_in_toml_lists_the_known_keys(tmp_path: Path) -> None:
    message = error(path=write(tmp_path, 'interval = ["1m"]\n'))
    assert "'interval'" in message
    for known in ("intervals", "hopping", "data_dir", "demo.rate", "run.symbols"):
        assert known in message


def test_an_unknown_key_in_a_section_is_named_with_its_section(tmp_path: Path) -> None:
    message = error(path=write(tmp_path, '[run]\nsymbol = ["BTC-USDT"]\n'))
    assert "'run.symbol'" in message
    assert "run.symbols" in message


def test_an_unknown_section_is_named(tmp_path: Path) -> None:
    message = error(path=write(tmp_path, "[mtgox]\nurl = 'wss://x'\n"))
    assert "'mtgox" in message
    assert "exchanges.<name>.url" in message


def test_an_exchange_section_at_top_level_is_pointed_to_exchanges(tmp_path: Path) -> None:
    message = error(path=write(tmp_path, "[binance]\nurl = 'wss://x'\n"))
    assert "'binance'" in message
    assert "[exchanges.binance]" in message


def test_an_exchange_section_sets_endpoints_stream_and_poll_interval(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[exchanges.binance]\nurl = "ws://127.0.0.1:1"\nrest_url = "http://127.0.0.1:2"\n'
        'stream = "aggTrade"\npoll_every = "250ms"\n',
    )
    config = load_config(path, env={})
    assert config.exchange_options("binance") == ExchangeOptions(
        url="ws://127.0.0.1:1", rest_url="http://127.0.0.1:2", stream="aggTrade", poll_every=0.25
    )


def test_an_unknown_exchange_section_lists_the_supported_ones(tmp_path: Path) -> None:
    message = error(path=write(tmp_path, "[exchanges.mtgox]\nurl = 'wss://x'\n"))
    assert "'exchanges.mtgox'" in message
    assert "tickpipe.toml" in message
    assert "binance" in message.split("mtgox", 1)[1]


def test_an_unknown_key_in_an_exchange_section_lists_that_sections_keys(tmp_path: Path) -> None:
    message = error(path=write(tmp_path, "[exchanges.binance]\nuri = 'wss://x'\n"))
    assert "'exchanges.binance.uri'" in message
    assert "exchanges.binance.url" in message
    assert "exchanges.binance.poll_every" in message


def test_a_wrong_type_in_an_exchange_section_names_the_exchange_and_key(tmp_path: Path) -> None:
    message = error(path=write(tmp_path, "[exchanges.binance]\nurl = 5\n"))
    assert "exchanges.binance.url = 5" in message
    assert "str" in message
    assert "tickpipe.toml" in message


def test_an_exchange_section_that_is_not_a_table_is_an_error(tmp_path: Path) -> None:
    message = error(path=write(tmp_path, "exchanges = 5\n"))
    assert "exchanges = 5" in message
    assert "[exchanges.binance]" in message


@pytest.mark.parametrize(
    ("toml", "key", "expected"),
    [
        ("queue_trades = 'many'\n", "queue_trades", "int"),
        ("[demo]\nrate = 'fast'\n", "demo.rate", "float"),
        ("intervals = '1m'\n", "intervals", "array"),
        ("quiet = 'maybe'\n", "quiet", "bool"),
        ("run = 5\n", "run", "object"),
    ],
)
def test_a_wrong_type_in_toml_names_the_key_and_the_expected_type(
    tmp_path: Path, toml: str, key: str, expected: str
) -> None:
    message = error(path=write(tmp_path, toml))
    assert f"{key} = " in message
    assert expected in message
    assert "tickpipe.toml" in message


def test_a_wrong_type_in_the_environment_names_the_variable() -> None:
    message = error(env={"TICKPIPE_DEMO_SYMBOLS": "lots"})
    assert "demo.symbols = 'lots'" in message
    assert "TICKPIPE_DEMO_SYMBOLS" in message
    assert "int" in message


def test_an_unknown_exchange_lists_the_supported_ones() -> None:
    message = error(env={"TICKPIPE_RUN_EXCHANGES": "binance,mtgox"})
    assert "run.exchanges[1] = 'mtgox'" in message
    assert "binance" in message.split("mtgox", 1)[1]


@pytest.mark.parametrize("symbol", ["NOPE", "BTC-USD-X", "BTC USDT"])
def test_a_bad_symbol_names_its_position_and_the_expected_form(symbol: str) -> None:
    message = error(overrides={"run.symbols": ["BTC-USDT", symbol]})
    assert f"run.symbols[1] = {symbol!r}" in message
    assert "BASE-QUOTE" in message


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"TICKPIPE_DEMO_RATE": "-5"}, "demo.rate"),
        ({"TICKPIPE_DEMO_RATE": "0"}, "demo.rate"),
        ({"TICKPIPE_DEMO_SYMBOLS": "-1"}, "demo.symbols"),
        ({"TICKPIPE_RUN_SPEED": "-1"}, "run.speed"),
        ({"TICKPIPE_QUEUE_TRADES": "0"}, "queue_trades"),
    ],
)
def test_negative_or_zero_rates_and_sizes_are_errors(env: dict, key: str) -> None:
    message = error(env=env)
    assert f"{key} = " in message
    assert next(iter(env)) in message


def test_a_binance_url_must_be_a_websocket_url() -> None:
    message = error(env={"TICKPIPE_EXCHANGES_BINANCE_URL": "https://stream.binance.com"})
    assert "exchanges.binance.url = 'https://stream.binance.com'" in message
    assert "TICKPIPE_EXCHANGES_BINANCE_URL" in message
    assert "ws://" in message


def test_a_rest_url_must_be_an_http_url() -> None:
    message = error(overrides={"exchanges.binance.rest_url": "ws://127.0.0.1:1"})
    assert "exchanges.binance.rest_url = 'ws://127.0.0.1:1'" in message
    assert "command line" in message
    assert "http://" in message


def test_a_bad_binance_stream_names_the_key_and_the_streams_it_has() -> None:
    message = error(env={"TICKPIPE_EXCHANGES_BINANCE_STREAM": "book"})
    assert "exchanges.binance.stream = 'book'" in message
    assert "aggTrade" in message


def test_a_bad_poll_interval_names_the_key() -> None:
    message = error(env={"TICKPIPE_EXCHANGES_BINANCE_POLL_EVERY": "often"})
    assert "exchanges.binance.poll_every = 'often'" in message
    assert "5s" in message


# -- symbols per exchange ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("BTC-USDT", (None, "BTC-USDT")),
        ("BTC:USDT", (None, "BTC:USDT")),
        ("binance:btcusdt", ("binance", "btcusdt")),
        ("Binance:BTC-USDT", ("binance", "BTC-USDT")),
        ("mtgox:BTC-USD", ("mtgox", "BTC-USD")),
    ],
)
def test_a_symbol_may_name_its_exchange_before_a_colon(text: str, expected: tuple) -> None:
    assert split_symbol(text) == expected


def test_an_unprefixed_symbol_applies_to_every_chosen_exchange() -> None:
    config = load_config(
        env={}, overrides={"run.exchanges": ["binance"], "run.symbols": ["btcusdt", "SOL/USDT"]}
    )
    assert config.symbols_by_exchange() == {"binance": ["BTC-USDT", "SOL-USDT"]}


def test_prefixed_symbols_alone_choose_the_exchanges_when_none_are_given() -> None:
    config = load_config(env={}, overrides={"run.symbols": ["binance:SOL-USDT"]})
    assert config.run.exchanges == ["binance"]
    assert config.symbols_by_exchange() == {"binance": ["SOL-USDT"]}


def test_an_unprefixed_symbol_keeps_the_default_exchanges() -> None:
    config = load_config(env={}, overrides={"run.symbols": ["BTC-USDT"]})
    assert config.run.exchanges == ["binance", "coinbase"]


def test_repeated_exchanges_count_once() -> None:
    config = load_config(env={"TICKPIPE_RUN_EXCHANGES": "binance,binance"})
    assert config.run.exchanges == ["binance"]


def test_a_prefix_naming_an_unknown_exchange_lists_the_supported_ones() -> None:
    message = error(overrides={"run.symbols": ["BTC-USDT", "mtgox:BTC-USD"]})
    assert "run.symbols[1] = 'mtgox:BTC-USD'" in message
    assert "unknown exchange 'mtgox'" in message
    assert "binance" in message.split("supported", 1)[1]


def test_a_prefixed_symbol_with_a_bad_symbol_names_it() -> None:
    message = error(overrides={"run.symbols": ["binance:NOPE"]})
    assert "run.symbols[0] = 'binance:NOPE'" in message


OTHER = "coinbase"  # an exchange besides binance


def test_a_prefix_for_an_exchange_that_was_not_chosen_says_how_to_choose_it() -> None:
    message = error(overrides={"run.exchanges": ["binance"], "run.symbols": [f"{OTHER}:BTC-USD"]})
    assert f"run.symbols[0] = '{OTHER}:BTC-USD'" in message
    assert f"--exchange {OTHER}" in message


def test_symbols_go_to_their_exchange_and_shared_ones_to_all() -> None:
    config = load_config(
        env={},
        overrides={
            "run.exchanges": ["binance", OTHER],
            "run.symbols": ["SOL-USDT", f"{OTHER}:BTC-USD", "binance:ETH-USDT"],
        },
    )
    assert config.symbols_by_exchange() == {
        "binance": ["SOL-USDT", "ETH-USDT"],
        OTHER: ["SOL-USDT", "BTC-USD"],
    }


def test_an_exchange_left_without_symbols_is_an_error() -> None:
    message = error(
        overrides={"run.exchanges": ["binance", OTHER], "run.symbols": [f"{OTHER}:BTC-USD"]}
    )
    assert "run.symbols" in message
    assert "no symbol for binance" in message


def test_each_exchange_without_symbols_gets_its_own_defaults() -> None:
    config = load_config(env={}, overrides={"run.exchanges": ["binance", OTHER]})
    assert config.symbols_by_exchange() == {
        "binance": ["BTC-USDT", "ETH-USDT"],
        OTHER: ["BTC-USD", "ETH-USD"],  # coinbase's own defaults
    }


def test_no_exchange_at_all_is_an_error() -> None:
    message = error(env={"TICKPIPE_RUN_EXCHANGES": ""})
    assert "run.exchanges" in message


def test_a_token_is_read_from_the_variable_the_connector_names() -> None:
    name, variable = "tiingo", "TIINGO_TOKEN"
    config = load_config(env={})
    assert config.exchange_options(name, env={variable: " secret "}).token == "secret"
    with pytest.raises(ConfigError) as info:
        config.exchange_options(name, env={})
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert message.startswith("config error: ")
    assert variable in message and name in message
    assert config.exchange_options("binance", env={}).token is None


def test_a_missing_replay_file_is_an_error(tmp_path: Path) -> None:
    message = error(overrides={"run.replay": str(tmp_path / "none.jsonl")})
    assert "run.replay" in message
    assert "no such file" in message


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "absent.toml"
    message = error(path=missing)
    assert str(missing) in message
    assert "no such file" in message


@pytest.mark.parametrize("text", ["intervals = [\n", "a = 1\na = 2\n", "[demo\n", "x = \n"])
def test_invalid_toml_is_named_with_the_file(tmp_path: Path, text: str) -> None:
    message = error(path=write(tmp_path, text))
    assert "tickpipe.toml" in message
    assert "TOML" in message


def test_the_store_defaults_to_the_duckdb_file() -> None:
    assert load_config(env={}).store == ""
    assert load_config(env={"TICKPIPE_STORE": " duckdb "}).store == ""


def test_a_store_that_is_not_a_postgresql_url_is_an_error_without_its_password() -> None:
    message = error(env={"TICKPIPE_STORE": "mysql://me:hunter2@db/x"})
    assert message.startswith("config error: store = 'mysql://...' (from TICKPIPE_STORE): ")
    assert "postgresql://" in message and "hunter2" not in message


def test_an_unparsable_postgresql_url_is_an_error_without_its_password() -> None:
    message = error(env={"TICKPIPE_STORE": "postgresql://me:hunter2@[db/x"})
    assert "store = 'postgresql://...'" in message and "not a valid URL" in message
    assert "hunter2" not in message


def test_a_bad_store_retry_duration_is_an_error() -> None:
    assert "store_retry_for = 'soon'" in error(env={"TICKPIPE_STORE_RETRY_FOR": "soon"})


@pytest.mark.parametrize("token", [" ", "\t\n"])
def test_a_whitespace_only_token_is_refused(token: str) -> None:
    with pytest.raises(ConfigError, match=r"serve\.token .*only whitespace"):
        load_config(env={"TICKPIPE_SERVE_TOKEN": token})


def test_queue_trades_above_the_cap_is_a_one_line_config_error() -> None:
    with pytest.raises(
        ConfigError, match=r"queue_trades = 100000000000000000000 .*between 1 and"
    ) as error:
        load_config(env={}, overrides={"queue_trades": 10**20})
    assert "\n" not in str(error.value)
    assert (
        load_config(env={}, overrides={"queue_trades": MAX_QUEUE_TRADES}).queue_trades
        == MAX_QUEUE_TRADES
    )


def test_an_unknown_tickpipe_variable_is_warned_about_with_the_closest_known_name() -> None:
    env = {
        "TICKPIPE_SERVE_TOKNE": "x",
        "TICKPIPE_SERVE_TOKEN": "y",
        "TICKPIPE_ZZZ": "1",
        "HOME": "/",
    }
    assert unknown_variables(env) == [
        "warning: unknown variable TICKPIPE_SERVE_TOKNE is ignored "
        "(did you mean TICKPIPE_SERVE_TOKEN?)",
        "warning: unknown variable TICKPIPE_ZZZ is ignored (no setting has a close name)",
    ]
    known = {"TICKPIPE_ALERT_SLACK_URL": "u", "TICKPIPE_KAFKA_BOOTSTRAP": "h:1"}
    assert unknown_variables(known) == []


def test_every_tickpipe_variable_the_code_or_ci_reads_is_known() -> None:
    # Names written out whole in the sources (secrets, the lake's keys) and CI's own switch:
    # a warning about one of them would be noise on every start.
    root = Path(__file__).parents[1]
    texts = [f.read_text() for f in (root / "src").rglob("*.py")]
    texts.append((root / ".ci" / "run").read_text())
    names = {m for text in texts for m in re.findall(r"\bTICKPIPE_[A-Z0-9_]*[A-Z0-9]\b", text)}
    assert {"TICKPIPE_LAKE_SECRET_ACCESS_KEY", "TICKPIPE_REQUIRE_SERVERS"} <= names
    assert unknown_variables(dict.fromkeys(names, "x")) == []


@pytest.mark.parametrize("speed", ["nan", "inf", "-inf"])
def test_a_replay_speed_that_is_not_a_finite_number_is_a_config_error(speed: str) -> None:
    with pytest.raises(ConfigError, match=r"run\.speed = .*TICKPIPE_RUN_SPEED"):
        load_config(env={"TICKPIPE_RUN_SPEED": speed})


@pytest.mark.parametrize("text", ["lots", "0MB", "-1GB", "128"])
def test_a_duckdb_memory_limit_that_is_not_a_size_is_a_one_line_config_error(text: str) -> None:
    message = error(env={"TICKPIPE_DUCKDB_MEMORY_LIMIT": text})
    assert "duckdb_memory_limit" in message and "e.g. 128MB" in message


def test_the_duckdb_memory_limit_reaches_the_duckdb_file(tmp_path: Path) -> None:
    config = load_config(env={"TICKPIPE_DUCKDB_MEMORY_LIMIT": "96MiB"},
                         overrides={"data_dir": str(tmp_path)})  # fmt: skip
    store = config.open_store()
    try:
        ((limit,),) = store.query("SELECT current_setting('memory_limit')")  # type: ignore[attr-defined]
    finally:
        store.close()
    assert limit == "96.0 MiB"


def _opened_limit(config: Config, verify: bool) -> str:
    store = config.open_store(verify=verify)
    try:
        ((limit,),) = store.query("SELECT current_setting('memory_limit')")  # type: ignore[attr-defined]
    finally:
        store.close()
    return str(limit)


@pytest.mark.parametrize(
    ("pipeline", "verify", "running", "verifying"),
    [(None, None, "45.7 MiB", "122.0 MiB"),  # the defaults: 48MB and 128MB
     ("96MiB", "1GiB", "96.0 MiB", "1.0 GiB"),
     ("2GiB", "64MiB", "2.0 GiB", "2.0 GiB")],  # verify never gets less than the pipeline
)  # fmt: skip
def test_verify_opens_the_duckdb_file_with_the_larger_of_its_two_memory_limits(
    tmp_path: Path, pipeline: str | None, verify: str | None, running: str, verifying: str
) -> None:
    env = {k: v for k, v in (("TICKPIPE_DUCKDB_MEMORY_LIMIT", pipeline),
                             ("TICKPIPE_DUCKDB_VERIFY_MEMORY_LIMIT", verify)) if v}  # fmt: skip
    config = load_config(env=env, overrides={"data_dir": str(tmp_path)})

    assert _opened_limit(config, verify=False) == running
    assert _opened_limit(config, verify=True) == verifying


def test_a_duckdb_verify_memory_limit_that_is_not_a_size_is_a_one_line_config_error() -> None:
    message = error(env={"TICKPIPE_DUCKDB_VERIFY_MEMORY_LIMIT": "lots"})
    assert "duckdb_verify_memory_limit" in message and "e.g. 128MB" in message


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [("TICKPIPE_SERVE_READ_TIMEOUT", "soon", "serve.read_timeout = 'soon'"),
     ("TICKPIPE_SERVE_READ_TIMEOUT", "0s", "serve.read_timeout = '0s'"),
     ("TICKPIPE_SERVE_HEAVY_READS", "0",
      "serve.heavy_reads = 0 (from TICKPIPE_SERVE_HEAVY_READS): must be between 1 and 64")],
)  # fmt: skip
def test_a_bad_read_budget_is_a_one_line_config_error(name: str, text: str, says: str) -> None:
    message = error(env={name: text})
    assert says in message and "\n" not in message


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [("TICKPIPE_COMPOSITE_BAND", "0", "composite.band = 0.0 (from TICKPIPE_COMPOSITE_BAND): "
      "a percent above 0, at most 50"),
     ("TICKPIPE_COMPOSITE_BAND", "wide", "composite.band = 'wide'"),
     ("TICKPIPE_COMPOSITE_MIN_VENUES", "0", "composite.min_venues = 0"),
     ("TICKPIPE_COMPOSITE_STALE_AFTER", "later", "composite.stale_after = 'later'"),
     ("TICKPIPE_COMPOSITE_EQUIVALENT_QUOTES", "USD", "composite.equivalent_quotes[0] = 'USD' "
      "(from TICKPIPE_COMPOSITE_EQUIVALENT_QUOTES): two or more quote currencies joined by '/'"),
     ("TICKPIPE_COMPOSITE_EQUIVALENT_QUOTES", "USD/USDT,USDT/USDC",
      "composite.equivalent_quotes[1] = 'USDT/USDC' (from TICKPIPE_COMPOSITE_EQUIVALENT_QUOTES)"
      ": USDT is already in equivalent_quotes[0]"),
     ("TICKPIPE_FUTURE_TOLERANCE", "soon", "future_tolerance = 'soon'")],
)  # fmt: skip
def test_a_bad_composite_or_future_tolerance_is_a_one_line_config_error(
    name: str, text: str, says: str
) -> None:
    message = error(env={name: text})
    assert says in message and "\n" not in message


def test_the_soak_tests_settings_are_no_misspellings() -> None:
    # tests/test_soak.py reads TICKPIPE_SOAK_*; the demos it starts inherit them.
    env = {"TICKPIPE_SOAK_KILLS": "10", "TICKPIPE_SOAK_SECONDS": "600", "TICKPIPE_SOKA": "1"}
    assert unknown_variables(env) == [
        "warning: unknown variable TICKPIPE_SOKA is ignored (no setting has a close name)"
    ]


# Secrets: from a variable or its _FILE twin; refused in the TOML file and on the command line.


def secret_file(tmp_path: Path, name: str, value: str) -> str:
    path = tmp_path / name
    path.write_text(value + "\n")
    return str(path)


@pytest.mark.parametrize(
    ("toml", "says"),
    [
        ('[serve]\ntoken = "hunter2"', "serve.token (from {path}) is a secret: put it in the "
         "environment variable TICKPIPE_SERVE_TOKEN or in a file named by "
         "TICKPIPE_SERVE_TOKEN_FILE"),
        ('store = "postgresql://tp:hunter2@db/x"', "store (from {path}) holds a password: give "
         "the URL without it and put it in the environment variable TICKPIPE_STORE_PASSWORD"),
        ('[kafka.properties]\n"sasl.password" = "hunter2"', "kafka.properties.sasl.password "
         "(from {path}) is a secret: put it in the environment variable "
         "TICKPIPE_KAFKA_SASL_PASSWORD"),
    ],
)  # fmt: skip
def test_a_secret_in_the_config_file_is_refused_with_where_it_goes(
    tmp_path: Path, toml: str, says: str
) -> None:
    path = write(tmp_path, toml)
    message = error(path=path)
    assert message.startswith("config error: " + says.format(path=path))
    assert "hunter2" not in message


def test_a_store_password_on_the_command_line_is_refused_but_one_from_the_environment_is_not():
    message = error(overrides={"store": "postgresql://tp:hunter2@db/x"})
    assert "store (from the command line) holds a password" in message
    assert "hunter2" not in message
    url = "postgresql://tp:hunter2@db/x"
    assert load_config(env={"TICKPIPE_STORE": url}).store == url


def test_secrets_come_from_the_files_their_file_variables_name(tmp_path: Path) -> None:
    password = "p@ss:w/rd"
    env = {
        "TICKPIPE_SERVE_TOKEN_FILE": secret_file(tmp_path, "token", "tok-from-file"),
        "TICKPIPE_STORE_PASSWORD_FILE": secret_file(tmp_path, "pw", password),
        "TICKPIPE_KAFKA_SASL_PASSWORD_FILE": secret_file(tmp_path, "sasl", "sasl-pw"),
        "TICKPIPE_KAFKA_SSL_KEY_PASSWORD": "key-pw",
    }
    path = write(tmp_path, 'store = "postgresql://tp@db:5433/x?sslmode=verify-full"\n'
                 '[kafka.properties]\n"sasl.username" = "tp"')  # fmt: skip
    config = load_config(path=path, env=env)
    assert config.serve.token == "tok-from-file"
    parts = urlsplit(config.store)
    assert unquote(parts.password or "") == password and parts.username == "tp"
    assert (parts.hostname, parts.port, parts.query) == ("db", 5433, "sslmode=verify-full")
    assert config.kafka.properties == {
        "sasl.username": "tp", "sasl.password": "sasl-pw", "ssl.key.password": "key-pw",
    }  # fmt: skip
    assert unknown_variables(env) == []


@pytest.mark.parametrize(
    ("store", "says"),
    [
        ("", "TICKPIPE_STORE_PASSWORD is set, but the store URL names no user"),
        ("postgresql://db/x", "TICKPIPE_STORE_PASSWORD is set, but the store URL names no user"),
    ],
)
def test_a_store_password_without_a_user_to_log_in_as_is_an_error(store: str, says: str) -> None:
    message = error(env={"TICKPIPE_STORE_PASSWORD": "hunter2", "TICKPIPE_STORE": store})
    assert says in message and "hunter2" not in message


def test_a_missing_secret_file_is_one_line_naming_the_variable() -> None:
    message = error(env={"TICKPIPE_SERVE_TOKEN_FILE": "/nonexistent/token"})
    assert message == "config error: TICKPIPE_SERVE_TOKEN_FILE = '/nonexistent/token': no such file"


def test_exchange_tokens_and_alert_secrets_come_from_files_too(tmp_path: Path) -> None:
    env = {
        "FINNHUB_TOKEN_FILE": secret_file(tmp_path, "finnhub", "fh-token"),
        "TICKPIPE_ALERT_SLACK_URL_FILE": secret_file(tmp_path, "slack", "https://hooks.example/x"),
        "TICKPIPE_ALERTS_NOTIFIERS": "slack",
    }
    config = load_config(env=env)
    assert config.exchange_options("finnhub", env).token == "fh-token"
    assert config.alerts.notifiers == ["slack"]  # its secret was found: no config error
    assert "TICKPIPE_ALERT_SLACK_URL" in error(env={"TICKPIPE_ALERTS_NOTIFIERS": "slack"})
