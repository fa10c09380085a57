"""Who may talk to the API from a browser: the `Host` and `Origin` checks.

A web page the user visits can make the browser send requests to a local tickpipe: with DNS
rebinding its own name resolves to 127.0.0.1, so the browser treats the API as that page's
origin and lets it read the answers. The `Host` header still carries the page's name, so only
names this server is known by are served (loopback names, the bound address, and
`serve.allowed_hosts`). The WebSocket and state-changing requests are not bound by the
browser's same-origin rule, so they must come from this server's own pages or from an origin
in `serve.allowed_origins`. A reverse proxy in front adds its public name to both lists.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from tickpipe.serve.settings import ServeConfig

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
ANY = "*"  # in allowed_hosts or allowed_origins: no check (behind a proxy that checks)
WS_POLICY = 1008  # WebSocket close code: policy violation
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")  # cannot change state, and same-origin reads only


def host_name(header: str) -> str:
    """`Host` (or an origin's netloc) without its port, lower case: `[::1]:8050` is `::1`."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    if header.count(":") == 1:
        header = header.partition(":")[0]
    return header.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Exposure:
    """The names this server answers to and the foreign origins it lets in."""

    hosts: frozenset[str]
    origins: frozenset[str] = frozenset()
    any_address: bool = False  # bound to 0.0.0.0 or ::: any IP address is this machine's

    @classmethod
    def of(cls, serve: ServeConfig) -> Exposure:
        """Loopback names, the bound address and `serve.allowed_hosts`/`allowed_origins`."""
        bound = host_name(serve.host)
        return cls(
            hosts=frozenset((*LOOPBACK_NAMES, bound, *(host_name(h) for h in serve.allowed_hosts))),
            origins=frozenset(o.strip().lower().rstrip("/") for o in serve.allowed_origins),
            any_address=bound in ("0.0.0.0", "::"),
        )

    def host_allowed(self, header: str | None) -> bool:
        """A request without `Host` is no browser's (browsers always send it)."""
        if header is None or ANY in self.hosts:
            return True
        name = host_name(header)
        # A rebinding page's Host is its own name, never an address: addresses are safe.
        return name in self.hosts or (self.any_address and _is_ip(name))

    def origin_allowed(self, origin: str | None, host: str | None) -> bool:
        """No `Origin` (not a browser), this server's own (same host and port), or allowed."""
        if origin is None or ANY in self.origins:
            return True
        origin = origin.strip().lower().rstrip("/")
        if origin in self.origins:
            return True
        parts = urlsplit(origin)
        return (
            parts.scheme in ("http", "https")
            and host is not None
            and parts.netloc == host.strip().lower()
        )


class ExposureGuard:
    """Refuses a foreign `Host` (400) and a foreign `Origin` on the WebSocket or a
    state-changing request (403); a refused WebSocket is closed with 1008 and the reason."""

    def __init__(self, app: ASGIApp, exposure: Exposure) -> None:
        self.app = app
        self.exposure = exposure

    def _refusal(self, scope: Scope) -> tuple[int, str] | None:
        headers = {name: value.decode("latin-1") for name, value in scope.get("headers", ())}
        host, origin = headers.get(b"host"), headers.get(b"origin")
        if not self.exposure.host_allowed(host):
            return 400, f"Host not allowed ({(host or '')[:60]!r}): see serve.allowed_hosts"
        changes = scope["type"] == "websocket" or scope.get("method") not in SAFE_METHODS
        if changes and not self.exposure.origin_allowed(origin, host):
            return 403, f"Origin not allowed ({(origin or '')[:60]!r}): see serve.allowed_origins"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self._refusal(scope) if scope["type"] in ("http", "websocket") else None
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, reason = refusal
        if scope["type"] == "http":
            await JSONResponse({"error": reason}, status_code=status)(scope, receive, send)
            return
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        short = reason.encode()[:123].decode("utf-8", "ignore")  # a close reason's limit
        await send({"type": "websocket.close", "code": WS_POLICY, "reason": short})
