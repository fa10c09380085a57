"""The bounded in-process transport: bounded in trades, a full queue makes producers wait."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tickpipe.records import Instrument, TradeBatch
from tickpipe.transport.memory import MemoryTransport


def batch(n: int, first: int = 0) -> TradeBatch:
    seq = np.arange(first, first + n, dtype=np.int64)
    return TradeBatch(
        source="test",
        instruments=[Instrument("ex", "BTC-USDT")],
        instrument=np.zeros(n, np.int32),
        seq=seq,
        price=np.full(n, 100.0),
        size=np.ones(n),
        side=np.zeros(n, np.int8),
        ts=seq * 1000,
        recv_ts=seq * 1000,
    )


def run(coro, timeout: float = 10.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_batches_come_out_in_order_and_depth_counts_trades() -> None:
    async def main():
        q = MemoryTransport(max_trades=100)
        await q.put(batch(3, 0))
        await q.put(batch(4, 3))
        assert (len(q), q.depth) == (2, 7)
        first = await q.get()
        assert first.seq.tolist() == [0, 1, 2]
        assert q.depth == 4
        second = await q.get()
        assert second.seq.tolist() == [3, 4, 5, 6]
        assert (len(q), q.depth, q.waits) == (0, 0, 0)

    run(main())


def test_get_returns_none_after_its_timeout_when_empty() -> None:
    async def main():
        q = MemoryTransport(max_trades=10)
        loop = asyncio.get_running_loop()
        began = loop.time()
        assert await q.get(timeout=0.05) is None
        assert loop.time() - began >= 0.04

    run(main())


def test_a_producer_waits_when_full_and_resumes_when_drained() -> None:
    async def main():
        q = MemoryTransport(max_trades=10)
        await q.put(batch(6, 0))
        await q.put(batch(4, 6))  # exactly full: no wait
        assert (q.depth, q.waits) == (10, 0)

        blocked = asyncio.create_task(q.put(batch(1, 10)))
        await asyncio.sleep(0.05)
        assert not blocked.done(), "put into a full queue must wait"
        assert q.waits == 1  # the backpressure counter rose
        assert q.depth == 10  # nothing beyond the bound was queued

        got = await q.get()  # frees 6 trades
        assert got.seq.tolist() == list(range(6))
        await asyncio.wait_for(blocked, 1.0)
        assert (q.depth, len(q)) == (5, 2)
        assert [b.seq.tolist() for b in (await q.get(), await q.get())] == [
            [6, 7, 8, 9], [10],
        ]  # fmt: skip

    run(main())


def test_a_producer_resumes_after_the_consumer_drains_everything_at_once() -> None:
    async def main():
        q = MemoryTransport(max_trades=5)
        await q.put(batch(5, 0))
        blocked = asyncio.create_task(q.put(batch(2, 5)))
        await asyncio.sleep(0.05)
        assert not blocked.done()
        drained = q.get_nowait_all()
        await q.wake_producers()
        assert [len(b) for b in drained] == [5]
        await asyncio.wait_for(blocked, 1.0)
        assert q.depth == 2

    run(main())


def test_waiting_producers_never_exceed_the_bound_together() -> None:
    async def main():
        q = MemoryTransport(max_trades=10)
        depths: list[int] = []
        done = asyncio.Event()

        async def watch():
            while not done.is_set():
                depths.append(q.depth)
                await asyncio.sleep(0)

        watcher = asyncio.create_task(watch())
        producers = [asyncio.create_task(q.put(batch(4, 4 * i))) for i in range(6)]
        received = []
        while len(received) < 24:
            got = await q.get(timeout=1.0)
            assert got is not None
            received.extend(got.seq.tolist())
            await asyncio.sleep(0.001)
        await asyncio.gather(*producers)
        done.set()
        await watcher
        assert sorted(received) == list(range(24))
        assert max(depths) <= 10
        assert q.waits >= 1

    run(main())


def test_an_oversized_batch_is_accepted_into_an_empty_queue() -> None:
    async def main():
        q = MemoryTransport(max_trades=10)
        await asyncio.wait_for(q.put(batch(25)), 1.0)
        assert (q.depth, len(q), q.waits) == (25, 1, 0)
        # ...but the next batch waits until it has gone.
        blocked = asyncio.create_task(q.put(batch(1, 25)))
        await asyncio.sleep(0.05)
        assert not blocked.done()
        assert len(await q.get()) == 25
        await asyncio.wait_for(blocked, 1.0)
        assert q.depth == 1

    run(main())


def test_an_oversized_batch_waits_for_the_queue_to_empty() -> None:
    async def main():
        q = MemoryTransport(max_trades=10)
        await q.put(batch(2))
        big = asyncio.create_task(q.put(batch(25, 2)))
        await asyncio.sleep(0.05)
        assert not big.done()
        await q.get()
        await asyncio.wait_for(big, 1.0)
        assert q.depth == 25

    run(main())


def test_the_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_trades"):
        MemoryTransport(max_trades=0)
