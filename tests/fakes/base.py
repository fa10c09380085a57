"""What every local fake exchange shares: a picows WebSocket server and an aiohttp REST app on
127.0.0.1, the connections it keeps, and the scripted faults.

A fake is a `FakeExchange` subclass that adds only its exchange's protocol: its connection
fields (a `ServerConnection` subclass made in `_connect`), what a text frame from the client does
(`_on_text`), what goes out on a timer (`_tick` / `_on_tick`), its REST routes (`_rest_routes`)
and its message shapes. The base gives it:

- lifecycle: `start()` / `stop()` / `async with`, `url` (plus `ws_path`) and `rest_url`;
- bookkeeping: `connections`, `open_connections()`, `wait_for`, `wait_connections`,
  `published` (what reached a client), `history` (every trade made, per market), `rejected`;
- faults: `drop_after(n)` (the n-th counted frame cuts its connection, no close frame),
  `drop_all()`, `silent` (for the subclass's `send` to honour), `send_raw`, `reject_next(status,
  retry_after)` for upgrades and `rest_reject_next(status, retry_after)` (or
  `rest_reject_after(n, ...)`) for REST requests;
- writing: `_write` (a data frame: counted in `frames_sent`, a step of `drop_after`), `_reply`
  (an answer to a request: neither), `_drop`.

`FakeFeed` is the part the market-data aggregator fakes share (Finnhub, Tiingo): a token, a
heartbeat message on a timer, JSON requests handed to `on_request`, one catch-all REST handler.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web
from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

RestHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def encode(message: Any) -> bytes:
    """Compact JSON, as exchanges write it."""
    return json.dumps(message, separators=(",", ":")).encode()


@dataclass
class ServerConnection:
    """What the server knows about one client connection (a fake adds its protocol's fields)."""

    id: int
    path: str = ""
    transport: WSTransport | None = None
    requests: list[Any] = field(default_factory=list)  # text messages from the client
    opened_at: float = 0.0
    last_rx: float = 0.0  # when the client last sent a frame (or connected)
    last_pong: float = 0.0
    frames_sent: int = 0
    pings_received: int = 0
    pongs_received: int = 0
    closed: bool = False
    close_reason: str = ""

    @property
    def open(self) -> bool:
        return self.transport is not None and not self.closed


class Listener(WSListener):
    """One client connection: protocol pings, pongs and closes here, text to the fake.

    It is given the fake's hooks (bound when the connection opens, so a subclass's or a test's
    override is the one called) rather than the fake itself."""

    def __init__(
        self,
        conn: ServerConnection,
        on_connected: Callable[[ServerConnection], None],
        on_text: Callable[[ServerConnection, bytes], None],
        answers_pings: Callable[[], bool],
    ) -> None:
        super().__init__()
        self.conn = conn
        self.on_connected = on_connected
        self.on_text = on_text
        self.answers_pings = answers_pings

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.conn.transport = transport
        self.conn.opened_at = self.conn.last_rx = self.conn.last_pong = time.monotonic()
        self.on_connected(self.conn)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        conn = self.conn
        conn.last_rx = time.monotonic()
        kind = frame.msg_type
        if kind is WSMsgType.PING:
            conn.pings_received += 1
            if self.answers_pings():
                transport.send_pong(frame.get_payload_as_bytes())
        elif kind is WSMsgType.PONG:
            conn.pongs_received += 1
            conn.last_pong = conn.last_rx
        elif kind is WSMsgType.CLOSE:
            conn.close_reason = conn.close_reason or "client closed"
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif kind is WSMsgType.TEXT:
            self.on_text(conn, frame.get_payload_as_bytes())

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.conn.closed = True


class FakeExchange:
    """A WebSocket server and a REST app on 127.0.0.1, scripted by the test that owns it."""

    name = "exchange"  # the picows logger is `fake-<name>`
    ws_path = ""  # what `url` adds after host and port
    upgrade_refusal = b"Too many requests"  # the body of a refused upgrade
    rest_refusal: Any = {"error": "Too many requests"}  # the JSON body of a refused REST request
    raw_frames_count = True  # whether `send_raw` frames are steps of `drop_after`
    connection_type: type[ServerConnection] = ServerConnection  # the fake's own record

    def __init__(
        self, markets: Iterable[str] = (), *, port: int = 0, rest_port: int = 0, seed: int = 1
    ) -> None:
        self.port = port
        self.rest_port = rest_port
        self.silent = False  # data stops; pings, pongs and heartbeats go on
        self.connections: list[Any] = []  # the subclass's ServerConnection
        self.history: dict[str, list[Any]] = {m: [] for m in markets}
        self.published: list[Any] = []
        self.rejected: list[Any] = []  # (path, status) of refused upgrades
        self._rng = random.Random(seed)
        self._drop_countdown: int | None = None
        self._rejects: list[tuple[int, str | None]] = []
        self._rest_rejects: list[tuple[int, str | None]] = []
        self._server: asyncio.Server | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The WebSocket endpoint to give a source."""
        return f"ws://127.0.0.1:{self.port}{self.ws_path}"

    @property
    def rest_url(self) -> str:
        """The REST endpoint to give a source."""
        return f"http://127.0.0.1:{self.rest_port}"

    async def start(self) -> Self:
        self._server = await ws_create_server(
            self._route,
            "127.0.0.1",
            self.port,
            enable_auto_pong=False,
            logger_name=f"fake-{self.name}",
        )
        self.port = self._server.sockets[0].getsockname()[1]
        app = web.Application()
        for path, handler in self._rest_routes():
            app.router.add_get(path, handler)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.rest_port).start()
        self.rest_port = self._runner.addresses[0][1]
        if self._tick() is not None:
            self._spawn(self._tick_loop())
        return self

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self.drop_all("server stopped")
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await asyncio.sleep(0)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- what tests inspect --------------------------------------------------------------

    def open_connections(self) -> list[Any]:
        return [c for c in self.connections if c.open]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until `predicate()` holds; TimeoutError after `timeout` seconds."""
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.005)

    async def wait_connections(
        self,
        count: int,
        timeout: float = 5.0,
        where: Callable[[Any], bool] | None = None,
    ) -> Any:
        """Wait until `count` connections have opened in total (of those `where` holds for);
        return the latest of them."""

        def chosen() -> list[Any]:
            return [c for c in self._opened() if where is None or where(c)]

        await self.wait_for(lambda: len(chosen()) >= count, timeout)
        return chosen()[count - 1]

    def _opened(self) -> list[Any]:
        """Every connection that opened, open or not, in order."""
        return [c for c in self.connections if c.transport is not None]

    # -- faults --------------------------------------------------------------------------

    def drop_after(self, frames: int) -> None:
        """Cut the connection (TCP close, no close frame) once `frames` more counted frames
        are out."""
        self._drop_countdown = frames

    def drop_all(self, reason: str = "dropped") -> None:
        for conn in self.open_connections():
            self._drop(conn, reason)

    def reject_next(
        self, status: int = 429, retry_after: str | None = None, count: int = 1
    ) -> None:
        """Refuse the next `count` WebSocket upgrades with `status` (429, 418, ...)."""
        self._rejects.extend([(status, retry_after)] * count)

    def rest_reject_next(
        self, status: int = 429, retry_after: str | None = None, count: int = 1
    ) -> None:
        """Answer the next `count` REST requests with `status` (and `Retry-After`)."""
        self._rest_rejects.extend([(status, retry_after)] * count)

    def rest_reject_after(
        self, answered: int, status: int = 500, retry_after: str | None = None, count: int = 1
    ) -> None:
        """Answer `answered` more REST requests, then refuse `count` with `status` (a server
        that fails in the middle of a long paging run)."""
        self._rest_rejects.extend([(0, None)] * answered + [(status, retry_after)] * count)

    def skip(self, market: str, count: int = 1) -> list[Any]:
        """Trades that happen but never reach a client: the gap a source must notice."""
        return [self.trade(market) for _ in range(count)]

    def publish(self, market: str, **trade: Any) -> Any:
        """Make one trade and send it."""
        event = self.trade(market, **trade)
        self.send(event)
        return event

    def send_raw(self, payload: bytes | str) -> int:
        """Write any text message (a malformed one, say) to every open connection."""
        data = payload.encode() if isinstance(payload, str) else payload
        return sum(
            self._write(conn, data, count=self.raw_frames_count) for conn in self.open_connections()
        )

    # -- for subclasses ------------------------------------------------------------------

    def trade(self, market: str, **kwargs: Any) -> Any:
        """The next trade of `market`, in the exchange's shape, made but not sent."""
        raise NotImplementedError

    def send(self, *trades: Any) -> int:
        """Write trades to the connections subscribed to them; returns messages sent."""
        raise NotImplementedError

    def _connect(self, request: WSUpgradeRequest, path: str) -> ServerConnection | None:
        """The record of a new connection to `path`; None answers 404."""
        return self.connection_type(len(self.connections), path)

    def _refuse(self, request: WSUpgradeRequest, path: str) -> int | None:
        """The status to refuse an upgrade with (besides those scripted), or None."""
        return None

    def _note_rejection(self, path: str, status: int) -> None:
        self.rejected.append((path, status))

    def _on_connected(self, conn: ServerConnection) -> None:
        """The connection is open (a greeting goes here)."""

    def _on_text(self, conn: ServerConnection, payload: bytes) -> None:
        raise NotImplementedError

    def _answers_pings(self) -> bool:
        return True

    def _tick(self) -> float | None:
        """Seconds between `_on_tick` rounds over the open connections; None: no rounds."""
        return None

    def _on_tick(self, conn: ServerConnection, now: float) -> None:
        """Pings, heartbeats, deadlines: called for each open connection every `_tick()`."""

    def _rest_routes(self) -> list[tuple[str, RestHandler]]:
        return []

    def _rest_refusal(self) -> web.Response | None:
        """The scripted refusal of this REST request, if one is due."""
        if not self._rest_rejects:
            return None
        status, retry_after = self._rest_rejects.pop(0)
        if status == 0:  # let through (`rest_reject_after`)
            return None
        headers = {"Retry-After": retry_after} if retry_after is not None else None
        return web.json_response(self.rest_refusal, status=status, headers=headers)

    def _write(self, conn: ServerConnection, data: bytes, *, count: bool = True) -> bool:
        """A frame of data (counted in `frames_sent`, and with `count` a step of `drop_after`);
        False when the connection is no longer open."""
        if not conn.open:
            return False
        assert conn.transport is not None
        conn.transport.send(WSMsgType.TEXT, data)
        conn.frames_sent += 1
        if count:
            self._count_down(conn)
        return True

    def _count_down(self, conn: ServerConnection, unit: str = "frame") -> None:
        if self._drop_countdown is not None:
            self._drop_countdown -= 1
            if self._drop_countdown <= 0:
                self._drop_countdown = None
                self._drop(conn, f"dropped after scripted {unit} count")

    def _reply(self, conn: ServerConnection, message: Any) -> None:
        """An answer to the client (JSON, or bytes as they are): neither counted nor a step."""
        if conn.open and conn.transport is not None:
            data = message if isinstance(message, bytes) else encode(message)
            conn.transport.send(WSMsgType.TEXT, data)

    def _drop(self, conn: ServerConnection, reason: str = "dropped") -> None:
        conn.close_reason = conn.close_reason or reason
        conn.closed = True  # nothing more is written to it
        if conn.transport is not None:
            conn.transport.disconnect(graceful=True)  # flush what was sent, then FIN

    def _walk(self, price: float) -> float:
        """The next price of a random walk in steps of at most 0.1%."""
        return round(price * (1 + self._rng.uniform(-0.001, 0.001)), 2)

    async def _pace(self, rate: float, count: int | None, emit: Callable[[int], object]) -> None:
        """Call `emit(0)`, `emit(1)`, ... at `rate` calls a second, `count` times (or forever)."""
        start = time.monotonic()
        done = 0
        while count is None or done < count:
            due = int((time.monotonic() - start) * rate) + 1 - done
            if count is not None:
                due = min(due, count - done)
            for _ in range(max(due, 0)):
                emit(done)
                done += 1
            await asyncio.sleep(min(0.01, 1 / rate))

    # -- internals -----------------------------------------------------------------------

    def _route(
        self, request: WSUpgradeRequest
    ) -> WSListener | WSUpgradeResponseWithListener | None:
        path = request.path.decode()
        if self._rejects:
            status, retry_after = self._rejects.pop(0)
        else:
            status, retry_after = self._refuse(request, path), None
        if status is not None:
            self._note_rejection(path, status)
            headers = {"Retry-After": retry_after} if retry_after is not None else None
            response = WSUpgradeResponse.create_error_response(
                status, self.upgrade_refusal, headers
            )
            return WSUpgradeResponseWithListener(response, None)
        conn = self._connect(request, path)
        if conn is None:
            return None
        self.connections.append(conn)
        return Listener(conn, self._on_connected, self._on_text, self._answers_pings)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self._tick() or 0.0)
            now = time.monotonic()
            for conn in self.open_connections():
                self._on_tick(conn, now)


# -- aggregators ---------------------------------------------------------------------------


@dataclass
class FeedConnection(ServerConnection):
    subscriptions: set[str] = field(default_factory=set)
    heartbeats_sent: int = 0
    authorized: bool = False


class FakeFeed(FakeExchange):
    """A market-data aggregator: token auth, a heartbeat message every `heartbeat_interval`
    seconds to subscribed connections (also while `silent`), JSON requests to `on_request`,
    REST by `rest(path, query, headers)`. `published` holds each trade message that reached a
    client, as the list of its trades."""

    connection_type = FeedConnection
    upgrade_refusal = b'{"error":"refused"}'
    rest_refusal = {"error": "rate limited"}
    ws_path = "/"

    def __init__(self, token: str, *, heartbeat_interval: float = 10.0, seed: int = 1) -> None:
        super().__init__(seed=seed)
        self.token = token
        self.heartbeat_interval = heartbeat_interval
        self.rng = self._rng
        self.rejected: list[int] = []  # statuses of refused upgrades
        self.rest_requests: list[tuple[str, dict[str, str]]] = []

    async def wait_for_subscriptions(
        self, count: int, connection: int = 1, timeout: float = 5.0
    ) -> FeedConnection:
        """Wait until the `connection`-th connection opened (1-based) holds `count`
        subscriptions; return it."""

        def ready() -> bool:
            opened = self._opened()
            return len(opened) >= connection and len(opened[connection - 1].subscriptions) >= count

        await self.wait_for(ready, timeout)
        return self._opened()[connection - 1]

    def reject_rest_next(self, status: int = 429, retry_after: str | None = None) -> None:
        self.rest_reject_next(status, retry_after)

    def close_quoting_path(self) -> None:
        """Close every connection with a reason that quotes its request path (and token)."""
        for conn in self.open_connections():
            assert conn.transport is not None
            conn.transport.send_close(WSCloseCode.POLICY_VIOLATION, f"bad {conn.path}".encode())
            self._drop(conn)

    # -- for subclasses ------------------------------------------------------------------

    def accept(self, request: WSUpgradeRequest, path: str) -> int:
        """HTTP status for an upgrade request (200 accepts)."""
        return 200

    def on_request(self, conn: FeedConnection, message: Any) -> None:
        raise NotImplementedError

    def heartbeat(self) -> bytes | None:
        return None

    def rest(self, path: str, query: dict[str, str], headers: Any) -> tuple[int, Any]:
        return 404, {"error": "not found"}

    # -- internals -----------------------------------------------------------------------

    def _refuse(self, request: WSUpgradeRequest, path: str) -> int | None:
        status = self.accept(request, path)
        return None if status == 200 else status

    def _note_rejection(self, path: str, status: int) -> None:
        self.rejected.append(status)

    def _on_text(self, conn: ServerConnection, payload: bytes) -> None:
        assert isinstance(conn, FeedConnection)
        try:
            message = json.loads(payload)
        except ValueError:
            message = payload
        conn.requests.append(message)
        self.on_request(conn, message)

    def _tick(self) -> float:
        return self.heartbeat_interval

    def _on_tick(self, conn: ServerConnection, now: float) -> None:
        beat = self.heartbeat()
        if beat is not None and isinstance(conn, FeedConnection) and conn.subscriptions:
            self._reply(conn, beat)
            conn.heartbeats_sent += 1

    def _rest_routes(self) -> list[tuple[str, RestHandler]]:
        return [("/{path:.*}", self._rest_handler)]

    async def _rest_handler(self, request: web.Request) -> web.Response:
        self.rest_requests.append((request.path, dict(request.query)))
        refused = self._rest_refusal()
        if refused is not None:
            return refused
        status, body = self.rest(request.path, dict(request.query), request.headers)
        return web.json_response(body, status=status)
