"""`tickpipe forecast --evaluate`: replay the stored candles through the forecasts and print
the scoreboard. Only click is imported here; river and the store load when the command runs.
"""

from __future__ import annotations

import sys

import click


@click.command()
@click.option("--evaluate", is_flag=True,
              help="Replay the stored final candles (predict, then learn) and print the "
              "scoreboard; nothing is written.")  # fmt: skip
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML config file.")
@click.option("--data-dir", help="Where the DuckDB file is [default: ./tickpipe-data].")
@click.option(
    "--interval",
    "intervals",
    multiple=True,
    help="Interval to evaluate, repeatable [default: the stored tumbling ones].",
)
def forecast(evaluate: bool, config_path: str | None, data_dir: str | None,
             intervals: tuple[str, ...]) -> None:  # fmt: skip
    """Next-candle forecasts against the naive baselines (last close, last move)."""
    if not evaluate:
        raise click.UsageError("say what to do: --evaluate (replay the stored candles)")
    from rich.console import Console

    from tickpipe.cli import _config
    from tickpipe.engine.windows import parse_window
    from tickpipe.forecast.model import ForecastUnavailable, require_river
    from tickpipe.forecast.replay import replay_stored, scoreboard_table

    try:
        require_river()
    except ForecastUnavailable as exc:
        click.echo(f"tickpipe forecast: {exc}", err=True)
        sys.exit(1)
    config = _config(config_path, {"data_dir": data_dir})
    store = config.open_store(read_only=True)
    try:
        chosen = list(intervals) or [i for i in store.intervals() if not parse_window(i).hopping]
        result = replay_stored(store, chosen)
    finally:
        store.close()
    if not result.candles:
        click.echo(f"tickpipe forecast: no final candles of {', '.join(chosen) or 'any interval'} "
                   f"in {store.describe()}", err=True)  # fmt: skip
        sys.exit(1)
    Console(width=max(150, Console().width)).print(scoreboard_table(result.scores))
    click.echo(
        f"{result.candles:,} final candles of {', '.join(chosen)} replayed; the models cost "
        f"{result.cpu_s / result.candles * 1e6:,.0f} µs of CPU per candle"
    )
