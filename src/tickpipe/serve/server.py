"""Running the API inside tickpipe's own event loop, next to the pipeline.

The socket is bound before anything starts, so a busy port is a one-line start-up error rather
than uvicorn exiting the process from inside a task; signals stay with the pipeline, which
stops the server when it stops. The pipeline hands over what the API reads as an `ApiContext`
(this module never imports a runner). With `serve.tls_cert`/`tls_key` the socket speaks HTTPS
only: uvicorn wraps every socket it is handed in the context its `Config.load` makes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Coroutine, Iterator
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from tickpipe.serve.app import ApiContext, create_app
from tickpipe.serve.settings import ServeConfig
from tickpipe.serve.tls import MIN_VERSION, StrictTransport

SHUTDOWN_SECONDS = 2


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); OSError says why it cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def url_of(sock: socket.socket, tls: bool = False) -> str:
    """The URL a browser opens: https:// when the server has a certificate."""
    host, port = sock.getsockname()[:2]
    scheme = "https" if tls else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


class ApiServer(uvicorn.Server):
    """uvicorn without its signal handlers: the pipeline owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def make_server(
    app: ASGIApp, own_signals: bool = False, serve: ServeConfig | None = None
) -> uvicorn.Server:
    """A server for `app`; run it with `await server.serve(sockets=[bind(host, port)])`.

    `own_signals`: uvicorn handles Ctrl-C itself (`tickpipe serve`, where nothing else runs).
    `serve`: with its `tls_cert`/`tls_key` (checked when the config loaded) it serves HTTPS.
    """
    cert, key = (serve.tls_cert, serve.tls_key) if serve and serve.tls_cert else (None, None)
    config = uvicorn.Config(
        StrictTransport(app) if cert else app, log_level="warning", access_log=False,
        lifespan="off", ws="websockets-sansio", ws_max_size=64 * 1024,
        timeout_graceful_shutdown=SHUTDOWN_SECONDS, ssl_certfile=cert, ssl_keyfile=key,
    )  # fmt: skip
    if cert:
        config.load()  # makes `config.ssl` now, so its floor can be raised before serving
        assert config.ssl is not None
        config.ssl.minimum_version = MIN_VERSION
    return uvicorn.Server(config) if own_signals else ApiServer(config)


async def run_with_api(
    context: ApiContext, sock: socket.socket, token: str | None,
    running: Coroutine[Any, Any, None], serve: ServeConfig | None = None,
) -> None:  # fmt: skip
    """Await `running` (the pipeline's run) with the API serving `context` on `sock` in the
    same loop; stop both together."""
    server = make_server(create_app(context, token, serve), serve=serve)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="api")
    try:
        await running
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(task, SHUTDOWN_SECONDS + 3)
        except (TimeoutError, asyncio.CancelledError):
            task.cancel()
        except Exception as exc:  # the pipeline's result matters more than the server's
            logging.getLogger("tickpipe").warning("the API server stopped with %s", exc)
