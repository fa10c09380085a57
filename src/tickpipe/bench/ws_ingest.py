"""WebSocket ingest on loopback: frames/s into decoded trade batches, picows beside websockets.

A server process (picows) pushes pre-encoded Binance combined-stream trade frames to one
client as fast as the socket takes them. In this process, on one core, each client library
receives them and hands them to `parse_frames`, as a source would: tickpipe's own `WsClient`
(picows, frames batched per socket read) and the `websockets` library (one `recv` per frame,
batched before parsing, so both pay the same parse cost). Two figures per library, from the
first frame to the last: frames per wall-clock second, and frames per CPU second of this
process (what the library costs, whatever the network or other processes do).

Run: `python -m tickpipe.bench.ws_ingest --frames 300000 --cpu 1`. Measured here
(2026-11-21, the machine shared with other work): picows through WsClient and parse_frames
0.30-0.34M frames/s wall, 0.34-0.39M per CPU second; websockets 0.08-0.16M, 2.2-4x less. In
some runs the websockets client's wall figure collapses to 4k-25k frames/s while its CPU
figure stays near 0.2M: it then sits in epoll with both sockets' queues empty, and `ss -ti` on
the server's socket shows the sender receive-window limited ~100% of the time with TCP's
persist timer (~200 ms) running, i.e. the client's kernel reopens the window only on a window
probe. The CPU figure is therefore the one that compares the libraries.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import os
import time
from collections.abc import Callable
from typing import NamedTuple

FRAME_CHUNK = 2_000  # frames per parse call on the websockets side
SYMBOLS = [f"S{i}USDT" for i in range(100)]


def _frames(count: int) -> list[bytes]:
    out = []
    for i in range(count):
        symbol = SYMBOLS[i % len(SYMBOLS)]
        event = {"e": "trade", "E": 1_700_000_000_000 + i, "s": symbol, "t": 1_000_000 + i,
                 "p": f"{100 + i % 97 / 7:.8f}", "q": "0.01000000", "T": 1_700_000_000_000 + i,
                 "m": bool(i & 1), "M": True}  # fmt: skip
        out.append(json.dumps({"stream": f"{symbol.lower()}@trade", "data": event}).encode())
    return out


def _text_frame(payload: bytes) -> bytes:
    """One unmasked WebSocket text frame (RFC 6455 5.2), as a server sends it."""
    n = len(payload)
    if n < 126:
        return bytes([0x81, n]) + payload
    if n < 1 << 16:
        return bytes([0x81, 126]) + n.to_bytes(2, "big") + payload
    return bytes([0x81, 127]) + n.to_bytes(8, "big") + payload


def _wire(frames: list[bytes]) -> bytes:
    return b"".join(_text_frame(f) for f in frames)


def _serve(port_out: multiprocessing.connection.Connection, total: int) -> None:
    """The server process: send `total` frames to each client that connects."""
    from picows import WSListener, WSUpgradeRequest, ws_create_server

    frames = _frames(10_000)
    # The frames pre-encoded on the wire (server to client: unmasked text frames) and written
    # in large blocks, so the server is never what limits either client.
    wire = _wire(frames)

    class Pusher(WSListener):
        def on_ws_connected(self, transport) -> None:
            asyncio.get_running_loop().create_task(self._push(transport))

        async def _push(self, transport) -> None:
            underlying = transport.underlying_transport
            sent = 0
            while sent < total and not underlying.is_closing():
                count = min(len(frames), total - sent)
                underlying.write(wire if count == len(frames) else _wire(frames[:count]))
                sent += count
                await asyncio.sleep(0)  # let other connections' pushers run
                while underlying.get_write_buffer_size() > 4 * 1024 * 1024:
                    await asyncio.sleep(0.0005)

    async def main() -> None:
        def route(request: WSUpgradeRequest) -> Pusher:
            return Pusher()

        logging.getLogger("bench-server").setLevel(logging.ERROR)  # flow-control chatter
        server = await ws_create_server(route, "127.0.0.1", 0, logger_name="bench-server")
        port_out.send(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(main())


class Rates(NamedTuple):
    wall: float  # frames per wall-clock second
    cpu: float  # frames per CPU second of the receiving process


async def _tickpipe_client(url: str, total: int, parse: Callable) -> Rates:
    from tickpipe.sources.ws import WsClient

    done = asyncio.Event()
    got = 0
    started = cpu_started = 0.0

    async def on_frames(frames: list[bytes], recv_ts: int) -> int:
        nonlocal got, started, cpu_started
        if not got:
            started, cpu_started = time.perf_counter(), time.process_time()
        got += len(parse(frames))
        if got >= total:
            done.set()
        return len(frames)

    client = WsClient(url, on_frames, name="bench")
    task = asyncio.create_task(client.run())
    await done.wait()
    rates = Rates(
        total / (time.perf_counter() - started), total / (time.process_time() - cpu_started)
    )
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return rates


async def _websockets_client(url: str, total: int, parse: Callable) -> Rates:
    from websockets.asyncio.client import connect

    got = 0
    pending: list[bytes] = []
    # A deep receive queue: websockets' default (16 frames) pauses reading constantly.
    async with connect(url, max_size=None, max_queue=None, compression=None) as ws:
        first = await ws.recv(decode=False)
        started, cpu_started = time.perf_counter(), time.process_time()
        pending.append(first)
        while got + len(pending) < total:
            pending.append(await ws.recv(decode=False))
            if len(pending) >= FRAME_CHUNK:
                got += len(parse(pending))
                pending = []
        got += len(parse(pending))
        return Rates(
            total / (time.perf_counter() - started), total / (time.process_time() - cpu_started)
        )


def measure(frames: int = 500_000, cpu: int | None = None) -> dict[str, Rates]:
    """Frames/s into decoded batches for each client library, in one run."""
    from tickpipe.sources.binance.parse import InstrumentIndex, parse_frames

    index = InstrumentIndex.for_symbols(SYMBOLS)

    def parse(batch: list[bytes]):
        return parse_frames(batch, 0, index)[0]

    receive, send = multiprocessing.Pipe(duplex=False)
    server = multiprocessing.get_context("spawn").Process(
        target=_serve, args=(send, frames), daemon=True
    )
    server.start()
    try:
        port = receive.recv()
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        url = f"ws://127.0.0.1:{port}"
        return {
            "picows (tickpipe WsClient)": asyncio.run(_tickpipe_client(url, frames, parse)),
            "websockets": asyncio.run(_websockets_client(url, frames, parse)),
        }
    finally:
        server.kill()
        server.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=500_000)
    parser.add_argument("--cpu", type=int, default=None, help="pin the clients to this CPU")
    args = parser.parse_args()
    results = measure(args.frames, args.cpu)
    base = results["websockets"]
    print(f"{'':<28} {'wall frames/s':>14} {'CPU frames/s':>14}  vs websockets (wall, CPU)")
    for name, rate in results.items():
        print(
            f"{name:<28} {rate.wall:>14,.0f} {rate.cpu:>14,.0f}"
            f"  {rate.wall / base.wall:5.1f}x {rate.cpu / base.cpu:5.1f}x"
        )


if __name__ == "__main__":
    main()
