"""A generic webhook: the alert as JSON, POSTed to a URL from the environment."""

from __future__ import annotations

from tickpipe.monitor.alerts.engine import Alert
from tickpipe.monitor.notify.base import JsonPostNotifier, alert_json, alert_text


def webhook_payload(alert: Alert) -> dict:
    """`{"version": 1, "text": ..., "alert": {rule, severity, state, labels, ...}}`."""
    return {"version": 1, "source": "tickpipe", "text": alert_text(alert),
            "alert": alert_json(alert)}  # fmt: skip


class WebhookNotifier(JsonPostNotifier):
    name = "webhook"

    def payload(self, alert: Alert) -> dict:
        return webhook_payload(alert)
