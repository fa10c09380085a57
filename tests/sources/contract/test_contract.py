"""The connector contract: every exchange's source, against that exchange's fake, through the
faults every feed meets.

Each scenario is generated for the venues (`exchanges.VENUES`) whose capabilities it needs, and
asserts on what the fake exchange made and published against what the source emitted
(`observed`), never on what the source says about itself. Timers come from a small `WsConfig`,
and waits that must last at least a given time are measured on the fake's side as lower bounds.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest
from fakes import async_test
from fakes.base import FakeExchange
from fakes.harness import SourceRun, observed

from tickpipe.deadletter import DeadLetter, DeadLetters
from tickpipe.records import Gap

from .exchanges import VENUES, Venue


def venues(capable: Callable[[Venue], bool] = lambda v: True) -> list[Any]:
    return [pytest.param(v, id=v.name) for v in VENUES if capable(v)]


class Contract(SourceRun):
    """A venue's source running against its fake, and the (market, trade) pairs the fake made."""

    def __init__(
        self,
        venue: Venue,
        server: FakeExchange,
        dead_letters: DeadLetters | None = None,
        **ws: Any,
    ) -> None:
        super().__init__(venue.source(server, **ws), dead_letters)
        self.venue = venue
        self.server = server
        self.made: list[tuple[str, Any]] = []

    async def subscribed(self, count: int) -> Any:
        """Wait until `count` connections in all have subscribed to every market and the source
        says it is connected; the latest of them."""
        conn = await self.server.wait_connections(
            count, where=lambda c: len(self.venue.topics(c)) >= len(self.venue.markets)
        )
        await self.until(lambda: self.ctx.stats.connected)
        return conn

    def make(self, market: str, count: int = 1) -> list[Any]:
        """Trades that happen on the exchange; not sent."""
        trades = [self.venue.trade(self.server, market) for _ in range(count)]
        self.made += [(market, t) for t in trades]
        return trades

    def publish(self, market: str) -> Any:
        [trade] = self.make(market)
        self.venue.send(self.server, market, [trade])
        return trade

    def observed(self) -> list[tuple]:
        return observed(self.trades(), ids=self.venue.ids)

    async def arrived(self, wanted: Sequence[tuple], timeout: float = 5.0) -> None:
        await self.until(lambda: set(wanted) <= set(self.observed()), timeout)

    async def gap(self) -> Gap:
        await self.until(lambda: bool(self.gaps()))
        gaps = self.gaps()
        assert len(gaps) == 1, f"one Gap event expected, got {gaps}"
        return gaps[0]


@pytest.mark.parametrize("venue", venues())
@async_test()
async def test_dropped_connection_reconnects_resubscribes_and_every_trade_arrives(
    venue: Venue,
) -> None:
    async with venue.fake() as server:
        run = Contract(venue, server)
        async with run.running():
            first = await run.subscribed(1)
            run.publish(venue.markets[1])
            server.drop_after(1)  # the next trade out is the last before the cut
            run.publish(venue.markets[0])
            second = await run.subscribed(2)
            for market in venue.markets:
                run.publish(market)
            await run.arrived(venue.expect(run.made))
        assert first.closed and venue.topics(second) == venue.topics(first)
        arrivals = Counter(run.observed())
        if venue.refill and venue.refill.overlap:  # besides, refetched copies of live trades
            assert set(arrivals) - set(venue.expect(run.made)) <= set(
                venue.expect(run.made, refilled=True)
            )
            assert set(venue.expect(run.made)) <= set(arrivals)
        else:
            assert set(arrivals) == set(venue.expect(run.made))
        if not (venue.refill and (venue.refill.replayed or venue.refill.overlap)):
            assert set(arrivals.values()) == {1}
        assert [d.reason for d in run.disconnects()] == ["connection lost"]
        assert run.ctx.stats.reconnects == 1
        if not (venue.refill and venue.refill.overlap):
            assert run.gaps() == []  # nothing was traded while it was away


async def lose_trades_while_disconnected(run: Contract, lost_count: int = 5) -> list[Any]:
    """Trade on both markets, cut the connection, trade on the first while nobody listens,
    then once more after the reconnect; wait until every trade and the `Gap` came."""
    venue, server = run.venue, run.server
    assert venue.refill is not None
    await run.subscribed(1)
    for market in venue.markets:
        run.publish(market)
    await run.arrived(venue.expect(run.made))
    server.drop_all()
    lost = run.make(venue.markets[0], lost_count)
    await run.subscribed(2)
    run.publish(venue.markets[0])
    await run.arrived(expected_after_refill(run, lost))
    await run.gap()
    return lost


def missing(venue: Venue, lost: list[Any]) -> list[Any]:
    """The lost trades REST must bring back: those the resubscription does not resend."""
    assert venue.refill is not None
    return lost[: len(lost) - venue.refill.replayed]


def expected_after_refill(run: Contract, lost: list[Any]) -> list[tuple]:
    venue = run.venue
    gone = {id(t) for t in missing(venue, lost)}
    live = [(m, t) for m, t in run.made if id(t) not in gone]
    refilled = [(venue.markets[0], t) for t in missing(venue, lost)]
    return venue.expect(live) + venue.expect(refilled, refilled=True)


def assert_refilled_once(run: Contract, lost: list[Any], gap: Gap) -> None:
    venue = run.venue
    assert venue.refill is not None
    wanted = expected_after_refill(run, lost)
    arrivals = Counter(run.observed())
    refilled = missing(venue, lost)
    if venue.refill.overlap:  # besides, refetched copies of trades seen live
        extra = set(arrivals) - set(wanted)
        assert extra <= set(venue.expect(run.made, refilled=True)) and set(wanted) <= set(arrivals)
        assert gap.recovered >= len(refilled)
    else:
        assert set(arrivals) == set(wanted)
        assert gap.recovered == len(refilled)
    lost_rows = venue.expect([(venue.markets[0], t) for t in refilled], refilled=True)
    assert all(arrivals[row] == 1 for row in lost_rows)
    assert (gap.source, gap.symbol) == (venue.name.split("-")[0], venue.symbols[0])
    if venue.refill.ids:
        market = venue.markets[0]
        assert (gap.first_missing, gap.last_missing) == (
            venue.trade_id(market, refilled[0]), venue.trade_id(market, refilled[-1]),
        )  # fmt: skip
    assert venue.refill.detail in gap.detail


@pytest.mark.parametrize("venue", venues(lambda v: v.refill is not None))
@async_test()
async def test_trades_lost_while_disconnected_come_back_once_with_a_gap_event(
    venue: Venue,
) -> None:
    async with venue.fake() as server:
        run = Contract(venue, server)
        async with run.running():
            lost = await lose_trades_while_disconnected(run)
        assert_refilled_once(run, lost, run.gaps()[0])
        assert [d.reason for d in run.disconnects()] == ["connection lost"]


@pytest.mark.parametrize("venue", venues(lambda v: v.rest_429))
@async_test()
async def test_refill_refused_with_429_waits_for_retry_after(venue: Venue) -> None:
    async with venue.fake() as server:
        assert venue.refill is not None
        run = Contract(venue, server)
        async with run.running():
            server.rest_reject_next(429, retry_after="0.3")
            started = time.monotonic()
            lost = await lose_trades_while_disconnected(run)
            waited = time.monotonic() - started
        assert waited >= 0.3
        assert venue.refill.rest_requests(server) >= 2  # the refused one, then its retry
        assert_refilled_once(run, lost, run.gaps()[0])


@pytest.mark.parametrize("venue", venues(lambda v: v.live_gaps))
@async_test()
async def test_hole_in_live_trade_ids_is_refilled_once_with_a_gap_event(venue: Venue) -> None:
    async with venue.fake() as server:
        run = Contract(venue, server)
        async with run.running():
            await run.subscribed(1)
            for market in venue.markets:
                run.publish(market)
            lost = run.make(venue.markets[0], 2)
            for market in venue.markets:
                run.publish(market)
            await run.arrived(venue.expect(run.made))
            gap = await run.gap()
        arrivals = Counter(run.observed())
        assert set(arrivals) == set(venue.expect(run.made))
        assert set(arrivals.values()) == {1}
        market = venue.markets[0]
        assert (gap.source, gap.symbol, gap.first_missing, gap.last_missing, gap.recovered) == (
            venue.name.split("-")[0], venue.symbols[0], venue.trade_id(market, lost[0]),
            venue.trade_id(market, lost[-1]), 2,
        )  # fmt: skip
        assert run.disconnects() == []


@pytest.mark.parametrize("venue", venues())
@async_test()
async def test_silent_feed_that_answers_pings_reconnects_on_the_data_timer(venue: Venue) -> None:
    async with venue.fake() as server:
        run = Contract(venue, server, idle_timeout=0.3, data_timeout=0.5)
        async with run.running():
            first = await run.subscribed(1)
            # Taken before the data leaves the server: the feed cannot have received it
            # earlier, so its data timer cannot have started earlier either (taken after
            # arrival, a loaded machine's delivery delay made the bound fail by a millisecond).
            last_data = time.monotonic()
            run.publish(venue.markets[0])
            await run.arrived(venue.expect(run.made))
            server.silent = True
            # Silent until the new connection has subscribed, so no replay on subscribing
            # (Coinbase's `last_match`, Kraken's snapshot) races the end of the silence.
            second = await run.subscribed(2)
            server.silent = False
            run.publish(venue.markets[0])
            await run.arrived(venue.expect(run.made))
        assert venue.alive(first) > 0  # the link was kept alive while no data came
        assert second.opened_at - last_data >= 0.5
        assert [d.reason for d in run.disconnects()] == ["no data for 0.5s"]
        if venue.refill and venue.refill.overlap:
            assert set(venue.expect(run.made)) <= set(run.observed())
        else:
            assert run.observed() == venue.expect(run.made)


async def sent_as(
    venue: Venue, count: int, messages: Sequence[Sequence[int]]
) -> tuple[Contract, list[tuple[str, Any]]]:
    """Make `count` trades on the first market and send them as `messages` (positions among
    them, one list a message); the run once as many trades arrived as were sent, and the
    (market, trade) pairs in the order sent."""
    async with venue.fake() as server:
        run = Contract(venue, server)
        async with run.running():
            await run.subscribed(1)
            market = venue.markets[0]
            made = run.make(market, count)
            for message in messages:
                venue.send(server, market, [made[i] for i in message])
            sent = [(market, made[i]) for message in messages for i in message]
            await run.until(lambda: len(run.trades()) >= len(sent))
    return run, sent


@pytest.mark.parametrize("venue", venues())
@async_test()
async def test_duplicates_are_passed_on_for_the_engine_to_remove(venue: Venue) -> None:
    """Every connector documents that it hands duplicates on (the engine de-duplicates)."""
    run, sent = await sent_as(venue, 2, [[0, 0, 1, 1, 0]])
    assert run.observed() == venue.expect(sent)
    assert run.gaps() == []


@pytest.mark.parametrize("venue", venues())
@async_test()
async def test_reordered_trades_all_arrive_as_sent_and_are_no_gap(venue: Venue) -> None:
    run, sent = await sent_as(venue, 3, [[2], [0, 1]])
    assert run.observed() == venue.expect(sent)
    assert run.gaps() == []  # ids at or below the highest seen are never a gap


@pytest.mark.parametrize("venue", venues())
@async_test()
async def test_malformed_frames_are_counted_dead_lettered_and_the_feed_goes_on(
    venue: Venue, tmp_path: Path
) -> None:
    letters = DeadLetters(tmp_path / "dead.jsonl")
    reasons = [f.reason for f in venue.malformed if f.reason is not None]
    async with venue.fake() as server:
        run = Contract(venue, server, letters)
        async with run.running():
            await run.subscribed(1)
            run.publish(venue.markets[0])
            for fault in venue.malformed:
                if callable(fault.payload):
                    fault.payload(server)
                else:
                    server.send_raw(fault.payload)
            run.publish(venue.markets[0])
            await run.arrived(venue.expect(run.made))
            await run.until(lambda: run.ctx.stats.malformed >= len(reasons))
        letters.close()
    rejects = [
        msgspec.json.decode(line, type=DeadLetter)
        for line in (tmp_path / "dead.jsonl").read_bytes().splitlines()
    ]
    assert len(rejects) == len(reasons) == run.ctx.stats.malformed
    for reject, reason in zip(rejects, reasons, strict=True):
        assert re.fullmatch(reason, reject.reason), (reject.reason, reason)
        assert reject.source == venue.name.split("-")[0]
    first = venue.malformed[0].payload
    assert isinstance(first, str) and rejects[0].payload == first
    if venue.secret is not None:
        assert not any(venue.secret in r.payload for r in rejects)
        assert any("***" in r.payload for r in rejects)  # the error reply quoted it, masked
    assert run.observed() == venue.expect(run.made)
    assert run.disconnects() == []


@pytest.mark.parametrize("venue", venues())
@async_test()
async def test_connect_refused_with_429_waits_for_retry_after_then_connects(
    venue: Venue,
) -> None:
    async with venue.fake() as server:
        server.reject_next(429, retry_after="0.3")
        started = time.monotonic()
        run = Contract(venue, server)
        async with run.running():
            first = await run.subscribed(1)
            run.publish(venue.markets[0])
            await run.arrived(venue.expect(run.made))
        assert len(server.rejected) == 1
        assert first.opened_at - started >= 0.3
        [refused] = run.disconnects()
        assert refused.reason == "rate limited: HTTP 429, retry after 0.3s"
        assert refused.reconnect_in >= 0.3
