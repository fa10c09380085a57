"""The benchmark's frame file, stdlib only, so the naive baseline's process loads no numpy.

Layout: per chunk, an 8-byte little-endian length, then the chunk's frames joined by
newlines (a JSON frame never contains a raw newline).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

_HEADER = struct.Struct("<Q")


def write_chunk(out: BinaryIO, frames: list[bytes]) -> int:
    """Append one chunk; returns the bytes written."""
    blob = b"\n".join(frames)
    out.write(_HEADER.pack(len(blob)))
    out.write(blob)
    return len(blob) + _HEADER.size


def read_chunks(path: Path) -> Iterator[list[bytes]]:
    """The frames of `path`, one chunk (a list of bytes, one per frame) at a time."""
    with path.open("rb") as f:
        while header := f.read(_HEADER.size):
            (length,) = _HEADER.unpack(header)
            yield f.read(length).split(b"\n")
