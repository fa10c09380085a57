"""The `tickpipe` command.

Flags, `TICKPIPE_*` variables and the `--config` file all become one validated `Config`; any
bad value stops here with one line naming the setting and what is allowed (exit status 2).
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from tickpipe import __version__
from tickpipe.allocator import limit_retained_memory
from tickpipe.config import Config, ConfigError, check_symbols, load_config, unknown_variables
from tickpipe.credentials import (
    SERVE_TOKEN_ENV,
    SecretError,
    redact,
    redact_logs,
    where_secret_goes,
)
from tickpipe.durations import parse_duration
from tickpipe.engine.windows import parse_window
from tickpipe.faults import Fault, faults_named
from tickpipe.sources import Source
from tickpipe.sources.settings import DEFAULT_EXCHANGES
from tickpipe.stores.base import StoreError

if TYPE_CHECKING:
    from tickpipe.verify import VerifyReport

EXIT_USAGE = 2


def _seconds(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """`--duration 20` (seconds) or `--duration 2m`."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            return parse_duration(value) / 1e6
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    if seconds <= 0:
        raise click.BadParameter("must be above 0 seconds")
    return seconds


def _windows(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[str]:
    """Window names as the store spells them (`60s` becomes `1m`); bad ones are usage errors."""
    try:
        return [parse_window(v).name for v in values]
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _endpoints(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, str]:
    """`--endpoint binance=ws://127.0.0.1:9000` (repeatable) as {exchange: url}."""
    out: dict[str, str] = {}
    for value in values:
        name, sep, url = value.partition("=")
        if not sep or not name.strip() or not url.strip():
            example = (
                "http://127.0.0.1:9001" if param.name == "rest_endpoints" else "ws://127.0.0.1:9000"
            )
            raise click.BadParameter(f"{value!r} is not NAME=URL (e.g. binance={example})")
        out[name.strip().lower()] = url.strip()
    return out


def _remember_store(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """`--store URL`: kept aside and merged into the config by `_config` (every command)."""
    if value is not None:
        ctx.meta["tickpipe.store"] = value


def _remember_lake(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """`--lake URL` of the pipeline commands: merged into the config by `_config`."""
    if value is not None:
        ctx.meta["tickpipe.lake"] = value


def _remember_tls(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """`--tls-cert`/`--tls-key` of the serving commands: merged into the config by `_config`."""
    if value is not None:
        ctx.meta.setdefault("tickpipe.tls", {})[f"serve.{param.name}"] = value


def _instant(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """An ISO date or date-time (UTC unless it says otherwise) as microseconds."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO date or time (e.g. 2026-12-05 or "
                                 "2026-12-05T13:00)") from None  # fmt: skip
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1_000_000)


CONFIG_OPTION = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False),
    help="TOML configuration file (see README, Configuration).",
)  # fmt: skip
STORE_OPTION = click.option(
    "--store", expose_value=False, callback=_remember_store, metavar="URL",
    help="postgresql://user@host:port/db or mongodb://host:port/db to keep the data in "
    "PostgreSQL or MongoDB (or TICKPIPE_STORE) "
    "[default: the DuckDB file under --data-dir].",
)  # fmt: skip
LAKE_OPTION = click.option(
    "--lake", expose_value=False, callback=_remember_lake, metavar="URL",
    help="Also write trades and final candles as Parquet to s3://bucket/prefix or "
    "file:///path (or TICKPIPE_LAKE).",
)  # fmt: skip


def _common(func):
    """Options every pipeline command takes."""
    for option in reversed(
        [
            STORE_OPTION,
            LAKE_OPTION,
            CONFIG_OPTION,
            click.option("--data-dir", help="Where the DuckDB file and dead letters go "
                         "[default: ./tickpipe-data]."),
            click.option("--interval", "intervals", multiple=True,
                         help="Candle interval, repeatable [default: 1s 5s 1m 5m 1h]."),
            click.option("--hopping", multiple=True,
                         help="Hopping window SIZE/SLIDE, repeatable (e.g. 1m/5s)."),
            click.option("--duration", callback=_seconds,
                         help="Stop after this long (e.g. 20 or 2m) [default: until Ctrl-C]."),
            click.option("--quiet", is_flag=True, default=None,
                         help="No live view: one start line and a summary at the end."),
        ]
    ):  # fmt: skip
        func = option(func)
    return func


def _serve_options(func):
    """Options of the HTTP API and live WebSocket (`run`, `demo`, `serve`)."""
    for option in reversed(
        [
            click.option("--host", help="API address [default: 127.0.0.1]; any other needs "
                         "a token (TICKPIPE_SERVE_TOKEN) or --insecure."),
            click.option("--port", type=click.IntRange(0, 65535),
                         help="API port [default: 8050; 0: any free port]."),
            click.option("--token", hidden=True, expose_value=False, callback=_no_token),
            click.option("--insecure", is_flag=True, default=None,
                         help="Serve a non-loopback address without a token."),
            click.option("--tls-cert", expose_value=False, callback=_remember_tls,
                         metavar="PEM", help="Serve HTTPS with this certificate (chain) "
                         "and --tls-key; HSTS on every answer."),
            click.option("--tls-key", expose_value=False, callback=_remember_tls,
                         metavar="PEM", help="The certificate's private key, unencrypted."),
        ]
    ):  # fmt: skip
        func = option(func)
    return func


def _no_token(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """`--token` is refused: every user of the machine can read it in the process list."""
    if value is not None:
        raise click.BadParameter(
            f"a token on the command line is visible to every user of this machine; "
            f"{where_secret_goes(SERVE_TOKEN_ENV)}",
            ctx, param,
        )  # fmt: skip


def _serve_overrides(host: str | None, port: int | None, insecure: bool | None) -> dict[str, Any]:
    return {"serve.host": host, "serve.port": port, "serve.insecure": insecure}


def _config(config_path: str | None, overrides: dict[str, Any]) -> Config:
    ctx = click.get_current_context(silent=True)
    store = ctx.meta.get("tickpipe.store") if ctx is not None else None
    for warning in unknown_variables():
        click.echo(warning, err=True)
    lake = ctx.meta.get("tickpipe.lake") if ctx is not None else None
    lake = overrides.get("lake", lake)  # verify --lake and export --to name their own
    tls = ctx.meta.get("tickpipe.tls", {}) if ctx is not None else {}
    return load_config(config_path, overrides={**overrides, **tls, "store": store, "lake": lake})


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tickpipe")
def cli() -> None:
    """tickpipe: live exchange trades to exact candles, stored and shown as they happen.

    Start with `tickpipe demo` (no network), then `tickpipe verify`; `tickpipe exchanges`
    lists the exchanges `tickpipe run` speaks.
    """


def _source_options(func):
    """Where `run` and `ingest` get their trades: exchanges and symbols, or a replay file."""
    for option in reversed(
        [
            click.option(
                "--exchange",
                "exchanges",
                multiple=True,
                help="Exchange to subscribe to, repeatable "
                f"[default: {' '.join(DEFAULT_EXCHANGES)}]; `tickpipe exchanges` lists them.",
            ),
            click.option(
                "--symbol",
                "symbols",
                multiple=True,
                help="BASE-QUOTE for every chosen exchange, or NAME:BASE-QUOTE for one; repeatable "
                "[default: each exchange's own, e.g. BTC-USDT ETH-USDT on binance].",
            ),
            click.option(
                "--endpoint",
                "endpoints",
                multiple=True,
                callback=_endpoints,
                metavar="NAME=URL",
                help="WebSocket endpoint override, repeatable (e.g. binance=ws://127.0.0.1:9000).",
            ),
            click.option(
                "--rest-endpoint",
                "rest_endpoints",
                multiple=True,
                callback=_endpoints,
                metavar="NAME=URL",
                help="REST endpoint override, repeatable (symbol lists, backfill, polling).",
            ),
            click.option(
                "--no-symbol-check",
                "no_symbol_check",
                is_flag=True,
                default=None,
                help="Do not look the symbols up in each exchange's symbol list at start-up.",
            ),
            click.option(
                "--replay",
                type=click.Path(dir_okay=False),
                help="Replay trades from a .jsonl, .csv or .parquet file instead of exchanges.",
            ),
            click.option(
                "--speed",
                type=float,
                help="Replay speed: 1 = original, 10 = ten times faster, 0 = as fast as possible.",
            ),
        ]
    ):
        func = option(func)
    return func


def _source_overrides(exchanges, symbols, endpoints, rest_endpoints, no_symbol_check, replay,
                      speed) -> dict[str, object]:  # fmt: skip
    """The config keys the source options set."""
    return {
        "run.exchanges": list(exchanges) or None, "run.symbols": list(symbols) or None,
        "run.check_symbols": False if no_symbol_check else None,
        "run.replay": replay, "run.speed": speed,
        **{f"exchanges.{name}.url": url for name, url in endpoints.items()},
        **{f"exchanges.{name}.rest_url": url for name, url in rest_endpoints.items()},
    }  # fmt: skip


@cli.command()
@_common
@_serve_options
@click.option("--no-serve", is_flag=True, default=None, help="Do not start the HTTP API.")
@_source_options
@click.option("--record", "record_dir", metavar="DIR", type=click.Path(file_okay=False),
              help="Also keep every raw frame as received (zstd JSON lines, rolled) under DIR, "
              "for `tickpipe replay-raw DIR`.")  # fmt: skip
def run(config_path, data_dir, intervals, hopping, duration, quiet, host, port, insecure,
        no_serve, exchanges, symbols, endpoints, rest_endpoints, no_symbol_check, replay,
        speed, record_dir) -> None:  # fmt: skip
    """Ingest live trades, build candles, store them, show them in the terminal and the API."""
    config = _config(config_path, {
        **_serve_overrides(host, port, insecure),
        "serve.enabled": False if no_serve else None,
        "data_dir": data_dir, "intervals": list(intervals) or None,
        "hopping": list(hopping) or None, "quiet": quiet,
        **_source_overrides(exchanges, symbols, endpoints, rest_endpoints, no_symbol_check,
                            replay, speed),
    })  # fmt: skip
    sources = _run_sources(config)
    recorder = _recorder(config, sources, Path(record_dir)) if record_dir else None
    _pipeline(config, sources, "run", duration, recorder)


def _recorder(config: Config, sources: list[Source], directory: Path):
    """The recorder of `run --record`: every source must be a WebSocket feed to record."""
    from tickpipe.history.recording import FrameRecorder, RecordedSource
    from tickpipe.sources.feed import ShardedFeed

    if config.run.replay:
        raise click.BadParameter("a file replay has no raw frames to record",
                                 param_hint="--record")  # fmt: skip
    recorder = FrameRecorder(directory)
    for name, source in zip(config.symbols_by_exchange(), sources, strict=True):
        if not isinstance(source, ShardedFeed):
            raise click.BadParameter(
                f"{source.name}'s frames cannot be recorded (it is not a WebSocket feed on the "
                "shared scaffold; record binance, coinbase, kraken, bybit, okx, bitstamp, "
                "finnhub or tiingo)", param_hint="--record",
            )  # fmt: skip
        from tickpipe.credentials import redact_secrets

        recorder.add(RecordedSource(
            source=source.name, connector=name, stream=config.exchange_options(name).stream,
            url=redact_secrets(source.url, source.secrets),
            instruments=[(i.exchange, i.symbol, i.raw_symbol) for i in source.instruments],
        ))  # fmt: skip
        source.recorder = recorder
    return recorder


@cli.command("replay-raw")
@click.argument("directory", type=click.Path(file_okay=False))
@CONFIG_OPTION
@click.option("--data-dir", help="Where the DuckDB file and dead letters go "
              "[default: ./tickpipe-data].")  # fmt: skip
@STORE_OPTION
@click.option("--interval", "intervals", multiple=True,
              help="Candle interval, repeatable [default: 1s 5s 1m 5m 1h].")  # fmt: skip
@click.option("--hopping", multiple=True, help="Hopping window SIZE/SLIDE, repeatable.")
def replay_raw(directory, config_path, data_dir, intervals, hopping) -> None:  # fmt: skip
    """Run the raw frames `run --record DIR` kept through the same parsers and engine again.

    The stored trades equal the recorded run's, receipt times included, and so do the candles:
    after a parser fix this applies it to history. Replay into a fresh --data-dir or --store
    (or the recorded run's own): candles are computed from the recording's trades.
    """
    from tickpipe.history.recording import RecordingError
    from tickpipe.history.replay_raw import replay_raw as run_replay

    config = _config(config_path, {
        "data_dir": data_dir, "intervals": list(intervals) or None,
        "hopping": list(hopping) or None,
    })  # fmt: skip
    with faults_named(str(config.db_path)):
        try:
            report = asyncio.run(run_replay(config, Path(directory)))
        except RecordingError as exc:
            _error(f"tickpipe replay-raw: error: {_one_line(exc)}", 1)
    for path in report.truncated:
        click.echo(f"replay-raw: {path}: its tail was cut off (a crash while recording); "
                   "replayed up to it", err=True)  # fmt: skip
    rate = report.trades / report.seconds if report.seconds else 0.0
    click.echo(
        f"replay-raw: {report.frames:,} frames and {report.refilled:,} refilled trades of "
        f"{len(report.sources)} sources ({', '.join(sorted(report.sources))}) -> "
        f"{report.trades:,} trades, {report.candles:,} candle updates, {report.malformed:,} "
        f"malformed, in {report.seconds:.1f}s ({rate:,.0f} trades/s)"
    )


@cli.command()
@click.option(
    "--symbols",
    "symbols_of",
    metavar="NAME",
    help="Print the symbols exchange NAME trades now (asks its public symbol list).",
)
@click.option(
    "--rest-endpoint",
    "rest_endpoints",
    multiple=True,
    callback=_endpoints,
    metavar="NAME=URL",
    help="REST endpoint override, repeatable (e.g. binance=http://127.0.0.1:9001).",
)
@CONFIG_OPTION
def exchanges(symbols_of, rest_endpoints, config_path) -> None:  # fmt: skip
    """List the supported exchanges: streams, gap detection, backfill, tokens.

    With `--symbols NAME`, print NAME's tradable symbols instead (normalized, then as the
    exchange spells them).
    """
    from tickpipe.sources.registry import EXCHANGES, connector, has_symbol_list

    if symbols_of is None:
        _print_exchanges()
        return
    name = symbols_of.strip().lower()
    if name not in EXCHANGES:
        raise click.BadParameter(
            f"unknown exchange {symbols_of!r} (supported: {', '.join(EXCHANGES)})",
            param_hint="--symbols",
        )
    if not has_symbol_list(name):
        raise click.BadParameter(f"{name} has no public symbol list", param_hint="--symbols")
    config = _config(config_path, {
        f"exchanges.{n}.rest_url": url for n, url in rest_endpoints.items()
    })  # fmt: skip
    options = config.exchange_options(name)
    try:
        symbols = asyncio.run(connector(name).fetch_symbols(options))  # type: ignore[attr-defined]
    except Exception as exc:
        click.echo(f"tickpipe exchanges: error: {name}'s symbol list: {_one_line(exc)}", err=True)
        sys.exit(1)
    width = max((len(s) for s in symbols), default=0)
    for symbol in sorted(symbols):
        click.echo(f"{symbol:<{width}}  {symbols[symbol]}")


def _print_exchanges() -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from tickpipe.sources.registry import EXCHANGES, connector

    table = Table(title="Exchanges tickpipe speaks", title_justify="left", show_lines=True)
    for column in ("name", "title", "streams", "gap detection", "backfill", "token"):
        table.add_column(column, overflow="fold")
    for name in EXCHANGES:
        info = connector(name).INFO
        shown = [f"{s} (default)" if i == 0 else s for i, s in enumerate(info.streams[:6])]
        if len(info.streams) > 6:  # ccxt: one stream per exchange it speaks
            shown.append(f"... {len(info.streams) - 6} more")
        streams = ", ".join(shown)
        cells = (info.name, info.title, streams, info.gaps, info.backfill, info.token_env or "none")
        table.add_row(*(Text(cell) for cell in cells))  # Text: "[ccxt]" is not markup
    Console(width=max(120, Console().width)).print(table)


@cli.command()
@_common
@_serve_options
@click.option("--no-serve", is_flag=True, default=None, help="Do not start the HTTP API.")
@click.option("--symbols", type=int, help="How many simulated symbols [default: 20].")
@click.option("--rate", type=float, help="Trades per second across all symbols [default: 2000].")
@click.option("--seed", type=int, help="Random seed of the simulated market [default: 0].")
@click.option(
    "--forecast",
    is_flag=True,
    default=None,
    help="Forecast each next candle beside the engine (needs river).",
)
def demo(config_path, data_dir, intervals, hopping, duration, quiet, host, port, insecure,
         no_serve, symbols, rate, seed, forecast) -> None:  # fmt: skip
    """Run the whole pipeline on a simulated market: no network needed."""
    config = _config(config_path, {
        **_serve_overrides(host, port, insecure),
        "serve.enabled": False if no_serve else None,
        "data_dir": data_dir, "intervals": list(intervals) or None,
        "hopping": list(hopping) or None, "quiet": quiet,
        "demo.symbols": symbols, "demo.rate": rate, "demo.seed": seed, "forecast": forecast,
    })  # fmt: skip
    from tickpipe.sources.simulated import SimulatedMarket

    market = SimulatedMarket(config.demo.symbols, config.demo.rate, config.demo.seed)
    _pipeline(config, [market], "demo", duration)


@cli.command()
@CONFIG_OPTION
@click.option("--data-dir", help="Where the DuckDB file is [default: ./tickpipe-data].")
@STORE_OPTION
@click.option(
    "--since",
    required=True,
    callback=_instant,
    help="First trade time to export: ISO date or time, UTC (e.g. 2026-12-01).",
)
@click.option(
    "--until",
    callback=_instant,
    help="Export trades before this time (ISO, UTC) [default: everything after --since].",
)
@click.option(
    "--to",
    "to",
    required=True,
    metavar="DIR|s3://bucket/prefix",
    help="The lake to write: a directory, file:///path or s3://bucket/prefix (CSV: a directory).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["parquet", "csv"]),
    default="parquet",
    show_default=True,
    help="parquet: the lake layout; csv: DIR/trades.csv and DIR/candles.csv.",
)
def export(config_path, data_dir, since, until, to, fmt) -> None:  # fmt: skip
    """Write the store's trades and final candles in [--since, --until) to the lake layout
    (Parquet), or as two CSV files (`--format csv`).

    Only what the lake does not hold yet is written, so an export may be repeated or overlap
    what a running pipeline's --lake wrote. One progress line per instrument. CSV files are
    written whole each time (replaced once complete).
    """
    from tickpipe.stores.lake.location import open_lake
    from tickpipe.stores.lake.sync import FOREVER_US, copy_to_lake

    if fmt == "csv":
        _export_csv(config_path, data_dir, since, until or FOREVER_US, to)
        return
    url = to if "://" in to else Path(to).resolve().as_uri()
    config = _config(config_path, {"data_dir": data_dir, "lake": url})
    lake = open_lake(config.lake_settings())
    store = config.open_store(read_only=True)
    started = time.monotonic()

    def progress(line: str) -> None:
        click.echo(f"export: {line} ({time.monotonic() - started:.1f}s)", err=True)

    try:
        report = copy_to_lake(store, lake, since, until or FOREVER_US, progress)
    finally:
        store.close()
    click.echo(
        f"export: {report.trades:,} trades and {report.candles:,} final candles of "
        f"{report.instruments} instruments written to {config.lake} "
        f"({lake.files_written} files, {lake.bytes_written:,} bytes, "
        f"{time.monotonic() - started:.1f}s)"
    )


def _export_csv(config_path, data_dir, since: int, until: int, to: str) -> None:
    from tickpipe.history.export_csv import export_csv

    if "://" in to and not to.startswith("file://"):
        raise click.BadParameter("CSV goes to a local directory (the lake, Parquet, to S3)",
                                 param_hint="--to")  # fmt: skip
    directory = Path(to.removeprefix("file://"))
    config = _config(config_path, {"data_dir": data_dir})
    started = time.monotonic()
    with faults_named(str(config.db_path)):
        store = config.open_store(read_only=True)
        try:
            report = export_csv(store, directory, since, until,
                                lambda line: click.echo(f"export: {line}", err=True))  # fmt: skip
        finally:
            store.close()
    click.echo(f"export: {report.trades:,} trades and {report.candles:,} final candles written "
               f"to {directory} as CSV ({report.bytes:,} bytes, "
               f"{time.monotonic() - started:.1f}s)")  # fmt: skip


@cli.command()
@CONFIG_OPTION
@click.option("--data-dir", help="Where the DuckDB file is [default: ./tickpipe-data].")
@STORE_OPTION
@click.option("--trades", "trades_age", metavar="AGE",
              help="Drop trades older than AGE (e.g. 30d).")  # fmt: skip
@click.option("--candles", "candles_ages", metavar="INTERVAL=AGE,...",
              help="Drop candles of each INTERVAL whose window starts more than AGE ago "
              "(e.g. 1s=7d,1m=365d); intervals not named are kept.")  # fmt: skip
@click.option("--lake", "lake_url", metavar="URL|DIR",
              help="Also drop from the Parquet lake at s3://bucket/prefix, file:///path or DIR "
              "(whole day partitions).")  # fmt: skip
@click.option("--lake-only", is_flag=True, help="Only the lake: leave the store as it is.")
@click.option("--now", "now_us", callback=_instant, metavar="TIME",
              help="Count ages from this time (ISO, UTC) [default: now]: a scheduled run "
              "names its own day.")  # fmt: skip
def retain(config_path, data_dir, trades_age, candles_ages, lake_url, lake_only,
           now_us) -> None:  # fmt: skip
    """Drop old data: whole partitions where the store has them (the lake's day folders),
    rows otherwise (DuckDB, PostgreSQL). Idempotent: schedule it.

    Ages shorter than the correction horizon are refused: a restart still needs those trades.
    """
    from tickpipe.engine.candles import CandleEngine
    from tickpipe.history.retention import (
        RetentionError,
        parse_retention,
        retain_lake,
        retain_store,
    )

    url = None
    if lake_url:
        url = lake_url if "://" in lake_url else Path(lake_url).resolve().as_uri()
    config = _config(config_path, {"data_dir": data_dir, "lake": url})
    if lake_only and not url:
        raise click.BadParameter("--lake-only needs --lake", param_hint="--lake-only")
    engine_config = config.engine_config()
    min_age_us = CandleEngine(engine_config).horizon + engine_config.allowed_lateness
    try:
        retention = parse_retention(trades_age, candles_ages, min_age_us)
    except RetentionError as exc:
        raise click.UsageError(str(exc)) from None
    now_us = now_us if now_us is not None else int(time.time() * 1_000_000)
    if not lake_only:
        with faults_named(str(config.db_path)):
            store = config.open_store()
            try:
                dropped = retain_store(store, retention, now_us)
            finally:
                store.close()
        click.echo(f"retain: {dropped.trades:,} trades and {dropped.candles:,} candles dropped "
                   f"from {store.describe()}")  # fmt: skip
    if url:
        from tickpipe.stores.lake.location import open_lake

        lake = open_lake(config.lake_settings())
        dropped = retain_lake(lake, retention, now_us)
        click.echo(
            f"retain: {dropped.trades:,} trades and {dropped.candles:,} candles dropped from "
            f"{config.lake} ({dropped.partitions:,} day partitions dropped, "
            f"{dropped.rewritten:,} rewritten without their expired candles)"
        )


@cli.command()
@CONFIG_OPTION
@click.option("--data-dir", help="Where the DuckDB file is [default: ./tickpipe-data].")
@STORE_OPTION
@click.option(
    "--interval",
    "intervals",
    multiple=True,
    callback=_windows,
    help="Only these intervals [default: every stored interval].",
)
@click.option(
    "--show",
    type=click.IntRange(0),
    default=20,
    show_default=True,
    help="How many mismatches to print.",
)
@click.option("--lake", "lake_url", metavar="URL",
              help="Verify the Parquet lake at s3://bucket/prefix or file:///path instead: its "
              "final candles against its trades.")  # fmt: skip
@click.option("--since", callback=_instant,
              help="Check only trades from this time on: ISO date or time, UTC (e.g. "
              "2026-12-01) [default: the first].")  # fmt: skip
@click.option(
    "--until",
    callback=_instant,
    help="Check only trades before this time (ISO, UTC) [default: the last].",
)
def verify(config_path, data_dir, intervals, show, lake_url, since, until) -> None:  # fmt: skip
    """Recompute every candle from the stored trades and diff against the streamed ones.

    Exits 0 with a one-line summary when all match, 1 with a readable diff otherwise. With
    --since/--until only the candles whose window lies wholly in the range are compared.
    Progress goes to stderr: a bar on a terminal, else a line every 10 s.
    """
    from tickpipe.verify import verify as run_verify
    from tickpipe.view.progress import VerifyProgress

    config = _config(config_path, {"data_dir": data_dir, "lake": lake_url})
    if lake_url:
        from tickpipe.stores.lake.location import open_lake
        from tickpipe.stores.lake.sync import verify_lake

        lake = open_lake(config.lake_settings())
        with VerifyProgress() as progress:
            report = verify_lake(lake, list(intervals) or None, show, since, until, progress)
        stored = "lake"
    else:
        with faults_named(str(config.db_path)):
            store = config.open_store(read_only=True, verify=True)
            try:
                with VerifyProgress() as progress:
                    report = run_verify(store, list(intervals) or None, show, since, until,
                                        progress)  # fmt: skip
            finally:
                store.close()
        stored = "stored"
    if report.ok:
        click.echo(
            f"verify: OK - {report.candles:,} candles in {len(report.intervals)} intervals "
            f"({', '.join(report.intervals)}) equal the recomputation from "
            f"{report.trades:,} {stored} trades; 0 mismatches, 0 duplicate trades"
        )
        _echo_uncompared(report)
        return
    click.echo(
        f"verify: FAILED - {report.mismatch_count:,} mismatching candles, "
        f"{report.duplicate_trades:,} duplicate trades "
        f"({report.candles:,} candles, {report.trades:,} trades)",
        err=True,
    )
    _echo_uncompared(report, err=True)
    for m in report.mismatches:
        click.echo(f"  {m.exchange} {m.symbol} {m.interval} start={m.start}: {m.problem}", err=True)
        for name in m.stored:
            a, b = m.stored[name], m.recomputed[name]
            if a != b:
                click.echo(f"      {name:<13} stored={a!r:<24} recomputed={b!r}", err=True)
    if report.mismatch_count > len(report.mismatches):
        click.echo(f"  ... and {report.mismatch_count - len(report.mismatches):,} more", err=True)
    sys.exit(1)


@cli.command()
@CONFIG_OPTION
@click.option("--data-dir", help="Where the DuckDB file is [default: ./tickpipe-data].")
@STORE_OPTION
@click.option(
    "--exchange",
    "exchanges",
    multiple=True,
    help="Exchange to backfill, repeatable [default: run.exchanges of the config; "
    "with --gaps: every stored one].",
)
@click.option(
    "--symbol",
    "symbols",
    multiple=True,
    help="BASE-QUOTE for every chosen exchange, or NAME:BASE-QUOTE for one; "
    "repeatable [default: each exchange's own].",
)
@click.option(
    "--since",
    callback=_instant,
    help="Start of the range: ISO date or time, UTC (e.g. 2026-12-01).",
)
@click.option(
    "--until", callback=_instant, help="End of the range, exclusive (ISO, UTC) [default: now]."
)
@click.option(
    "--gaps",
    is_flag=True,
    help="Fill only the holes in the stored trades (in --since/--until if given).",
)
@click.option(
    "--rest-endpoint",
    "rest_endpoints",
    multiple=True,
    callback=_endpoints,
    metavar="NAME=URL",
    help="REST endpoint override, repeatable.",
)
@click.option(
    "--requests-per-second",
    "rps",
    type=click.FloatRange(min=0.01),
    default=None,
    help="Pace requests at this rate [default: inside each exchange's public limit].",
)
@click.option(
    "--chunk",
    type=click.IntRange(1),
    default=50_000,
    show_default=True,
    help="Trades stored per transaction (and per saved progress).",
)
@click.option(
    "--fresh", is_flag=True, help="Forget saved progress of these ranges and fetch them again."
)
def backfill(config_path, data_dir, exchanges, symbols, since, until, gaps, rest_endpoints, rps,
             chunk, fresh) -> None:  # fmt: skip
    """Fetch trade history over exchanges' REST APIs into the store, with exact candles.

    Trades the store holds already are skipped; the candles of every window the new trades
    touch are recomputed and corrected (revision + 1), as late trades would be. Progress per
    symbol is saved after each chunk, so a killed backfill resumes where it stopped. Exits 0
    when all is done, 1 when a symbol failed (run again to resume), 2 on bad arguments.
    """
    from tickpipe.history.command import run_backfill

    config = _config(config_path, {
        "data_dir": data_dir, "run.exchanges": list(exchanges) or None,
        "run.symbols": list(symbols) or None,
        **{f"exchanges.{name}.rest_url": url for name, url in rest_endpoints.items()},
    })  # fmt: skip
    status = run_backfill(config, list(exchanges), since, until, gaps, rps, chunk, fresh)
    if status:
        sys.exit(status)


def _echo_uncompared(report: VerifyReport, err: bool = False) -> None:
    """Name the candles that differ but are no mismatch: the provisional ones an unclean stop
    left behind the stored trades, and those of windows the range cuts (not compared)."""
    if report.stale_provisional:
        click.echo(
            f"  {report.stale_provisional:,} stale provisional candles of windows open at an "
            "unclean stop lag the stored trades (not a mismatch): a restart of the pipeline "
            "rebuilds them",
            err=err,
        )
    if report.cut_windows:
        click.echo(
            f"  {report.cut_windows:,} candles of windows the --since/--until range cuts were "
            "not compared (they hold trades outside it)",
            err=err,
        )


@cli.command()
@CONFIG_OPTION
@click.option("--data-dir", help="Where the DuckDB file is [default: ./tickpipe-data].")
@STORE_OPTION
@_serve_options
@click.option(
    "--kafka",
    "bootstrap",
    metavar="HOST:PORT",
    help="Live candle updates from the candles topic (distributed mode).",
)
@click.option("--candles-topic", help="Candles topic [default: tickpipe.candles].")
def serve(config_path, data_dir, host, port, insecure, bootstrap,
          candles_topic) -> None:  # fmt: skip
    """Serve the API over an existing store, read-only: no live pushes (run or demo push).

    DuckDB lets one process write a file at a time: stop `tickpipe run` first, or use the API
    that `run` and `demo` start themselves. With `--kafka`, live candle updates come from the
    candles topic that `tickpipe process` replicas publish (the distributed mode).
    """
    from tickpipe.serve.app import ApiContext, create_app
    from tickpipe.serve.server import make_server

    config = _config(config_path, {"data_dir": data_dir, **_serve_overrides(
        host, port, insecure), "kafka.bootstrap": bootstrap,
        "kafka.candles_topic": candles_topic})  # fmt: skip
    if bootstrap:
        from tickpipe.transport.kafka import require_broker

        require_broker(config.kafka)  # a refused login is one line, not a silent feed
    store = config.open_store(read_only=True)
    try:
        sock = _bind(config)
        hub = None
        live = "read-only: no live pushes"
        if bootstrap:
            from tickpipe.serve.live import Hub

            hub = Hub()
            live = f"live candles from kafka {config.kafka.bootstrap} {config.kafka.candles_topic}"
        click.echo(f"tickpipe serve: dashboard and API at {_url(sock, config)} over "
                   f"{store.describe()} ({live}; Ctrl-C to stop)")  # fmt: skip
        app = create_app(ApiContext(store, hub=hub), config.serve.token or None, config.serve)
        asyncio.run(_serve_live(make_server(app, True, config.serve), sock, config, hub))
    finally:
        store.close()


async def _serve_live(server, sock, config: Config, hub) -> None:
    """The server, with the candles-topic feed into `hub` when there is one."""
    if hub is None:
        await server.serve(sockets=[sock])
        return
    from tickpipe.serve.kafka_feed import CandleFeed

    feed = CandleFeed(config.kafka, hub, asyncio.get_running_loop())
    feed.start()
    try:
        await server.serve(sockets=[sock])
    finally:
        feed.stop()


def _bind(config: Config):
    """The API's listening socket, bound now: a busy port is a one-line start-up error."""
    from tickpipe.serve.server import bind

    try:
        return bind(config.serve.host, config.serve.port)
    except OSError as exc:
        raise ConfigError(
            f"config error: serve.port = {config.serve.port}: cannot listen on "
            f"{config.serve.host}:{config.serve.port} ({exc.strerror or exc}); "
            f"choose another with --port, or --no-serve"
        ) from None


def _url(sock, config: Config) -> str:
    from tickpipe.serve.server import url_of

    return url_of(sock, bool(config.serve.tls_cert))


def _kafka_options(func):
    """Options of the distributed mode (`ingest`, `process`)."""
    for option in reversed(
        [
            click.option("--kafka", "bootstrap", metavar="HOST:PORT",
                         help="Kafka bootstrap servers [default: 127.0.0.1:9092]."),
            click.option("--topic", help="Trades topic [default: tickpipe.trades]."),
            click.option("--encoding", type=click.Choice(["json", "binary", "avro"]),
                         help="Message encoding [default: json; avro: also the candles]."),
            click.option("--schema-registry", metavar="URL",
                         help="Schema registry of --encoding avro (http://HOST:PORT)."),
        ]
    ):  # fmt: skip
        func = option(func)
    return func


@cli.command()
@_kafka_options
@CONFIG_OPTION
@click.option("--data-dir", help="Where dead letters go [default: ./tickpipe-data].")
@click.option("--duration", callback=_seconds, help="Stop after this long [default: Ctrl-C].")
@click.option("--simulated", is_flag=True, help="Publish the simulated market of `demo`.")
@click.option("--symbols", "sim_symbols", type=int, help="Simulated symbols [default: 20].")
@click.option("--rate", type=float, help="Simulated trades per second [default: 2000].")
@click.option("--seed", type=int, help="Random seed of the simulated market [default: 0].")
@_source_options
def ingest(bootstrap, topic, encoding, schema_registry, config_path, data_dir, duration,
           simulated, sim_symbols, rate, seed, exchanges, symbols, endpoints, rest_endpoints,
           no_symbol_check, replay, speed) -> None:  # fmt: skip
    """Publish trades from the sources to Kafka (the distributed mode's first stage)."""
    config = _config(config_path, {
        "kafka.bootstrap": bootstrap, "kafka.trades_topic": topic, "kafka.encoding": encoding,
        "kafka.schema_registry": schema_registry, "data_dir": data_dir,
        "demo.symbols": sim_symbols, "demo.rate": rate, "demo.seed": seed,
        **_source_overrides(exchanges, symbols, endpoints, rest_endpoints, no_symbol_check,
                            replay, speed),
    })  # fmt: skip
    from tickpipe.runners.ingest import run_ingest
    from tickpipe.transport.kafka import require_broker

    if simulated:
        from tickpipe.sources.simulated import SimulatedMarket

        sources: list[Source] = [
            SimulatedMarket(config.demo.symbols, config.demo.rate, config.demo.seed)
        ]
    else:
        sources = _run_sources(config)
    with faults_named(str(config.dead_letter_path)):
        require_broker(config.kafka)
        click.echo(
            f"tickpipe ingest: {', '.join(s.name for s in sources)} -> kafka "
            f"{config.kafka.bootstrap} topic {config.kafka.trades_topic} ({config.kafka.encoding})"
        )
        result = run_ingest(config, sources, duration)
    click.echo(
        f"tickpipe ingest: published {result.trades:,} trades in {result.messages:,} messages"
        f" ({result.undelivered:,} undelivered)"
    )
    if result.undelivered or result.error:
        click.echo(f"tickpipe ingest: error: {result.error or 'undelivered messages'}", err=True)
        sys.exit(1)


@cli.command()
@_kafka_options
@STORE_OPTION
@LAKE_OPTION
@CONFIG_OPTION
@click.option("--data-dir", help="Where dead letters (and a DuckDB file) go.")
@click.option("--group", help="Consumer group [default: tickpipe-process].")
@click.option("--candles-topic", help="Candles topic [default: tickpipe.candles; '' = none].")
@click.option("--interval", "intervals", multiple=True, help="Candle interval, repeatable.")
@click.option("--hopping", multiple=True, help="Hopping window SIZE/SLIDE, repeatable.")
@click.option("--duration", callback=_seconds, help="Stop after this long [default: SIGTERM].")
@click.option("--name", help="This replica's client id [default: process-HOST-PID].")
def process(bootstrap, topic, encoding, schema_registry, config_path, data_dir, group,
            candles_topic, intervals, hopping, duration, name) -> None:  # fmt: skip
    """Consume trades from Kafka, build candles, store them: one replica of a consumer group.

    Run several: the group shares the partitions, and a crash or rebalance changes nothing
    in the stored candles (see README, Distributed mode).
    """
    import logging
    import os
    import signal
    import socket

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    config = _config(config_path, {
        "kafka.bootstrap": bootstrap, "kafka.trades_topic": topic, "kafka.group": group,
        "kafka.encoding": encoding, "kafka.schema_registry": schema_registry,
        "kafka.candles_topic": candles_topic, "data_dir": data_dir,
        "intervals": list(intervals) or None, "hopping": list(hopping) or None,
    })  # fmt: skip
    from tickpipe.runners.kafka_processor import Processor
    from tickpipe.transport.kafka import require_broker

    with faults_named(str(config.db_path)):
        require_broker(config.kafka)
        store = config.open_store()
        name = name or f"process-{socket.gethostname()}-{os.getpid()}"
        processor = Processor(config, store, name)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: processor.stop())
        where = store.describe() if hasattr(store, "describe") else str(config.db_path)
        click.echo(
            f"tickpipe process: {name} in group {config.kafka.group}, "
            f"kafka {config.kafka.bootstrap} topic {config.kafka.trades_topic} -> {where}",
        )
        try:
            processor.run(duration)
        finally:
            store.close()
    s = processor.stats
    click.echo(
        f"tickpipe process: {name}: {s.trades:,} trades stored, {s.replayed:,} replayed, "
        f"{s.malformed:,} malformed, {s.commits:,} commits, {s.assignments:,} assignments"
    )


@cli.command()
@_kafka_options
@STORE_OPTION
@CONFIG_OPTION
@click.option("--data-dir", help="Where dead letters and the checkpoint go.")
@click.option("--candles-topic", help="Candles topic [default: tickpipe.candles; '' = none].")
@click.option("--interval", "intervals", multiple=True, help="Candle interval, repeatable.")
@click.option("--hopping", multiple=True, help="Hopping window SIZE/SLIDE, repeatable.")
@click.option(
    "--checkpoint",
    metavar="DIR|s3://BUCKET/PREFIX",
    help="Spark's checkpoint, local or on the lake's S3 endpoint "
    "[default: DATA_DIR/spark-checkpoint].",
)
@click.option("--master", default="local[2]", show_default=True, help="Spark master URL.")
@click.option("--driver-memory", default="1g", show_default=True, help="The Spark driver's heap.")
@click.option(
    "--trigger",
    "trigger_ms",
    type=int,
    default=500,
    show_default=True,
    help="A micro-batch at most every this many milliseconds.",
)
@click.option(
    "--no-provisional",
    is_flag=True,
    help="Only final candles (no update-mode query of provisional ones).",
)
@click.option("--duration", callback=_seconds, help="Stop after this long [default: SIGTERM].")
def spark(bootstrap, topic, encoding, schema_registry, config_path, data_dir, candles_topic,
          intervals, hopping, checkpoint, master, driver_memory, trigger_ms, no_provisional,
          duration) -> None:  # fmt: skip
    """Build the candles with Spark Structured Streaming instead of `tickpipe process`.

    Reads the trades topic, writes the same candles to the same PostgreSQL tables (see
    README, Spark mode). Needs the `spark` extra and scripts/setup/spark.sh's jars.
    """
    import logging

    from tickpipe.spark.jars import check_pyspark, connector_jars, s3a_jars

    config = _config(config_path, {
        "kafka.bootstrap": bootstrap, "kafka.trades_topic": topic,
        "kafka.candles_topic": candles_topic, "data_dir": data_dir,
        "intervals": list(intervals) or None, "hopping": list(hopping) or None,
        "kafka.encoding": encoding, "kafka.schema_registry": schema_registry,
    })  # fmt: skip
    if config.kafka.encoding != "json":
        click.echo(
            f"tickpipe spark: the Spark job reads the JSON encoding only, not "
            f"{config.kafka.encoding} (run `tickpipe ingest --encoding json`; README, Spark mode)",
            err=True,
        )
        sys.exit(1)
    problem = check_pyspark()
    if problem is not None:
        click.echo(f"tickpipe spark: {problem}", err=True)
        sys.exit(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from tickpipe.runners.spark import SparkOptions, run_spark
    from tickpipe.transport.kafka import require_broker

    where = checkpoint or str(config.data_path / "spark-checkpoint")
    on_s3 = where.startswith("s3://")
    if on_s3 and not where.removeprefix("s3://").strip("/"):
        click.echo("tickpipe spark: --checkpoint s3:// names no bucket (s3://BUCKET/PREFIX)",
                   err=True)  # fmt: skip
        sys.exit(1)
    try:
        connector_jars()
        if on_s3:
            s3a_jars()
    except FileNotFoundError as exc:
        click.echo(f"tickpipe spark: {exc}", err=True)
        sys.exit(1)
    options = SparkOptions(where, master, driver_memory, trigger_ms,
                           provisional=not no_provisional)  # fmt: skip
    with faults_named(str(config.db_path)):
        require_broker(config.kafka)
        click.echo(
            f"tickpipe spark: {master}, kafka {config.kafka.bootstrap} topic "
            f"{config.kafka.trades_topic} -> {redact(config.store)}, checkpoint {where}"
        )
        stats = run_spark(config, options, duration)
    click.echo(
        f"tickpipe spark: {stats.trades:,} trades stored, {stats.final:,} final and "
        f"{stats.provisional:,} provisional candle updates, {stats.malformed:,} malformed, "
        f"{stats.skipped_batches:,} retried batches skipped"
    )


from tickpipe.bench.command import bench  # noqa: E402 - click only; the benchmark loads when run

cli.add_command(bench)

from tickpipe.forecast.command import forecast  # noqa: E402 - click only, like bench

cli.add_command(forecast)


def _run_sources(config: Config) -> list[Source]:
    """The sources of `tickpipe run`: a file replay, or one source per chosen exchange.

    Symbols are looked up in each exchange's symbol list first (unless switched off); an
    exchange whose list cannot be fetched gets a one-line warning and goes ahead unchecked.
    """
    if config.run.replay:
        from tickpipe.sources.replay import FileReplay

        speed = config.run.speed or None  # 0: as fast as possible
        try:
            return [FileReplay(Path(config.run.replay), speed=speed)]
        except (ValueError, OSError) as exc:
            raise ConfigError(
                f"config error: run.replay = {config.run.replay!r}: {_one_line(exc)}"
            ) from None
    from tickpipe.sources.registry import connector

    plan = config.symbols_by_exchange()
    options = {name: config.exchange_options(name) for name in plan}
    if config.run.check_symbols:
        for warning in asyncio.run(check_symbols(plan, options)):
            click.echo(warning, err=True)
    sources = []
    for name, symbols in plan.items():
        try:
            sources.append(connector(name).make_source(symbols, options[name]))
        except ValueError as exc:
            raise ConfigError(f"config error: run.symbols: {name}: {_one_line(exc)}") from None
    return sources


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _pipeline(
    config: Config, sources: list[Source], mode: str, duration: float | None, recorder=None
) -> None:
    with faults_named(str(config.db_path)):
        _run_pipeline(config, sources, mode, duration, recorder)
    if recorder is not None and recorder.error is not None:
        raise Fault(recorder.error)


def _run_pipeline(
    config: Config, sources: list[Source], mode: str, duration: float | None, recorder=None
) -> None:
    from tickpipe.runners.embedded import Pipeline
    from tickpipe.view.terminal import Locations, TerminalView, print_summary, start_line

    sock, hub = None, None
    if config.serve.enabled:
        from tickpipe.serve.live import Hub

        sock, hub = _bind(config), Hub()
    pipeline = Pipeline(config, sources, mode, hub)
    where = Locations(
        pipeline.store.describe(),
        str(config.dead_letter_path),
        _url(sock, config) if sock is not None else None,
    )
    view = None
    try:
        if config.quiet:
            click.echo(start_line(pipeline.status(), where))
        if not pipeline.restore(click.echo):
            click.echo(
                f"tickpipe {mode}: stopped during the restore; the stored trades are as they were"
            )
            return
        if recorder is not None:
            recorder.on_error = pipeline.stop  # a full disk ends the run with its one line
            recorder.start()
        if not config.quiet:
            view = TerminalView(pipeline.status, where)
            view.start()
        if sock is None:
            asyncio.run(pipeline.run(duration))
        else:
            from tickpipe.serve.server import run_with_api

            token = config.serve.token or None
            asyncio.run(run_with_api(
                pipeline.api_context(), sock, token, pipeline.run(duration), config.serve
            ))  # fmt: skip
    finally:
        if view is not None:
            view.stop()
        if sock is not None:
            sock.close()
        try:
            pipeline.close()
        finally:
            if recorder is not None:
                recorder.close()
    print_summary(pipeline.status(), where)
    if recorder is not None and recorder.error is None:
        click.echo(
            f"tickpipe {mode}: recorded {recorder.frames:,} frames in {recorder.files_written} "
            f"files under {recorder.directory} ({recorder.bytes_written:,} bytes; waited for "
            f"the recorder {recorder.waits:,} times)"
        )


def _error(line: str, status: int) -> NoReturn:
    """Print a one-line error (never with a secret in it) and exit with `status`."""
    click.echo(redact(line), err=True)
    sys.exit(status)


def main() -> None:
    """Entry point: one-line errors for bad arguments and settings, exit status 2."""
    limit_retained_memory()
    redact_logs()
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "tickpipe"
        _error(f"{where}: error: {exc.format_message()}", EXIT_USAGE)
    except (ConfigError, StoreError) as exc:
        _error(str(exc), EXIT_USAGE)
    except SecretError as exc:  # a secret's file went missing after the config was read
        _error(f"tickpipe: error: {exc}", EXIT_USAGE)
    except Fault as exc:  # the machine's, not tickpipe's: a full disk, a damaged file
        _error(f"tickpipe: error: {exc}", 1)
    except RuntimeError as exc:  # the store failed while running (e.g. its server stayed away)
        if not isinstance(exc.__cause__, StoreError):
            raise
        _error(f"tickpipe: {exc}", 1)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
