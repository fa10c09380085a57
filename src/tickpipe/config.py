"""Configuration: defaults, then a TOML file, then `TICKPIPE_*` variables, then command flags.

Everything is checked at start-up. A bad value stops tickpipe with one line that names the key,
where the value came from and what is allowed, e.g.
`config error: intervals[1] = '7x' (from TICKPIPE_INTERVALS): not a duration (use e.g. 5s, 1m)`.
"""

from __future__ import annotations

import asyncio
import difflib
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from tickpipe.engine.candles import EngineConfig
from tickpipe.engine.windows import Window, parse_duration, parse_window
from tickpipe.monitor.alerts.config import AlertsConfig, MonitorConfig, check_alerts
from tickpipe.sources.registry import EXCHANGES, ExchangeOptions, connector, has_symbol_list
from tickpipe.symbols import SymbolError, normalize_symbol

if TYPE_CHECKING:
    from tickpipe.stores.base import Store

ENV_PREFIX = "TICKPIPE_"
# `tickpipe run` with no --exchange: Binance and, where its connector is installed, Coinbase.
DEFAULT_EXCHANGES = tuple(name for name in ("binance", "coinbase") if name in EXCHANGES)
_SYMBOL_SEPARATOR = re.compile(r"[-/_]")


class ConfigError(ValueError):
    """A configuration value that tickpipe cannot start with; the message is one line."""


class ExchangeConfig(msgspec.Struct, forbid_unknown_fields=True):
    """`[exchanges.<name>]`: endpoint overrides and the feed variant of one exchange."""

    url: str = ""  # WebSocket endpoint; "" = the exchange's own
    rest_url: str = ""  # REST endpoint (symbol lists, backfill, polling); "" = the exchange's own
    stream: str = ""  # feed variant; "" = the first the exchange lists
    poll_every: str = "5s"  # how often REST polling streams (e.g. binance `ticker`) ask


class RunConfig(msgspec.Struct, forbid_unknown_fields=True):
    exchanges: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_EXCHANGES))
    # BASE-QUOTE applies to every exchange, `coinbase:BTC-USD` to one; none: each exchange's own
    symbols: list[str] = msgspec.field(default_factory=list)
    check_symbols: bool = True  # look each symbol up in the exchange's symbol list at start-up
    replay: str = ""
    speed: float = 1.0


class DemoConfig(msgspec.Struct, forbid_unknown_fields=True):
    symbols: int = 20
    rate: float = 2000.0
    seed: int = 0


class ServeConfig(msgspec.Struct, forbid_unknown_fields=True):
    """`[serve]`: the HTTP API and live WebSocket that `run` and `demo` start."""

    enabled: bool = True
    host: str = "127.0.0.1"  # loopback: nobody else can reach it without a token
    port: int = 8050
    token: str = ""  # required on any other address (TICKPIPE_SERVE_TOKEN), unless insecure
    insecure: bool = False  # serve a non-loopback address without a token, on purpose


class KafkaConfig(msgspec.Struct, forbid_unknown_fields=True):
    """`[kafka]`: the distributed mode (`ingest`, `process`, `serve --kafka`)."""

    bootstrap: str = "127.0.0.1:9092"  # HOST:PORT[,HOST:PORT...]
    trades_topic: str = "tickpipe.trades"
    candles_topic: str = "tickpipe.candles"  # compacted; "" = publish no candles
    dead_letter_topic: str = "tickpipe.dead-letters"  # malformed trade messages; "" = none
    encoding: str = "json"  # of trade messages: json (any Kafka tool reads it) or binary
    group: str = "tickpipe-process"  # the processors' consumer group
    message_trades: int = 1000  # at most this many trades (of one symbol) per message
    # librdkafka settings passed through as they are (SASL/SSL, timeouts...), e.g.
    # "security.protocol" = "SASL_SSL"; secrets belong in TICKPIPE_KAFKA_* variables, not files
    properties: dict[str, str] = msgspec.field(default_factory=dict)


class Config(msgspec.Struct, forbid_unknown_fields=True):
    data_dir: str = "./tickpipe-data"
    intervals: list[str] = msgspec.field(default_factory=lambda: ["1s", "5s", "1m", "5m", "1h"])
    hopping: list[str] = msgspec.field(default_factory=list)
    allowed_lateness: str = "2s"
    correction_horizon: str = ""
    idle_timeout: str = "2s"
    provisional_every: str = "250ms"
    queue_trades: int = 1_000_000
    flush_every: str = "200ms"
    quiet: bool = False
    run: RunConfig = msgspec.field(default_factory=RunConfig)
    demo: DemoConfig = msgspec.field(default_factory=DemoConfig)
    serve: ServeConfig = msgspec.field(default_factory=ServeConfig)
    kafka: KafkaConfig = msgspec.field(default_factory=KafkaConfig)
    exchanges: dict[str, ExchangeConfig] = msgspec.field(default_factory=dict)
    monitor: MonitorConfig = msgspec.field(default_factory=MonitorConfig)
    alerts: AlertsConfig = msgspec.field(default_factory=AlertsConfig)
    # Where trades and candles are kept: "" = the DuckDB file under data_dir, or a
    # postgresql://user@host:port/db URL (TICKPIPE_STORE, --store).
    store: str = ""
    store_retry_for: str = "60s"  # how long a PostgreSQL write retries after losing the server

    # -- derived values (all validated by `check`) -----------------------------------------

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def db_path(self) -> Path:
        return self.data_path / "tickpipe.duckdb"

    def open_store(self, read_only: bool = False) -> Store:
        """The configured store: PostgreSQL when `store` is a URL, else the DuckDB file."""
        from tickpipe.stores.base import open_store

        retry = parse_duration(self.store_retry_for) / 1e6
        return open_store(self.store, self.db_path, read_only=read_only, retry_for=retry)

    @property
    def dead_letter_path(self) -> Path:
        return self.data_path / "dead-letters.jsonl"

    def windows(self) -> tuple[Window, ...]:
        return tuple(parse_window(w) for w in [*self.intervals, *self.hopping])

    def engine_config(self) -> EngineConfig:
        return EngineConfig(
            windows=self.windows(),
            allowed_lateness=parse_duration(self.allowed_lateness),
            correction_horizon=(
                parse_duration(self.correction_horizon) if self.correction_horizon else None
            ),
            idle_timeout=parse_duration(self.idle_timeout),
            provisional_every=parse_duration(self.provisional_every),
        )

    def exchange(self, name: str) -> ExchangeConfig:
        """The `[exchanges.<name>]` section, or the defaults when the file has none."""
        return self.exchanges.get(name) or ExchangeConfig()

    def symbols_by_exchange(self) -> dict[str, list[str]]:
        """Normalized symbols per chosen exchange, in `run.exchanges` order.

        An unprefixed symbol goes to every exchange, `name:SYMBOL` to one; an exchange that is
        given none (no symbols at all) gets its connector's default symbols.
        """
        shared: list[str] = []
        own: dict[str, list[str]] = {}
        for text in self.run.symbols:
            name, symbol = split_symbol(text)
            (own.setdefault(name, []) if name else shared).append(normalize_symbol(symbol))
        out: dict[str, list[str]] = {}
        for name in self.run.exchanges:
            symbols = shared + own.get(name, [])
            if not self.run.symbols:
                symbols = list(connector(name).INFO.default_symbols)
            out[name] = list(dict.fromkeys(symbols))
        return out

    def exchange_options(self, name: str, env: Mapping[str, str] | None = None) -> ExchangeOptions:
        """What `make_source` and `fetch_symbols` of exchange `name` are given.

        A token is read from the environment variable the connector names (never from files);
        a missing one is a ConfigError naming the variable.
        """
        info = connector(name).INFO
        token = None
        if info.token_env:
            token = (os.environ if env is None else env).get(info.token_env, "").strip()
            if not token:
                raise ConfigError(
                    f"config error: run.exchanges: {name} needs an API token in the environment "
                    f"variable {info.token_env}, which is not set"
                )
        section = self.exchange(name)
        return ExchangeOptions(
            url=section.url or None,
            rest_url=section.rest_url or None,
            stream=section.stream or None,
            token=token,
            poll_every=parse_duration(section.poll_every) / 1e6,
        )


SYMBOL_CHECK_TIMEOUT = 5.0  # seconds per exchange; start-up must not hang on a dead network


async def check_symbols(
    plan: Mapping[str, Sequence[str]],
    options: Mapping[str, ExchangeOptions],
    timeout: float = SYMBOL_CHECK_TIMEOUT,
) -> list[str]:
    """Look every symbol up in its exchange's public symbol list, all exchanges at once.

    An unknown symbol is a ConfigError that lists close matches; an exchange whose list cannot
    be fetched (offline, blocked) yields one warning line instead, and is not checked.
    """
    names = [name for name in plan if has_symbol_list(name)]

    async def fetch(name: str) -> dict[str, str]:
        async with asyncio.timeout(timeout):
            return await connector(name).fetch_symbols(options[name])  # type: ignore[attr-defined]

    results = await asyncio.gather(*(fetch(n) for n in names), return_exceptions=True)
    warnings = []
    for name, listed in zip(names, results, strict=True):
        if isinstance(listed, BaseException):
            if not isinstance(listed, Exception):
                raise listed  # cancellation, KeyboardInterrupt
            reason = " ".join(str(listed).split())[:200] or type(listed).__name__
            if isinstance(listed, TimeoutError):
                reason = f"no answer within {timeout:g}s"
            warnings.append(
                f"warning: cannot fetch {name}'s symbol list ({reason}); "
                f"its symbols are not checked"
            )
            continue
        for symbol in plan[name]:
            if symbol not in listed:
                close = difflib.get_close_matches(symbol, list(listed), n=3, cutoff=0.7)
                hint = (
                    f"close: {', '.join(close)}"
                    if close
                    else f"no close match; `tickpipe exchanges --symbols {name}` lists them"
                )
                raise ConfigError(
                    f"config error: run.symbols: {symbol!r} is not traded on {name} ({hint})"
                )
    return warnings


def split_symbol(text: str) -> tuple[str | None, str]:
    """`coinbase:BTC-USD` -> ("coinbase", "BTC-USD"); `BTC-USDT` and `BTC:USDT` -> (None, text).

    The part before a colon is an exchange when it names one, or when what follows is itself
    a separated pair (so `mtgox:BTC-USD` reads as an unknown exchange, not a bad symbol).
    """
    head, sep, rest = text.partition(":")
    name = head.strip().lower()
    if sep and (name in EXCHANGES or _SYMBOL_SEPARATOR.search(rest)):
        return name, rest.strip()
    return None, text


def _fields(struct: type[msgspec.Struct], prefix: str = "") -> dict[str, type]:
    """Dotted key -> type, for every setting (sections flattened; one per supported exchange)."""
    out: dict[str, type] = {}
    for info in msgspec.structs.fields(struct):
        key = f"{prefix}{info.name}"
        if isinstance(info.type, type) and issubclass(info.type, msgspec.Struct):
            out.update(_fields(info.type, key + "."))
        elif key == "exchanges":
            for name in EXCHANGES:
                out.update(_fields(ExchangeConfig, f"exchanges.{name}."))
        else:
            out[key] = info.type
    return out


KEYS = _fields(Config)
EXCHANGE_KEYS = tuple(f.name for f in msgspec.structs.fields(ExchangeConfig))
# What an unknown-setting error lists: exchange sections once, not once per exchange.
_KNOWN = ", ".join(
    sorted(k for k in KEYS if not k.startswith("exchanges."))
    + [f"exchanges.<name>.{k}" for k in EXCHANGE_KEYS]
)


def load_config(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """The effective configuration; raises ConfigError with a one-line message."""
    data: dict[str, Any] = {}
    origin: dict[str, str] = {}
    if path is not None:
        _merge(data, origin, _read_toml(Path(path)), f"from {path}")
    env = os.environ if env is None else env
    for key, kind in KEYS.items():
        name = ENV_PREFIX + key.replace(".", "_").upper()
        if name in env:
            _set(data, key, _from_env(env[name], kind))
            origin[key] = f"from {name}"
    for key, value in (overrides or {}).items():
        if value is not None:
            _set(data, key, value)
            origin[key] = "from the command line"
    sections = _exchange_sections(data.pop("exchanges", {}), origin)
    try:
        config = msgspec.convert(data, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(exc, data, origin)) from None
    config.exchanges = sections
    _choose_exchanges(config, origin)
    check(config, origin, env)
    return config


def _exchange_sections(raw: Any, origin: Mapping[str, str]) -> dict[str, ExchangeConfig]:
    """`[exchanges.<name>]` sections, each checked on its own so an error names its exchange."""
    if not isinstance(raw, Mapping):
        where = _where("exchanges", origin)
        raise ConfigError(
            f"config error: exchanges = {raw!r}{where}: expected a table of exchanges, "
            f"e.g. [exchanges.binance]"
        )
    out: dict[str, ExchangeConfig] = {}
    for name, section in raw.items():
        key = f"exchanges.{name}"
        if name not in EXCHANGES:
            where = _where(key, origin, prefix=True)
            raise ConfigError(
                f"config error: unknown exchange {key!r}{where} (supported: {', '.join(EXCHANGES)})"
            )
        try:
            out[name] = msgspec.convert(section, ExchangeConfig, strict=False)
        except msgspec.ValidationError as exc:
            raise ConfigError(_explain(exc, {"exchanges": raw}, origin, key)) from None
    return out


def _choose_exchanges(config: Config, origin: Mapping[str, str]) -> None:
    """Without `run.exchanges` set anywhere, `name:SYMBOL` symbols choose their exchanges.

    `--symbol kraken:XBT-USD` alone runs Kraken only; add an unprefixed symbol and the
    default exchanges run too. Repeats in `run.exchanges` count once.
    """
    chosen = list(dict.fromkeys(config.run.exchanges))
    if "run.exchanges" not in origin and config.run.symbols:
        named = [split_symbol(s)[0] for s in config.run.symbols]
        prefixed = [n for n in named if n is not None and n in EXCHANGES]
        chosen = list(DEFAULT_EXCHANGES) if None in named or not prefixed else []
        chosen.extend(n for n in dict.fromkeys(prefixed) if n not in chosen)
    config.run.exchanges = chosen


def _where(key: str, origin: Mapping[str, str], prefix: bool = False) -> str:
    """` (from X)` for a key, or for the first key under it when `prefix`."""
    if key in origin:
        return f" ({origin[key]})"
    if prefix:
        for name, where in origin.items():
            if name.startswith(key + "."):
                return f" ({where})"
    return ""


def check(
    config: Config, origin: Mapping[str, str] | None = None, env: Mapping[str, str] | None = None
) -> None:
    """Semantic checks msgspec's types cannot express."""
    origin = origin or {}

    def fail(key: str, value: Any, why: str) -> None:
        where = f" ({origin[key.split('[')[0]]})" if key.split("[")[0] in origin else ""
        raise ConfigError(f"config error: {key} = {value!r}{where}: {why}")

    if not config.intervals and not config.hopping:
        fail("intervals", config.intervals, "give at least one interval, e.g. 1m")
    for key in ("intervals", "hopping"):
        for i, text in enumerate(getattr(config, key)):
            try:
                window = parse_window(text)
            except ValueError as exc:
                fail(f"{key}[{i}]", text, str(exc).split(": ", 1)[-1])
            if key == "intervals" and window.hopping:
                fail(f"{key}[{i}]", text, "hopping windows go under `hopping`")
    for key in ("allowed_lateness", "idle_timeout", "provisional_every", "flush_every"):
        try:
            parse_duration(getattr(config, key))
        except ValueError:
            fail(key, getattr(config, key), "not a duration (use e.g. 250ms, 5s, 1m, 1h)")
    if config.correction_horizon:
        try:
            parse_duration(config.correction_horizon)
        except ValueError:
            fail("correction_horizon", config.correction_horizon, "not a duration (e.g. 1h)")
    if config.queue_trades < 1:
        fail("queue_trades", config.queue_trades, "must be at least 1")
    supported = ", ".join(EXCHANGES)
    if not config.run.exchanges:
        fail("run.exchanges", config.run.exchanges, f"choose at least one of {supported}")
    for i, name in enumerate(config.run.exchanges):
        if name not in EXCHANGES:
            fail(f"run.exchanges[{i}]", name, f"unknown exchange (supported: {supported})")
    given: set[str | None] = set()
    for i, text in enumerate(config.run.symbols):
        name, symbol = split_symbol(text)
        if name is not None and name not in EXCHANGES:
            fail(f"run.symbols[{i}]", text, f"unknown exchange {name!r} (supported: {supported})")
        if name is not None and name not in config.run.exchanges:
            fail(
                f"run.symbols[{i}]", text,
                f"{name} is not among run.exchanges ({', '.join(config.run.exchanges)}); "
                f"add --exchange {name}",
            )  # fmt: skip
        try:
            normalize_symbol(symbol)
        except SymbolError as exc:
            fail(f"run.symbols[{i}]", text, str(exc).split(f"{symbol!r} ", 1)[-1])
        given.add(name)
    if config.run.symbols and None not in given:
        for name in config.run.exchanges:
            if name not in given:
                fail(
                    "run.symbols", config.run.symbols,
                    f"no symbol for {name}: add {name}:BASE-QUOTE, or a BASE-QUOTE for every "
                    f"exchange",
                )  # fmt: skip
    if config.run.speed < 0:
        fail("run.speed", config.run.speed, "1 = original speed, 10 = ten times faster, 0 = max")
    if config.run.replay and not Path(config.run.replay).is_file():
        fail("run.replay", config.run.replay, "no such file")
    if not 1 <= config.demo.symbols <= 100_000:
        fail("demo.symbols", config.demo.symbols, "must be between 1 and 100000")
    if not 0 < config.demo.rate <= 20_000_000:
        fail("demo.rate", config.demo.rate, "trades/s must be above 0 and at most 20000000")
    if not 0 <= config.serve.port <= 65535:
        fail("serve.port", config.serve.port, "must be between 0 and 65535 (0: any free port)")
    if not config.serve.host.strip():
        fail("serve.host", config.serve.host, "give an address, e.g. 127.0.0.1")
    if config.serve.enabled and not config.serve.token and not config.serve.insecure:
        from tickpipe.serve.params import is_loopback

        if not is_loopback(config.serve.host):
            fail(
                "serve.host", config.serve.host,
                "serving beyond this machine needs an access token (--token or "
                "TICKPIPE_SERVE_TOKEN), or --insecure to go without one",
            )  # fmt: skip
    _check_kafka(config.kafka, fail)
    _check_store(config, origin)
    try:
        parse_duration(config.store_retry_for)
    except ValueError:
        fail("store_retry_for", config.store_retry_for, "not a duration (e.g. 30s, 5m)")
    for name, section in config.exchanges.items():
        key = f"exchanges.{name}"
        if section.url and not section.url.startswith(("ws://", "wss://")):
            fail(f"{key}.url", section.url, "must start with ws:// or wss://")
        if section.rest_url and not section.rest_url.startswith(("http://", "https://")):
            fail(f"{key}.rest_url", section.rest_url, "must start with http:// or https://")
        if section.stream:
            streams = connector(name).INFO.streams
            if section.stream not in streams:
                fail(f"{key}.stream", section.stream, f"{name} streams: {', '.join(streams)}")
        try:
            parse_duration(section.poll_every)
        except ValueError:
            fail(f"{key}.poll_every", section.poll_every, "not a duration (use e.g. 1s, 5s, 1m)")
    try:
        if parse_duration(config.monitor.kpi_every) <= 0:
            raise ValueError
    except ValueError:
        fail("monitor.kpi_every", config.monitor.kpi_every, "a duration above 0 (e.g. 5s)")
    if not config.monitor.process.strip():
        fail("monitor.process", config.monitor.process, "give the process a name")
    if not 0 <= config.monitor.metrics_port <= 65535:
        fail("monitor.metrics_port", config.monitor.metrics_port, "between 0 (off) and 65535")
    check_alerts(config.alerts, fail, os.environ if env is None else env)


def _check_kafka(kafka: KafkaConfig, fail: Any) -> None:
    from tickpipe.transport.kafka import check_properties
    from tickpipe.transport.schema import ENCODINGS

    for i, address in enumerate(kafka.bootstrap.split(",")):
        host, sep, port = address.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            fail("kafka.bootstrap", kafka.bootstrap, f"address {i + 1} is not HOST:PORT")
    if not kafka.trades_topic.strip():
        fail("kafka.trades_topic", kafka.trades_topic, "give a topic name")
    if kafka.encoding not in ENCODINGS:
        fail("kafka.encoding", kafka.encoding, f"one of {', '.join(ENCODINGS)}")
    if not kafka.group.strip():
        fail("kafka.group", kafka.group, "give a consumer group name")
    if not 1 <= kafka.message_trades <= 100_000:
        fail("kafka.message_trades", kafka.message_trades, "must be between 1 and 100000")
    problem = check_properties(kafka.properties)
    if problem is not None:
        from tickpipe.transport.kafka import is_secret

        name, why = problem
        value = "***" if is_secret(name) else kafka.properties.get(name)
        fail(f"kafka.properties.{name}", value, why)


def _check_store(config: Config, origin: Mapping[str, str]) -> None:
    """`store` is empty (DuckDB) or a PostgreSQL URL; the message never shows a password."""
    url = config.store.strip()
    config.store = url
    if not url or url == "duckdb":
        config.store = ""
        return
    from tickpipe.stores.base import is_postgres_url
    from tickpipe.stores.postgresql import redact

    where = f" ({origin['store']})" if "store" in origin else ""
    allowed = (
        "use a postgresql://user@host:port/dbname URL, or leave it empty for the DuckDB file "
        "under data_dir"
    )
    if not is_postgres_url(url):
        shown = url if "@" not in url else url.split("://", 1)[0] + "://..."
        raise ConfigError(f"config error: store = {shown!r}{where}: {allowed}")
    if redact(url).endswith("(unparsable URL)"):
        raise ConfigError(
            f"config error: store = 'postgresql://...'{where}: not a valid URL; {allowed}"
        )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config error: --config {path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config error: {path}: not valid TOML ({exc})") from None


def _merge(data: dict, origin: dict, new: Mapping[str, Any], where: str, prefix: str = "") -> None:
    for name, value in new.items():
        key = prefix + name
        if isinstance(value, Mapping) and key not in KEYS:
            _merge(data, origin, value, where, key + ".")
        else:
            _set(data, key, value)
            origin[key] = where


def _set(data: dict, key: str, value: Any) -> None:
    *sections, name = key.split(".")
    for section in sections:
        data = data.setdefault(section, {})
    data[name] = value


def _from_env(text: str, kind: Any) -> Any:
    """Environment values are text: lists are comma-separated (lists of tables: JSON), booleans
    1/0/true/false, tables (`kafka.properties`) comma-separated NAME=VALUE pairs."""
    if getattr(kind, "__origin__", None) is dict:
        pairs = [part.partition("=") for part in text.split(",") if part.strip()]
        if all(sep for _, sep, _ in pairs):
            return {name.strip(): value.strip() for name, _, value in pairs}
        return text
    if getattr(kind, "__origin__", None) is list:
        (item,) = kind.__args__
        if isinstance(item, type) and issubclass(item, msgspec.Struct):  # alerts.rules: JSON
            try:
                return msgspec.json.decode(text)
            except msgspec.DecodeError:
                return text
        return [part.strip() for part in text.split(",") if part.strip()]
    if kind is bool:
        return {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}.get(
            text.strip().lower(), text
        )
    return text


def _explain(
    exc: msgspec.ValidationError, data: dict, origin: Mapping[str, str], section: str = ""
) -> str:
    """msgspec's `Expected int, got str - at $.demo.rate` as a one-line config error.

    `section` is the dotted key of what was converted (an `exchanges.<name>` section).
    """
    message = str(exc)
    what, _, at = message.partition(" - at `$")
    key = ".".join(p for p in (section, at.rstrip("`").lstrip(".")) if p)
    if not key and "unknown field" in what.lower():
        field = what.split("`")[1] if "`" in what else what
        hint = f"; exchange settings go under [exchanges.{field}]" if field in EXCHANGES else ""
        return f"config error: unknown setting {field!r} (known: {_KNOWN}){hint}"
    if what.startswith("Object contains unknown field"):
        field = what.split("`")[1]
        full = f"{key}.{field}" if key else field
        known = _KNOWN
        if section:
            known = ", ".join(f"{section}.{k}" for k in EXCHANGE_KEYS)
        return f"config error: unknown setting {full!r} (known: {known})"
    base = key.split("[")[0]
    where = f" ({origin[base]})" if base in origin else ""
    value = data
    for part in base.split("."):
        value = value.get(part, None) if isinstance(value, dict) else None
    return f"config error: {key} = {value!r}{where}: {what[0].lower() + what[1:]}"
