"""The shared REST helper: JSON GETs for symbol lists and gap backfill, polite to rate limits,
and reading an answer's rows into typed records (`read_rows`).

429 and 418 answers wait for `Retry-After` (or a long default) before trying again; server
errors and dropped connections back off exponentially; other 4xx answers fail at once with the
status and the start of the body, because asking again would not change them.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import msgspec

from tickpipe.sources.ws import retry_after_seconds

T = TypeVar("T")


@dataclass(frozen=True)
class RestConfig:
    timeout: float = 10.0  # seconds per request
    attempts: int = 5  # tries per request, the first included
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    rate_limit_backoff: float = 60.0  # 429/418 without a usable Retry-After


class RestError(RuntimeError):
    """A REST request that failed for good; the message names the URL and the reason."""

    def __init__(self, url: str, reason: str, status: int | None = None) -> None:
        super().__init__(f"GET {url}: {reason}")
        self.url = url
        self.status = status


def read_rows(rows: Iterable[Any], kind: type[T]) -> tuple[list[T], list[Any]]:
    """The rows of an answer read as `kind` (numbers sent as strings read as numbers), and
    the rows that do not fit it (for the dead letters)."""
    read: list[T] = []
    bad: list[Any] = []
    for row in rows:
        try:
            read.append(msgspec.convert(row, kind, strict=False))
        except msgspec.ValidationError:
            bad.append(row)
    return read, bad


class RestClient:
    """JSON over HTTP GET against one base URL, with retries. Use as an async context manager."""

    def __init__(
        self,
        base_url: str,
        config: RestConfig | None = None,
        headers: Mapping[str, str] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.config = config or RestConfig()
        self.rate_limited = 0  # 429/418 answers seen (a metric for the caller)
        self._headers = dict(headers or {})
        self._rng = rng or random.Random()
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> RestClient:
        timeout = aiohttp.ClientTimeout(total=self.config.timeout)
        self._session = aiohttp.ClientSession(timeout=timeout, headers=self._headers)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """The decoded JSON body of GET `path`; RestError once the attempts are used up."""
        if self._session is None:
            raise RuntimeError("use RestClient as `async with RestClient(...) as client`")
        url = f"{self.base_url}/{path.lstrip('/')}"
        query = {k: str(v) for k, v in (params or {}).items() if v is not None}
        reason = "no attempt made"
        for attempt in range(self.config.attempts):
            delay = self._backoff(attempt)
            try:
                async with self._session.get(url, params=query) as response:
                    body = await response.read()
                    if response.status == 200:
                        try:
                            return msgspec.json.decode(body)
                        except msgspec.DecodeError as exc:
                            raise RestError(url, f"answer is not JSON ({exc})", 200) from None
                    reason = f"HTTP {response.status}: {body[:200].decode('utf-8', 'replace')}"
                    if response.status in (418, 429):
                        self.rate_limited += 1
                        wait = retry_after_seconds(response.headers.get("Retry-After"))
                        delay = self.config.rate_limit_backoff if wait is None else wait
                    elif response.status < 500:
                        raise RestError(url, reason, response.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            if attempt + 1 < self.config.attempts:
                await asyncio.sleep(delay)
        raise RestError(url, f"gave up after {self.config.attempts} attempts; last: {reason}")

    def _backoff(self, attempt: int) -> float:
        base = min(self.config.backoff_max, self.config.backoff_initial * 2**attempt)
        return base * (0.5 + 0.5 * self._rng.random())
