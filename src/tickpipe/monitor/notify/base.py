"""What every notifier shares: the text of an alert, JSON POSTs, and a dispatcher that sends
without ever blocking the pipeline's loop.

Each notifier gets a bounded queue and one worker task; a full queue drops its oldest alert
(counted), so a dead endpoint costs memory for a few alerts, not for all of them. A send has
a timeout and a few retries with backoff. Errors are logged by notifier name and status only:
the URL of a webhook is its secret, and so is a bot token inside a URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

import aiohttp

from tickpipe.monitor.alerts.engine import Alert

log = logging.getLogger("tickpipe.alerts")
QUEUE_SIZE = 100
ATTEMPTS = 3
TIMEOUT_S = 10.0


class SendError(RuntimeError):
    """A notification was refused; the message never holds the endpoint's URL."""


class Notifier(Protocol):
    name: str

    async def send(self, alert: Alert, session: aiohttp.ClientSession) -> None: ...


def labels_text(alert: Alert) -> str:
    return ", ".join(f"{k}={v}" for k, v in alert.labels.items() if v)


def alert_text(alert: Alert) -> str:
    """One line for chat services, logs and mail subjects."""
    where = labels_text(alert)
    where = f" ({where})" if where else ""
    return f"[{alert.state.upper()}] {alert.severity} {alert.rule}{where}: {alert.message}"


def alert_json(alert: Alert) -> dict[str, Any]:
    """The alert as the API shows it (without the engine's bookkeeping)."""
    return {
        "rule": alert.rule, "severity": alert.severity, "state": alert.state,
        "labels": dict(alert.labels), "value": alert.value, "message": alert.message,
        "since": alert.since, "updated": alert.updated,
    }  # fmt: skip


class JsonPostNotifier:
    """Sends each alert as one JSON document POSTed to a URL (webhook, Slack, Discord,
    Telegram): a subclass names itself and says what the document holds."""

    name: str

    def __init__(self, url: str) -> None:
        self._url = url  # the secret: never logged

    def payload(self, alert: Alert) -> dict[str, Any]:
        raise NotImplementedError

    async def send(self, alert: Alert, session: aiohttp.ClientSession) -> None:
        async with session.post(self._url, json=self.payload(alert)) as response:
            if response.status >= 300:
                raise SendError(f"{self.name}: HTTP {response.status}")


class Dispatcher:
    """Queues alerts for each notifier and sends them from background tasks."""

    def __init__(self, notifiers: Sequence[Notifier], queue_size: int = QUEUE_SIZE) -> None:
        self.notifiers = list(notifiers)
        self.queue_size = queue_size
        self.outcomes: Counter[tuple[str, str]] = Counter()  # (notifier, sent|failed|dropped)
        self._queues: dict[str, asyncio.Queue[Alert]] = {}
        self._tasks: list[asyncio.Task] = []
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S))
        for notifier in self.notifiers:
            queue: asyncio.Queue[Alert] = asyncio.Queue(self.queue_size)
            self._queues[notifier.name] = queue
            self._tasks.append(
                asyncio.create_task(self._worker(notifier, queue), name=f"notify:{notifier.name}")
            )

    def notify(self, alerts: Sequence[Alert]) -> None:
        """Queue `alerts` for every notifier; never waits."""
        for queue_name, queue in self._queues.items():
            for alert in alerts:
                if queue.full():
                    queue.get_nowait()
                    queue.task_done()
                    self.outcomes[(queue_name, "dropped")] += 1
                queue.put_nowait(alert)

    async def close(self, drain_s: float = 5.0) -> None:
        """Give queued alerts `drain_s` to go out, then stop."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain_s):
                for queue in self._queues.values():
                    await queue.join()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _worker(self, notifier: Notifier, queue: asyncio.Queue[Alert]) -> None:
        assert self._session is not None
        while True:
            alert = await queue.get()
            try:
                for attempt in range(ATTEMPTS):
                    try:
                        await notifier.send(alert, self._session)
                        self.outcomes[(notifier.name, "sent")] += 1
                        break
                    except (SendError, aiohttp.ClientError, OSError, TimeoutError) as exc:
                        reason = str(exc) if isinstance(exc, SendError) else type(exc).__name__
                        if attempt + 1 == ATTEMPTS:
                            self.outcomes[(notifier.name, "failed")] += 1
                            log.warning("alert notification via %s failed: %s", notifier.name,
                                        reason)  # fmt: skip
                        else:
                            await asyncio.sleep(0.5 * 2**attempt)
            finally:
                queue.task_done()
