"""`verify`: the batch recomputation from stored trades agrees with streamed candles, and
names what differs when it does not."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from tickpipe.engine.candles import CandleEngine, EngineConfig
from tickpipe.engine.windows import parse_window
from tickpipe.records import Instrument, Trade, TradeBatch
from tickpipe.stores.duckdb import DuckDBStore
from tickpipe.verify import verify

S = 1_000_000
T0 = 1_700_000_040 * S
INTERVALS = ("1s", "5s", "3s/1s")
INSTRUMENTS = (Instrument("ex", "BTC-USDT", "BTCUSDT"), Instrument("ex", "ETH-USDT", "ETHUSDT"))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store written the way the pipeline writes it: accepted trades and candle updates
    per batch, out-of-order and duplicated input, late corrections, then a flush."""
    rng = random.Random(3)
    engine = CandleEngine(
        EngineConfig(
            windows=tuple(parse_window(w) for w in INTERVALS),
            allowed_lateness=300_000,
            correction_horizon=5 * S,
            provisional_every=100_000,
        )
    )
    path = tmp_path_factory.mktemp("template") / "tickpipe.duckdb"
    s = DuckDBStore(path)
    sent: list[Trade] = []
    for k in range(40):
        now = T0 + k * 400_000
        batch = []
        for _ in range(rng.randrange(1, 6)):
            inst = rng.choice(INSTRUMENTS)
            seq = len(sent) + len(batch) + 1
            ts = now - rng.choice([0, 0, 50_000, 900_000, 3 * S])
            batch.append(Trade(
                source="feed", exchange=inst.exchange, symbol=inst.symbol,
                raw_symbol=inst.raw_symbol, trade_id=str(seq), seq=seq,
                price=round(rng.uniform(99, 101), 2), size=rng.randrange(1, 50) / 9,
                side=rng.choice(["buy", "sell", "unknown"]), ts=ts, recv_ts=now,
            ))  # fmt: skip
        batch += rng.sample(sent, k=min(2, len(sent)))  # resent duplicates
        sent += batch
        out = engine.process(TradeBatch.from_trades(batch), now)
        s.write(trades=[out.accepted] if out.accepted else [], candles=out.candles)
    s.write(candles=engine.flush(T0 + 20 * S))
    s.close()
    assert engine.corrections > 0
    return path


@pytest.fixture
def store(template: Path, tmp_path: Path):
    """A fresh copy of the template store for one test to alter."""
    path = tmp_path / "tickpipe.duckdb"
    shutil.copyfile(template, path)
    s = DuckDBStore(path)
    yield s
    s.close()


def candle_at(store: DuckDBStore, interval: str = "1s") -> tuple[str, int]:
    """(symbol, start) of a stored candle with several trades."""
    return store.query(
        "SELECT symbol, start FROM candles WHERE interval = ? AND trades > 2 "
        "ORDER BY start LIMIT 1",
        [interval],
    )[0]


def test_verify_passes_on_a_consistent_store(store: DuckDBStore) -> None:
    report = verify(store)
    assert report.ok, report.mismatches[:3]
    assert report.mismatch_count == 0 and report.mismatches == []
    assert report.duplicate_trades == 0
    assert sorted(report.intervals) == sorted(INTERVALS)
    assert report.trades == store.query("SELECT count(*) FROM trades")[0][0] > 50
    assert report.candles == store.query("SELECT count(*) FROM candles")[0][0]


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("open", "open + 0.01"),
        ("close", "close - 0.01"),
        ("high", "high * 2"),
        ("low", "low / 2"),
        ("trades", "trades + 1"),
        ("first_seq", "first_seq + 1"),
        ("last_seq", "last_seq - 1"),
        ("volume", "volume * (1 + 1e-6)"),
        ("vwap", "vwap + 0.001"),
        ("buy_volume", "buy_volume + 1"),
        ("sell_volume", "sell_volume + 1"),
        ("mean_price", "mean_price * 1.0001"),
        ("quote_volume", "quote_volume * 0.999"),
    ],
)
def test_an_altered_candle_fails_naming_the_field(
    store: DuckDBStore, field: str, change: str
) -> None:
    symbol, start = candle_at(store, "5s")
    store.query(
        f"UPDATE candles SET {field} = {change} WHERE interval = '5s' AND symbol = ? AND start = ?",
        [symbol, start],
    )
    report = verify(store)
    assert not report.ok
    assert report.mismatch_count == 1
    (m,) = report.mismatches
    assert (m.symbol, m.interval, m.start) == (symbol, "5s", start)
    assert m.problem == field
    assert m.stored[field] != m.recomputed[field]


def test_float_sums_may_differ_in_the_last_bits(store: DuckDBStore) -> None:
    store.query("UPDATE candles SET volume = volume * (1 + 1e-13), vwap = vwap * (1 - 1e-13)")
    assert verify(store).ok


def test_several_altered_fields_are_all_named(store: DuckDBStore) -> None:
    symbol, start = candle_at(store)
    store.query(
        "UPDATE candles SET close = close + 1, trades = trades + 1 "
        "WHERE interval = '1s' AND symbol = ? AND start = ?",
        [symbol, start],
    )
    (m,) = verify(store).mismatches
    assert m.problem == "close, trades"


def test_a_missing_candle_fails(store: DuckDBStore) -> None:
    symbol, start = candle_at(store, "3s/1s")
    store.query(
        "DELETE FROM candles WHERE interval = '3s/1s' AND symbol = ? AND start = ?",
        [symbol, start],
    )
    report = verify(store)
    assert not report.ok
    (m,) = report.mismatches
    assert (m.symbol, m.interval, m.start) == (symbol, "3s/1s", start)
    assert m.problem.startswith("missing")
    assert m.recomputed["trades"] > 2


def test_an_interval_whose_candles_are_all_missing_fails_when_asked_for(
    store: DuckDBStore,
) -> None:
    store.query("DELETE FROM candles WHERE interval = '5s'")
    report = verify(store, intervals=["5s"])
    assert not report.ok
    assert report.mismatch_count > 0
    assert all(m.problem.startswith("missing") for m in report.mismatches)


def test_a_candle_without_trades_fails_as_extra(store: DuckDBStore) -> None:
    store.query(
        "INSERT INTO candles SELECT * REPLACE (start + 3600000000 AS start) FROM candles "
        "WHERE interval = '1s' ORDER BY start LIMIT 1"
    )
    (m,) = verify(store).mismatches
    assert m.problem.startswith("extra")


def test_a_duplicated_trade_fails(store: DuckDBStore) -> None:
    store.query("INSERT INTO trade_rows SELECT * FROM trades ORDER BY ts LIMIT 1")
    report = verify(store)
    assert not report.ok
    assert report.duplicate_trades == 1
    # The recomputation counts the copy, so the candles that hold it disagree too:
    # one 1s, one 5s and three 3s/1s windows.
    assert report.mismatch_count == 1 + 1 + 3
    assert all("trades" in m.problem for m in report.mismatches)


def test_show_limits_the_listed_mismatches_not_the_count(store: DuckDBStore) -> None:
    store.query("UPDATE candles SET close = close + 1 WHERE interval = '1s'")
    n = store.query("SELECT count(*) FROM candles WHERE interval = '1s'")[0][0]
    report = verify(store, show=3)
    assert report.mismatch_count == n > 3
    assert len(report.mismatches) == 3
    assert verify(store, intervals=["5s"]).ok  # only the asked intervals are checked


# -- a range, slices, progress -----------------------------------------------------------------

SINCE = T0 + 5 * S + 500_000  # cuts windows of every interval at both edges
UNTIL = T0 + 10 * S + 500_000


def cut_windows(store: DuckDBStore, since: int, until: int) -> int:
    """The windows that [since, until) cuts, counted from the stored trades and candles: a
    window holding a trade in the range that reaches outside it, and a stored candle starting
    in the range whose window ends after it."""
    cut = set()
    for interval in INTERVALS:
        window = parse_window(interval)
        trades = store.query(
            "SELECT symbol, ts FROM trades WHERE ts >= ? AND ts < ?", [since, until]
        )
        for symbol, ts in trades:
            first = ts - ts % window.slide - window.size + window.slide
            for start in range(first, ts + 1, window.slide):
                if start < since or start + window.size > until:
                    cut.add((symbol, interval, start))
        candles = store.query(
            "SELECT symbol, start FROM candles WHERE interval = ? AND start >= ? AND start < ? "
            "AND start + ? > ?",
            [interval, since, until, window.size, until],
        )
        cut.update((symbol, interval, start) for symbol, start in candles)
    return len(cut)


def test_a_range_compares_the_windows_wholly_in_it_and_counts_the_cut_ones(
    store: DuckDBStore,
) -> None:
    report = verify(store, since=SINCE, until=UNTIL)
    assert report.ok, report.mismatches[:3]
    assert (
        report.trades
        == store.query("SELECT count(*) FROM trades WHERE ts >= ? AND ts < ?", [SINCE, UNTIL])[0][0]
        > 10
    )
    assert report.cut_windows == cut_windows(store, SINCE, UNTIL) > 0
    assert verify(store).cut_windows == 0  # the whole history cuts nothing


@pytest.mark.parametrize("inside", [True, False], ids=["inside", "outside"])
def test_a_wrong_candle_is_reported_only_inside_the_range(store: DuckDBStore, inside: bool) -> None:
    where = "start >= ? AND start + 1000000 <= ?" if inside else "(start < ? OR start >= ?)"
    ((symbol, start),) = store.query(
        f"SELECT symbol, start FROM candles WHERE interval = '1s' AND {where} AND trades > 1 "
        "LIMIT 1",
        [SINCE, UNTIL],
    )
    store.query(
        "UPDATE candles SET close = close + 1 WHERE interval = '1s' AND symbol = ? AND start = ?",
        [symbol, start],
    )
    report = verify(store, since=SINCE, until=UNTIL)
    assert report.mismatch_count == (1 if inside else 0)
    if inside:
        assert (report.mismatches[0].symbol, report.mismatches[0].start) == (symbol, start)
    assert not verify(store).ok  # the whole history has the wrong candle either way


@pytest.mark.parametrize("slice_rows", [1, 7, 1_000_000])
def test_the_store_read_in_slices_of_any_size_verifies_the_same(
    store: DuckDBStore, slice_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = [t for b in store.trade_batches() for t in b.to_trades()]
    monkeypatch.setattr("tickpipe.stores.duckdb.SLICE_ROWS", slice_rows)
    assert [t for b in store.trade_batches(rows=5) for t in b.to_trades()] == whole
    assert verify(store).ok


@pytest.mark.parametrize("slice_rows", [3, 1_000_000])
def test_duplicates_are_found_per_instrument_across_the_whole_store(
    store: DuckDBStore, slice_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tickpipe.stores.duckdb.SLICE_ROWS", slice_rows)
    # A copy of the first trade an hour later (another slice, another day of time), and a
    # trade of the other instrument given the first one's id: that one is no copy.
    store.query(
        "INSERT INTO trade_rows SELECT * REPLACE (ts + 3600000000 AS ts) FROM trades "
        "WHERE symbol = 'BTC-USDT' ORDER BY ts LIMIT 1"
    )
    ((first_id,),) = store.query(
        "SELECT trade_id FROM trades WHERE symbol = 'BTC-USDT' ORDER BY ts LIMIT 1"
    )
    store.query(
        "INSERT INTO trade_rows SELECT * REPLACE (? AS trade_id) FROM trades "
        "WHERE symbol = 'ETH-USDT' ORDER BY ts DESC LIMIT 1",
        [first_id],
    )
    assert store.duplicate_trades() == 1
    assert store.duplicate_trades(since=T0 + 3000 * S) == 0  # only the copy is in that range
    assert verify(store).duplicate_trades == 1


def test_progress_counts_the_trades_and_instruments_checked(store: DuckDBStore) -> None:
    seen: list[tuple[str, int, int]] = []
    report = verify(store, progress=lambda c: seen.append((c.stage, c.trades, c.instruments_done)))
    stages = [s for s, *_ in seen]
    assert stages[-1] == "counting duplicate trades" and stages[0] == "recomputing candles"
    assert seen[-1][1:] == (report.trades, len(INSTRUMENTS))
    checked = [t for _, t, _ in seen]
    assert checked == sorted(checked) and checked[0] > 0


def killed_between_trades_and_candles(path: Path, then_a_later_final: bool) -> DuckDBStore:
    """A store as a `kill -9` leaves it: the BTC trades of a second batch stored, the
    provisional candle update they made lost. With `then_a_later_final`, a final candle of
    a later window comes after, so the lagging window was closed and its final is missing."""
    engine = CandleEngine(EngineConfig(windows=(parse_window("1s"),), provisional_every=0))
    inst = INSTRUMENTS[0]

    def trades(first_seq: int, at: int, n: int = 3) -> TradeBatch:
        return TradeBatch.from_trades([
            Trade(source="feed", exchange=inst.exchange, symbol=inst.symbol,
                  raw_symbol=inst.raw_symbol, trade_id=str(seq), seq=seq, price=100.0 + seq,
                  size=1.0, side="buy", ts=at + seq, recv_ts=at + seq)
            for seq in range(first_seq, first_seq + n)
        ])  # fmt: skip

    store = DuckDBStore(path)
    first = engine.process(trades(1, T0), T0 + 100_000)
    assert first.accepted is not None and first.candles, "the first batch made no candle"
    store.write(trades=[first.accepted], candles=first.candles)
    second = engine.process(trades(10, T0 + 200_000), T0 + 300_000)
    assert second.accepted is not None
    store.write(trades=[second.accepted])  # the candle update of these trades never landed
    if then_a_later_final:
        later = engine.process(trades(20, T0 + 5 * S), T0 + 5 * S)
        assert later.accepted is not None
        closed = engine.tick(T0 + 60 * S).candles  # the idle timer closes both windows
        finals = [c for c in closed if c.start == T0 + 5 * S and c.final]
        assert finals, "the later window was not closed"
        store.write(trades=[later.accepted], candles=finals)
    return store


def test_a_provisional_candle_lagging_its_stored_trades_at_the_end_is_stale_not_a_mismatch(
    tmp_path: Path,
) -> None:
    store = killed_between_trades_and_candles(tmp_path / "tickpipe.duckdb", False)
    report = verify(store)
    assert report.ok and report.mismatch_count == 0
    assert report.stale_provisional == 1
    assert report.trades == 6


def test_a_lagging_provisional_candle_whose_window_a_later_final_closed_is_a_mismatch(
    tmp_path: Path,
) -> None:
    store = killed_between_trades_and_candles(tmp_path / "tickpipe.duckdb", True)
    report = verify(store)
    assert not report.ok and report.stale_provisional == 0
    assert report.mismatch_count == 1
    assert (report.mismatches[0].symbol, report.mismatches[0].start) == (INSTRUMENTS[0].symbol, T0)
