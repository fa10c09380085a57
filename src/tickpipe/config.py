"""Configuration: defaults, then a TOML file, then `TICKPIPE_*` variables, then command flags.

Everything is checked at start-up. A bad value stops tickpipe with one line that names the key,
where the value came from and what is allowed, e.g.
`config error: intervals[1] = '7x' (from TICKPIPE_INTERVALS): not a duration (use e.g. 5s, 1m)`.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

from tickpipe.engine.candles import EngineConfig
from tickpipe.engine.windows import Window, parse_duration, parse_window
from tickpipe.symbols import SymbolError, normalize_symbol

ENV_PREFIX = "TICKPIPE_"
EXCHANGES = ("binance",)


class ConfigError(ValueError):
    """A configuration value that tickpipe cannot start with; the message is one line."""


class BinanceConfig(msgspec.Struct, forbid_unknown_fields=True):
    url: str = "wss://stream.binance.com:9443"
    stream: Literal["trade", "aggTrade"] = "trade"


class RunConfig(msgspec.Struct, forbid_unknown_fields=True):
    exchanges: list[str] = msgspec.field(default_factory=lambda: ["binance"])
    symbols: list[str] = msgspec.field(default_factory=lambda: ["BTC-USDT", "ETH-USDT"])
    replay: str = ""
    speed: float = 1.0


class DemoConfig(msgspec.Struct, forbid_unknown_fields=True):
    symbols: int = 20
    rate: float = 2000.0
    seed: int = 0


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
    binance: BinanceConfig = msgspec.field(default_factory=BinanceConfig)

    # -- derived values (all validated by `check`) -----------------------------------------

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def db_path(self) -> Path:
        return self.data_path / "tickpipe.duckdb"

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


def _fields(struct: type[msgspec.Struct], prefix: str = "") -> dict[str, type]:
    """Dotted key -> type, for every setting (sections flattened)."""
    out: dict[str, type] = {}
    for info in msgspec.structs.fields(struct):
        key = f"{prefix}{info.name}"
        if isinstance(info.type, type) and issubclass(info.type, msgspec.Struct):
            out.update(_fields(info.type, key + "."))
        else:
            out[key] = info.type
    return out


KEYS = _fields(Config)


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
    try:
        config = msgspec.convert(data, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(exc, data, origin)) from None
    check(config, origin)
    return config


def check(config: Config, origin: Mapping[str, str] | None = None) -> None:
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
    for i, name in enumerate(config.run.exchanges):
        if name not in EXCHANGES:
            fail(
                f"run.exchanges[{i}]", name, f"unknown exchange (supported: {', '.join(EXCHANGES)})"
            )
    for i, symbol in enumerate(config.run.symbols):
        try:
            normalize_symbol(symbol)
        except SymbolError as exc:
            fail(f"run.symbols[{i}]", symbol, str(exc).split(f"{symbol!r} ", 1)[-1])
    if config.run.speed < 0:
        fail("run.speed", config.run.speed, "1 = original speed, 10 = ten times faster, 0 = max")
    if config.run.replay and not Path(config.run.replay).is_file():
        fail("run.replay", config.run.replay, "no such file")
    if not 1 <= config.demo.symbols <= 100_000:
        fail("demo.symbols", config.demo.symbols, "must be between 1 and 100000")
    if not 0 < config.demo.rate <= 20_000_000:
        fail("demo.rate", config.demo.rate, "trades/s must be above 0 and at most 20000000")
    if not config.binance.url.startswith(("ws://", "wss://")):
        fail("binance.url", config.binance.url, "must start with ws:// or wss://")


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
    """Environment values are text: lists are comma-separated, booleans 1/0/true/false."""
    if getattr(kind, "__origin__", None) is list:
        return [part.strip() for part in text.split(",") if part.strip()]
    if kind is bool:
        return {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}.get(
            text.strip().lower(), text
        )
    return text


def _explain(exc: msgspec.ValidationError, data: dict, origin: Mapping[str, str]) -> str:
    """msgspec's `Expected int, got str - at $.demo.rate` as a one-line config error."""
    message = str(exc)
    what, _, at = message.partition(" - at `$.")
    key = at.rstrip("`")
    if not key and "unknown field" in what.lower():
        field = what.split("`")[1] if "`" in what else what
        known = ", ".join(sorted(KEYS))
        return f"config error: unknown setting {field!r} (known: {known})"
    if what.startswith("Object contains unknown field"):
        field = what.split("`")[1]
        full = f"{key}.{field}" if key else field
        return f"config error: unknown setting {full!r} (known: {', '.join(sorted(KEYS))})"
    base = key.split("[")[0]
    where = f" ({origin[base]})" if base in origin else ""
    value = data
    for part in base.split("."):
        value = value.get(part, None) if isinstance(value, dict) else None
    return f"config error: {key} = {value!r}{where}: {what[0].lower() + what[1:]}"
