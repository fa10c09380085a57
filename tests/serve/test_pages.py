"""The dashboard's page and static routes: served by tickpipe itself, plotly.js from the wheel,
and open without the access token while every /api route still needs it."""

from __future__ import annotations

import gzip
import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from urllib.parse import urlencode

import brotli
import httpx
import plotly
import pytest

from tickpipe.serve.app import GZIP_MIN_BYTES, ApiContext, create_app
from tickpipe.serve.live import Hub
from tickpipe.serve.pages import STATIC_DIR
from tickpipe.stores.duckdb import DuckDBStore

from .conftest import ApiThread, Served

TOKEN = "page-token"


@pytest.fixture(scope="module")
def guarded(stored_path: tuple[Path, int]) -> Iterator[str]:
    store = DuckDBStore(stored_path[0], read_only=True)
    api = ApiThread(create_app(ApiContext(store, hub=Hub()), token=TOKEN))
    try:
        yield api.url
    finally:
        api.stop()
        store.close()


def test_the_page_loads_only_scripts_that_tickpipe_serves(served: Served) -> None:
    page = httpx.get(served.url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    sources = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', page.text)
    assert sources, "the page loads no script at all"
    for source in sources:
        if source.startswith("data:"):
            continue
        assert source.startswith("/static/"), f"{source} is not served by tickpipe"
        assert httpx.get(served.url + source).status_code == 200, source


def test_plotly_js_is_the_installed_wheels_file_with_a_long_cache(served: Served) -> None:
    wheel_file = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    answer = httpx.get(served.url + f"/static/plotly.min.js?v={plotly.__version__}")
    assert answer.status_code == 200
    assert answer.content == wheel_file.read_bytes()
    assert "max-age=31536000" in answer.headers["cache-control"]
    assert answer.headers["content-type"].startswith("text/javascript")
    assert f"/static/plotly.min.js?v={plotly.__version__}" in httpx.get(served.url + "/").text


def test_every_module_the_page_imports_is_served(served: Served) -> None:
    main = httpx.get(served.url + "/static/js/main.js")
    assert main.status_code == 200 and "javascript" in main.headers["content-type"]
    for path in STATIC_DIR.glob("js/*.js"):
        for imported in re.findall(r'from "\./([^"]+)"', path.read_text()):
            assert httpx.get(f"{served.url}/static/js/{imported}").status_code == 200, imported


def test_a_missing_static_file_is_404(served: Served) -> None:
    assert httpx.get(served.url + "/static/nope.js").status_code == 404


def test_the_page_and_its_files_need_no_token_but_the_api_still_does(guarded: str) -> None:
    assert httpx.get(guarded + "/").status_code == 200
    assert httpx.get(guarded + "/static/js/main.js").status_code == 200
    assert httpx.get(guarded + "/static/plotly.min.js").status_code == 200
    assert httpx.get(guarded + "/api/exchanges").status_code == 401
    assert httpx.get(guarded + "/static/../api/exchanges").status_code in (401, 404)
    assert httpx.get(guarded + "/api/exchanges", params={"token": TOKEN}).status_code == 200


def test_every_static_file_is_declared_as_package_data() -> None:
    """A file the globs miss is absent from the wheel (editable installs hide that)."""
    config = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["tickpipe.serve"]
    shipped = [p.relative_to(STATIC_DIR.parent).as_posix() for p in STATIC_DIR.rglob("*")]
    files = [name for name in shipped if (STATIC_DIR.parent / name).is_file()]
    assert {"static/index.html", "static/dashboard.css", "static/js/main.js"} <= set(files)
    missed = [name for name in files if not any(PurePosixPath(name).match(g) for g in globs)]
    assert missed == []


def _raw(url: str, **headers: str) -> tuple[httpx.Headers, bytes]:
    """The answer's headers and its body as sent, before any decoding."""
    with httpx.stream("GET", url, headers=headers) as answer:
        return answer.headers, b"".join(answer.iter_raw())


@pytest.mark.parametrize("path", ["/static/js/main.js", "/static/plotly.min.js"])
def test_static_files_go_out_brotli_or_gzip_as_accepted_and_decode_to_the_file(
    served: Served, path: str
) -> None:
    wheel = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    original = (wheel if "plotly" in path else STATIC_DIR / "js" / "main.js").read_bytes()
    headers, body = _raw(served.url + path, **{"Accept-Encoding": "gzip, deflate, br"})
    assert headers["content-encoding"] == "br" and brotli.decompress(body) == original
    assert len(body) < len(original) / 3
    headers, body = _raw(served.url + path, **{"Accept-Encoding": "gzip"})
    assert headers["content-encoding"] == "gzip" and gzip.decompress(body) == original
    headers, body = _raw(served.url + path, **{"Accept-Encoding": "identity"})
    assert "content-encoding" not in headers and body == original
    headers, body = _raw(served.url + path, **{"Accept-Encoding": "br;q=0, gzip"})
    assert headers["content-encoding"] == "gzip"
    assert "accept-encoding" in headers["vary"].lower()


def test_an_unchanged_file_is_revalidated_with_a_304_and_a_changed_tag_gets_the_file(
    served: Served,
) -> None:
    first = httpx.get(served.url + "/static/js/main.js")
    assert first.headers["cache-control"] == "no-cache"
    again = httpx.get(
        served.url + "/static/js/main.js", headers={"If-None-Match": first.headers["etag"]}
    )
    assert again.status_code == 304 and again.content == b""
    # The same content in another coding is still the same file.
    plain = httpx.get(served.url + "/static/js/main.js", headers={"Accept-Encoding": "identity"})
    assert plain.headers["etag"] != first.headers["etag"]
    other = httpx.get(
        served.url + "/static/js/main.js", headers={"If-None-Match": plain.headers["etag"]}
    )
    assert other.status_code == 304
    stale = httpx.get(served.url + "/static/js/main.js", headers={"If-None-Match": '"0123abcd"'})
    assert (
        stale.status_code == 200 and stale.content == (STATIC_DIR / "js" / "main.js").read_bytes()
    )


def test_large_json_answers_are_gzipped_and_small_ones_are_not(served: Served) -> None:
    exchanges = httpx.get(served.url + "/api/exchanges").json()["exchanges"]
    symbol = exchanges[0]["symbols"][0]["symbol"]
    end_ms = served.end // 1000
    params = {"exchange": exchanges[0]["name"], "symbol": symbol, "interval": "1s",
              "start": end_ms - 600_000, "end": end_ms}  # fmt: skip
    headers, body = _raw(
        served.url + "/api/candles?" + urlencode(params), **{"Accept-Encoding": "gzip"}
    )
    assert headers["content-encoding"] == "gzip"
    candles = json.loads(gzip.decompress(body))
    assert candles == httpx.get(served.url + "/api/candles", params=params).json()
    headers, body = _raw(served.url + "/api/health", **{"Accept-Encoding": "gzip"})
    assert len(body) < GZIP_MIN_BYTES and "content-encoding" not in headers


def test_plotly_loads_without_blocking_the_first_paint(served: Served) -> None:
    page = httpx.get(served.url + "/").text
    scripts = re.findall(r"<script\b[^>]*\bsrc=[^>]*>", page)
    assert scripts, "the page loads no script"
    for script in scripts:
        assert " defer" in script or 'type="module"' in script, script
