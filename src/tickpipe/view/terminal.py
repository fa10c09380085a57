"""The live terminal view shown while `tickpipe run` or `tickpipe demo` runs.

The pipeline owns the numbers; this module only draws them. At each refresh it pulls the
pipeline's one status read model, a `PipelineStatus` (`runtime/status.py`, also rendered by
the API and the metrics), from a callable, so the view never holds pipeline state and a slow
terminal never slows the pipeline down (rich's refresh thread does the drawing). Beside the
status it is given `Locations` (where the data, the dead letters and the dashboard are); how a
source's state reads ("connected", "waiting (2 reconnects)") is decided here. Quiet mode uses
only `start_line` and `print_summary`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from tickpipe.records import Candle
from tickpipe.runtime.status import InstrumentStatus, PipelineStatus, SourceStatus

UP_STYLE = "green"
DOWN_STYLE = "red"
FLAT_STYLE = ""
MISSING = "—"

_MAX_DECIMALS = 12
_TINY = 1e-10  # below this a price is shown in scientific notation
REASON_CHARS = 60  # a source's disconnect reason is cut to this, so its line stays one line

# Lines the panel needs besides the table rows: borders, header lines, blank, table title and
# head, "… more", and the line the cursor sits on.
_CHROME_LINES = 12


@dataclass(frozen=True)
class Locations:
    """Where a pipeline's output goes, shown beside its status (the status holds counters only)."""

    data_path: str  # the store (a DuckDB file or a PostgreSQL address)
    dead_letter_path: str
    dashboard_url: str | None = None  # None: the API is not served


# ---------------------------------------------------------------------------------------------
# Formatting


def price_decimals(value: float) -> int:
    """Decimals that show `value` to about six significant digits, never fewer than two.

    Trailing zeros are not counted, so 0.00001234 needs 8 and 60000.12 needs 2.
    """
    magnitude = abs(value)
    if magnitude == 0 or not math.isfinite(magnitude):
        return 2
    int_digits = math.floor(math.log10(magnitude)) + 1
    decimals = min(max(2, 6 - int_digits), _MAX_DECIMALS)
    tail = f"{magnitude:.{decimals}f}".partition(".")[2].rstrip("0")
    return max(2, len(tail))


def format_price(value: float | None, decimals: int | None = None) -> str:
    """A price that reads right at any magnitude: `60,000.12`, `3,000.50`, `0.00001234`.

    `decimals` fixes the number of decimals (the table uses one count per row, so a candle's
    open, high, low and close line up); by default it is `price_decimals(value)`.
    """
    if value is None:
        return MISSING
    if not math.isfinite(value):
        return str(value)
    if value != 0 and abs(value) < _TINY:
        return f"{value:.4g}"
    if decimals is None:
        decimals = price_decimals(value)
    return f"{value:,.{decimals}f}"


def format_quantity(value: float | None) -> str:
    """A volume in at most about eight characters: 0.01234, 12.35, 12,345, 1.23M, 4.56B."""
    if value is None:
        return MISSING
    if not math.isfinite(value):
        return str(value)
    magnitude = abs(value)
    if magnitude >= 1e9:
        return f"{value / 1e9:.2f}B"
    if magnitude >= 1e6:
        return f"{value / 1e6:.2f}M"
    if magnitude >= 1e4:
        return f"{value:,.0f}"
    if magnitude >= 1:
        return f"{value:,.2f}"
    if magnitude == 0:
        return "0"
    return f"{value:.4g}"


def format_rate(per_s: float) -> str:
    """A rate per second: one decimal while small, whole numbers once it is large."""
    if not math.isfinite(per_s):
        return str(per_s)
    if per_s >= 100:
        return f"{per_s:,.0f}"
    return f"{per_s:.1f}"


def format_duration(seconds: float) -> str:
    """An uptime such as `42s`, `3m 05s`, `1h 02m 03s` or `2d 03h 04m`."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h {minutes:02d}m"
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def price_style(last_price: float | None, candle: Candle | None) -> str:
    """Green when the last price is above the current candle's open, red below, plain otherwise."""
    if last_price is None or candle is None:
        return FLAT_STYLE
    if last_price > candle.open:
        return UP_STYLE
    if last_price < candle.open:
        return DOWN_STYLE
    return FLAT_STYLE


def source_state(source: SourceStatus) -> str:
    """A source's state in words: "connected", "waiting (2 reconnects)", "done, 1,234 trades"
    once its feed ended (a demo's --duration, a replay at its end), or "failed"."""
    if source.error:
        return "failed"
    if source.finished:
        return f"done, {source.trades:,} trades"
    return "connected" if source.connected else f"waiting ({source.reconnects} reconnects)"


def source_reason(source: SourceStatus, max_chars: int = REASON_CHARS) -> str:
    """Why a source is not connected, on one short line: its error, else its last disconnect
    (shown while it waits, so "waiting (5 reconnects)" says what keeps failing)."""
    if source.error:
        text = source.error
    elif source.finished or source.connected:
        return ""
    else:
        text = source.last_disconnect
    line = " ".join(text.split())
    return line if len(line) <= max_chars else line[: max_chars - 1] + "…"


def source_style(state: str) -> str:
    """A color for a source's state text, so a reconnecting feed stands out at a glance."""
    lowered = state.lower()
    if any(word in lowered for word in ("error", "fail", "disconnected", "down", "stopped")):
        return "red"
    if any(word in lowered for word in ("reconnect", "connecting", "backoff", "stale", "gap")):
        return "yellow"
    if any(word in lowered for word in ("connected", "ok", "live", "running", "simulat", "done")):
        return "green"
    return ""


def _lag_style(lag_ms: float | None) -> str:
    if lag_ms is None:
        return "dim"
    if lag_ms >= 1000:
        return "red"
    if lag_ms >= 250:
        return "yellow"
    return ""


def _queue_bar(depth: int, capacity: int, width: int = 12) -> Text:
    """Queue fill as a bar: a full queue means backpressure, so it turns yellow, then red."""
    if capacity <= 0:
        return Text(f"{depth:,}/?", style="dim")
    fill = min(max(depth / capacity, 0.0), 1.0)
    style = "green" if fill < 0.5 else "yellow" if fill < 0.9 else "bold red"
    filled = round(fill * width)
    if depth > 0 and filled == 0:
        filled = 1
    bar = Text()
    bar.append("━" * filled, style=style)
    bar.append("━" * (width - filled), style="grey37")
    bar.append(f" {depth:,}/{capacity:,} ({fill:.0%})", style=style if fill >= 0.5 else "")
    return bar


# ---------------------------------------------------------------------------------------------
# Rendering


def sort_rows(rows: Sequence[InstrumentStatus]) -> list[InstrumentStatus]:
    """Busiest symbols first; ties by total trades, then by name so rows do not jump around."""
    return sorted(rows, key=lambda r: (-r.trades_per_s, -r.trades, r.exchange, r.symbol))


def _label(text: str) -> Text:
    """Dim as a span, not as the Text's base style, so what is appended keeps its own style."""
    out = Text()
    out.append(text, style="dim")
    return out


def _count(label: str, value: int, warn: str = "") -> Text:
    out = _label(f"{label} ")
    out.append(f"{value:,}", style=warn if value and warn else "bold")
    return out


def _join(parts: list[Text], sep: str = "  ·  ") -> Text:
    out = Text()
    for i, part in enumerate(parts):
        if i:
            out.append(sep, style="dim")
        out.append_text(part)
    return out


def _header(status: PipelineStatus, where: Locations) -> list[Text]:
    totals = _join(
        [
            _count("trades", status.trades),
            Text.assemble(("rate ", "dim"), (f"{format_rate(status.trades_per_s)}/s", "bold")),
            _count("candles", status.candles_written),
            Text.assemble(("queue ", "dim"), _queue_bar(status.queue_depth, status.queue_capacity)),
        ]
    )
    quality = _join(
        [
            _count("late corrected", status.late_corrected),
            _count("late rejected", status.late_rejected, warn="yellow"),
            _count("duplicates", status.duplicates),
            _count("malformed", status.malformed, warn="yellow"),
        ]
    )
    files = [
        Text.assemble(("data ", "dim"), (where.data_path, "cyan")),
        Text.assemble(("dead letters ", "dim"), (where.dead_letter_path, "cyan")),
    ]
    sources = _label("sources ")
    if status.sources:
        for i, (name, source) in enumerate(sorted(status.sources.items())):
            if i:
                sources.append("   ")
            sources.append(f"{name} ", style="bold")
            state = source_state(source)
            style = source_style(state)
            sources.append("● ", style=style or "dim")
            sources.append(state, style=style)
            reason = source_reason(source)
            if reason:
                sources.append(f": {reason}", style="dim")
    else:
        sources.append("none", style="dim")
    return [totals, quality, _join(files), sources]


# Columns in display order: (name, right-justified, base style). Narrow terminals drop them in
# `_DROP_ORDER`; "close" goes early because it repeats "last" while the candle is open.
_COLUMNS: tuple[tuple[str, bool, str], ...] = (
    ("exchange", False, ""),
    ("symbol", False, "bold"),
    ("last", True, ""),
    ("open", True, "grey70"),
    ("high", True, "grey70"),
    ("low", True, "grey70"),
    ("close", True, "grey70"),
    ("volume", True, ""),
    ("trades/s", True, ""),
    ("lag ms", True, ""),
    ("trades", True, "dim"),
)
_DROP_ORDER: tuple[tuple[str, ...], ...] = (
    ("trades",),
    ("close",),
    ("high", "low"),
    ("volume",),
    ("open",),
    ("lag ms",),
    ("exchange",),
)


def _cells(row: InstrumentStatus) -> dict[str, Text]:
    """One row's cells; the prices of a row share one decimal count so they line up."""
    candle = row.candle
    prices = [row.last_price]
    if candle is not None:
        prices += [candle.open, candle.high, candle.low, candle.close]
    decimals = max((price_decimals(p) for p in prices if p is not None), default=2)

    def price(value: float | None) -> Text:
        return Text(format_price(value, decimals))

    missing = Text(MISSING, style="dim")
    return {
        "exchange": Text(row.exchange),
        "symbol": Text(row.symbol),
        "last": Text(
            format_price(row.last_price, decimals), style=price_style(row.last_price, candle)
        ),
        "open": price(candle.open) if candle else missing,
        "high": price(candle.high) if candle else missing,
        "low": price(candle.low) if candle else missing,
        "close": price(candle.close) if candle else missing,
        "volume": Text(format_quantity(candle.volume)) if candle else missing,
        "trades/s": Text(format_rate(row.trades_per_s)),
        "lag ms": Text(
            MISSING if row.lag_ms is None else f"{row.lag_ms:,.0f}", style=_lag_style(row.lag_ms)
        ),
        "trades": Text(f"{row.trades:,}"),
    }


class SymbolTable:
    """The per-symbol table, which drops its least useful columns when the terminal is narrow.

    A rich `Table` squeezed below its natural width truncates every cell ("60,00…"); a price
    cut short is worse than a column left out, so the columns are chosen at render time.
    """

    def __init__(self, rows: Sequence[InstrumentStatus], max_rows: int = 30) -> None:
        ordered = sort_rows(rows)
        self.shown = ordered[: max(0, max_rows)]
        self.hidden = len(ordered) - len(self.shown)
        self.interval = next((r.candle.interval for r in rows if r.candle is not None), None)

    def columns_for(self, width: int, cells: list[dict[str, Text]]) -> list[str]:
        """The column names that fit in `width` characters, in display order."""
        natural = {
            name: max([len(name), *(c[name].cell_len for c in cells)]) for name, _, _ in _COLUMNS
        }
        names = [name for name, _, _ in _COLUMNS]
        for victims in _DROP_ORDER:
            if sum(natural[n] for n in names) + len(names) - 1 <= width:
                break
            names = [n for n in names if n not in victims]
        return names

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        cells = [_cells(row) for row in self.shown]
        names = self.columns_for(options.max_width, cells)
        table = Table(
            box=box.SIMPLE_HEAD,
            padding=(0, 0),
            pad_edge=False,
            show_edge=False,
            header_style="bold dim",
            title=f"current {self.interval} candle" if self.interval else None,
            title_style="dim",
            title_justify="right",
        )
        for name, right, style in _COLUMNS:
            if name in names:
                table.add_column(
                    name,
                    justify="right" if right else "left",
                    style=style,
                    no_wrap=True,
                    overflow="ellipsis",
                )
        for row_cells in cells:
            table.add_row(*(row_cells[name] for name in names))
        yield table
        if self.hidden:
            noun = "symbol" if self.hidden == 1 else "symbols"
            yield Text(f"… {self.hidden:,} more {noun}", style="dim italic")


def render(
    status: PipelineStatus, where: Locations, max_rows: int = 30, *, running: bool = True
) -> RenderableType:
    """The whole live panel: totals, where the data goes, source states, one row per symbol.

    Rows are sorted busiest first and cut at `max_rows`, with a line saying how many were left
    out, so a pipeline with hundreds of symbols still fits a terminal. `running=False` drops
    the "Ctrl-C to stop" hint from the last frame left on screen.
    """
    parts: list[RenderableType] = [*_header(status, where), Text()]
    if status.instruments:
        parts.append(SymbolTable(status.instruments, max_rows))
    else:
        parts.append(Text("waiting for trades…", style="dim italic"))
    title = Text.assemble(
        ("tickpipe ", "bold"),
        (status.mode, "bold cyan"),
        ("  up ", "dim"),
        (format_duration(status.uptime_s), ""),
    )
    return Panel(
        Group(*parts),
        title=title,
        title_align="left",
        subtitle=_footer(where, running),
        subtitle_align="right",
        border_style="grey50",
        box=box.ROUNDED,
        padding=(0, 1),
    )


def _footer(where: Locations, running: bool) -> Text:
    parts = []
    if where.dashboard_url:
        parts.append(Text.assemble(("dashboard ", "dim"), (where.dashboard_url, "cyan")))
    parts.append(Text("Ctrl-C to stop" if running else "stopped", style="dim"))
    return _join(parts)


def start_line(status: PipelineStatus, where: Locations) -> str:
    """The one line quiet mode prints at start: what runs and where its data goes."""
    line = f"tickpipe {status.mode}: writing to {where.data_path}"
    line += f", dead letters to {where.dead_letter_path}"
    if where.dashboard_url:
        line += f", dashboard and API at {where.dashboard_url}"
    return line


def summary(status: PipelineStatus, where: Locations) -> Text:
    """A few lines that stay on screen after the pipeline stops: what it did, where it is."""
    uptime = format_duration(status.uptime_s)
    average = status.trades / status.uptime_s if status.uptime_s > 0 else 0.0
    symbols = len(status.instruments)
    dead = status.late_rejected + status.malformed
    lines = [
        Text.assemble(
            ("tickpipe ", "bold"), (status.mode, "bold cyan"), f" stopped after {uptime}"
        ),
        Text(
            f"  trades {status.trades:,} (avg {format_rate(average)}/s) across "
            f"{symbols:,} {'symbol' if symbols == 1 else 'symbols'}, "
            f"candles written {status.candles_written:,}"
        ),
        Text(
            f"  late corrected {status.late_corrected:,}, "
            f"late rejected {status.late_rejected:,}, "
            f"duplicates {status.duplicates:,}, malformed {status.malformed:,}"
        ),
        Text.assemble("  data in ", (where.data_path, "cyan")),
    ]
    if dead:
        lines.append(
            Text.assemble(f"  {dead:,} dead letters in ", (where.dead_letter_path, "yellow"))
        )
    return Text("\n").join(lines)


def print_summary(status: PipelineStatus, where: Locations, console: Console | None = None) -> None:
    """Print `summary` (used after the live view and on its own in quiet mode)."""
    (console or Console()).print(summary(status, where), highlight=False)


# ---------------------------------------------------------------------------------------------
# Live view


class TerminalView:
    """The auto-refreshing panel, redrawn from a fresh `PipelineStatus` a few times a second.

    rich's refresh thread calls `status`, so the callable must be safe to call from another
    thread (reading counters is enough). A failing status read shows an error in the panel
    instead of killing the view.
    """

    def __init__(
        self,
        status: Callable[[], PipelineStatus],
        where: Locations,
        refresh_per_second: float = 4,
        console: Console | None = None,
        *,
        max_rows: int = 30,
        transient: bool = False,
    ) -> None:
        if refresh_per_second <= 0:
            raise ValueError(f"refresh_per_second must be > 0, got {refresh_per_second}")
        self._status = status
        self.where = where
        self.refresh_per_second = refresh_per_second
        self.console = console if console is not None else Console()
        self.max_rows = max_rows
        self.transient = transient
        self._live: Live | None = None
        self._stopping = False
        self._lock = threading.Lock()

    @property
    def is_running(self) -> bool:
        """True between `start` and `stop`."""
        return self._live is not None

    def _fit_rows(self) -> int:
        """Rows that fit the terminal, so the panel never scrolls its header away."""
        if not self.console.is_terminal:
            return self.max_rows
        return max(1, min(self.max_rows, self.console.size.height - _CHROME_LINES))

    def renderable(self) -> RenderableType:
        """The panel for a fresh status, or an error line if reading it failed."""
        try:
            status = self._status()
            return render(status, self.where, self._fit_rows(), running=not self._stopping)
        except Exception as exc:
            return Text(f"tickpipe view: snapshot failed: {exc!r}", style="red")

    def start(self) -> None:
        """Start drawing; calling it again while running does nothing."""
        with self._lock:
            if self._live is not None:
                return
            self._stopping = False
            live = Live(
                console=self.console,
                auto_refresh=True,
                refresh_per_second=self.refresh_per_second,
                transient=self.transient,
                get_renderable=self.renderable,
            )
            live.start(refresh=True)
            self._live = live

    def stop(self) -> None:
        """Stop drawing and leave the last frame (unless transient); safe to call twice."""
        with self._lock:
            live, self._live = self._live, None
            if live is None:
                return
            self._stopping = True
            live.stop()

    def print_summary(self, status: PipelineStatus | None = None) -> None:
        """Print the closing summary on this view's console (a fresh status if none given)."""
        print_summary(status if status is not None else self._status(), self.where, self.console)

    def __enter__(self) -> TerminalView:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
