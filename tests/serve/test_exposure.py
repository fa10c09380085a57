"""Browser attacks on a local install: a foreign Host (DNS rebinding) and a foreign Origin on
the WebSocket or a state-changing request are refused with the reason."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from tickpipe.serve.app import ApiContext, create_app
from tickpipe.serve.exposure import WS_POLICY, Exposure, host_name
from tickpipe.serve.live import Hub
from tickpipe.serve.settings import ServeConfig

from .conftest import api_over

SUBSCRIBE = {"subscribe": {"exchange": "alpha", "symbol": "BTC-USDT", "interval": "1m"}}


@pytest.fixture(scope="module")
def local(stored_path: tuple[Path, int]) -> Iterator[str]:
    """A default install: loopback, no token, a live hub, one configured proxy name."""
    serve = ServeConfig(
        allowed_hosts=["tp.example.org"], allowed_origins=["https://tp.example.org"]
    )
    with api_over(
        stored_path[0], lambda s: create_app(ApiContext(s, hub=Hub()), serve=serve)
    ) as url:
        yield url


def _live(url: str, origin: str | None) -> dict | tuple[int, str]:
    """The answer to a subscribe, or (close code, reason) when the server closed at once."""
    ws_url = url.replace("http://", "ws://") + "/api/live"

    async def attempt() -> dict | tuple[int, str]:
        async with websockets.connect(ws_url, origin=origin) as ws:  # type: ignore[arg-type]
            try:
                await ws.send(json.dumps(SUBSCRIBE))
                return json.loads(await ws.recv())
            except websockets.ConnectionClosed as closed:
                assert closed.rcvd is not None
                return closed.rcvd.code, closed.rcvd.reason

    return asyncio.run(asyncio.wait_for(attempt(), 10))


def test_a_foreign_host_header_is_refused_with_400_and_the_reason(local: str) -> None:
    answer = httpx.get(local + "/api/health", headers={"Host": "evil.example:8050"})
    assert answer.status_code == 400
    assert "Host not allowed ('evil.example:8050')" in answer.json()["error"]
    assert "serve.allowed_hosts" in answer.json()["error"]


@pytest.mark.parametrize("host", ["localhost:8050", "127.0.0.1", "[::1]:8050", "TP.example.org"])
def test_loopback_names_and_configured_names_are_served(local: str, host: str) -> None:
    assert httpx.get(local + "/api/health", headers={"Host": host}).status_code == 200


def test_a_websocket_from_a_foreign_origin_is_closed_with_1008_and_the_reason(local: str) -> None:
    code, reason = _live(local, "http://evil.example")
    assert code == WS_POLICY
    assert "Origin not allowed ('http://evil.example')" in reason


def test_a_websocket_with_a_foreign_host_is_closed_with_1008(local: str) -> None:
    # By hand: a WebSocket client sets Host from the URL, a rebinding page's name here.
    host, port = local.removeprefix("http://").split(":")
    request = (
        "GET /api/live HTTP/1.1\r\nHost: rebound.evil.example\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request.encode())
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < 4:
            answer += sock.recv(4096)
    head, _, frame = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    assert frame[0] == 0x88  # a close frame
    assert int.from_bytes(frame[2:4], "big") == WS_POLICY
    assert b"Host not allowed" in frame[4:]


def test_a_websocket_from_the_servers_own_page_or_an_allowed_origin_subscribes(
    local: str,
) -> None:
    own = local  # the dashboard's origin: this very scheme, host and port
    for origin in (own, "https://tp.example.org", None):
        answer = _live(local, origin)
        assert isinstance(answer, dict) and answer["type"] == "subscribed", (origin, answer)


def test_a_state_changing_request_from_a_foreign_origin_gets_403(local: str) -> None:
    answer = httpx.post(local + "/api/health", headers={"Origin": "http://evil.example"})
    assert answer.status_code == 403 and "Origin not allowed" in answer.json()["error"]
    same = httpx.post(local + "/api/health", headers={"Origin": local})
    assert same.status_code == 405  # allowed through: the route itself only reads


def test_an_unspecified_bound_address_serves_any_ip_but_no_foreign_name() -> None:
    exposure = Exposure.of(ServeConfig(host="0.0.0.0", insecure=True))
    assert exposure.host_allowed("192.168.1.20:8050")
    assert exposure.host_allowed("[fe80::1]:8050")
    assert not exposure.host_allowed("rebind.evil.example:8050")


def test_a_star_in_allowed_hosts_turns_the_host_check_off() -> None:
    assert Exposure.of(ServeConfig(allowed_hosts=["*"])).host_allowed("anything.example")


@pytest.mark.parametrize(
    ("header", "name"),
    [("127.0.0.1:8050", "127.0.0.1"), ("[::1]:80", "::1"), ("LocalHost.", "localhost"),
     ("::1", "::1")],
)  # fmt: skip
def test_host_name_drops_the_port_and_the_case(header: str, name: str) -> None:
    assert host_name(header) == name
