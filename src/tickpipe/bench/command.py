"""`tickpipe bench`: tickpipe against a naive pipeline, on one core, from raw Binance bytes.

Only click is imported here; the benchmark itself loads when the command runs, so that
`tickpipe --help` stays fast.
"""

from __future__ import annotations

import json
import os
import sys

import click

QUICK_TRADES = 50_000


def _options(func):
    """The command's options, one entry each."""
    for option in reversed(
        [
            click.option("--trades", type=click.IntRange(1), default=None,
                         help="How many trade frames to push through each path "
                         f"[default: 2,000,000; {QUICK_TRADES:,} with --quick]."),
            click.option("--symbols", type=click.IntRange(1), default=1_000,
                         show_default=True, help="How many symbols the frames spread over."),
            click.option("--quick", is_flag=True,
                         help="A small input, for tests and a first look."),
            click.option("--event-rate", type=click.FloatRange(min=1), default=1e6,
                         show_default=True,
                         help="Trades per second of event time in the generated stream (how "
                         "fast the market's clock runs); lower it for a longer span with more "
                         "windows closing."),
            click.option("--chunk", type=click.IntRange(1), default=20_000, show_default=True,
                         help="Frames per hand-over, as a WebSocket reader would batch them."),
            click.option("--cores", type=click.IntRange(1), default=1, show_default=True,
                         help="Also measure tickpipe on this many cores (the one-core figures "
                         "always run)."),
            click.option("--runs", type=click.IntRange(1), default=1, show_default=True,
                         help="Run each tickpipe measurement this many times and show the "
                         "min / median / max (the figures shown elsewhere are the median "
                         "run's)."),
            click.option("--cpu", type=click.IntRange(0), default=None,
                         help="The CPU to pin one-core runs to [default: the highest one "
                         "allowed]."),
            click.option("--profile", "profile_top", type=click.IntRange(0), default=0,
                         help="Also profile the tickpipe path with cProfile and show the top N "
                         "functions by own time, per thread (a separate run: its time is not "
                         "a figure)."),
            click.option("--json", "as_json", is_flag=True,
                         help="Print the results as JSON on stdout (progress still goes to "
                         "stderr)."),
        ]
    ):  # fmt: skip
        func = option(func)
    return func


@click.command()
@_options
def bench(
    trades, symbols, quick, event_rate, chunk, cores, runs, cpu, profile_top, as_json
) -> None:
    """Measure end-to-end throughput from raw Binance trade JSON to stored candles.

    tickpipe and a naive baseline (json.loads per message, a dict of candles, one SQLite
    INSERT per trade) run on the same frames, each pinned to the same single core; peak memory
    and the time `tickpipe demo` takes to store its first candle are measured too. Generating
    the input is not timed. See benchmarks/README.md.
    """
    from rich.console import Console

    from tickpipe.bench.report import print_report
    from tickpipe.bench.run import BenchOptions, run_bench

    allowed = len(os.sched_getaffinity(0))
    if cores > allowed:
        raise click.BadParameter(f"this process may use {allowed} CPUs", param_hint="--cores")
    if trades is None:
        trades = QUICK_TRADES if quick else 2_000_000
    options = BenchOptions(
        trades=trades, symbols=symbols, event_rate=event_rate, chunk=chunk, cores=cores,
        cpu=cpu, profile=profile_top, runs=runs,
    )  # fmt: skip
    progress = Console(stderr=True, highlight=False)
    try:
        results = run_bench(options, lambda line: progress.print(line, markup=False))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if as_json:
        json.dump(results, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_report(results)
