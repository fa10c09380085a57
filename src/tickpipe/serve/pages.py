"""The dashboard page and its static files, served by tickpipe itself: no CDN, no build step.

plotly.js comes from the installed `plotly` wheel, so the page works on a machine with no
internet and always matches the installed version (its URL carries that version, which is why
it may be cached for a year).
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
PLOTLY_CACHE = "public, max-age=31536000, immutable"


def is_public(path: str) -> bool:
    """The page and its scripts hold no market data, so they load without the access token
    (a browser cannot add it to `<script>` and module imports); every /api route still needs it."""
    return path == "/" or path.startswith("/static/")


@functools.cache
def plotly_version() -> str:
    import plotly

    return plotly.__version__


@functools.cache
def plotly_js() -> bytes:
    """plotly.min.js from the plotly wheel, read once."""
    return resources.files("plotly").joinpath("package_data", "plotly.min.js").read_bytes()


@functools.cache
def index_html() -> str:
    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    return page.replace("__PLOTLY_VERSION__", plotly_version())


async def index(request: Request) -> HTMLResponse:
    """The dashboard; its own settings (exchange, symbol, view, token) live in the query string."""
    return HTMLResponse(index_html(), headers={"Cache-Control": "no-cache"})


async def plotly(request: Request) -> Response:
    return Response(
        plotly_js(), media_type="text/javascript", headers={"Cache-Control": PLOTLY_CACHE}
    )


PAGE_ROUTES = [
    Route("/", index),
    Route("/static/plotly.min.js", plotly),
    Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
]
