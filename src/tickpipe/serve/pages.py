"""The dashboard page and its static files, served by tickpipe itself: no CDN, no build step.

plotly.js comes from the installed `plotly` wheel, so the page works on a machine with no
internet and always matches the installed version (its URL carries that version, which is why
it may be cached for a year). Every file goes out compressed and tagged by its content (assets.py).
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tickpipe.serve.assets import REVALIDATE, Asset, asset, respond, static_files

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
def plotly_js() -> Asset:
    """plotly.min.js from the plotly wheel, read once."""
    raw = resources.files("plotly").joinpath("package_data", "plotly.min.js").read_bytes()
    return asset(raw, "plotly.min.js")


@functools.cache
def index_html() -> Asset:
    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    return asset(page.replace("__PLOTLY_VERSION__", plotly_version()).encode(), "index.html")


async def index(request: Request) -> Response:
    """The dashboard; its own settings (exchange, symbol, view, token) live in the query string."""
    return await respond(request, index_html(), REVALIDATE)


async def plotly(request: Request) -> Response:
    return await respond(request, plotly_js(), PLOTLY_CACHE)


async def static(request: Request) -> Response:
    """The page's own scripts and styles, revalidated on each load."""
    found = static_files(STATIC_DIR).get(request.path_params["path"])
    if found is None:
        raise HTTPException(404, f"no static file {request.path_params['path']!r}")
    return await respond(request, found, REVALIDATE)


PAGE_ROUTES = [
    Route("/", index),
    Route("/static/plotly.min.js", plotly),
    Route("/static/{path:path}", static),
]
