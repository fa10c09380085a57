"""Raw-frame recording: every WebSocket frame a connector receives, kept as it came.

`tickpipe run --record DIR` hands each list of frames a connection delivered (with its receipt
time in µs and the connection: shard number and how often it had connected) to a
`FrameRecorder`. The event loop only appends to a bounded queue; a thread writes the records
as JSON lines, compresses them with zstd (pyarrow's codec, one zstd frame per block, so the
files read with `zstd -dc` too) and rolls the files by size and age. A delivery of frames is
one JSON line (`FramesMeta`: time, connection, the frames' sizes) followed by the frames'
bytes exactly as received and a newline: re-encoding each frame as a JSON string would cost
more than all the rest, and binary frames need no base64. When the queue is full
the connection waits for the thread (backpressure, counted in `waits`): a recording that
could not keep up is slower, never incomplete. Trades a connector fetched again over REST
after a hole are recorded as trades (`RefillRecord`): they are part of what the live run
stored, and `replay-raw` needs them to reach the same result.

Layout: `DIR/<source>/<UTC start>-<n>.jsonl.zst`; every file starts with a `Header` naming
the connector, its stream and its instruments (so a replay rebuilds the same parser), and a
clean stop ends the last file with an `End` record (the time the run stopped).
A write that fails (a full disk) stops the recording, keeps its one-line reason in `error`
and calls `on_error`, which stops the run; the command then ends with that line.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa

from tickpipe.faults import os_fault
from tickpipe.records import Trade, TradeBatch
from tickpipe.runtime.clock import SYSTEM_CLOCK, Clock

VERSION = 1
SUFFIX = ".jsonl.zst"
ROLL_BYTES = 64 * 1024 * 1024  # uncompressed bytes of one file before the next starts
ROLL_S = 3600.0  # the age of a file after which the next starts
BLOCK_BYTES = 1024 * 1024  # uncompressed bytes compressed as one zstd frame
BLOCK_S = 1.0  # a block is written at least this often (a crash loses at most this much)
MAX_PENDING = 4096  # records (lists of frames) queued for the writer thread


class Header(msgspec.Struct, kw_only=True, tag_field="kind", tag="header"):
    """First record of every file: what the frames came from, to rebuild the same parser."""

    version: int
    source: str
    connector: str  # the registry name of the exchange package
    stream: str | None  # the feed variant (`trade`, `aggTrade`, ...), None: the default
    url: str
    instruments: list[tuple[str, str, str]]  # (exchange, symbol, raw symbol) by code
    run_us: int  # when the recording run started: the same in every file of one run
    started_us: int  # when this file started


class FramesMeta(msgspec.Struct, kw_only=True, tag_field="kind", tag="frames"):
    """The line before the frames one connection handed over at once, received at `t` (µs):
    the frames' bytes follow it as received (`sizes` long each), then a newline."""

    t: int
    conn: int  # the connection group (shard) of the source
    connects: int  # how often that connection had connected: a change is a reconnect
    sizes: list[int]


@dataclass(slots=True)
class FramesRecord:
    """One delivery of frames, as read back."""

    t: int
    conn: int
    connects: int
    frames: list[bytes]


class RefillRecord(msgspec.Struct, kw_only=True, tag_field="kind", tag="refill"):
    """Trades fetched again over REST after a hole, handed on at `t` (µs)."""

    t: int
    trades: list[Trade]


class End(msgspec.Struct, kw_only=True, tag_field="kind", tag="end"):
    """Last record of a clean stop: when the run stopped (µs)."""

    t: int


Record = Header | FramesRecord | RefillRecord | End
Timed = FramesRecord | RefillRecord | End  # every record but the header has a time
_decoder = msgspec.json.Decoder(Header | FramesMeta | RefillRecord | End)
_encoder = msgspec.json.Encoder()


class RecordingError(Exception):
    """A recording that cannot be read (one line: the file and what is wrong)."""


def frames_lines(t: int, conn: int, connects: int, frames: Sequence[bytes]) -> bytes:
    """One delivery as written: its `FramesMeta` line, the frames' bytes, a newline. The
    frames are not re-encoded (that would cost more than the rest of the recording)."""
    meta = FramesMeta(t=t, conn=conn, connects=connects, sizes=[len(f) for f in frames])
    return b"".join([_encoder.encode(meta), b"\n", *frames, b"\n"])


@dataclass
class _File:
    """The file a source records into now."""

    path: Path
    handle: Any
    opened_s: float
    raw_bytes: int = 0
    block: list[bytes] = field(default_factory=list)
    block_bytes: int = 0
    block_s: float = 0.0


@dataclass
class RecordedSource:
    """What a source's recordings are made of (its header without the time)."""

    source: str
    connector: str
    stream: str | None
    url: str
    instruments: list[tuple[str, str, str]]


class FrameRecorder:
    """Writes the frames of every recorded source under `directory`, off the event loop."""

    def __init__(
        self,
        directory: Path,
        roll_bytes: int = ROLL_BYTES,
        roll_s: float = ROLL_S,
        max_pending: int = MAX_PENDING,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.directory = directory
        self.roll_bytes = roll_bytes
        self.roll_s = roll_s
        self.clock = clock
        self.codec = pa.Codec("zstd")
        self.sources: dict[str, RecordedSource] = {}
        self.records = 0  # handed over
        self.frames = 0
        self.waits = 0  # times a connection waited for room in the queue
        self.files_written = 0
        self.bytes_written = 0  # compressed, on disk
        self.error: str | None = None  # the one line of a failed write
        self.on_error: Callable[[], None] | None = None  # called once, on the writer thread
        self._queue: queue.Queue[tuple[str, Any] | None] = queue.Queue(max_pending)
        self._files: dict[str, _File] = {}
        self._names: set[str] = set()
        self._thread: threading.Thread | None = None
        self.run_us = 0

    def add(self, recorded: RecordedSource) -> None:
        """Record a source (before `start`)."""
        self.sources[recorded.source] = recorded

    def start(self) -> None:
        """Create the directory (a failure is the command's one line) and start the thread."""
        try:
            for name in self.sources:
                (self.directory / name).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            from tickpipe.faults import Fault

            raise Fault(f"recording: {os_fault(exc)}") from None
        self.run_us = self.clock.now_us()
        self._thread = threading.Thread(target=self._run, name="tickpipe-record", daemon=True)
        self._thread.start()

    # The event loop's side -------------------------------------------------------------------

    async def put(self, source: str, item: FramesRecord | RefillRecord) -> None:
        """Queue one record; waits (without blocking the loop) while the queue is full."""
        if self.error is not None:
            return  # the run is stopping (`on_error`); the command ends with `error`
        self.records += 1
        try:
            self._queue.put_nowait((source, item))
            return
        except queue.Full:
            self.waits += 1
        while self.error is None:
            await asyncio.sleep(0.001)
            try:
                self._queue.put_nowait((source, item))
                return
            except queue.Full:
                continue

    async def frames_received(
        self, source: str, recv_ts: int, conn: int, connects: int, frames: list[bytes]
    ) -> None:
        """A connection's delivery: the frames and their receipt time, as they came."""
        # Bytes only here: decoding to text is the writer thread's work.
        self.frames += len(frames)
        await self.put(source, _Pending(recv_ts, conn, connects, frames))  # type: ignore[arg-type]

    async def refilled(self, source: str, batches: Sequence[TradeBatch]) -> None:
        """Trades a refill brought back (over REST), before they are handed on."""
        trades = [t for b in batches for t in b.to_trades()]
        if trades:
            await self.put(source, RefillRecord(t=self.clock.now_us(), trades=trades))

    def close(self) -> None:
        """Write what is queued and an `End` record into each source's file; close them."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join()
        self._thread = None

    # The writer thread -----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=BLOCK_S / 2)
            except queue.Empty:
                item = ("", None)  # time to write blocks that waited long enough
            if item is None:
                break
            if self.error is not None:
                continue  # drained: the connections never wait on a failed recording
            try:
                self._write(*item)
            except OSError as exc:
                self._fail(exc)
        if self.error is None:
            try:
                end = _encoder.encode(End(t=self.clock.now_us())) + b"\n"
                for name, file in list(self._files.items()):
                    self._append(file, end)
                    self._close_file(name)
            except OSError as exc:
                self._fail(exc)
        for file in self._files.values():
            _close_quietly(file.handle)
        self._files.clear()

    def _fail(self, exc: OSError) -> None:
        self.error = f"recording stopped: {os_fault(exc)}"
        for file in self._files.values():
            _close_quietly(file.handle)
        self._files.clear()
        if self.on_error is not None:
            self.on_error()

    def _write(self, source: str, item: Any) -> None:
        now_s = self.clock.monotonic_s()
        if item is not None:
            file = self._file(source, now_s)
            if isinstance(item, _Pending):
                self._append(file, frames_lines(item.t, item.conn, item.connects, item.frames))
            else:
                self._append(file, _encoder.encode(item) + b"\n")
        for name, file in list(self._files.items()):
            if file.block and (file.block_bytes >= BLOCK_BYTES or now_s - file.block_s >= BLOCK_S):
                self._write_block(file)
            if file.raw_bytes >= self.roll_bytes or now_s - file.opened_s >= self.roll_s:
                self._close_file(name)

    def _append(self, file: _File, line: bytes) -> None:
        if not file.block:
            file.block_s = self.clock.monotonic_s()
        file.block.append(line)
        file.block_bytes += len(line)
        file.raw_bytes += len(line)
        if file.block_bytes >= BLOCK_BYTES:
            self._write_block(file)

    def _write_block(self, file: _File) -> None:
        data = self.codec.compress(b"".join(file.block), asbytes=True)
        file.block, file.block_bytes = [], 0
        try:
            file.handle.write(data)
            file.handle.flush()
        except OSError as exc:
            if exc.filename is None:
                exc.filename = str(file.path)
            raise
        self.bytes_written += len(data)

    def _file(self, source: str, now_s: float) -> _File:
        file = self._files.get(source)
        if file is not None:
            return file
        recorded = self.sources[source]
        started_us = self.clock.now_us()
        stamp = datetime.fromtimestamp(started_us / 1e6, UTC).strftime("%Y%m%dT%H%M%S")
        n = 0
        while True:
            path = self.directory / source / f"{stamp}-{n:04d}{SUFFIX}"
            if str(path) not in self._names and not path.exists():
                break
            n += 1
        self._names.add(str(path))
        handle = open(path, "xb")  # noqa: SIM115 - closed by _close_file
        file = self._files[source] = _File(path, handle, now_s)
        self.files_written += 1
        header = Header(
            version=VERSION, source=source, connector=recorded.connector, stream=recorded.stream,
            url=recorded.url, instruments=recorded.instruments, run_us=self.run_us,
            started_us=started_us,
        )  # fmt: skip
        self._append(file, _encoder.encode(header) + b"\n")
        return file

    def _close_file(self, source: str) -> None:
        file = self._files.pop(source)
        try:
            if file.block:
                self._write_block(file)
        finally:
            file.handle.close()


@dataclass(slots=True)
class _Pending:
    """A delivery as the event loop handed it over (encoded on the writer thread)."""

    t: int
    conn: int
    connects: int
    frames: list[bytes]


def _close_quietly(handle: Any) -> None:
    with contextlib.suppress(OSError):
        handle.close()


# Reading ----------------------------------------------------------------------------------------


def recording_files(directory: Path) -> list[Path]:
    """The recording's files, per source in the order they were written."""
    if not directory.is_dir():
        raise RecordingError(f"{directory}: no such directory")
    files = sorted(directory.glob(f"*/*{SUFFIX}"))
    if not files:
        raise RecordingError(f"{directory}: no recorded frames (*/*{SUFFIX}) in it")
    return files


def read_file(path: Path, truncated: Callable[[Path], None] | None = None) -> Iterator[Record]:
    """Every record of one file, the header first. A tail cut off by a crash ends it early
    (`truncated` is told); anything else unreadable is a `RecordingError`."""
    try:
        stream = pa.CompressedInputStream(pa.OSFile(str(path)), "zstd")
    except OSError as exc:
        raise RecordingError(f"{path}: {exc.strerror or exc}") from None
    with stream:
        buffer = _Buffer(stream, path)
        line_no = 0
        try:
            while (line := buffer.line()) is not None:
                line_no += 1
                record = _decode(path, line_no, line)
                if isinstance(record, FramesMeta):
                    data = buffer.take(sum(record.sizes) + 1)
                    if data is None or data[-1:] != b"\n":
                        raise _Truncated
                    frames, at = [], 0
                    for size in record.sizes:
                        frames.append(data[at : at + size])
                        at += size
                    yield FramesRecord(record.t, record.conn, record.connects, frames)
                else:
                    yield record
        except _Truncated:
            if truncated is None:
                raise RecordingError(f"{path}: cut off (a crash while recording)") from None
            truncated(path)


class _Truncated(Exception):
    """The file ends in the middle of a record (or of a zstd frame)."""


class _Buffer:
    """Lines and byte runs from a decompressing stream."""

    def __init__(self, stream: Any, path: Path) -> None:
        self.stream = stream
        self.path = path
        self.data = b""
        self.at = 0
        self.ended = False

    def _more(self) -> bool:
        if self.ended:
            return False
        try:
            chunk = self.stream.read(1 << 20)
        except OSError as exc:
            if "runcated" in str(exc):
                raise _Truncated from None
            raise RecordingError(f"{self.path}: not a zstd recording ({_first(exc)})") from None
        if not chunk:
            self.ended = True
            return False
        self.data = self.data[self.at :] + chunk
        self.at = 0
        return True

    def line(self) -> bytes | None:
        """The next line without its newline; None at the end."""
        while (end := self.data.find(b"\n", self.at)) < 0:
            if not self._more():
                if self.at < len(self.data):
                    raise _Truncated
                return None
        line = self.data[self.at : end]
        self.at = end + 1
        return line

    def take(self, n: int) -> bytes | None:
        """The next `n` bytes; None when the file ends before."""
        while len(self.data) - self.at < n:
            if not self._more():
                return None
        out = self.data[self.at : self.at + n]
        self.at += n
        return out


def _decode(path: Path, line_no: int, line: bytes) -> Header | FramesMeta | RefillRecord | End:
    try:
        record = _decoder.decode(line)
    except msgspec.DecodeError as exc:
        raise RecordingError(f"{path}: record {line_no}: not a recording record ({exc})") from None
    if line_no == 1 and not isinstance(record, Header):
        raise RecordingError(f"{path}: it does not start with a recording header")
    if isinstance(record, Header) and record.version != VERSION:
        raise RecordingError(f"{path}: recording version {record.version}, this reads {VERSION}")
    return record


def _first(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200]


def merged(
    directory: Path, truncated: Callable[[Path], None] | None = None
) -> Iterator[tuple[Header, Timed]]:
    """Every record of every source in receipt-time order (each source's own order kept),
    with the header of the file it is in."""
    by_source: dict[str, list[Path]] = {}
    for path in recording_files(directory):
        by_source.setdefault(path.parent.name, []).append(path)

    def of_source(paths: list[Path]) -> Iterator[tuple[int, Header, Timed]]:
        last = 0
        for path in paths:
            header: Header | None = None
            for record in read_file(path, truncated):
                if isinstance(record, Header):
                    header = record
                    last = max(last, record.started_us)
                    continue
                assert header is not None
                last = max(last, record.t)  # never back: the order within a source holds
                yield last, header, record

    streams = [of_source(paths) for _, paths in sorted(by_source.items())]
    for _, header, record in heapq.merge(*streams, key=lambda item: item[0]):
        yield header, record
