"""The dashboard's static files, compressed once and revalidated by content.

The page's weight is almost all plotly.min.js (4.8 MB raw). Each file is compressed the first
time it is asked for (brotli when the browser accepts it, gzip otherwise) and the result is
kept, so a cold load moves about a quarter of the bytes and no request pays for compressing
plotly again. Every file carries an ETag of its content: the page's own scripts are revalidated
on each load (`no-cache`, answered by a 304 when unchanged), plotly's URL carries its version
and is cached for a year. JSON answers are compressed on the fly by Starlette's GZipMiddleware
(app.py); these files reach it already encoded, which it leaves alone.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread
import brotli
from starlette.requests import Request
from starlette.responses import Response

# Quality 9 compresses plotly.min.js in about 0.4 s to 1.23 MB; 11 saves 0.12 MB more for 9 s.
BROTLI_QUALITY = 9
GZIP_LEVEL = 9
# Smaller files gain nothing worth a Content-Encoding header.
MIN_COMPRESS_BYTES = 1024
REVALIDATE = "no-cache"


@dataclass(frozen=True)
class Asset:
    """One file as served: its bytes in each encoding and the tag of its content."""

    media_type: str
    etag: str
    raw: bytes

    @functools.cached_property
    def br(self) -> bytes:
        return brotli.compress(self.raw, quality=BROTLI_QUALITY)

    @functools.cached_property
    def gzip(self) -> bytes:
        return gzip.compress(self.raw, GZIP_LEVEL, mtime=0)


def asset(raw: bytes, name: str) -> Asset:
    """`raw` as an asset whose type comes from `name` and whose ETag from its content."""
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if media_type.startswith("text/") or media_type.endswith("javascript"):
        media_type += "; charset=utf-8"
    return Asset(media_type, '"' + hashlib.sha256(raw).hexdigest()[:32] + '"', raw)


def accepted(request: Request) -> set[str]:
    """The codings the request accepts (those it names without `q=0`)."""
    codings = set()
    for part in request.headers.get("accept-encoding", "").split(","):
        name, _, params = part.strip().partition(";")
        if name and params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000"):
            codings.add(name.strip().lower())
    return codings


def _not_modified(request: Request, etag: str) -> bool:
    tags = request.headers.get("if-none-match", "")
    return tags.strip() == "*" or any(
        tag.strip().removeprefix("W/").split("-", 1)[0].rstrip('"') == etag.rstrip('"')
        for tag in tags.split(",")
    )


async def respond(request: Request, item: Asset, cache_control: str) -> Response:
    """`item` in the best coding the request accepts, or a 304 when it holds this content."""
    headers = {"Cache-Control": cache_control, "Vary": "Accept-Encoding"}
    if _not_modified(request, item.etag):
        return Response(status_code=304, headers={**headers, "ETag": item.etag})
    codings = accepted(request) if len(item.raw) >= MIN_COMPRESS_BYTES else set()
    coding = "br" if "br" in codings else "gzip" if "gzip" in codings else None
    if coding is None:
        return Response(
            item.raw, media_type=item.media_type, headers={**headers, "ETag": item.etag}
        )
    # The first compression of a large file takes a while: never on the event loop.
    body = await anyio.to_thread.run_sync(getattr, item, coding)
    # A representation's own tag: the content's tag plus its coding.
    tag = item.etag[:-1] + "-" + coding + '"'
    headers.update({"ETag": tag, "Content-Encoding": coding})
    return Response(body, media_type=item.media_type, headers=headers)


@functools.cache
def static_files(directory: Path) -> dict[str, Asset]:
    """Every file under `directory` by its path relative to it, read once: the only paths the
    static route answers, so no request can name a file outside it."""
    return {
        path.relative_to(directory).as_posix(): asset(path.read_bytes(), path.name)
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }
