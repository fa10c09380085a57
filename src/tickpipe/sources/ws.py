"""The WebSocket connection every exchange connector reuses.

`WsClient.run()` keeps one connection to a feed open forever: it connects, calls the source's
subscribe hook (so a reconnect resubscribes by itself), hands received frames to the source in
batches, watches two liveness timers (any frame; data frames) and reconnects with jittered,
capped exponential backoff. It never interprets a payload: the source's frame callback returns
how many of the frames were data, which is what the data timer watches.

Frames are collected as picows parses them and handed over once per socket read (picows marks
the last frame of each read), so a busy feed arrives as a few large batches rather than many
single frames. A feed that sends one trade per frame fills each read with one frame, so within
`coalesce_s` (2 ms) of a hand-over the next one waits and takes every frame read meanwhile:
one parse per 2 ms at most, never more than that late (after a quiet spell, and in a
connection's first `coalesce_after_s`, at once). Batches wait in a queue bounded in frames; when
the source is slow (its callback awaits the transport) and the queue is full, reading from the
socket pauses until it drains.

Two things exchanges need beyond the WebSocket protocol also live here, so no connector keeps
its own task for them: an application-level ping (`WsConfig.app_ping`: a JSON or text message
sent on a fixed interval or after a quiet spell, per connection), and keeping secrets (an API
token in the URL or the first message) out of everything the helper says: log lines,
Disconnect reasons and exception messages (`WsClient(secrets=...)`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
import urllib.parse
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from picows import (
    WSAutoPingStrategy,
    WSCloseCode,
    WSError,
    WSFrame,
    WSInvalidStatusError,
    WSListener,
    WSMsgType,
    WSTransport,
    ws_connect,
)

from tickpipe.credentials import redact_secrets, secret_pattern
from tickpipe.records import Disconnect
from tickpipe.sources import SourceStats

log = logging.getLogger(__name__)

FrameCallback = Callable[[list[bytes], int], Awaitable[int]]
"""Takes frames and their receipt time (integer microseconds); returns how many were data."""

AppPingPayload = str | bytes | Callable[[], str | bytes]
"""An application ping: a fixed message, or a function making each one (a fresh request id)."""

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_CONTINUATION = WSMsgType.CONTINUATION
_PING = WSMsgType.PING
_PONG = WSMsgType.PONG
_CLOSE = WSMsgType.CLOSE


@dataclass(frozen=True, slots=True)
class WsConfig:
    """Timings (seconds) and bounds of one WebSocket feed. None switches a timer off."""

    connect_timeout: float = 10.0  # TCP connect, TLS and the HTTP upgrade together
    idle_timeout: float | None = 60.0  # no frame at all (data, ping, pong): the link is dead
    data_timeout: float | None = 300.0  # no data frame: the feed is stuck though the link lives
    ping_interval: float | None = None  # send a ping after this long without incoming frames
    ping_timeout: float = 10.0  # reconnect when our ping gets no pong within this
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    backoff_factor: float = 2.0
    backoff_jitter: float = 0.5  # each delay is scaled by a random factor in [1 - jitter, 1]
    stable_after: float = 60.0  # uptime after which the backoff starts from the beginning again
    rate_limit_backoff: float = 60.0  # HTTP 429/418 without a usable Retry-After header
    max_lifetime: float | None = None  # reconnect on purpose before the server cuts us off
    max_batch_frames: int = 4096
    max_pending_frames: int = 65536  # received but not yet taken by the source; reading pauses
    # Frames received within this long of the previous hand-over wait and go with the next
    # one: a feed sending one trade per frame costs one parse and hand-over per this time
    # instead of one per frame, at most this much later (the engine's steps are paced apart,
    # `runtime/pacing.py`). None: each read at once.
    coalesce_s: float | None = 0.002
    # ...but not in a connection's first seconds: a connector's catch-up refill after a
    # reconnect races the first live frames, and must see where the live stream resumed.
    coalesce_after_s: float = 1.0
    max_frame_size: int = 10 * 1024 * 1024
    # Application-level ping (a text frame such as {"op":"ping"}), for exchanges that want one
    # besides or instead of protocol pings. Its answer is a frame like any other: it feeds the
    # any-frame timer and reaches the source, which drops it. Exactly one trigger with a payload:
    app_ping: AppPingPayload | None = None
    app_ping_interval: float | None = None  # send every this many seconds, whatever arrives
    app_ping_idle: float | None = None  # send after this long with no frame in and no ping out

    def __post_init__(self) -> None:
        positive = (
            "connect_timeout", "idle_timeout", "data_timeout", "ping_interval", "ping_timeout",
            "backoff_max", "max_lifetime", "max_batch_frames", "max_pending_frames",
            "max_frame_size", "app_ping_interval", "app_ping_idle", "coalesce_s",
        )  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"ws config: {name} must be positive, not {value}")
        for name in ("backoff_initial", "stable_after", "rate_limit_backoff", "coalesce_after_s"):
            if getattr(self, name) < 0:
                raise ValueError(
                    f"ws config: {name} must not be negative, not {getattr(self, name)}"
                )
        if self.backoff_factor < 1:
            raise ValueError(
                f"ws config: backoff_factor must be at least 1, not {self.backoff_factor}"
            )
        if self.ping_interval is not None and self.ping_timeout > self.ping_interval:
            raise ValueError("ws config: ping_timeout must not exceed ping_interval")
        if not 0 <= self.backoff_jitter <= 1:
            raise ValueError(
                f"ws config: backoff_jitter must be in [0, 1], not {self.backoff_jitter}"
            )
        triggers = (self.app_ping_interval is not None) + (self.app_ping_idle is not None)
        if self.app_ping is None and triggers:
            raise ValueError("ws config: app_ping_interval or app_ping_idle needs an app_ping")
        if self.app_ping is not None and triggers != 1:
            raise ValueError(
                "ws config: app_ping needs exactly one of app_ping_interval and app_ping_idle"
            )
        ping = self.app_ping
        if ping is not None and not isinstance(ping, (str, bytes)) and not callable(ping):
            raise ValueError("ws config: app_ping must be str, bytes or a callable")


def backoff_delay(config: WsConfig, attempt: int, rng: random.Random) -> float:
    """Delay before reconnect attempt `attempt` (0-based): exponential, capped, jittered."""
    growth = config.backoff_factor ** min(attempt, 64)
    base = min(config.backoff_max, config.backoff_initial * growth)
    return base * (1.0 - config.backoff_jitter * rng.random())


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds; an HTTP date or nonsense is absent)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if 0 <= seconds < math.inf else None


def check_ws_url(url: str, secrets: Sequence[str] = ()) -> None:
    """Refuse a URL that is not ws:// or wss:// with a host; the error never shows `secrets`."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("ws", "wss") or not parsed.hostname:
        shown = redact_secrets(repr(url), secrets)
        raise ValueError(f"url must be ws:// or wss:// with a host, not {shown}")


class WsConnection:
    """One open connection, as the subscribe hook and the source see it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.transport: WSTransport | None = None
        self.connected_at = 0.0  # loop time
        self.close_reason: str | None = None
        self.planned = False

    def send(self, message: str | bytes) -> None:
        """Send one text frame (a subscribe request, for example)."""
        if self.transport is None or self.transport.is_disconnected:
            raise ConnectionError("not connected")
        self.transport.send(_TEXT, message)

    def reconnect(self, reason: str, *, planned: bool = True) -> None:
        """Close this connection; the client reconnects (at once when `planned`)."""
        self.close(reason, planned=planned, abort=False)

    def close(self, reason: str, *, planned: bool, abort: bool) -> None:
        """Close now (`abort`: without the closing handshake); the first reason given is kept."""
        if self.close_reason is None:
            self.close_reason = reason
            self.planned = planned
        transport = self.transport
        if transport is not None and not transport.is_disconnected:
            transport.send_close(WSCloseCode.GOING_AWAY)
            transport.disconnect(graceful=not abort)


class _Session(WSListener):
    """picows listener of one connection: collects frames, answers pings, keeps the timers."""

    def __init__(self, conn: WsConnection, config: WsConfig, stats: SourceStats) -> None:
        super().__init__()
        self.conn = conn
        self.config = config
        self.stats = stats
        self.loop = asyncio.get_running_loop()
        self.frames: list[bytes] = []
        self.fragments: list[bytes] = []
        self.chunks: deque[tuple[list[bytes], int]] = deque()
        self.pending = 0
        self.paused = False
        self.busy = False
        self.disconnected = False
        self.wake = asyncio.Event()
        now = self.loop.time()
        self.last_frame = now
        self.last_data = now

    # picows callbacks: synchronous, in the event loop, once per frame.

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.conn.transport = transport
        self.conn.connected_at = self.last_frame = self.last_data = self.loop.time()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is _TEXT or kind is _BINARY:
            if frame.fin:
                self.frames.append(frame.get_payload_as_bytes())
            else:
                self.fragments = [frame.get_payload_as_bytes()]
        elif kind is _CONTINUATION:
            self.fragments.append(frame.get_payload_as_bytes())
            if frame.fin:
                self.frames.append(b"".join(self.fragments))
                self.fragments = []
            elif sum(map(len, self.fragments)) > self.config.max_frame_size:
                self.fragments = []
                self.conn.close("message too big", planned=False, abort=True)
        elif kind is _PING:
            # Answered here rather than by picows so that pings count for the any-frame timer.
            transport.send_pong(frame.get_payload_as_bytes())
        elif kind is _CLOSE:
            code = frame.get_close_code()
            if self.conn.close_reason is None and not transport.is_close_frame_sent:
                reason = frame.get_close_reason() or ""
                self.conn.close_reason = f"closed by server: {_code_name(code)} {reason}".rstrip()
            transport.send_close(code)
            transport.disconnect()
        if frame.last_in_buffer or len(self.frames) >= self.config.max_batch_frames:
            self.flush()

    def is_user_specific_pong(self, frame: WSFrame) -> bool:
        # Called instead of on_ws_frame for the pong to our own ping.
        if frame.msg_type is _PONG:
            if frame.last_in_buffer:
                self.flush()
            return True
        return False

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.flush()
        self.disconnected = True
        self.wake.set()

    def flush(self) -> None:
        self.last_frame = self.loop.time()
        frames = self.frames
        if not frames:
            return
        self.frames = []
        self.chunks.append((frames, time.time_ns() // 1000))
        self.pending += len(frames)
        self.stats.frames += len(frames)
        self.wake.set()
        if self.pending >= self.config.max_pending_frames and not self.paused:
            transport = self.conn.transport
            if transport is not None and not transport.is_disconnected:
                transport.underlying_transport.pause_reading()
                self.paused = True

    # Tasks of the connection.

    async def deliver(self, on_frames: FrameCallback) -> None:
        """Hand queued frames to the source until the connection is gone and the queue empty."""
        limit = self.config.max_batch_frames
        resume_at = self.config.max_pending_frames // 2
        coalesce = self.config.coalesce_s or 0.0
        loop = self.loop
        handed_at = -math.inf  # loop time of the last hand-over
        while True:
            if not self.chunks:
                if self.disconnected:
                    return
                self.wake.clear()
                await self.wake.wait()
                continue
            # Soon after a hand-over, let more frames arrive first (one parse for many).
            wait = handed_at + coalesce - loop.time()
            settled = loop.time() - self.conn.connected_at >= self.config.coalesce_after_s
            if wait > 0 and settled and self.pending < limit and not self.disconnected:
                await asyncio.sleep(wait)
            handed_at = loop.time()
            frames, recv_ts = self.chunks.popleft()
            while self.chunks and len(frames) + len(self.chunks[0][0]) <= limit:
                frames.extend(self.chunks.popleft()[0])
            self.pending -= len(frames)
            self.busy = True
            try:
                data = await on_frames(frames, recv_ts)
            finally:
                self.busy = False
            if data:
                self.last_data = self.loop.time()
            if self.paused and self.pending <= resume_at:
                self.paused = False
                transport = self.conn.transport
                if transport is not None and not transport.is_disconnected:
                    transport.underlying_transport.resume_reading()

    async def watch(self) -> None:
        """Reconnect when a liveness timer runs out or the connection has lived long enough."""
        cfg = self.config
        limits = [t for t in (cfg.idle_timeout, cfg.data_timeout, cfg.max_lifetime) if t]
        if not limits:
            return
        period = min(1.0, max(0.005, min(limits) / 4))
        while not self.disconnected:
            await asyncio.sleep(period)
            now = self.loop.time()
            # While the source holds us up, silence is ours, not the feed's.
            if self.paused:
                self.last_frame = now
            if self.paused or self.busy or self.chunks:
                self.last_data = now
            if cfg.idle_timeout and now - self.last_frame > cfg.idle_timeout:
                self.conn.close(f"no frame for {cfg.idle_timeout:g}s", planned=False, abort=True)
                return
            if cfg.data_timeout and now - self.last_data > cfg.data_timeout:
                self.conn.close(f"no data for {cfg.data_timeout:g}s", planned=False, abort=True)
                return
            if cfg.max_lifetime and now - self.conn.connected_at >= cfg.max_lifetime:
                self.conn.close("planned: connection lifetime", planned=True, abort=False)
                return

    async def app_ping(self) -> None:
        """Send the configured application ping on its interval or after a quiet spell."""
        cfg = self.config
        payload = cfg.app_ping
        if payload is None:
            return
        loop = self.loop
        last_sent = loop.time()
        while not self.disconnected:
            if cfg.app_ping_interval is not None:
                due = last_sent + cfg.app_ping_interval
            else:
                due = max(self.last_frame, last_sent) + (cfg.app_ping_idle or 0.0)
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            transport = self.conn.transport
            if transport is None or transport.is_disconnected:
                return
            try:
                message = payload() if callable(payload) else payload
                transport.send(_TEXT, message.encode() if isinstance(message, str) else message)
            except Exception as exc:
                self.conn.close(f"app ping failed: {exc!r}", planned=False, abort=True)
                return
            last_sent = loop.time()


@dataclass(slots=True)
class _Outcome:
    reason: str
    uptime: float = 0.0
    planned: bool = False
    retry_after: float | None = None


class WsClient:
    """Keeps a WebSocket feed connected and its frames flowing to `on_frames`, until cancelled."""

    def __init__(
        self,
        url: str,
        on_frames: FrameCallback,
        *,
        name: str,
        config: WsConfig | None = None,
        on_connect: Callable[[WsConnection], Awaitable[None]] | None = None,
        on_disconnect: Callable[[Disconnect], None] | None = None,
        stats: SourceStats | None = None,
        rng: random.Random | None = None,
        secrets: Sequence[str] = (),
    ) -> None:
        """`secrets` (an API token in `url` or in the subscribe message, say) are shown as
        `***` in every log line, Disconnect reason and exception message of the helper."""
        self._secrets = secret_pattern(secrets)
        check_ws_url(url, secrets)
        self.url = url
        self.name = name
        self.config = config or WsConfig()
        self.stats = stats if stats is not None else SourceStats()
        self.link = self.stats.link()  # this connection's part of the source's `connected`
        self.connection: WsConnection | None = None
        self._on_frames = on_frames
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect or (lambda _event: None)
        self._rng = rng or random.Random()

    async def run(self) -> None:
        """Connect, deliver, reconnect, forever. Ends only by cancellation or a callback error."""
        attempt = 0
        while True:
            outcome = await self._connect_once()
            if outcome.uptime >= self.config.stable_after:
                attempt = 0
            if outcome.planned:
                delay = 0.0
            else:
                delay = backoff_delay(self.config, attempt, self._rng)
                attempt += 1
                if outcome.retry_after is not None:
                    delay = max(delay, outcome.retry_after)
            self.stats.reconnects += 1
            reason = self._redact(outcome.reason)
            log.info("%s", self._redact(f"{self.name}: {reason}; reconnecting in {delay:.2f}s"))
            self._on_disconnect(
                Disconnect(
                    source=self.name,
                    ts=time.time_ns() // 1000,
                    reason=reason,
                    reconnect_in=delay,
                )
            )
            await asyncio.sleep(delay)

    def _redact(self, text: str) -> str:
        return redact_secrets(text, self._secrets)

    async def _connect_once(self) -> _Outcome:
        cfg = self.config
        conn = WsConnection(self.url)
        session = _Session(conn, cfg, self.stats)
        try:
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation.
            async with asyncio.timeout(cfg.connect_timeout):
                transport, _ = await ws_connect(
                    lambda: session,
                    self.url,
                    websocket_handshake_timeout=cfg.connect_timeout,
                    enable_auto_ping=cfg.ping_interval is not None,
                    auto_ping_idle_timeout=cfg.ping_interval or 0,
                    auto_ping_reply_timeout=cfg.ping_timeout,
                    auto_ping_strategy=WSAutoPingStrategy.PING_WHEN_IDLE,
                    enable_auto_pong=False,
                    max_frame_size=cfg.max_frame_size,
                )
        except WSInvalidStatusError as exc:
            return self._refused(exc)
        except (OSError, TimeoutError, WSError) as exc:
            return _Outcome(f"connect failed: {exc.__class__.__name__}: {exc}".rstrip(": "))
        self.connection = conn
        self.link.up = True
        deliver = asyncio.create_task(session.deliver(self._on_frames))
        watch = asyncio.create_task(session.watch())
        closed = asyncio.ensure_future(transport.wait_disconnected())
        pinger: asyncio.Task[None] | None = None
        try:
            if self._on_connect is not None:
                try:
                    await self._on_connect(conn)
                except Exception as exc:
                    conn.close(f"subscribe failed: {exc!r}", planned=False, abort=True)
            if cfg.app_ping is not None:
                # After the subscribe hook, so the first request on the wire is the subscribe.
                pinger = asyncio.create_task(session.app_ping())
            await asyncio.wait([deliver, closed], return_when=asyncio.FIRST_COMPLETED)
            if deliver.done() and deliver.exception() is not None:
                conn.close("source failed", planned=False, abort=True)
                deliver.result()
            # Frames already received are handed over before reconnecting.
            await deliver
            try:
                await closed
            except Exception as exc:  # picows re-raises what ended the connection
                conn.close_reason = conn.close_reason or f"error: {exc}"
        finally:
            watch.cancel()
            if pinger is not None:
                pinger.cancel()
            if not transport.is_disconnected:
                conn.close("stopped", planned=False, abort=True)
            deliver.cancel()
            closed.cancel()
            self.link.up = False
            self.connection = None
        uptime = session.loop.time() - conn.connected_at
        return _Outcome(_disconnect_reason(conn, transport), uptime, conn.planned)

    def _refused(self, exc: WSInvalidStatusError) -> _Outcome:
        response = exc.response
        status = int(response.status) if response is not None else 0
        if status in (429, 418):
            header = response.headers.get("Retry-After") if response is not None else None
            wait = retry_after_seconds(header)
            if wait is None:
                wait = self.config.rate_limit_backoff
            return _Outcome(f"rate limited: HTTP {status}, retry after {wait:g}s", retry_after=wait)
        return _Outcome(f"upgrade refused: HTTP {status}")


def _disconnect_reason(conn: WsConnection, transport: WSTransport) -> str:
    if conn.close_reason:
        return conn.close_reason
    handshake = transport.close_handshake
    if handshake is not None and handshake.sent is not None:
        # picows closed it itself: a ping without pong or a protocol error.
        return f"closed: {handshake.sent.reason or _code_name(handshake.sent.code)}"
    return "connection lost"


def _code_name(code: WSCloseCode) -> str:
    return code.name or str(code.value)
