"""The consolidated (composite) price of an asset across venues, robust to one bad venue.

Venues are grouped by asset and quote: `BTC-USD` on Coinbase and Kraken form one group, and
`BTC-USDT` on Binance joins it only when USD and USDT are configured as equivalent
(`composite.equivalent_quotes`); the group's composite symbol takes the first quote of that
list. The composite of a set of venue prices is the mean of those within `band_pct` of their
median (`band_mean`), so one venue far off (a stuck feed, a bad print) is left out and the
composite follows the rest; when none is within the band, the venues nearest the median.

Two views, one rule:
- `CompositeCandles` turns the engine's candle updates into candles of exchange `composite`,
  stored like any other: per window, the venues whose close is within the band make the
  composite's open, high, low and close (means) and volume (sums); it is final once every
  venue's candle of the window is, and a venue's later correction issues it again with the
  revision raised.
- `consolidate` gives the live view: each venue's latest price, how far it deviates from the
  composite and how long since it last traded (stale venues are left out of the price).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tickpipe.engine.composite_settings import COMPOSITE, CompositeConfig
from tickpipe.engine.windows import parse_window
from tickpipe.records import Candle


def band_mean(prices: Sequence[float], band_pct: float) -> tuple[float, list[bool]]:
    """The mean of the prices within `band_pct` percent of their median, and which those are.

    When none is (two venues far apart, or an even count split wide), the prices nearest
    the median are used: their mean is the median itself.
    """
    median = statistics.median(prices)
    width = abs(median) * band_pct / 100
    inside = [abs(p - median) <= width for p in prices]
    if not any(inside):
        nearest = min(abs(p - median) for p in prices) * (1 + 1e-9)  # ties within rounding
        inside = [abs(p - median) <= nearest for p in prices]
    chosen = [p for p, ok in zip(prices, inside, strict=True) if ok]
    return sum(chosen) / len(chosen), inside


_Venue = tuple[str, str]  # (exchange, symbol)
_NEVER = -(2**62)


@dataclass
class _Series:
    """One composite symbol's windows of one interval."""

    size: int  # the window's length, µs
    windows: dict[int, dict[_Venue, Candle]] = field(default_factory=dict)  # start -> venue
    sent: dict[int, tuple[int, bool]] = field(default_factory=dict)  # revision, final
    open: set[int] = field(default_factory=set)  # starts sent, not yet final
    last: dict[_Venue, tuple[int, float]] = field(default_factory=dict)  # newest start, close
    floor: int = _NEVER  # windows before it are forgotten; candles for them ignored


class CompositeCandles:
    """Composite candles from venue candle updates.

    An asset's composite starts once `min_venues` venues traded it (until then its venues'
    windows of the last `stale_after` are kept, so the venue that joins finds them). A
    window's composite is final once every venue's candle of it is final and every other
    venue of the asset has moved past it (a candle of a later window: it had no trade in
    this one) or went quiet long before it (`stale_after`), so a venue that lags in event
    time cannot leave the composite final without it. Memory is bounded: windows more
    than the correction horizon behind the slowest active venue are forgotten, and candles
    for them ignored (the engine corrects no window that old either).
    """

    def __init__(self, config: CompositeConfig, horizon_us: int) -> None:
        self.config = config
        self.horizon_us = horizon_us
        self._venues: dict[str, set[_Venue]] = {}  # composite symbol -> venues seen
        self._series: dict[tuple[str, str], _Series] = {}  # (composite symbol, interval)
        self._newest: dict[tuple[_Venue, str], int] = {}  # (venue, interval) -> newest start

    def __len__(self) -> int:
        return sum(len(s.windows) for s in self._series.values())

    def update(self, candles: Iterable[Candle]) -> list[Candle]:
        """The composite candles that `candles` (an engine step's updates) change."""
        mine = []
        for c in candles:  # first every venue, so a step's candles all count once it qualifies
            group = self.config.group(c.symbol) if c.exchange != COMPOSITE else None
            if group is not None:
                venue = (c.exchange, c.symbol)
                self._venues.setdefault(group, set()).add(venue)
                key = (venue, c.interval)
                self._newest[key] = max(c.start, self._newest.get(key, _NEVER))
                mine.append((group, venue, c))
        touched: dict[tuple[str, str], dict[int, None]] = {}
        for group, venue, c in mine:
            series = self._series.get((group, c.interval))
            if series is None:
                size = parse_window(c.interval).size
                series = self._series[(group, c.interval)] = _Series(size)
            if c.start < series.floor:
                continue
            series.windows.setdefault(c.start, {})[venue] = c
            if c.start >= series.last.get(venue, (_NEVER, 0.0))[0]:
                series.last[venue] = (c.start, c.close)
            touched.setdefault((group, c.interval), {})[c.start] = None
        out = []
        for (group, interval), starts in touched.items():
            series = self._series[(group, interval)]
            if not self._qualified(group):
                self._forget(series, group, interval)
                continue
            # Windows sent provisional may become final as a venue moves past them.
            for start in sorted(series.open - starts.keys()):
                if self._final(series, group, interval, start):
                    starts[start] = None
            for start in starts:
                candle = self._composite(series, group, interval, start)
                if candle is not None:
                    out.append(candle)
            self._forget(series, group, interval)
        return out

    def _qualified(self, group: str) -> bool:
        return len(self._venues[group]) >= self.config.min_venues

    def _final(self, series: _Series, group: str, interval: str, start: int) -> bool:
        members = series.windows[start]
        quiet = start - self.config.stale_after_us
        return all(c.final for c in members.values()) and all(
            v in members or not quiet <= self._newest.get((v, interval), _NEVER) <= start
            for v in self._venues[group]
        )

    def _composite(self, series: _Series, group: str, interval: str, start: int) -> Candle | None:
        """The window's composite now; None while no venue of it is within the band (a
        provisional window only some venue, perhaps the bad one, has traded in yet).

        The band is around the median of the closes of this window's venues. While the
        window is open, active venues without a candle in it yet stand in with their latest
        close, so a bad venue that trades first in a window is still left out. A final
        composite is the rule over the venues' final candles of the window alone: the same
        whatever order they came in, as a recomputation from the stored candles gives."""
        present = series.windows[start]
        candles = [c for _, c in sorted(present.items())]
        revision, was_final = series.sent.get(start, (0, False))
        # Once final, final: a venue that turns up later corrects it (revision + 1), as a
        # late trade corrects a closed candle, and never reopens it.
        final = was_final or self._final(series, group, interval, start)
        stale = self.config.stale_after_us
        closes = [c.close for c in candles]
        if not final:
            closes += [
                close
                for venue, (at, close) in series.last.items()
                if venue not in present and abs(at - start) <= stale
            ]
        median = statistics.median(closes)
        width = abs(median) * self.config.band_pct / 100
        used = [c for c in candles if abs(c.close - median) <= width]
        if not used:
            if not final:
                return None
            _, inside = band_mean([c.close for c in candles], self.config.band_pct)
            used = [c for c, ok in zip(candles, inside, strict=True) if ok]
        n = len(used)
        o = h = lo = cl = mean = volume = quote = buy = sell = 0.0
        trades = 0
        for c in used:  # one pass: this runs for every venue candle update
            o, h, lo, cl = o + c.open, h + c.high, lo + c.low, cl + c.close
            mean, volume, quote = mean + c.mean_price, volume + c.volume, quote + c.quote_volume
            buy, sell, trades = buy + c.buy_volume, sell + c.sell_volume, trades + c.trades
        close = cl / n
        if was_final:
            revision += 1
        series.sent[start] = (revision, final)
        (series.open.discard if final else series.open.add)(start)
        return Candle(
            exchange=COMPOSITE, symbol=group, interval=interval, start=start, open=o / n,
            high=h / n, low=lo / n, close=close, volume=volume, quote_volume=quote,
            vwap=quote / volume if volume else close, mean_price=mean / n, trades=trades,
            buy_volume=buy, sell_volume=sell, first_seq=0, last_seq=0, final=final,
            revision=revision, updated_at=max(c.updated_at for c in candles),
        )  # fmt: skip

    def _forget(self, series: _Series, group: str, interval: str) -> None:
        """Forget the windows that ended more than the horizon before the slowest active
        venue's newest one (active: within `stale_after` of the newest of all)."""
        newest = [self._newest[(v, interval)] for v in self._venues[group]
                  if (v, interval) in self._newest]  # fmt: skip
        active = max(newest) - self.config.stale_after_us
        if self._qualified(group):
            limit = min(s for s in newest if s >= active) - self.horizon_us - series.size
        else:  # not sent yet: kept only so a venue that joins finds the others' windows
            limit = active - series.size
        if limit <= series.floor:
            return
        series.floor = limit
        windows = series.windows
        old = []
        for start in windows:  # by arrival, which is nearly by start: stop at the first kept
            if start >= limit:
                break
            old.append(start)
        for start in old:
            del windows[start]
            series.sent.pop(start, None)
            series.open.discard(start)


@dataclass(frozen=True)
class VenuePrice:
    """One venue of a composite, live."""

    exchange: str
    symbol: str
    price: float
    deviation_pct: float  # (price - composite) / composite, in percent
    stale_s: float  # seconds since its latest trade was received
    stale: bool  # silent longer than `stale_after`: left out of the price
    included: bool  # within the band: part of the composite price


@dataclass(frozen=True)
class CompositePrice:
    """A composite symbol's live price and its venues."""

    symbol: str
    price: float | None  # None: every venue is stale
    venues: tuple[VenuePrice, ...]


def consolidate(
    latest: Iterable[tuple[str, str, float, int]], now_us: int, config: CompositeConfig
) -> tuple[CompositePrice, ...]:
    """The live composites from each venue's (exchange, symbol, latest price, receipt µs)."""
    groups: dict[str, list[tuple[str, str, float, int]]] = {}
    for exchange, symbol, last, recv_us in latest:
        group = config.group(symbol) if exchange != COMPOSITE else None
        if group is not None and last == last:  # not NaN: it has traded
            groups.setdefault(group, []).append((exchange, symbol, last, recv_us))
    out = []
    for group, venues in sorted(groups.items()):
        if len(venues) < config.min_venues:
            continue
        venues.sort()
        stale = [now_us - recv > config.stale_after_us for *_, recv in venues]
        fresh = [v[2] for v, old in zip(venues, stale, strict=True) if not old]
        price: float | None = None
        inside_fresh: list[bool] = []
        if fresh:
            price, inside_fresh = band_mean(fresh, config.band_pct)
        flags = iter(inside_fresh)
        rows = []
        for (exchange, symbol, p, recv), old in zip(venues, stale, strict=True):
            included = False if old else next(flags)
            deviation = (p - price) / price * 100 if price else 0.0
            rows.append(VenuePrice(exchange, symbol, p, deviation, max(0.0, (now_us - recv) / 1e6),
                                   old, included))  # fmt: skip
        out.append(CompositePrice(group, price, tuple(rows)))
    return tuple(out)
