"""Slack incoming webhook: `text` (what notifications show) and one mrkdwn section block."""

from __future__ import annotations

from tickpipe.monitor.alerts.engine import Alert
from tickpipe.monitor.notify.base import JsonPostNotifier, alert_text, labels_text


def slack_payload(alert: Alert) -> dict:
    detail = f"*{alert.rule}* ({alert.severity}, {alert.state})\n{alert.message}"
    if labels_text(alert):
        detail += f"\n`{labels_text(alert)}`"
    return {
        "text": alert_text(alert),
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": detail}}],
    }


class SlackNotifier(JsonPostNotifier):
    name = "slack"

    def payload(self, alert: Alert) -> dict:
        return slack_payload(alert)
