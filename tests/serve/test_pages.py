"""The dashboard's page and static routes: served by tickpipe itself, plotly.js from the wheel,
and open without the access token while every /api route still needs it."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import httpx
import plotly
import pytest

from tickpipe.serve.app import ApiContext, create_app
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
