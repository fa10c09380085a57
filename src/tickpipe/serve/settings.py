"""`[serve]`: the HTTP API and live WebSocket that `run` and `demo` start, and its checks."""

from __future__ import annotations

from typing import Annotated

import msgspec

from tickpipe.durations import Seconds, allowing
from tickpipe.serve.tls import check_tls
from tickpipe.settings import Fail

MAX_SUBSCRIPTIONS = 10_000  # each one may cost the server a store lookup
MAX_HEAVY_READS = 64  # each holds a worker thread and a store connection
ReadTimeout = Annotated[Seconds, allowing("not a duration (e.g. 5s)")]


class ServeConfig(msgspec.Struct, forbid_unknown_fields=True):
    """`[serve]`: the HTTP API and live WebSocket that `run` and `demo` start."""

    enabled: bool = True
    host: str = "127.0.0.1"  # loopback: nobody else can reach it without a token
    port: int = 8050
    token: str = ""  # required on any other address (TICKPIPE_SERVE_TOKEN[_FILE]), unless insecure
    insecure: bool = False  # serve a non-loopback address without a token, on purpose
    # names the API answers to besides loopback and `host` (a reverse proxy's); "*": any
    allowed_hosts: list[str] = msgspec.field(default_factory=list)
    # origins (scheme://host:port) whose pages may use the WebSocket; "*": any
    allowed_origins: list[str] = msgspec.field(default_factory=list)
    max_subscriptions: int = 100  # per WebSocket connection, refused ones included
    # how long one API read may run; past it the read is stopped and answered 503
    read_timeout_s: ReadTimeout = msgspec.field(name="read_timeout", default=Seconds(5.0))
    # heavy reads (analytics, trade lists, exchange list) at once; one more is answered 503
    heavy_reads: int = 4
    # PEM files: the certificate (its chain after it) and its unencrypted key; with both the
    # API serves HTTPS only, with HSTS (`serve/tls.py`)
    tls_cert: str = ""
    tls_key: str = ""


def check_serve(serve: ServeConfig, fail: Fail) -> None:
    """A port, an address, the HTTPS files, and a token wherever another machine can connect.

    `fail(key, value, why)` raises the one-line config error.
    """
    if not 0 <= serve.port <= 65535:
        fail("serve.port", serve.port, "must be between 0 and 65535 (0: any free port)")
    if not serve.host.strip():
        fail("serve.host", serve.host, "give an address, e.g. 127.0.0.1")
    if not 1 <= serve.max_subscriptions <= MAX_SUBSCRIPTIONS:
        fail(
            "serve.max_subscriptions", serve.max_subscriptions,
            f"must be between 1 and {MAX_SUBSCRIPTIONS:,}",
        )  # fmt: skip
    if not 1 <= serve.heavy_reads <= MAX_HEAVY_READS:
        fail("serve.heavy_reads", serve.heavy_reads, f"must be between 1 and {MAX_HEAVY_READS}")
    check_tls(serve.tls_cert, serve.tls_key, fail)
    if serve.token and not serve.token.strip():
        fail("serve.token", serve.token, "is only whitespace; give a token, or none")
    if serve.enabled and not serve.token and not serve.insecure:
        from tickpipe.serve.params import is_loopback

        if not is_loopback(serve.host):
            fail(
                "serve.host", serve.host,
                "serving beyond this machine needs an access token (TICKPIPE_SERVE_TOKEN "
                "or TICKPIPE_SERVE_TOKEN_FILE), or --insecure to go without one",
            )  # fmt: skip
