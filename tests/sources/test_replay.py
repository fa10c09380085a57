"""File replay: the three formats read alike, pacing follows event time, bad rows are kept aside."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tickpipe.deadletter import DeadLetter, DeadLetters
from tickpipe.records import Trade, TradeBatch
from tickpipe.sources import SourceContext
from tickpipe.sources.replay import FileReplay, write_trades
from tickpipe.sources.simulated import SimulatedMarket

T0 = 1_700_000_000_000_000
SECOND = 1_000_000
FORMATS = ["jsonl", "csv", "parquet"]
HEADER = "exchange,symbol,trade_id,price,size,side,ts\n"


def sample_trades() -> list[Trade]:
    """Simulated trades plus the cases a file can hold: text ids, raw symbols, other sources."""
    trades = SimulatedMarket(symbols=8, seed=5, start_seq=1_000).generate(300, T0).to_trades()
    trades[3].trade_id = "c0ffee-3"
    trades[4].raw_symbol = "BTCUSDT"
    trades[5].side = "unknown"
    trades[6].source = "coinbase"
    trades[7].exchange = "coinbase"
    trades[8].symbol = "SOL-USDC"
    return trades


def by_source(trades: list[Trade]) -> dict[str, list[Trade]]:
    out: dict[str, list[Trade]] = {}
    for t in trades:
        out.setdefault(t.source, []).append(t)
    return out


async def replay(source: FileReplay, dead_letters: DeadLetters | None = None):
    """Run a replay to the end: its batches, their emission times (monotonic) and the context."""
    batches: list[TradeBatch] = []
    times: list[float] = []

    async def emit(batch: TradeBatch) -> None:
        batches.append(batch)
        times.append(time.monotonic())

    ctx = SourceContext(emit=emit)
    if dead_letters is not None:
        ctx.dead_letters = dead_letters
    await source.run(ctx)
    return batches, times, ctx


def replayed(path: Path, **kwargs) -> list[Trade]:
    batches, _, _ = asyncio.run(replay(FileReplay(path, speed=None, **kwargs)))
    return [t for b in batches for t in b.to_trades()]


def replayed_with(path: Path, letters: DeadLetters, **kwargs) -> list[Trade]:
    batches, _, _ = asyncio.run(replay(FileReplay(path, speed=None, **kwargs), letters))
    return [t for b in batches for t in b.to_trades()]


def dead_letters_in(path: Path) -> list[tuple[int, str, dict]]:
    """(line or row number, reason, payload) of each dead letter, in file order."""
    letters = [
        msgspec.json.decode(line, type=DeadLetter) for line in path.read_bytes().splitlines()
    ]
    payloads = [msgspec.json.decode(d.payload) for d in letters]
    rows = [
        (p.get("line") or p.get("row"), d.reason, p) for d, p in zip(letters, payloads, strict=True)
    ]
    return sorted(rows, key=lambda r: r[0])


@pytest.mark.parametrize("fmt", FORMATS)
def test_replay_reads_jsonl_csv_and_parquet_identically(tmp_path: Path, fmt: str) -> None:
    trades = sample_trades()
    path = tmp_path / f"trades.{fmt}"
    assert write_trades(path, trades) == len(trades)
    got = replayed(path, batch_size=64)
    # One batch holds one source, so sources are split apart; each keeps the file's order.
    assert by_source(got) == by_source(trades)


def test_write_trades_takes_a_trade_batch_too(tmp_path: Path) -> None:
    batch = SimulatedMarket(symbols=4, seed=1, start_seq=0).generate(100, T0)
    write_trades(tmp_path / "batch.parquet", batch)
    assert replayed(tmp_path / "batch.parquet") == batch.to_trades()


@pytest.mark.parametrize("fmt", FORMATS)
def test_large_file_is_read_in_batches_of_at_most_batch_size(tmp_path: Path, fmt: str) -> None:
    trades = SimulatedMarket(symbols=3, seed=2, start_seq=0).generate(2_500, T0).to_trades()
    path = tmp_path / f"big.{fmt}"
    write_trades(path, trades)
    batches, _, ctx = asyncio.run(replay(FileReplay(path, speed=None, batch_size=1_000)))
    assert max(len(b) for b in batches) <= 1_000
    assert [t for b in batches for t in b.to_trades()] == trades
    assert ctx.stats.trades == 2_500 and ctx.stats.frames == len(batches)


def test_missing_optional_columns_get_defaults(tmp_path: Path) -> None:
    path = tmp_path / "minimal.csv"
    path.write_text(
        "exchange,symbol,trade_id,price,size,ts\n"
        f"binance,btcusdt,17,65000.5,0.25,{T0}\n"
        f"binance,BTC-USDT,x-1,65001,1,{T0 + 1}\n"
    )
    before = time.time_ns() // 1000
    got = replayed(path)
    after = time.time_ns() // 1000
    assert [(t.symbol, t.raw_symbol, t.trade_id, t.seq) for t in got] == [
        ("BTC-USDT", "btcusdt", "17", 17),  # numeric trade id
        ("BTC-USDT", "", "x-1", 3),  # else the line number
    ]
    assert {t.source for t in got} == {"replay"}
    assert {t.side for t in got} == {"unknown"}
    assert all(before <= t.recv_ts <= after for t in got)  # received now
    assert [(t.price, t.size, t.ts) for t in got] == [(65000.5, 0.25, T0), (65001.0, 1.0, T0 + 1)]


def test_bad_row_is_dead_lettered_and_others_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text(
        HEADER
        + f"binance,BTCUSDT,1,65000,0.1,BUY,{T0}\n"  # line 2: good
        + f"binance,BTCUSDT,2,abc,0.1,buy,{T0}\n"  # 3
        + f"binance,???,3,65000,0.1,buy,{T0}\n"  # 4
        + "binance,BTCUSDT,4,65000\n"  # 5: too few columns
        + f"binance,BTCUSDT,5,65000,-1,buy,{T0}\n"  # 6
        + f"binance,BTCUSDT,6,65000,0.1,hold,{T0}\n"  # 7
        + "binance,BTCUSDT,7,65000,0.1,sell,12.5\n"  # 8
        + f",BTCUSDT,8,65000,0.1,sell,{T0}\n"  # 9
        + f"binance,ETHUSDT,9,3000,2,Sell,{T0 + 5}\n"  # 10: good
    )
    letters = DeadLetters(tmp_path / "dead.jsonl")
    batches, _, ctx = asyncio.run(replay(FileReplay(path, speed=None), letters))
    letters.close()
    kept = [(t.symbol, t.trade_id, t.price, t.size, t.side) for b in batches for t in b.to_trades()]
    assert kept == [("BTC-USDT", "1", 65000.0, 0.1, "buy"), ("ETH-USDT", "9", 3000.0, 2.0, "sell")]
    assert ctx.stats.malformed == 7
    dead = dead_letters_in(tmp_path / "dead.jsonl")
    assert [(line, reason) for line, reason, _ in dead] == [
        (3, "price is not a number"),
        (4, "symbol is not BASE-QUOTE"),
        (5, "row has the wrong number of CSV columns"),
        (6, "size is not positive"),
        (7, "side is not buy, sell or unknown"),
        (8, "ts is not an integer"),
        (9, "exchange is missing"),
    ]
    price_error = dead[0][2]
    assert "'abc'" in price_error["error"] and price_error["file"] == str(path)
    assert price_error["data"]["trade_id"] == "2"  # the row itself is kept
    assert dead[2][2]["data"] == "binance,BTCUSDT,4,65000"


def test_bad_jsonl_lines_and_parquet_rows_are_dead_lettered_too(tmp_path: Path) -> None:
    good = {"exchange": "kraken", "symbol": "XBT/USD", "trade_id": 1, "price": 1.5}
    good |= {"size": 2, "ts": T0}
    lines = [
        msgspec.json.encode(good),
        b"{not json",
        msgspec.json.encode(good | {"price": "cheap"}),
        b"",  # blank lines are skipped, not errors
        msgspec.json.encode({k: v for k, v in good.items() if k != "ts"}),
        msgspec.json.encode(good | {"trade_id": 2, "price": "2.5"}),  # a number as text is fine
    ]
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_bytes(b"\n".join(lines) + b"\n")
    letters = DeadLetters(tmp_path / "dead-jsonl.jsonl")
    batches, _, _ = asyncio.run(replay(FileReplay(jsonl, speed=None), letters))
    letters.close()
    got = [t for b in batches for t in b.to_trades()]
    assert [(t.symbol, t.raw_symbol, t.trade_id, t.price) for t in got] == [
        ("BTC-USD", "XBT/USD", "1", 1.5),
        ("BTC-USD", "XBT/USD", "2", 2.5),
    ]
    dead = dead_letters_in(tmp_path / "dead-jsonl.jsonl")
    assert [(line, reason) for line, reason, _ in dead] == [
        (2, "row is not JSON"),
        (3, "row does not match the trade fields"),
        (5, "row does not match the trade fields"),
    ]
    assert "$.price" in dead[1][2]["error"] and "`ts`" in dead[2][2]["error"]

    table = pa.table(
        {
            "exchange": ["okx", "okx"],
            "symbol": ["ETH-USDT", "ETH-USDT"],
            "trade_id": ["a", "b"],
            "price": [3000.0, float("nan")],
            "size": [1.0, 1.0],
            "ts": pa.array([T0, T0 + 1], pa.timestamp("us", "UTC")),
        }
    )
    pq.write_table(table, tmp_path / "t.parquet")
    letters = DeadLetters(tmp_path / "dead-parquet.jsonl")
    batches, _, ctx = asyncio.run(replay(FileReplay(tmp_path / "t.parquet", speed=None), letters))
    letters.close()
    assert [(t.trade_id, t.ts, t.seq) for b in batches for t in b.to_trades()] == [("a", T0, 1)]
    assert [r[:2] for r in dead_letters_in(tmp_path / "dead-parquet.jsonl")] == [
        (2, "price is not positive")
    ]
    assert ctx.stats.malformed == 1


def paced_trades(seconds: float, count: int) -> list[Trade]:
    step = round(seconds * SECOND / (count - 1))
    return [
        Trade(
            source="binance",
            exchange="binance",
            symbol="BTC-USDT",
            trade_id=str(i),
            seq=i,
            price=100.0 + i,
            size=1.0,
            ts=T0 + i * step,
            recv_ts=T0 + i * step + 5,
        )
        for i in range(count)
    ]


def test_replay_at_original_speed_keeps_the_gaps_between_trades(tmp_path: Path) -> None:
    path = tmp_path / "slow.jsonl"
    write_trades(path, paced_trades(0.4, 3))  # at 0, 0.2 and 0.4 s
    batches, times, _ = asyncio.run(replay(FileReplay(path)))
    assert [len(b) for b in batches] == [1, 1, 1]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(0.15 < gap < 0.35 for gap in gaps), gaps


def test_replay_at_ten_times_speed_takes_a_tenth_of_the_time(tmp_path: Path) -> None:
    path = tmp_path / "fast.parquet"
    trades = paced_trades(3.0, 301)  # 3 s of trades, one every 10 ms
    write_trades(path, trades)
    started = time.monotonic()
    batches, times, _ = asyncio.run(replay(FileReplay(path, speed=10, batch_size=50)))
    assert 0.25 < times[-1] - started < 0.9  # 0.3 s, loosely
    assert len(batches) >= 10  # spread over the time, not all at once
    assert [t for b in batches for t in b.to_trades()] == trades

    started = time.monotonic()
    asyncio.run(replay(FileReplay(path, speed=None)))
    assert time.monotonic() - started < 0.25  # as fast as possible


@pytest.mark.parametrize(
    ("name", "text", "kwargs", "message"),
    [
        ("t.txt", "", {}, "suffix '.txt' is not one of .jsonl"),
        ("t.csv", "symbol,trade_id,price,size,ts\n", {}, "no column exchange"),
        ("t.csv", HEADER, {"speed": 0}, "speed must be positive"),
        ("t.csv", HEADER, {"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_file_or_argument_fails_at_start_with_one_clear_line(
    tmp_path: Path, name: str, text: str, kwargs: dict, message: str
) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=message):
        FileReplay(tmp_path / name, **kwargs)


def test_missing_file_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        FileReplay(tmp_path / "nope.parquet")


@pytest.mark.parametrize("batch_size", [1, 2, 3, 100])
def test_rows_are_numbered_by_their_line_in_the_file(tmp_path: Path, batch_size: int) -> None:
    good = "binance,BTCUSDT,id-{},1,1,buy,{}\n"
    lines = [good.format(i, T0 + i) if i % 3 else "binance,BTCUSDT,broken\n" for i in range(2, 14)]
    path = tmp_path / "numbered.csv"
    path.write_text(HEADER + "".join(lines))
    letters = DeadLetters(tmp_path / "dead.jsonl")
    got = replayed_with(path, letters, batch_size=batch_size)
    letters.close()
    # Without a numeric trade id, seq is the line number: it shows each row kept its own.
    assert [(t.trade_id, t.seq) for t in got] == [(f"id-{n}", n) for n in range(2, 14) if n % 3]
    assert [r[0] for r in dead_letters_in(tmp_path / "dead.jsonl")] == [3, 6, 9, 12]


def test_a_stray_quote_does_not_swallow_the_following_good_rows(tmp_path: Path) -> None:
    path = tmp_path / "quote.csv"
    path.write_text(
        HEADER
        + f"binance,BTCUSDT,1,65000,0.1,buy,{T0}\n"  # line 2: good
        + f'binance,"BTCUSDT,2,65000,0.1,buy,{T0 + 1}\n'  # 3: the stray quote
        + f"binance,BTCUSDT,3,65001,0.1,buy,{T0 + 2}\n"  # 4: good, inside the quote
        + "binance,BTCUSDT,4\n"  # 5: too few columns, inside the quote
        + f"binance,BTCUSDT,5,65002,0.1,sell,{T0 + 3}\n"  # 6: good, inside the quote
        + f'binance,BTCUSDT,6,65003,0.1,"sell",{T0 + 4}\n'  # 7: its quotes close the quote
        + f"binance,BTCUSDT,7,65004,0.1,buy,{T0 + 5}\n"  # 8: good
    )
    letters = DeadLetters(tmp_path / "dead.jsonl")
    got = replayed_with(path, letters)
    letters.close()
    assert [t.trade_id for t in got] == ["1", "3", "5", "7"]
    dead = dead_letters_in(tmp_path / "dead.jsonl")
    assert [(line, reason) for line, reason, _ in dead] == [
        (3, "row has a stray quote"),
        (5, "row has the wrong number of CSV columns"),
        (7, "side is not buy, sell or unknown"),  # read without quoting: '"sell"'
    ]
    assert dead[0][2]["data"] == f'binance,"BTCUSDT,2,65000,0.1,buy,{T0 + 1}'


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_huge_garbage_line_is_cut_in_the_dead_letter_file(tmp_path: Path, suffix: str) -> None:
    good = [Trade(source="replay", exchange="binance", symbol="BTC-USDT", trade_id=str(i), seq=i,
                  price=100.0, size=1.0, ts=T0 + i, recv_ts=T0 + i) for i in (1, 2)]  # fmt: skip
    path = tmp_path / f"huge{suffix}"
    write_trades(path, good)
    head, last = path.read_text().rsplit("\n", 2)[0], path.read_text().rsplit("\n", 2)[1]
    path.write_text(f"{head}\n{'x' * 3_000_000}\n{last}\n")
    letters = DeadLetters(tmp_path / "dead.jsonl")
    got = replayed_with(path, letters)
    letters.close()
    assert [t.trade_id for t in got] == ["1", "2"]
    assert (tmp_path / "dead.jsonl").stat().st_size < 10_000
    [(_, _, record)] = dead_letters_in(tmp_path / "dead.jsonl")
    assert record["data"].startswith("xxx") and record["cut"] > 0


@pytest.mark.parametrize("fmt", FORMATS)
def test_ids_that_are_the_decimal_seq_travel_as_seq_alone_and_read_back_the_same(
    tmp_path: Path, fmt: str
) -> None:
    numeric = paced_trades(1.0, 50)
    odd = [msgspec.structs.replace(t, trade_id=f"00{t.seq}") for t in numeric]  # leading zeros
    other_seq = [msgspec.structs.replace(t, seq=t.seq + 1) for t in numeric]  # seq is not the id
    for name, trades, compact in (("numeric", numeric, True), ("odd", odd, False),
                                  ("other", other_seq, False)):  # fmt: skip
        path = tmp_path / f"{name}.{fmt}"
        write_trades(path, trades)
        batches, _, _ = asyncio.run(replay(FileReplay(path, speed=None, batch_size=16)))

        assert all((b.trade_id is None) is compact for b in batches), name
        got = [t for b in batches for t in b.to_trades()]
        assert [(t.trade_id, t.seq) for t in got] == [(t.trade_id, t.seq) for t in trades], name
