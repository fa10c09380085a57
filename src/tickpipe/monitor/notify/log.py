"""Alerts as log lines: always available, and where a notification goes without any setup."""

from __future__ import annotations

import logging

import aiohttp

from tickpipe.monitor.alerts.engine import FIRING, Alert
from tickpipe.monitor.notify.base import alert_text

log = logging.getLogger("tickpipe.alerts")


class LogNotifier:
    name = "log"

    async def send(self, alert: Alert, session: aiohttp.ClientSession) -> None:
        level = logging.WARNING if alert.state == FIRING else logging.INFO
        log.log(level, "%s", alert_text(alert))
