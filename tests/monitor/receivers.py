"""Real local endpoints notifications go to: an aiohttp HTTP server standing in for Slack,
Discord, Telegram and webhook receivers, and an aiosmtpd SMTP server."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class HttpReceiver:
    """Records every POST (path, JSON body); `fail[path] = n` answers n times 500 first,
    `hang` makes every request wait that long."""

    received: list[tuple[str, Any]] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)
    fail: dict[str, int] = field(default_factory=dict)
    hang: float = 0.0
    url: str = ""

    async def __aenter__(self) -> HttpReceiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.path
        self.attempts[path] = self.attempts.get(path, 0) + 1
        if self.hang:
            await asyncio.sleep(self.hang)
        if self.fail.get(path, 0) > 0:
            self.fail[path] -= 1
            return web.json_response({"ok": False}, status=500)
        self.received.append((path, await request.json()))
        return web.json_response({"ok": True})

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                await asyncio.sleep(0.02)


class _Handler:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(envelope)
        return "250 Message accepted for delivery"


class SmtpReceiver:
    """aiosmtpd on 127.0.0.1 (its own thread); `messages` holds the received envelopes."""

    def __enter__(self) -> SmtpReceiver:
        self.handler = _Handler()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def messages(self) -> list[Any]:
        return self.handler.messages
