"""The engine snapshot: the whole restorable state of a `CandleEngine` as one compact blob.

A restart loads the snapshot the store kept with its rows and replays only the trades stored
after it, instead of re-running every stored trade of the correction horizon through the
engine. The blob holds the open and final windows of every table, the de-duplication ranges,
watermarks and latest trades per instrument, the rolling statistics' minutes and the
instrument ids, as msgpack with numpy columns as raw bytes. It starts with a format version
and the settings it was taken under, and ends with a checksum: a blob of another version,
other windows or horizon, or a damaged one is refused with a `SnapshotError` naming why (the
caller then falls back to the full replay).
"""

from __future__ import annotations

import zlib

import msgspec
import numpy as np

from tickpipe.engine.candles import CandleEngine

VERSION = 1
_MAGIC = b"TPSNAP"
_ARRAY = 1  # msgpack extension code of a 1-D numpy array: dtype text, NUL, raw bytes


class SnapshotError(ValueError):
    """A stored snapshot that cannot be used; the message says why, in a few words."""


def _encode_array(obj: object) -> msgspec.msgpack.Ext:
    if isinstance(obj, np.ndarray):
        column = np.ascontiguousarray(obj)
        return msgspec.msgpack.Ext(_ARRAY, column.dtype.str.encode() + b"\0" + column.tobytes())
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot snapshot {type(obj).__name__}")


def _decode_array(code: int, data: memoryview) -> np.ndarray:
    if code != _ARRAY:
        raise SnapshotError(f"unknown extension {code}")
    end = bytes(data[:16]).find(b"\0")  # the dtype's text, e.g. <i8 (one copy of the values)
    if end < 0:
        raise SnapshotError("damaged array")
    return np.frombuffer(data[end + 1 :], np.dtype(bytes(data[:end]).decode())).copy()


_encoder = msgspec.msgpack.Encoder(enc_hook=_encode_array)
_decoder = msgspec.msgpack.Decoder(ext_hook=_decode_array)


def _settings(engine: CandleEngine) -> list[object]:
    """What a snapshot is only valid under: the windows and the horizon."""
    return [[w.name for w in engine.windows], engine.horizon]


def take_snapshot(engine: CandleEngine) -> bytes:
    """The engine's state as one blob (see the module docstring for its layout)."""
    body = _encoder.encode([VERSION, _settings(engine), engine.state()])
    return _MAGIC + body + zlib.crc32(body).to_bytes(4, "big")


def load_snapshot(engine: CandleEngine, blob: bytes, now: int) -> None:
    """Put the state of `blob` into `engine`, a new engine with the same settings (one that
    has seen no trade).

    Raises `SnapshotError` when the blob is damaged, of another version or of other settings;
    `engine` is then as new (a blob that failed half-way is undone).
    """
    body, crc = memoryview(blob)[len(_MAGIC) : -4], blob[-4:]
    if not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + 4:
        raise SnapshotError("not an engine snapshot")
    if zlib.crc32(body).to_bytes(4, "big") != crc:
        raise SnapshotError("checksum mismatch (damaged)")
    try:
        version, settings, state = _decoder.decode(body)
    except (msgspec.DecodeError, ValueError, TypeError) as exc:
        raise SnapshotError(f"unreadable ({exc})") from None
    if version != VERSION:
        raise SnapshotError(f"format version {version}, this tickpipe reads {VERSION}")
    if settings != _settings(engine):
        raise SnapshotError("taken with other intervals or correction horizon")
    try:
        engine.load_state(state, now)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        engine.__init__(engine.config)  # type: ignore[misc]  # new again, for the replay
        raise SnapshotError(f"inconsistent ({type(exc).__name__}: {exc})") from None
