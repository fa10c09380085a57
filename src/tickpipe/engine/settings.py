"""The engine's settings (top-level keys): windows, lateness, correction horizon, idle timer.

Durations arrive decoded (microseconds, `tickpipe.durations`); `check_engine` holds what their
types cannot say, and `EngineSettings.engine_config` turns them into the engine's `EngineConfig`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import msgspec

from tickpipe.durations import Micros, OptionalMicros, allowing
from tickpipe.engine.windows import Window, parse_window
from tickpipe.settings import Fail

if TYPE_CHECKING:
    from tickpipe.engine.candles import EngineConfig

# What a bad duration of the engine's is answered with (also used for `flush_every`).
DURATION = allowing("not a duration (use e.g. 250ms, 5s, 1m, 1h)")


class EngineSettings(msgspec.Struct, forbid_unknown_fields=True):
    """Window and timing keys of the top level of the config, as the engine counts them."""

    intervals: list[str] = msgspec.field(default_factory=lambda: ["1s", "5s", "1m", "5m", "1h"])
    hopping: list[str] = msgspec.field(default_factory=list)
    allowed_lateness_us: Annotated[Micros, DURATION] = msgspec.field(
        name="allowed_lateness", default=Micros(2_000_000)
    )
    # 0 (the key left empty): the largest window
    correction_horizon_us: Annotated[OptionalMicros, allowing("not a duration (e.g. 1h)")] = (
        msgspec.field(name="correction_horizon", default=OptionalMicros(0))
    )
    idle_timeout_us: Annotated[Micros, DURATION] = msgspec.field(
        name="idle_timeout", default=Micros(2_000_000)
    )
    provisional_every_us: Annotated[Micros, DURATION] = msgspec.field(
        name="provisional_every", default=Micros(250_000)
    )
    # A trade stamped further than this after its receipt is future-stamped: kept, counted,
    # left out of the watermark (a venue's clock ahead must not close windows early).
    future_tolerance_us: Annotated[Micros, DURATION] = msgspec.field(
        name="future_tolerance", default=Micros(5_000_000)
    )

    def windows(self) -> tuple[Window, ...]:
        return tuple(parse_window(w) for w in [*self.intervals, *self.hopping])

    def engine_config(self) -> EngineConfig:
        """The engine's config; imported here so that reading settings needs no numpy."""
        from tickpipe.engine.candles import EngineConfig

        return EngineConfig(
            windows=self.windows(),
            allowed_lateness=self.allowed_lateness_us,
            correction_horizon=self.correction_horizon_us or None,
            idle_timeout=self.idle_timeout_us,
            provisional_every=self.provisional_every_us,
            future_tolerance=self.future_tolerance_us,
        )


def check_engine(settings: EngineSettings, fail: Fail) -> None:
    """Windows: at least one, each readable, tumbling ones under `intervals` only.

    `fail(key, value, why)` raises the one-line config error.
    """
    if not settings.intervals and not settings.hopping:
        fail("intervals", settings.intervals, "give at least one interval, e.g. 1m")
    for key in ("intervals", "hopping"):
        for i, text in enumerate(getattr(settings, key)):
            try:
                window = parse_window(text)
            except ValueError as exc:
                fail(f"{key}[{i}]", text, str(exc).split(": ", 1)[-1])
            if key == "intervals" and window.hopping:
                fail(f"{key}[{i}]", text, "hopping windows go under `hopping`")
