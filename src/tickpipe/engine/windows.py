"""Window definitions: tumbling (`1m`) and hopping (`1m/5s`: 1-minute candles every 5 s).

Windows are aligned to the Unix epoch in UTC, so the same trade falls in the same window on
every machine and in every replay. Their sizes are spelled as durations (`tickpipe.durations`).
"""

from __future__ import annotations

from dataclasses import dataclass

from tickpipe.durations import format_duration, parse_duration


@dataclass(frozen=True, slots=True)
class Window:
    """A window of `size` microseconds starting every `slide` microseconds (tumbling: equal)."""

    name: str
    size: int
    slide: int

    @property
    def hopping(self) -> bool:
        return self.slide != self.size

    def starts(self, ts: int) -> range:
        """Start times of every window of this kind that contains `ts`."""
        last = ts - ts % self.slide
        return range(last, ts - self.size, -self.slide)


def restore_cutoff(max_ts, lateness: int, horizon: int, align: int):
    """The window-aligned event time before which no window of an instrument whose newest
    trade is at `max_ts` can still change (an int, or a numpy array of them): a restart or a
    Kafka replay rebuilds windows from trades at or after it."""
    edge = max_ts - lateness - horizon - align
    return edge - edge % align


def parse_window(text: str) -> Window:
    """`1m` (tumbling) or `1m/5s` (size/slide, hopping); the slide must divide the size."""
    size_text, slash, slide_text = str(text).partition("/")
    size = parse_duration(size_text)
    if slash and not slide_text:
        raise ValueError(f"{text!r}: give the slide after the slash (e.g. 1m/5s)")
    if not slide_text:
        return Window(format_duration(size), size, size)
    slide = parse_duration(slide_text)
    if slide > size or size % slide:
        raise ValueError(f"{text!r}: the slide must divide the window size (e.g. 1m/5s)")
    if slide == size:
        return Window(format_duration(size), size, size)
    return Window(f"{format_duration(size)}/{format_duration(slide)}", size, slide)
