"""A generic webhook: the alert as JSON, POSTed to a URL from the environment."""

from __future__ import annotations

import aiohttp

from tickpipe.monitor.alerts.engine import Alert
from tickpipe.monitor.notify.base import alert_json, alert_text, post_json


def webhook_payload(alert: Alert) -> dict:
    """`{"version": 1, "text": ..., "alert": {rule, severity, state, labels, ...}}`."""
    return {"version": 1, "source": "tickpipe", "text": alert_text(alert),
            "alert": alert_json(alert)}  # fmt: skip


class WebhookNotifier:
    name = "webhook"

    def __init__(self, url: str) -> None:
        self._url = url

    async def send(self, alert: Alert, session: aiohttp.ClientSession) -> None:
        await post_json(session, self._url, webhook_payload(alert), self.name)
