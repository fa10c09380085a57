"""Trade batches joined: the same trades whichever way their instruments are listed."""

from __future__ import annotations

import dataclasses

import numpy as np

from tickpipe.records import Instrument, Trade, TradeBatch, concat_batches

BTC, ETH, SOL = (Instrument("ex", s) for s in ("BTC-USDT", "ETH-USDT", "SOL-USDT"))


def trade(instrument: Instrument, seq: int) -> Trade:
    return Trade(source="ex", exchange="ex", symbol=instrument.symbol,
                 raw_symbol=instrument.raw_symbol, trade_id=str(seq), seq=seq, price=1.0 + seq,
                 size=1.0, side="buy", ts=1_000 * seq, recv_ts=1_000 * seq)  # fmt: skip


def coded(instruments: list[Instrument], trades: list[tuple[int, int]]) -> TradeBatch:
    """A batch of (instrument position, seq) trades over the list `instruments`, as a
    source's parser builds one: codes into a list it keeps."""
    batch = TradeBatch.from_trades([trade(instruments[i], seq) for i, seq in trades])
    codes = np.array([i for i, _ in trades], np.int32)
    return dataclasses.replace(batch, instruments=instruments, instrument=codes)


def test_batches_over_one_shared_instrument_list_join_into_the_same_trades() -> None:
    shared = [BTC, ETH, SOL]
    batches = [coded(shared, [(2, 1), (0, 2)]), coded(shared, [(1, 3)]), coded(shared, [(2, 4)])]
    joined = concat_batches(batches, "ex")
    assert joined.instruments is shared
    assert joined.to_trades() == [t for b in batches for t in b.to_trades()]


def test_batches_over_different_instrument_lists_are_coded_again() -> None:
    batches = [coded([SOL, BTC], [(0, 1), (1, 2)]), coded([ETH, SOL], [(1, 3), (0, 4)])]
    joined = concat_batches(batches, "ex")
    assert joined.instruments == [SOL, BTC, ETH]
    assert joined.to_trades() == [t for b in batches for t in b.to_trades()]
