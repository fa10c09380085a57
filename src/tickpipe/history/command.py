"""`tickpipe backfill`'s body (its options are in `cli.py`), scriptable for a scheduler.

Exit status: 0 when every task finished (or an exchange without history was only met among
`--gaps` holes), 1 when a task failed (one line each; a re-run resumes it), 2 for bad
arguments (and for an exchange asked for by name that has no history: one line says why),
130 after Ctrl-C.
The last line of stdout is the one-line summary. A re-run of a finished range fetches nothing
and changes nothing.
"""

from __future__ import annotations

import asyncio
import time

import click

from tickpipe.config import Config, ConfigError
from tickpipe.faults import faults_named


def run_backfill(
    config: Config,
    exchanges: list[str],
    since: int | None,
    until: int | None,
    gaps: bool,
    rps: float | None,
    chunk: int,
    fresh: bool,
) -> int:
    """Run the backfill the options ask for; the exit status."""
    from tickpipe.history.backfill import Backfiller, Task
    from tickpipe.history.exchanges import HistoryError, history_of
    from tickpipe.history.gaps import find_gaps
    from tickpipe.history.state import BackfillState
    from tickpipe.sources.registry import connector
    from tickpipe.view.backfill_progress import BackfillProgress

    now_us = time.time_ns() // 1000
    open_ended = until is None
    until = now_us if until is None else until
    if not gaps and since is None:
        raise ConfigError("tickpipe backfill: error: give --since (and --until), or --gaps")
    if since is not None and since >= until:
        raise ConfigError("tickpipe backfill: error: --since must be before --until")
    plan = config.symbols_by_exchange()
    notes: list[str] = []
    with faults_named(str(config.db_path)):
        store = config.open_store()
        try:
            if gaps:
                tasks = find_gaps(store, list(exchanges) or None, since, until)
            else:
                assert since is not None
                tasks = [
                    Task(n, s, since, until, open_ended)
                    for n, symbols in plan.items()
                    for s in symbols
                ]
            runnable = []
            for task in tasks:
                try:
                    history_of(task.exchange, task.symbol, _stream(config, task.exchange))
                    runnable.append(task)
                except HistoryError as exc:
                    if not gaps:
                        raise ConfigError(f"tickpipe backfill: {exc}") from None
                    notes.append(f"backfill: {task.exchange} {task.symbol}: hole left: {exc}")
            names = sorted({t.exchange for t in runnable})
            options = {name: config.exchange_options(name) for name in names}
            state_path = config.data_path / "backfill-state.json"
            state = BackfillState(state_path)
            if fresh:
                for task in runnable:
                    end = None if task.open_ended else task.until_us
                    state.forget(BackfillState.key(task.exchange, task.symbol, task.since_us, end))
            filler = Backfiller(
                store, config.engine_config(), state,
                rest_url=lambda n: connector(n).INFO.rest_url(options[n]),
                stream=lambda n: connector(n).INFO.stream(options[n]),
                chunk_trades=chunk,
                requests_per_s={n: rps for n in names} if rps else None,
            )  # fmt: skip
            started = time.monotonic()
            try:
                with BackfillProgress() as progress:
                    report = asyncio.run(filler.run(runnable, progress))
            except KeyboardInterrupt:
                click.echo("backfill: interrupted; what is stored stays, run again to resume",
                           err=True)  # fmt: skip
                return 130
            elapsed = time.monotonic() - started
        finally:
            store.close()
    for note in notes:
        click.echo(note, err=True)
    for failed in report.failed:
        t = failed.task
        click.echo(f"backfill: {t.exchange} {t.symbol}: failed: {failed.error} "
                   "(run again to resume)", err=True)  # fmt: skip
    fetched = report.total("fetched")
    skipped = sum(1 for t in report.tasks if t.skipped)
    what = f"{len(report.tasks)} holes" if gaps else f"{len(report.tasks)} symbols"
    click.echo(
        f"backfill: {'OK' if not report.failed else 'FAILED'} - {what}, "
        f"{fetched:,} trades fetched, {report.total('new'):,} new stored, "
        f"{report.total('candles'):,} candles written ({report.total('corrected'):,} corrected), "
        f"{skipped} already done, {len(report.failed)} failed, {report.rate_limited} "
        f"rate-limit waits, {elapsed:.1f}s ({fetched / max(elapsed, 1e-9):,.0f} trades/s)"
    )
    return 1 if report.failed else 0


def _stream(config: Config, name: str) -> str | None:
    """The feed variant the configuration sets for exchange `name` (None where it has none
    to give: a venue of ccxt's or of an aggregator, or a connector that wants a token)."""
    from tickpipe.sources.registry import UnknownExchange, connector

    try:
        return connector(name).INFO.stream(config.exchange_options(name))
    except (UnknownExchange, ConfigError):
        return None
