"""Configuration: defaults, then a TOML file, then `TICKPIPE_*` variables, then command flags.

This module is the loader. Each section's struct and semantic checks live beside the part that
owns it (`engine/settings.py`, `serve/settings.py`, `sources/settings.py`, `stores/settings.py`,
`transport/settings.py`, `monitor/alerts/config.py`); `Config` composes them, and loading reads
the sources in order, remembers where each value came from and checks everything at start-up.
Durations are decoded once, here (`tickpipe.durations`), into fields with their unit in the
name (`flush_every_s`) under the key users write (`flush_every`). A bad value stops tickpipe
with one line that names the key, where the value came from and what is allowed, e.g.
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
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, get_args, get_origin

import msgspec

from tickpipe.credentials import (
    FILE_SUFFIX,
    KAFKA_SECRET_PROPERTIES,
    SERVE_TOKEN_ENV,
    STORE_PASSWORD_ENV,
    SecretError,
    kafka_env,
    read_secret,
    secret_env,
    secret_names,
    url_password,
    url_user,
    where_secret_goes,
    with_password,
)
from tickpipe.durations import ALLOWED, NOT_A_DURATION, Seconds, decode
from tickpipe.engine.composite_settings import CompositeSettings, check_composite
from tickpipe.engine.settings import DURATION, EngineSettings, check_engine
from tickpipe.monitor.alerts.config import (
    ALERT_SECRETS,
    AlertsConfig,
    MonitorConfig,
    check_alerts,
    check_monitor,
)
from tickpipe.serve.settings import ServeConfig, check_serve
from tickpipe.sources.registry import EXCHANGES, ExchangeOptions, connector, has_symbol_list
from tickpipe.sources.settings import (
    DEFAULT_EXCHANGES,
    DemoConfig,
    ExchangeConfig,
    RunConfig,
    check_demo,
    check_exchanges,
    check_run,
    split_symbol,
)
from tickpipe.stores.lake.location import LakeSettings, check_lake, check_lake_url
from tickpipe.stores.settings import RetryFor, store_url
from tickpipe.symbols import normalize_symbol
from tickpipe.transport.settings import KafkaConfig, check_kafka

if TYPE_CHECKING:
    from tickpipe.stores.base import Store

ENV_PREFIX = "TICKPIPE_"
# Settings that are secrets: read from their variable or its _FILE twin, refused elsewhere.
SECRET_KEYS = {"serve.token": SERVE_TOKEN_ENV}
# Trades the bounded queue may hold: its memory is reserved as it fills, and beyond this a
# typo (10^20) would promise a queue no machine can hold.
MAX_QUEUE_TRADES = 100_000_000
_INDEX = re.compile(r"\[\d+\]")
_MEMORY = re.compile(r"[1-9]\d*(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)
_MEMORY_UNITS = {"kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": 2**10,
                 "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip


def memory_bytes(text: str) -> float:
    """A size in DuckDB's spelling (checked by `_MEMORY`) in bytes, to compare two limits."""
    match = re.fullmatch(r"([0-9.]+)\s*([a-z]+)", text.strip().lower())
    if match is None or match.group(2) not in _MEMORY_UNITS:
        raise ValueError(f"not a size: {text!r}")
    return float(match.group(1)) * _MEMORY_UNITS[match.group(2)]


class ConfigError(ValueError):
    """A configuration value that tickpipe cannot start with; the message is one line."""


class Config(EngineSettings, forbid_unknown_fields=True):
    """Every setting; the engine's keys (windows, lateness...) come from `EngineSettings`."""

    data_dir: str = "./tickpipe-data"
    queue_trades: int = 1_000_000
    flush_every_s: Annotated[Seconds, DURATION] = msgspec.field(
        name="flush_every", default=Seconds(0.2)
    )
    # How often the engine's state is saved with a store write (DuckDB, PostgreSQL): a restart
    # loads it and replays at most this much of the stored trades.
    snapshot_every_s: Annotated[Seconds, DURATION] = msgspec.field(
        name="snapshot_every", default=Seconds(5.0)
    )
    quiet: bool = False
    forecast: bool = False  # next-candle forecasts beside the engine (river; DuckDB, PostgreSQL)
    run: RunConfig = msgspec.field(default_factory=RunConfig)
    demo: DemoConfig = msgspec.field(default_factory=DemoConfig)
    serve: ServeConfig = msgspec.field(default_factory=ServeConfig)
    kafka: KafkaConfig = msgspec.field(default_factory=KafkaConfig)
    exchanges: dict[str, ExchangeConfig] = msgspec.field(default_factory=dict)
    monitor: MonitorConfig = msgspec.field(default_factory=MonitorConfig)
    alerts: AlertsConfig = msgspec.field(default_factory=AlertsConfig)
    composite: CompositeSettings = msgspec.field(default_factory=CompositeSettings)
    # Where trades and candles are kept: "" = the DuckDB file under data_dir, or a
    # postgresql://user@host:port/db, cassandra://host:port/keyspace or mongodb://host:port/db
    # URL (TICKPIPE_STORE, --store). Client settings (auth, TLS, consistency level, write
    # concern) ride in the URL, e.g. mongodb://...?authSource=admin&tls=true&w=majority.
    store: str = ""
    # The DuckDB file's cache of written blocks and query memory, in DuckDB's spelling
    # (e.g. 48MB, 1GB): part of a running pipeline's memory, which must stay bounded. Writing
    # appends and the engine restores in batches, so a small cache costs little CPU.
    duckdb_memory_limit: str = "48MB"
    # The same for `tickpipe verify`, a separate process whose recomputation sorts and groups
    # up to a million stored trades at once: it uses the larger of the two limits.
    duckdb_verify_memory_limit: str = "128MB"
    # how long a PostgreSQL, Cassandra or MongoDB write retries after losing the server
    store_retry_for_s: RetryFor = msgspec.field(name="store_retry_for", default=Seconds(60.0))
    # The Parquet lake beside the store: s3://bucket/prefix or file:///path (TICKPIPE_LAKE,
    # --lake); S3 credentials only from TICKPIPE_LAKE_ACCESS_KEY_ID/_SECRET_ACCESS_KEY.
    lake: str = ""
    lake_endpoint: str = ""  # an S3-compatible server's host:port or http(s)://host:port
    lake_region: str = ""
    lake_roll_bytes: int = 64 * 1024 * 1024  # a partition's file is written at this size ...
    lake_roll_every_s: Annotated[Seconds, DURATION] = msgspec.field(
        name="lake_roll_every", default=Seconds(300.0)
    )  # ... or once its oldest row waited this long

    # -- derived values (all validated by `check`) -----------------------------------------

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def db_path(self) -> Path:
        return self.data_path / "tickpipe.duckdb"

    def open_store(self, read_only: bool = False, verify: bool = False) -> Store:
        """The configured store: PostgreSQL or Cassandra when `store` is a URL, else the
        DuckDB file (for `verify`: with the larger of its two memory limits)."""
        from tickpipe.stores.base import open_store

        limit = self.duckdb_memory_limit
        if verify and memory_bytes(self.duckdb_verify_memory_limit) > memory_bytes(limit):
            limit = self.duckdb_verify_memory_limit
        return open_store(
            self.store, self.db_path, read_only=read_only, retry_for=self.store_retry_for_s,
            duckdb_memory_limit=limit,
        )  # fmt: skip

    def lake_settings(self, url: str | None = None) -> LakeSettings:
        """The lake's settings (`url` instead of the `lake` key: export's --to)."""
        return LakeSettings(
            url if url is not None else self.lake, self.lake_endpoint, self.lake_region,
            self.lake_roll_bytes, self.lake_roll_every_s, self.store_retry_for_s,
        )  # fmt: skip

    @property
    def dead_letter_path(self) -> Path:
        return self.data_path / "dead-letters.jsonl"

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
            env = _secret_env(env, [info.token_env])
            token = env.get(info.token_env, "").strip()
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
            poll_every=section.poll_every_s,
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


def _fields(struct: type[msgspec.Struct], prefix: str = "") -> dict[str, type]:
    """Dotted key -> type, for every setting (sections flattened; one per supported exchange)."""
    out: dict[str, type] = {}
    for info in msgspec.structs.fields(struct):
        key = f"{prefix}{info.encode_name}"
        if isinstance(info.type, type) and issubclass(info.type, msgspec.Struct):
            out.update(_fields(info.type, key + "."))
        elif key == "exchanges":
            for name in EXCHANGES:
                out.update(_fields(ExchangeConfig, f"exchanges.{name}."))
        else:
            out[key] = info.type
    return out


KEYS = _fields(Config)
EXCHANGE_KEYS = tuple(f.encode_name for f in msgspec.structs.fields(ExchangeConfig))
# What an unknown-setting error lists: exchange sections once, not once per exchange.
_KNOWN = ", ".join(
    sorted(k for k in KEYS if not k.startswith("exchanges."))
    + [f"exchanges.<name>.{k}" for k in EXCHANGE_KEYS]
)


def env_name(key: str) -> str:
    """The environment variable of a setting: `serve.token` is TICKPIPE_SERVE_TOKEN."""
    return ENV_PREFIX + key.replace(".", "_").upper()


# tickpipe's own test suite reads these (CI sets the first: a test that cannot reach its server
# fails; the soak test's settings start with the second); tickpipe does not, but they are no
# misspellings either.
TEST_SUITE_ENV = "TICKPIPE_REQUIRE_SERVERS"
TEST_SUITE_ENV_PREFIX = "TICKPIPE_SOAK_"


def unknown_variables(env: Mapping[str, str] | None = None) -> list[str]:
    """One warning line per `TICKPIPE_*` variable tickpipe does not read, with the closest
    known name: a misspelt variable would otherwise be ignored without a word."""
    from tickpipe.stores.lake.location import LAKE_SECRETS

    secrets = secret_names(
        [*ALERT_SECRETS, *LAKE_SECRETS]
        + [token for n in EXCHANGES if (token := connector(n).INFO.token_env)]
    )
    known = {env_name(key) for key in KEYS} | secrets | {s + FILE_SUFFIX for s in secrets}
    known.add(TEST_SUITE_ENV)
    out = []
    for name in sorted(os.environ if env is None else env):
        if name.startswith(ENV_PREFIX) and name not in known:
            if name.startswith(TEST_SUITE_ENV_PREFIX):
                continue
            # compared without the shared prefix, which would make every name look close
            rest = {k.removeprefix(ENV_PREFIX): k for k in known}
            close = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), rest, n=1, cutoff=0.6)
            hint = f"did you mean {rest[close[0]]}?" if close else "no setting has a close name"
            out.append(f"warning: unknown variable {name} is ignored ({hint})")
    return out


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
        name = env_name(key)
        if name in env and key not in SECRET_KEYS:
            _set(data, key, _from_env(env[name], kind))
            origin[key] = f"from {name}"
    for key, value in (overrides or {}).items():
        if value is not None:
            _set(data, key, value)
            origin[key] = "from the command line"
    try:
        _refuse_secrets(data, origin)
        _add_secrets(data, origin, env)
    except SecretError as exc:
        raise ConfigError(f"config error: {exc}") from None
    sections = _exchange_sections(data.pop("exchanges", {}), origin)
    try:
        config = msgspec.convert(data, Config, strict=False, dec_hook=decode)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(exc, data, origin)) from None
    config.exchanges = sections
    _choose_exchanges(config, origin)
    check(config, origin, env)
    return config


def _secret_env(env: Mapping[str, str] | None, names: Sequence[str]) -> Mapping[str, str]:
    """The environment with the secrets `names` given as files read in (see `credentials`)."""
    try:
        return secret_env(os.environ if env is None else env, names)
    except SecretError as exc:
        raise ConfigError(f"config error: {exc}") from None


_FROM_STORE_ENV = "from TICKPIPE_STORE"  # a whole URL in the environment may hold its password
_FROM_PROPERTIES_ENV = "from TICKPIPE_KAFKA_PROPERTIES"


def _refuse_secrets(data: dict[str, Any], origin: Mapping[str, str]) -> None:
    """A secret in the TOML file (shared, often committed) or on the command line (in every
    user's process list) is refused with where it goes instead."""
    for key, name in SECRET_KEYS.items():
        if _get(data, key) and key in origin and origin[key] != f"from {name}":
            raise SecretError(f"{key} ({origin[key]}) is a secret: {where_secret_goes(name)}")
    store = data.get("store")
    if isinstance(store, str) and url_password(store) and origin.get("store") != _FROM_STORE_ENV:
        raise SecretError(
            f"store ({origin.get('store', 'given')}) holds a password: give the URL without it "
            f"and {where_secret_goes(STORE_PASSWORD_ENV)}"
        )
    properties = _get(data, "kafka.properties")
    where = origin.get("kafka.properties", "")
    if isinstance(properties, Mapping) and where != _FROM_PROPERTIES_ENV:
        for prop in properties:
            if prop in KAFKA_SECRET_PROPERTIES:
                raise SecretError(
                    f"kafka.properties.{prop} ({where or 'given'}) is a secret: "
                    f"{where_secret_goes(kafka_env(prop))}"
                )


def _add_secrets(data: dict[str, Any], origin: dict[str, str], env: Mapping[str, str]) -> None:
    """The secrets from their variables (or files): the API token, the store's password into
    its URL, Kafka's secret properties."""
    for key, name in SECRET_KEYS.items():
        value = read_secret(name, env)
        if value is not None:
            _set(data, key, value)
            origin[key] = f"from {name}"
    password = read_secret(STORE_PASSWORD_ENV, env)
    if password is not None:
        store = data.get("store")
        if not isinstance(store, str) or not url_user(store.strip()):
            raise SecretError(
                f"{STORE_PASSWORD_ENV} is set, but the store URL names no user to log in as "
                f"(e.g. postgresql://USER@host:5432/db)"
            )
        if url_password(store):
            raise SecretError(f"{STORE_PASSWORD_ENV} is set, and the store URL has a password")
        data["store"] = with_password(store.strip(), password)
    for prop in KAFKA_SECRET_PROPERTIES:
        value = read_secret(kafka_env(prop), env)
        if value is not None:
            properties = data.setdefault("kafka", {}).setdefault("properties", {})
            properties[prop] = value


def _get(data: Mapping[str, Any], key: str) -> Any:
    for part in key.split("."):
        if not isinstance(data, Mapping):
            return None
        data = data.get(part)  # type: ignore[assignment]
    return data


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
            out[name] = msgspec.convert(section, ExchangeConfig, strict=False, dec_hook=decode)
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
    """Semantic checks msgspec's types cannot express, each section's beside its owner."""
    origin = origin or {}

    def fail(key: str, value: Any, why: str) -> NoReturn:
        where = f" ({origin[key.split('[')[0]]})" if key.split("[")[0] in origin else ""
        raise ConfigError(f"config error: {key} = {value!r}{where}: {why}")

    check_engine(config, fail)
    if config.data_path.exists() and not config.data_path.is_dir():
        fail("data_dir", config.data_dir, "is a file; give a directory (it is created if missing)")
    if not 1 <= config.queue_trades <= MAX_QUEUE_TRADES:
        fail("queue_trades", config.queue_trades, f"must be between 1 and {MAX_QUEUE_TRADES:,}")
    check_run(config.run, fail)
    check_demo(config.demo, fail)
    check_serve(config.serve, fail)
    check_kafka(config.kafka, fail)
    config.store = store_url(config.store, fail)
    for name in ("duckdb_memory_limit", "duckdb_verify_memory_limit"):
        if not _MEMORY.fullmatch(getattr(config, name).strip()):
            fail(name, getattr(config, name), "use a size, e.g. 128MB or 1GB")
    check_lake(config.lake_settings(), fail)
    config.lake = check_lake_url(config.lake, fail)
    check_exchanges(config.exchanges, fail)
    check_monitor(config.monitor, fail)
    check_alerts(config.alerts, fail, _secret_env(env, ALERT_SECRETS))
    check_composite(config.composite, fail)


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
    value: Any = data
    for index, name in re.findall(r"\[(\d+)\]|([^.\[]+)", key):
        if name:
            value = value.get(name) if isinstance(value, dict) else None
        else:
            value = value[int(index)] if isinstance(value, list) else None
    if what == NOT_A_DURATION:
        what = _allowed(key) or what
    return f"config error: {key} = {value!r}{where}: {what[0].lower() + what[1:]}"


def _allowed(key: str) -> str | None:
    """What the field at `key` (e.g. `alerts.rules[0].for`) allows, as its `allowing` says."""
    kind: Any = Config
    for part in _INDEX.sub("", key).split("."):
        if get_origin(kind) is dict:  # `part` is a table's own key, e.g. an exchange's name
            kind = get_args(kind)[1]
            continue
        if get_origin(kind) is list:
            kind = get_args(kind)[0]
        if not (isinstance(kind, type) and issubclass(kind, msgspec.Struct)):
            return None
        kind = {f.encode_name: f.type for f in msgspec.structs.fields(kind)}.get(part)
    for meta in getattr(kind, "__metadata__", ()):
        if isinstance(meta, msgspec.Meta) and meta.extra:
            return meta.extra.get(ALLOWED)
    return None
