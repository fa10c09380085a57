"""The shared WebSocket helper keeps a feed flowing: batches, liveness, reconnects, backpressure.

Every test runs the real helper against the fake Binance server on 127.0.0.1 with short timers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from fakes import async_test
from fakes.binance_server import FakeBinance

from tickpipe.records import Disconnect
from tickpipe.sources.ws import (
    WsClient,
    WsConfig,
    WsConnection,
    backoff_delay,
    retry_after_seconds,
)

FAST = WsConfig(
    connect_timeout=2.0,
    idle_timeout=None,
    data_timeout=None,
    backoff_initial=0.01,
    backoff_max=0.05,
    backoff_jitter=0.0,
    stable_after=0.5,
    rate_limit_backoff=0.3,
)


class Feed:
    """What a source would see from the helper: frames, batch sizes, data counting, events."""

    def __init__(self, server: FakeBinance, config: WsConfig = FAST, path: str = "") -> None:
        self.frames: list[bytes] = []
        self.batches: list[tuple[int, int]] = []  # (frames, recv_ts)
        self.events: list[Disconnect] = []
        self.hold = asyncio.Event()
        self.hold.set()
        self.client = WsClient(
            server.url + (path or "/stream?streams=btcusdt@trade"),
            self.on_frames,
            name="test",
            config=config,
            on_disconnect=self.events.append,
        )

    async def on_frames(self, frames: list[bytes], recv_ts: int) -> int:
        await self.hold.wait()
        self.frames.extend(frames)
        self.batches.append((len(frames), recv_ts))
        return sum(b'"data"' in f for f in frames)

    def trade_ids(self) -> list[int]:
        return [json.loads(f)["data"]["t"] for f in self.frames if b'"data"' in f]

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[asyncio.Task[None]]:
        task = asyncio.create_task(self.client.run())
        try:
            yield task
        finally:
            await stop(task)


async def stop(task: asyncio.Task[None]) -> None:
    """Cancel a client and check it stops at once (a swallowed cancel would hang a pipeline)."""
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=2.0)
    assert done, "the client did not stop when cancelled"
    if not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]


async def until(predicate: object, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.005)


@async_test()
async def test_frames_arrive_in_batches_stamped_with_receipt_time() -> None:
    async with FakeBinance() as server:
        feed = Feed(server)
        async with feed.running():
            await server.wait_connections(1)
            before = time.time_ns() // 1000
            trades = [server.trade("BTCUSDT") for _ in range(2000)]
            server.send(*trades)
            await until(lambda: len(feed.frames) == 2000)
        assert feed.trade_ids() == [t["t"] for t in trades]
        assert len(feed.batches) < 2000 / 4  # many frames per hand-over, not one each
        assert all(before <= ts <= time.time_ns() // 1000 for _, ts in feed.batches)
        assert feed.client.stats.frames == 2000


@async_test()
async def test_fragmented_message_is_reassembled() -> None:
    async with FakeBinance() as server:
        feed = Feed(server)
        async with feed.running():
            await server.wait_connections(1)
            message = json.dumps({"stream": "btcusdt@trade", "data": server.trade("BTCUSDT")})
            server.send_raw(message, fragments=4)
            server.publish("BTCUSDT")
            await until(lambda: len(feed.frames) == 2)
        assert feed.frames[0] == message.encode()


@async_test()
async def test_subscribe_hook_runs_after_every_connect() -> None:
    async with FakeBinance() as server:
        seen: list[WsConnection] = []

        async def subscribe(conn: WsConnection) -> None:
            seen.append(conn)
            conn.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 1}))

        feed = Feed(server, path="/ws")
        feed.client = WsClient(
            server.url + "/ws", feed.on_frames, name="test", config=FAST, on_connect=subscribe
        )
        async with feed.running():
            first = await server.wait_connections(1)
            await server.wait_for(lambda: "btcusdt@trade" in first.streams)
            server.publish("BTCUSDT")
            server.drop_all()
            second = await server.wait_connections(2)
            await server.wait_for(lambda: "btcusdt@trade" in second.streams)
            server.publish("BTCUSDT")
            await until(lambda: len(feed.frames) == 4)  # an ack and a trade per connection
        assert len(seen) == 2
        assert [r["method"] for c in (first, second) for r in c.requests] == ["SUBSCRIBE"] * 2
        assert feed.frames.count(b'{"result":null,"id":1}') == 2


@async_test()
async def test_dropped_connection_reconnects_and_reports_the_disconnect() -> None:
    async with FakeBinance() as server:
        feed = Feed(server)
        async with feed.running():
            await server.wait_connections(1)
            server.drop_after(3)
            sent = [server.publish("BTCUSDT") for _ in range(3)]
            await server.wait_connections(2)
            await until(lambda: feed.client.stats.connected)
            sent.append(server.publish("BTCUSDT"))
            await until(lambda: len(feed.frames) == 4)
        assert feed.trade_ids() == [t["t"] for t in sent]
        assert feed.client.stats.reconnects == 1
        [event] = feed.events
        assert event.source == "test"
        assert event.reason == "connection lost"
        assert 0 < event.reconnect_in <= FAST.backoff_initial


@async_test()
async def test_frames_received_before_a_drop_are_still_delivered() -> None:
    async with FakeBinance() as server:
        feed = Feed(server)
        async with feed.running():
            first = await server.wait_connections(1)
            feed.hold.clear()  # the source is busy while the connection dies
            server.drop_after(300)
            sent = [server.publish("BTCUSDT") for _ in range(300)]
            await server.wait_for(lambda: first.closed)
            await asyncio.sleep(0.1)
            feed.hold.set()
            await server.wait_connections(2)
            await until(lambda: len(feed.frames) == 300)
        assert feed.trade_ids() == [t["t"] for t in sent]
        assert [e.reason for e in feed.events] == ["connection lost"]


@async_test()
async def test_silent_feed_that_answers_pings_triggers_data_timeout_reconnect() -> None:
    async with FakeBinance(ping_interval=0.05, pong_timeout=1.0) as server:
        config = replace(FAST, idle_timeout=0.25, data_timeout=0.4)
        feed = Feed(server, config)
        async with feed.running():
            first = await server.wait_connections(1)
            server.publish("BTCUSDT")
            server.silent = True
            started = time.monotonic()
            await server.wait_connections(2)
            waited = time.monotonic() - started
        assert first.pongs_received >= 3  # the link was alive all along
        assert [e.reason for e in feed.events] == ["no data for 0.4s"]
        assert 0.35 < waited < 1.5


@async_test()
async def test_dead_link_without_any_frame_triggers_the_frame_timeout() -> None:
    async with FakeBinance(ping_interval=60.0) as server:
        config = replace(FAST, idle_timeout=0.2, data_timeout=5.0)
        feed = Feed(server, config)
        async with feed.running():
            await server.wait_connections(1)
            server.silent = True
            await server.wait_connections(2)
        assert feed.events[0].reason == "no frame for 0.2s"


@async_test()
async def test_server_pings_are_answered_with_pongs() -> None:
    async with FakeBinance(ping_interval=0.05, pong_timeout=0.3) as server:
        feed = Feed(server)
        async with feed.running():
            conn = await server.wait_connections(1)
            await server.wait_for(lambda: conn.pings_sent >= 8)
            await until(lambda: conn.pongs_received >= 7)
            assert conn.open  # never dropped for a missing pong
        assert feed.events == []


@async_test()
async def test_unanswered_client_ping_reconnects() -> None:
    async with FakeBinance(ping_interval=60.0) as server:
        server.answer_pings = False
        config = replace(FAST, ping_interval=0.1, ping_timeout=0.1)
        feed = Feed(server, config)
        async with feed.running():
            first = await server.wait_connections(1)
            await server.wait_connections(2)
        assert first.pings_received >= 1
        assert "not replied to ping" in feed.events[0].reason


@async_test()
async def test_rate_limited_upgrade_waits_as_long_as_retry_after_says() -> None:
    async with FakeBinance() as server:
        server.reject_next(429, retry_after="0.4")
        feed = Feed(server)
        started = time.monotonic()
        async with feed.running():
            await server.wait_connections(1)
            waited = time.monotonic() - started
        assert server.rejected == [("/stream?streams=btcusdt@trade", 429)]
        [event] = feed.events
        assert event.reason == "rate limited: HTTP 429, retry after 0.4s"
        assert event.reconnect_in == 0.4
        assert waited >= 0.4


@async_test()
async def test_ip_ban_without_retry_after_backs_off_for_the_configured_long_time() -> None:
    async with FakeBinance() as server:
        server.reject_next(418)
        feed = Feed(server)
        async with feed.running():
            await server.wait_connections(1)
        assert feed.events[0].reconnect_in == FAST.rate_limit_backoff


@async_test()
async def test_backoff_grows_until_a_connection_stays_up_long_enough() -> None:
    async with FakeBinance() as server:
        server.reject_next(503, count=3)
        feed = Feed(server)
        async with feed.running():
            await server.wait_connections(1)
            server.drop_all()  # a short-lived connection: backoff keeps growing
            await server.wait_connections(2)
            await asyncio.sleep(FAST.stable_after + 0.1)
            server.drop_all()  # after stable uptime: back to the first step
            await server.wait_connections(3)
        delays = [e.reconnect_in for e in feed.events]
        assert delays == [0.01, 0.02, 0.04, 0.05, 0.01]  # doubling, capped at backoff_max
        assert [e.reason for e in feed.events[:3]] == ["upgrade refused: HTTP 503"] * 3


@async_test()
async def test_connection_refused_is_retried_forever() -> None:
    async with FakeBinance() as server:
        port = server.port
    server = FakeBinance(port=port)  # nothing listens on `port` for now
    feed = Feed(server)
    async with feed.running():
        await until(lambda: len(feed.events) >= 3)
        async with server:
            await server.wait_connections(1)
    assert all(e.reason.startswith("connect failed") for e in feed.events)


@async_test()
async def test_max_lifetime_reconnects_on_purpose_without_waiting() -> None:
    async with FakeBinance() as server:
        feed = Feed(server, replace(FAST, max_lifetime=0.2))
        async with feed.running():
            first = await server.wait_connections(1)
            await server.wait_connections(2)
        assert first.closed
        assert feed.events[0].reason == "planned: connection lifetime"
        assert feed.events[0].reconnect_in == 0.0


@async_test()
async def test_slow_source_pauses_reading_loses_nothing_and_is_not_taken_for_silence() -> None:
    async with FakeBinance() as server:
        config = replace(
            FAST, idle_timeout=0.2, data_timeout=0.2, max_pending_frames=200, max_batch_frames=50
        )
        feed = Feed(server, config)
        async with feed.running():
            await server.wait_connections(1)
            feed.hold.clear()  # the source stops taking frames, as when the transport is full
            trades = [server.trade("BTCUSDT") for _ in range(20_000)]
            server.send(*trades)
            await asyncio.sleep(0.6)  # three times both timeouts
            received_while_held = feed.client.stats.frames
            feed.hold.set()
            await until(lambda: len(feed.frames) == 20_000)
        assert received_while_held < 5_000  # reading paused near max_pending_frames
        assert feed.trade_ids() == [t["t"] for t in trades]
        assert feed.events == []  # holding back is not a dead feed


@async_test()
async def test_error_in_frame_callback_ends_the_client() -> None:
    async with FakeBinance() as server:

        async def broken(frames: list[bytes], recv_ts: int) -> int:
            raise RuntimeError("source bug")

        client = WsClient(server.url + "/stream?streams=btcusdt@trade", broken, name="t")
        task = asyncio.create_task(client.run())
        await server.wait_connections(1)
        server.publish("BTCUSDT")
        with pytest.raises(RuntimeError, match="source bug"):
            await asyncio.wait_for(task, 2)
        assert not client.stats.connected


def test_backoff_is_exponential_capped_and_jittered_downwards() -> None:
    config = WsConfig(backoff_initial=1.0, backoff_max=30.0, backoff_factor=2.0, backoff_jitter=0.5)
    rng = random.Random(7)
    for attempt, base in enumerate([1, 2, 4, 8, 16, 30, 30, 30]):
        delays = [backoff_delay(config, attempt, rng) for _ in range(200)]
        assert all(base * 0.5 <= d <= base for d in delays)
        assert max(delays) - min(delays) > base * 0.3  # spread, so clients do not stampede
    assert backoff_delay(config, 10_000, rng) <= 30.0


def test_retry_after_reads_seconds_and_ignores_what_it_cannot() -> None:
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds(" 1.5 ") == 1.5
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert retry_after_seconds("-3") is None
    assert retry_after_seconds("inf") is None
    assert retry_after_seconds("nan") is None
    assert retry_after_seconds(None) is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("idle_timeout", 0),
        ("backoff_jitter", 1.5),
        ("backoff_factor", 0.5),
        ("stable_after", -1),
        ("ping_timeout", 20.0),  # longer than ping_interval below
    ],
)
def test_bad_config_names_the_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        WsConfig(**{"ping_interval": 10.0, field: value})


def test_url_must_be_a_websocket_url() -> None:
    async def nothing(frames: list[bytes], recv_ts: int) -> int:
        return 0

    with pytest.raises(ValueError, match="ws://"):
        WsClient("http://127.0.0.1:1/", nothing, name="t")
