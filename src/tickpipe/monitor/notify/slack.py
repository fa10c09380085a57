"""Slack incoming webhook: `text` (what notifications show) and one mrkdwn section block."""

from __future__ import annotations

import aiohttp

from tickpipe.monitor.alerts.engine import Alert
from tickpipe.monitor.notify.base import alert_text, labels_text, post_json


def slack_payload(alert: Alert) -> dict:
    detail = f"*{alert.rule}* ({alert.severity}, {alert.state})\n{alert.message}"
    if labels_text(alert):
        detail += f"\n`{labels_text(alert)}`"
    return {
        "text": alert_text(alert),
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": detail}}],
    }


class SlackNotifier:
    name = "slack"

    def __init__(self, url: str) -> None:
        self._url = url

    async def send(self, alert: Alert, session: aiohttp.ClientSession) -> None:
        await post_json(session, self._url, slack_payload(alert), self.name)
