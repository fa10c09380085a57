"""The live terminal view shows what a user watching `tickpipe run` needs, at any width."""

from __future__ import annotations

import io
import re
import threading
import time
from typing import Any

import pytest
from rich.color import Color
from rich.console import Console, RenderableType
from rich.style import Style

from tests.runtime.examples import example_status
from tickpipe.records import Candle
from tickpipe.runtime.status import InstrumentStatus, PipelineStatus, SourceStatus
from tickpipe.view.terminal import (
    REASON_CHARS,
    Locations,
    TerminalView,
    format_duration,
    format_price,
    format_quantity,
    price_decimals,
    price_style,
    print_summary,
    render,
    source_style,
    start_line,
    summary,
)

DATA_PATH = "./tickpipe-data/tickpipe.duckdb"
DEAD_LETTER_PATH = "./tickpipe-data/dead-letters.jsonl"
WHERE = Locations(DATA_PATH, DEAD_LETTER_PATH)


def candle(open_: float, high: float, low: float, close: float, volume: float = 1.5) -> Candle:
    return Candle(
        exchange="binance",
        symbol="BTC-USDT",
        interval="1s",
        start=0,
        open=open_,
        high=high,
        low=low,
        close=close,
        volume=volume,
        quote_volume=volume * close,
        vwap=close,
        mean_price=close,
        trades=3,
        buy_volume=volume / 2,
        sell_volume=volume / 2,
        first_seq=1,
        last_seq=3,
        final=False,
        revision=0,
        updated_at=0,
    )


def row(
    symbol: str,
    last: float | None,
    open_: float | None = None,
    rate: float = 1.0,
    exchange: str = "binance",
    lag_ms: float | None = 12.0,
) -> InstrumentStatus:
    c = None
    if last is not None and open_ is not None:
        c = candle(open_, max(open_, last), min(open_, last), last)
    return InstrumentStatus(
        exchange=exchange,
        symbol=symbol,
        last_price=last,
        last_trade_us=None if last is None else 1_700_000_000_000_000,
        candle=c,
        trades_per_s=rate,
        lag_ms=lag_ms,
        trades=int(rate * 100),
    )


def status(rows: list[InstrumentStatus] | None = None, **changes: Any) -> PipelineStatus:
    """The example status, its rate the sum of its rows' rates (504/s for `market()`)."""
    return example_status(instruments=tuple(rows or ()), **changes)


def market() -> list[InstrumentStatus]:
    return [
        row("ETH-USDT", 3000.5, open_=3000.5, rate=80.0),
        row("BTC-USDT", 60000.12, open_=59990.0, rate=412.0),
        row("SHIB-USD", 0.00001234, open_=0.0000124, rate=12.0, exchange="coinbase"),
    ]


def text_of(renderable: RenderableType, width: int = 120) -> str:
    console = Console(record=True, width=width, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def styles_of(renderable: RenderableType, needle: str, width: int = 120) -> list[Style]:
    """Styles of the rendered pieces whose text is `needle` (ignoring padding), in order."""
    console = Console(width=width, file=io.StringIO(), force_terminal=True)
    return [
        segment.style or Style()
        for segment in console.render(renderable)
        if segment.text.strip() == needle
    ]


# --- content ---------------------------------------------------------------------------------


def test_render_shows_every_symbols_last_price_and_where_the_data_is_stored() -> None:
    out = text_of(render(status(market()), WHERE))
    for expected in ("BTC-USDT", "60,000.12", "ETH-USDT", "3,000.50", "SHIB-USD", "0.00001234"):
        assert expected in out
    assert DATA_PATH in out
    assert DEAD_LETTER_PATH in out


def test_header_shows_mode_uptime_totals_rate_and_queue_fill() -> None:
    out = text_of(render(status(market()), WHERE))
    assert "demo" in out
    assert "1h 02m 03s" in out
    assert "1,234,567" in out
    assert "504/s" in out
    assert "12,345" in out
    assert "250/1,000 (25%)" in out
    for label in ("late corrected 3", "late rejected 1", "duplicates 17", "malformed 2"):
        assert label in out


def test_each_source_state_is_shown() -> None:
    out = text_of(render(status(market()), WHERE))
    assert re.search(r"binance\s+●\s+connected", out)
    assert re.search(r"coinbase\s+●\s+waiting \(2 reconnects\)", out)


def source_line(source: SourceStatus, width: int = 200) -> str:
    out = text_of(render(status(market(), sources={"binance": source}), WHERE), width)
    return next(line for line in out.splitlines() if "sources" in line)


def test_a_waiting_source_says_why_it_last_disconnected() -> None:
    source = SourceStatus(False, 5, 100, 0, last_disconnect="connect failed: Connection refused")
    line = source_line(source)
    assert re.search(
        r"binance ● waiting \(5 reconnects\): connect failed: Connection refused", line
    )


def test_a_long_disconnect_reason_is_cut_to_one_short_line() -> None:
    reason = "server closed the connection:\n" + "x" * 500
    line = source_line(SourceStatus(False, 1, 0, 0, last_disconnect=reason))
    shown = line.split("reconnects): ", 1)[1].split("│")[0].rstrip()
    assert len(shown) == REASON_CHARS and shown.endswith("…")
    assert "\n" not in shown and shown.startswith("server closed the connection: xxx")


def test_a_connected_source_shows_no_old_disconnect_reason() -> None:
    line = source_line(SourceStatus(True, 2, 100, 0, last_disconnect="read timeout"))
    assert "connected" in line and "read timeout" not in line


def test_a_finished_source_says_done_with_its_trades_not_waiting() -> None:
    line = source_line(SourceStatus(False, 0, 51_908, 0, last_disconnect="", finished=True))
    assert "binance ● done, 51,908 trades" in line
    assert "waiting" not in line
    assert source_style("done, 51,908 trades") == "green"


def test_a_failed_source_says_failed_and_why() -> None:
    line = source_line(SourceStatus(False, 0, 3, 0, finished=False, error="no such file: x.csv"))
    assert "binance ● failed: no such file: x.csv" in line
    assert source_style("failed") == "red"


def test_table_shows_current_candle_ohlc_volume_rate_and_lag() -> None:
    rows = [
        InstrumentStatus(
            exchange="binance",
            symbol="BTC-USDT",
            last_price=60000.12,
            last_trade_us=1_700_000_000_000_000,
            candle=candle(59990.0, 60010.5, 59980.25, 60000.12, volume=1.23456),
            trades_per_s=412.0,
            lag_ms=35.4,
            trades=1_234_567,
        )
    ]
    out = text_of(render(status(rows), WHERE))
    line = next(line for line in out.splitlines() if "BTC-USDT" in line)
    cells = line.strip("│ ").split()
    assert cells == [
        "binance",
        "BTC-USDT",
        "60,000.12",
        "59,990.00",
        "60,010.50",
        "59,980.25",
        "60,000.12",
        "1.23",
        "412",
        "35",
        "1,234,567",
    ]
    header = next(line for line in out.splitlines() if "exchange" in line)
    for name in ("last", "open", "high", "low", "close", "volume", "trades/s", "lag ms"):
        assert name in header
    assert "current 1s candle" in out


def test_symbol_without_trades_yet_shows_dashes_not_zeros() -> None:
    out = text_of(render(status([row("DOGE-USD", None, rate=0.0, lag_ms=None)]), WHERE))
    line = next(line for line in out.splitlines() if "DOGE-USD" in line)
    assert "—" in line
    assert "0.00" not in line


def test_dashboard_url_is_shown_when_serving() -> None:
    where = Locations(DATA_PATH, DEAD_LETTER_PATH, dashboard_url="http://127.0.0.1:8080/")
    out = text_of(render(status(market()), where))
    assert "http://127.0.0.1:8080/" in out


def test_empty_pipeline_says_it_is_waiting_for_trades() -> None:
    out = text_of(render(status([]), WHERE))
    assert "waiting for trades" in out
    assert DATA_PATH in out


# --- order and truncation --------------------------------------------------------------------


def test_rows_are_sorted_busiest_first() -> None:
    out = text_of(render(status(market()), WHERE))
    positions = [out.index(s) for s in ("BTC-USDT", "ETH-USDT", "SHIB-USD")]
    assert positions == sorted(positions)  # 412/s, then 80/s, then 12/s


def test_truncated_table_keeps_the_busiest_and_says_how_many_more() -> None:
    rows = [row(f"S{i:02d}-USDT", 100.0 + i, open_=100.0, rate=float(i)) for i in range(40)]
    out = text_of(render(status(rows), WHERE, max_rows=5))
    assert "… 35 more symbols" in out
    shown = [f"S{i:02d}-USDT" for i in range(35, 40)]
    hidden = [f"S{i:02d}-USDT" for i in range(35)]
    assert all(s in out for s in shown)
    assert not any(s in out for s in hidden)


def test_one_hidden_symbol_is_singular() -> None:
    out = text_of(render(status(market()), WHERE, max_rows=2))
    assert re.search(r"… 1 more symbol\b(?!s)", out)


def test_no_truncation_message_when_every_row_fits() -> None:
    out = text_of(render(status(market()), WHERE, max_rows=30))
    assert "more symbol" not in out


# --- up / down coloring ----------------------------------------------------------------------


def test_last_price_is_green_above_the_candle_open_and_red_below() -> None:
    up = row("BTC-USDT", 60000.12, open_=59990.0)
    down = row("ETH-USDT", 2999.5, open_=3000.5)
    panel = render(status([up, down]), WHERE)
    # The first cell with the price is "last"; the same number repeats under "close".
    assert styles_of(panel, "60,000.12")[0].color == Color.parse("green")
    assert styles_of(panel, "2,999.50")[0].color == Color.parse("red")


def test_up_color_survives_into_ansi_output() -> None:
    console = Console(record=True, width=120, force_terminal=True, color_system="standard")
    console.file = io.StringIO()
    console.print(render(status([row("BTC-USDT", 60000.12, open_=59990.0)]), WHERE))
    ansi = console.export_text(styles=True)
    green = Style.parse("green").render("X").split("X")[0]
    assert re.search(re.escape(green) + r"\s*60,000\.12", ansi)


def test_last_price_is_uncolored_when_unchanged_or_without_candle() -> None:
    assert price_style(100.0, candle(100.0, 100.0, 100.0, 100.0)) == ""
    assert price_style(100.0, None) == ""
    assert price_style(None, None) == ""
    flat = render(status([row("ETH-USDT", 3000.5, open_=3000.5)]), WHERE)
    assert styles_of(flat, "3,000.50")[0].color is None


# --- price formatting ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "text"),
    [
        (60000.12, "60,000.12"),
        (3000.5, "3,000.50"),
        (150.125, "150.125"),
        (1.0, "1.00"),
        (0.5, "0.50"),
        (0.00001234, "0.00001234"),
        (0.000012345678, "0.0000123457"),
        (0.0, "0.00"),
        (None, "—"),
    ],
)
def test_prices_read_right_at_any_magnitude(price: float | None, text: str) -> None:
    assert format_price(price) == text


def test_tiny_prices_are_not_rounded_to_zero_in_the_table() -> None:
    out = text_of(render(status([row("PEPE-USDT", 0.00000123, open_=0.0000012)]), WHERE))
    assert "0.00000123" in out
    assert "0.00000120" in out  # the open, padded to the row's decimals so columns line up


def test_prices_of_one_row_share_the_same_number_of_decimals() -> None:
    assert price_decimals(0.0000124) == 7
    assert price_decimals(0.00001234) == 8
    assert format_price(0.0000124, 8) == "0.00001240"


def test_quantities_and_durations_stay_short() -> None:
    assert format_quantity(123_456_789.0) == "123.46M"
    assert format_quantity(12_345.6) == "12,346"
    assert format_quantity(1.23456) == "1.23"
    assert format_quantity(0.000123456) == "0.0001235"
    assert format_duration(42.9) == "42s"
    assert format_duration(185) == "3m 05s"
    assert format_duration(3723) == "1h 02m 03s"
    assert format_duration(2 * 86400 + 3 * 3600 + 4 * 60) == "2d 03h 04m"


def test_narrow_terminal_drops_columns_instead_of_cutting_prices() -> None:
    out = text_of(render(status(market()), WHERE), width=80)
    for price in ("60,000.12", "3,000.50", "0.00001234"):
        assert price in out
    table_lines = [line for line in out.splitlines() if "-USD" in line]
    assert table_lines and not any("…" in line for line in table_lines)
    assert "trades/s" in out


# --- quiet mode and summary ------------------------------------------------------------------


def test_start_line_names_the_mode_and_where_data_goes() -> None:
    line = start_line(status(market()), WHERE)
    assert line.startswith(f"tickpipe demo: writing to {DATA_PATH}")
    assert "\n" not in line
    assert DEAD_LETTER_PATH in line


def test_summary_reports_totals_and_where_to_find_data_and_dead_letters() -> None:
    out = summary(status(market()), WHERE).plain
    assert len(out.splitlines()) <= 6
    assert "stopped after 1h 02m 03s" in out
    assert "1,234,567" in out
    assert "12,345" in out
    assert DATA_PATH in out
    assert f"3 dead letters in {DEAD_LETTER_PATH}" in out


def test_summary_does_not_mention_dead_letters_when_there_are_none() -> None:
    out = summary(status(market(), late_rejected=0, malformed=0), WHERE).plain
    assert DEAD_LETTER_PATH not in out


def test_print_summary_writes_plain_text_to_a_non_tty() -> None:
    buffer = io.StringIO()
    print_summary(status(market()), WHERE, Console(file=buffer, width=120))
    assert "\x1b[" not in buffer.getvalue()
    assert DATA_PATH in buffer.getvalue()


# --- live view -------------------------------------------------------------------------------


class FakePipeline:
    """A status callable that counts calls and may be asked to fail."""

    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self) -> PipelineStatus:
        with self.lock:
            self.calls += 1
        if self.fail:
            raise RuntimeError("engine gone")
        return status(market(), uptime_s=float(self.calls))


def test_terminal_view_starts_and_stops_in_a_non_tty_console() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, width=120)
    assert not console.is_terminal
    pipeline = FakePipeline()
    view = TerminalView(pipeline, WHERE, refresh_per_second=50, console=console)
    view.start()
    view.start()  # a second start does nothing
    assert view.is_running
    deadline = time.monotonic() + 5
    while pipeline.calls < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    view.stop()
    view.stop()  # idempotent
    assert not view.is_running
    assert pipeline.calls >= 5  # the refresh thread pulled fresh statuses
    out = buffer.getvalue()
    assert out.count("60,000.12") >= 1  # the last frame is left for files and dumb terminals
    assert "stopped" in out and "Ctrl-C" not in out


def test_terminal_view_stop_without_start_is_harmless() -> None:
    buffer, pipeline = io.StringIO(), FakePipeline()
    view = TerminalView(pipeline, WHERE, console=Console(file=buffer))
    view.stop()
    assert not view.is_running
    assert buffer.getvalue() == "" and pipeline.calls == 0  # nothing drawn, nothing asked


def test_a_failing_status_read_shows_an_error_instead_of_killing_the_view() -> None:
    buffer = io.StringIO()
    view = TerminalView(
        FakePipeline(fail=True), WHERE, refresh_per_second=50, console=Console(file=buffer)
    )
    with view:
        time.sleep(0.05)
    assert "snapshot failed" in buffer.getvalue()
    assert "engine gone" in buffer.getvalue()


def test_view_print_summary_uses_its_console_and_a_fresh_status() -> None:
    buffer = io.StringIO()
    view = TerminalView(FakePipeline(), WHERE, console=Console(file=buffer, width=120))
    view.print_summary()
    assert "tickpipe demo stopped after" in buffer.getvalue()


def test_refresh_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="refresh_per_second"):
        TerminalView(FakePipeline(), WHERE, refresh_per_second=0)


def test_in_a_terminal_the_view_shows_only_the_rows_that_fit_its_height() -> None:
    rows = [row(f"S{i:02d}-USDT", 100.0 + i, open_=100.0, rate=float(i)) for i in range(40)]
    buffer = io.StringIO()
    console = Console(file=buffer, width=120, height=20, force_terminal=True)
    view = TerminalView(lambda: status(rows), WHERE, refresh_per_second=50, console=console)
    view.start()
    time.sleep(0.05)
    view.stop()
    last_frame = buffer.getvalue().split("╭")[-1]
    assert sum(f"S{i:02d}-USDT" in last_frame for i in range(40)) == 20 - 12
    assert "… 32 more symbols" in last_frame
