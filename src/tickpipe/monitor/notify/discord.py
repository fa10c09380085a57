"""Discord webhook: `content` (at most 2000 characters) and one embed coloured by state."""

from __future__ import annotations

from tickpipe.monitor.alerts.engine import FIRING, RESOLVED, Alert
from tickpipe.monitor.notify.base import JsonPostNotifier, alert_text, labels_text

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


class DiscordNotifier(JsonPostNotifier):
    name = "discord"

    def payload(self, alert: Alert) -> dict:
        return discord_payload(alert)
