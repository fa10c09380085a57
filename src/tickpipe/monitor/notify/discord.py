"""Discord webhook: `content` (at most 2000 characters) and one embed coloured by state."""

from __future__ import annotations

import aiohttp

from tickpipe.monitor.alerts.engine import FIRING, RESOLVED, Alert
from tickpipe.monitor.notify.base import alert_text, labels_text, post_json

COLOURS = {FIRING: 0xD62728, RESOLVED: 0x2CA02C}
CONTENT_MAX = 2000


def discord_payload(alert: Alert) -> dict:
    return {
        "username": "tickpipe",
        "content": alert_text(alert)[:CONTENT_MAX],
        "embeds": [{
            "title": f"{alert.rule} ({alert.severity}): {alert.state}"[:256],
            "description": (alert.message + (f"\n{labels_text(alert)}" if alert.labels else ""))
            [:4096],
            "color": COLOURS.get(alert.state, 0xFF7F0E),
        }],
    }  # fmt: skip


class DiscordNotifier:
    name = "discord"

    def __init__(self, url: str) -> None:
        self._url = url

    async def send(self, alert: Alert, session: aiohttp.ClientSession) -> None:
        await post_json(session, self._url, discord_payload(alert), self.name)
