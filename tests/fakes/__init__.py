"""Local stand-ins for the outside world (exchanges), speaking their real protocols."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any


def async_test(
    timeout: float = 15.0,
) -> Callable[[Callable[..., Coroutine[Any, Any, None]]], Callable[..., None]]:
    """Run an async test function on a fresh event loop, failing it after `timeout` seconds.

    (No pytest-asyncio here; `asyncio.timeout` because 3.11's `wait_for` can lose a cancel.)
    """

    def decorate(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> None:
            async def bounded() -> None:
                async with asyncio.timeout(timeout):
                    await fn(*args, **kwargs)

            asyncio.run(bounded())

        return run

    return decorate
