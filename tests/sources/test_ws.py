"""The shared WebSocket helper keeps a feed flowing: batches, liveness, reconnects, backpressure,
application pings, and secrets kept out of what it says.

Every test runs the real helper against the fake Binance server, or a tiny picows echo server
(`Tiny`, below) on 127.0.0.1, with short timers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from fakes import async_test
from fakes.binance_server import FakeBinance
from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    ws_create_server,
)

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
        self.handed_at: list[float] = []  # loop time of each hand-over
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
        self.handed_at.append(asyncio.get_running_loop().time())
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
async def test_a_trickle_of_single_frames_is_handed_over_at_most_once_per_coalesce_time() -> None:
    coalesce_s = 0.05
    async with FakeBinance() as server:
        feed = Feed(server, replace(FAST, coalesce_s=coalesce_s, coalesce_after_s=0.0))
        async with feed.running():
            await server.wait_connections(1)
            trades = []
            for _ in range(100):  # one trade per frame, a millisecond apart: ~100 reads
                trades.append(server.trade("BTCUSDT"))
                server.send(trades[-1])
                await asyncio.sleep(0.001)
            await until(lambda: len(feed.frames) == 100)
        assert feed.trade_ids() == [t["t"] for t in trades]  # none lost, none reordered
        gaps = [b - a for a, b in itertools.pairwise(feed.handed_at)]
        assert len(gaps) > 0 and min(gaps) >= coalesce_s * 0.99
        assert len(feed.batches) < 50


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
        ("coalesce_s", -0.001),
        ("coalesce_after_s", -1.0),
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


# -- application pings and secrets, against a tiny picows server ------------------------------


@dataclass
class Peer:
    """One client connection as the tiny server saw it."""

    path: str
    transport: WSTransport | None = None
    received: list[tuple[float, bytes]] = field(default_factory=list)  # (monotonic, text frame)
    closed: bool = False

    def texts(self, prefix: bytes = b"") -> list[bytes]:
        return [m for _, m in self.received if m.startswith(prefix)]


class _PeerListener(WSListener):
    def __init__(self, server: Tiny, peer: Peer) -> None:
        super().__init__()
        self.server = server
        self.peer = peer

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.peer.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.TEXT:
            message = frame.get_payload_as_bytes()
            self.peer.received.append((time.monotonic(), message))
            reply = self.server.answer(message)
            if reply is not None:
                transport.send(WSMsgType.TEXT, reply)
        elif frame.msg_type is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.peer.closed = True


class Tiny:
    """A WebSocket server that records the text frames it gets and answers some of them."""

    def __init__(self, answer: Callable[[bytes], bytes | None] = lambda _m: None) -> None:
        self.answer = answer
        self.peers: list[Peer] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._chatter: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Tiny:
        def route(request: WSUpgradeRequest) -> WSListener:
            peer = Peer(request.path.decode())
            self.peers.append(peer)
            return _PeerListener(self, peer)

        self._server = await ws_create_server(route, "127.0.0.1", 0, logger_name="tiny")
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.quiet()
        for peer in self.peers:
            if peer.transport is not None and not peer.closed:
                peer.transport.disconnect(graceful=False)
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def peer(self, n: int) -> Peer:
        """The `n`-th connection (1-based), once it is open."""
        await until(lambda: len(self.peers) >= n and self.peers[n - 1].transport is not None)
        return self.peers[n - 1]

    def chatter(self, period: float) -> None:
        """Send a data frame to every open connection every `period` seconds until quiet()."""

        async def loop() -> None:
            for n in itertools.count():
                for peer in self.peers:
                    if peer.transport is not None and not peer.closed:
                        peer.transport.send(WSMsgType.TEXT, b'{"data":%d}' % n)
                await asyncio.sleep(period)

        self._chatter = asyncio.create_task(loop())

    def quiet(self) -> None:
        if self._chatter is not None:
            self._chatter.cancel()
            self._chatter = None

    def close_all(self, reason: str) -> None:
        for peer in self.peers:
            if peer.transport is not None and not peer.closed:
                peer.transport.send_close(WSCloseCode.POLICY_VIOLATION, reason.encode())
                peer.transport.disconnect()


def pong_to(ping: bytes, pong: bytes) -> Callable[[bytes], bytes | None]:
    return lambda message: pong if message == ping else None


QUIET = replace(FAST, idle_timeout=None, data_timeout=None)


def client_of(
    server: Tiny,
    config: WsConfig,
    frames: list[bytes],
    events: list[Disconnect],
    path: str = "/feed",
    **kwargs: Any,
) -> WsClient:
    """A client that subscribes with the text `subscribe` and keeps what it receives."""

    async def on_frames(batch: list[bytes], recv_ts: int) -> int:
        frames.extend(batch)
        return sum(f.startswith(b'{"data"') for f in batch)

    async def subscribe(conn: WsConnection) -> None:
        conn.send("subscribe")

    kwargs.setdefault("on_connect", subscribe)
    return WsClient(
        server.url + path,
        on_frames,
        name="test",
        config=config,
        on_disconnect=events.append,
        **kwargs,
    )


@contextlib.asynccontextmanager
async def running(client: WsClient) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(client.run())
    try:
        yield task
    finally:
        await stop(task)


def pinger_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if "app_ping" in t.get_coro().__qualname__]


@async_test()
async def test_interval_ping_goes_out_on_schedule_with_a_fresh_payload_even_while_data_flows() -> (
    None
):
    ids = itertools.count(1)
    config = replace(
        QUIET,
        app_ping=lambda: json.dumps({"op": "ping", "req_id": next(ids)}),
        app_ping_interval=0.05,
    )
    frames: list[bytes] = []
    async with Tiny() as server:
        async with running(client_of(server, config, frames, [])):
            peer = await server.peer(1)
            server.chatter(0.005)  # far busier than the ping interval
            await asyncio.sleep(0.55)
        pings = [(t, json.loads(m)) for t, m in peer.received if m.startswith(b'{"op"')]
    assert peer.received[0][1] == b"subscribe"  # the subscribe hook runs first
    assert 7 <= len(pings) <= 12
    assert [p["req_id"] for _, p in pings] == list(range(1, len(pings) + 1))
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(pings)]
    assert min(gaps) > 0.035  # never sooner than the interval
    assert sum(f.startswith(b'{"data"') for f in frames) > 50


@async_test()
async def test_idle_ping_waits_for_a_quiet_spell_and_its_answer_keeps_the_link_alive() -> None:
    config = replace(QUIET, idle_timeout=0.3, app_ping="ping", app_ping_idle=0.1)
    frames: list[bytes] = []
    events: list[Disconnect] = []
    server = Tiny(answer=pong_to(b"ping", b"pong"))
    async with server, running(client_of(server, config, frames, events)):
        peer = await server.peer(1)
        server.chatter(0.02)
        await asyncio.sleep(0.4)  # traffic all along: no ping needed
        pings_while_busy = len(peer.texts(b"ping"))
        server.quiet()
        await asyncio.sleep(1.0)  # over three times the any-frame timeout
        pings_while_quiet = len(peer.texts(b"ping")) - pings_while_busy
        assert not peer.closed
    pongs = frames.count(b"pong")
    assert pings_while_busy <= 1  # chatter every 0.02 s: a ping only if the loop stalled
    assert 5 <= pings_while_quiet <= 11  # one per 0.1 s of silence
    # Answers reach the source as frames; the last ping's answer may still be on its way.
    assert pings_while_busy + pings_while_quiet - 1 <= pongs <= pings_while_busy + pings_while_quiet
    assert events == []  # the pongs fed the any-frame timer


@async_test()
async def test_unanswered_idle_ping_lets_the_frame_timer_reconnect() -> None:
    config = replace(QUIET, idle_timeout=0.25, app_ping="ping", app_ping_idle=0.05)
    events: list[Disconnect] = []
    async with Tiny() as server, running(client_of(server, config, [], events)):
        first = await server.peer(1)
        await server.peer(2)
    assert len(first.texts(b"ping")) >= 3  # pinged every 0.05 s while nothing came back
    assert events[0].reason == "no frame for 0.25s"


@async_test()
async def test_app_pings_run_per_connection_and_stop_with_it() -> None:
    config = replace(QUIET, app_ping=b"ping", app_ping_interval=0.03)
    async with Tiny() as server:
        async with running(client_of(server, config, [], [])):
            for n in range(1, 5):
                peer = await server.peer(n)
                await until(lambda peer=peer: len(peer.texts(b"ping")) >= 2)  # type: ignore[misc]
                assert len(pinger_tasks()) == 1  # the old connection's pinger is gone
                peer.transport.disconnect(graceful=False)  # type: ignore[union-attr]
                await until(lambda peer=peer: peer.closed)  # type: ignore[misc]
            await server.peer(5)
            after_close = [len(p.texts(b"ping")) for p in server.peers[:4]]
            await asyncio.sleep(0.1)
            assert [len(p.texts(b"ping")) for p in server.peers[:4]] == after_close
        assert pinger_tasks() == []  # cancelling the client stops its pinger


@async_test()
async def test_failing_ping_payload_reconnects_and_says_why() -> None:
    def broken() -> str:
        raise RuntimeError("no ping today")

    config = replace(QUIET, app_ping=broken, app_ping_interval=0.02)
    events: list[Disconnect] = []
    async with Tiny() as server, running(client_of(server, config, [], events)):
        await server.peer(2)
    assert events[0].reason == "app ping failed: RuntimeError('no ping today')"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"app_ping": "ping"}, "exactly one"),
        ({"app_ping": "ping", "app_ping_interval": 1.0, "app_ping_idle": 1.0}, "exactly one"),
        ({"app_ping_interval": 1.0}, "needs an app_ping"),
        ({"app_ping": "ping", "app_ping_idle": 0}, "app_ping_idle must be positive"),
        ({"app_ping": "ping", "app_ping_interval": -1.0}, "app_ping_interval must be positive"),
        ({"app_ping": 42, "app_ping_interval": 1.0}, "str, bytes or a callable"),
    ],
)
def test_bad_app_ping_config_is_refused_with_the_reason(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        WsConfig(**fields)


SECRET = "s3cr3t+/=key"  # characters that URL-quoting changes
SPELLINGS = (SECRET, "s3cr3t%2B%2F%3Dkey", "s3cr3t%2B/%3Dkey", "s3cr3t")


@async_test()
async def test_secrets_never_appear_in_disconnect_reasons_or_log_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    path = "/feed?" + urllib.parse.urlencode({"token": SECRET})

    async def subscribe(conn: WsConnection) -> None:
        if len(server.peers) == 2:
            raise RuntimeError(f"refused key {SECRET}")
        conn.send("subscribe")

    events: list[Disconnect] = []
    async with Tiny() as server:
        client = client_of(server, QUIET, [], events, path, on_connect=subscribe, secrets=[SECRET])
        async with running(client):
            first = await server.peer(1)
            assert first.path == path and "s3cr3t%2B%2F%3Dkey" in path
            server.close_all(first.path)  # a close reason that quotes the URL
            await server.peer(3)  # the second connection's subscribe hook failed
            await until(lambda: len(events) == 2)
    closed, failed = (e.reason for e in events)
    assert closed == "closed by server: POLICY_VIOLATION /feed?token=***"
    assert failed == "subscribe failed: RuntimeError('refused key ***')"
    assert "token=***" in caplog.text and "key ***" in caplog.text  # the log lines were written
    for spelling in SPELLINGS:
        assert spelling not in caplog.text


@async_test()
async def test_without_secrets_the_reason_is_left_as_it_was() -> None:
    events: list[Disconnect] = []
    server = Tiny()
    async with server, running(client_of(server, QUIET, [], events, "/feed?token=abc")):
        await server.peer(1)
        server.close_all("/feed?token=abc")
        await until(lambda: len(events) == 1)
    assert events[0].reason == "closed by server: POLICY_VIOLATION /feed?token=abc"


def test_bad_url_error_hides_the_secret_in_every_spelling() -> None:
    async def nothing(frames: list[bytes], recv_ts: int) -> int:
        return 0

    url = "https://feed.example/ws?" + urllib.parse.urlencode({"token": SECRET, "raw": SECRET})
    with pytest.raises(ValueError, match="ws://") as error:
        WsClient(url, nothing, name="t", secrets=[SECRET])
    assert "token=***" in str(error.value)
    for spelling in SPELLINGS:
        assert spelling not in str(error.value)
