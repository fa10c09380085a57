"""What every section's settings module shares with the loader (`tickpipe.config`).

Each part keeps its section's struct and checks in a `settings` module beside its code (engine,
serve, sources, stores, transport; monitor in `monitor/alerts/config.py`); the checks report a
bad value through `Fail`, and the loader turns that into the one-line config error naming where
the value came from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

# fail(key, value, why): raises the one-line config error for `key`
Fail = Callable[[str, Any, str], NoReturn]
