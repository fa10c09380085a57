"""A simulated market: realistic-looking trades with no network, for `tickpipe demo` and benchmarks.

Everything random comes from one seeded numpy Generator, and whole batches are generated with
array operations, so the same code serves a few trades per second (a calm demo) and millions
(a benchmark). `MarketSimulator` holds the market's state and generates trades for a span of
event time without sleeping; `SimulatedMarket` paces it to the wall clock as a `Source`.

What makes it look like a market:
- activity is skewed: a few busy symbols (Zipf-like weights) and a quarter of quiet ones that
  trade about once every few seconds whatever the total rate, so idle windows must close on time;
- the total rate switches randomly between calm, normal and burst regimes (averaging `rate`);
- prices are geometric random walks in event time, rounded to a tick that suits the price, and
  sizes are positive, heavy-tailed and rounded to a lot; the taker side leans with the price move.
"""

from __future__ import annotations

import asyncio
import math
import time

import numpy as np

from tickpipe.records import SIDE_BUY, SIDE_SELL, Instrument, TradeBatch
from tickpipe.sources import SourceContext
from tickpipe.symbols import normalize_symbol

# Real-looking bases first (in rough order of activity), then synthetic SYM<n>.
BASES = (
    "BTC", "ETH", "SOL", "BNB", "XRP", "DOGE", "ADA", "AVAX", "TRX", "LINK", "DOT", "TON",
    "LTC", "BCH", "NEAR", "UNI", "ATOM", "XLM", "ETC", "FIL", "APT", "ARB", "OP", "SUI",
    "INJ", "HBAR", "AAVE", "MKR", "PEPE", "SHIB",
)  # fmt: skip
START_PRICES = {
    "BTC": 65_000.0, "ETH": 3_400.0, "SOL": 150.0, "BNB": 580.0, "XRP": 0.52, "DOGE": 0.15,
    "ADA": 0.45, "AVAX": 35.0, "TRX": 0.12, "LINK": 15.0, "DOT": 7.0, "TON": 6.5, "LTC": 80.0,
    "BCH": 450.0, "NEAR": 6.0, "UNI": 9.0, "ATOM": 8.0, "XLM": 0.11, "ETC": 26.0, "FIL": 5.5,
    "APT": 9.0, "ARB": 1.0, "OP": 2.2, "SUI": 1.1, "INJ": 25.0, "HBAR": 0.09, "AAVE": 95.0,
    "MKR": 2_800.0, "PEPE": 0.000012, "SHIB": 0.000024,
}  # fmt: skip

# Trade ids are clock_us * SEQ_PER_US + n, so a restarted process starts above every id an
# earlier one issued unless a symbol averaged more than 16M trades/s. 2024 gives about 2.8e16,
# far below the int64 limit of 9.2e18 (it overflows only after the year 18000).
SEQ_PER_US = 16

# Rate regimes: (multiplier before normalization, chance of being picked, mean duration in s).
_REGIMES = ((0.4, 0.3, 6.0), (1.0, 0.5, 8.0), (4.0, 0.2, 2.0))
_QUIET_RATE = (0.1, 0.5)  # trades/s of each quiet symbol, log-uniform between these
_QUIET_MAX_SHARE = 0.1  # quiet symbols never take more than this share of the total rate
_ZIPF_EXPONENT = 1.2
_VOLATILITY = (1e-4, 4e-4)  # log-price standard deviation per sqrt(second), per symbol
_MEDIAN_NOTIONAL = 150.0  # quote currency per trade
_LATENCY_US = (300, 2_000)  # recv_ts - ts: a fixed part plus an exponential with this mean
_US = 1_000_000


def symbol_names(count: int) -> list[str]:
    """`count` symbols: BTC-USDT, ETH-USDT, ... then SYM30-USDT, SYM31-USDT, ..."""
    return [f"{BASES[i]}-USDT" if i < len(BASES) else f"SYM{i}-USDT" for i in range(count)]


def seq_start(now_us: int | None = None) -> int:
    """The first trade id of a market started now: above every id of a market started earlier."""
    return (time.time_ns() // 1000 if now_us is None else now_us) * SEQ_PER_US


class MarketSimulator:
    """The state of a simulated market, advanced deterministically by each call.

    The same seed and the same sequence of calls give the same trades, with no clock involved:
    tests and benchmarks call `span` or `trades` directly.
    """

    def __init__(
        self,
        symbols: int | list[str] = 20,
        rate: float = 2000.0,
        seed: int = 0,
        exchange: str = "simulated",
        source: str = "simulated",
        start_seq: int = 0,
    ) -> None:
        names = symbol_names(symbols) if isinstance(symbols, int) else list(symbols)
        if not names:
            raise ValueError("symbols must be at least 1 (a count or a list of BASE-QUOTE names)")
        if not rate > 0 or not math.isfinite(rate):
            raise ValueError(f"rate must be a positive number of trades/s, got {rate!r}")
        if not 0 <= start_seq < 2**62:
            raise ValueError(f"start_seq must be between 0 and 2**62, got {start_seq!r}")
        self.rate = float(rate)
        self.source = source
        self.rng = np.random.default_rng(seed)
        self.instruments = [Instrument(exchange, normalize_symbol(s)) for s in names]
        if len(set(self.instruments)) < len(names):
            raise ValueError(f"symbols must not repeat, got {names!r}")
        n = len(names)
        self.weights = self._activity_weights(n)
        self.next_seq = np.full(n, start_seq, np.int64)
        self.last_ts = np.full(n, -1, np.int64)  # -1: no trade yet
        bases = [i.symbol.split("-")[0] for i in self.instruments]
        start = np.array([START_PRICES.get(base, np.nan) for base in bases])
        unknown = np.isnan(start)
        start[unknown] = np.exp(self.rng.uniform(np.log(0.01), np.log(100.0), int(unknown.sum())))
        self.log_price = np.log(start)
        low, high = np.log(_VOLATILITY)
        self.volatility = np.exp(self.rng.uniform(float(low), float(high), n))
        # Ticks of about 5 significant digits (BTC 0.1, DOGE 0.000001), lots worth about a
        # cent to a dollar (BTC 0.00001, DOGE 1), as on the big venues.
        self._tick = _Grid(np.clip(5 - np.floor(np.log10(start)), 0, 12))
        self._lot = _Grid(np.clip(3 - np.floor(np.log10(1000.0 / start)), -9, 12))
        mults, chances, durations = (np.array(col) for col in zip(*_REGIMES, strict=True))
        time_share = chances * durations / (chances * durations).sum()
        self._regime_mult = mults / (time_share * mults).sum()  # averages 1 over time
        self._regime_chance = chances
        self._regime_duration = durations
        self.regime = 1  # index into _REGIMES: start in the normal one
        self._regime_end: int | None = None

    def _activity_weights(self, n: int) -> np.ndarray:
        """Each symbol's share of the rate: Zipf-like, with a quiet quarter trading every few s."""
        quiet = n // 4
        active = n - quiet
        low, high = np.log(_QUIET_RATE)
        quiet_rates = np.exp(self.rng.uniform(float(low), float(high), quiet))
        quiet_rates *= min(1.0, _QUIET_MAX_SHARE * self.rate / max(quiet_rates.sum(), 1e-12))
        zipf = 1.0 / np.arange(1, active + 1) ** _ZIPF_EXPONENT
        active_rates = zipf / zipf.sum() * (self.rate - quiet_rates.sum())
        rates = np.concatenate([active_rates, quiet_rates])
        return rates / rates.sum()

    @property
    def symbols(self) -> list[str]:
        return [i.symbol for i in self.instruments]

    def span(self, start_ts: int, end_ts: int) -> TradeBatch:
        """The trades of event-time span [start_ts, end_ts) (µs), arriving at `rate` on average."""
        if end_ts <= start_ts:
            return self._fill(np.empty(0, np.int64), np.empty(0, np.int32), end_ts)
        if self._regime_end is None:
            self._regime_end = start_ts + self._regime_length()
        pieces = []
        seg_start = start_ts
        while seg_start < end_ts:
            if self._regime_end <= seg_start:
                self.regime = int(self.rng.choice(len(self._regime_chance), p=self._regime_chance))
                self._regime_end = seg_start + self._regime_length()
            seg_end = min(end_ts, self._regime_end)
            seconds = (seg_end - seg_start) / _US
            count = self.rng.poisson(self.rate * self._regime_mult[self.regime] * seconds)
            pieces.append(np.sort(self.rng.integers(seg_start, seg_end, count)))
            seg_start = seg_end
        ts = np.concatenate(pieces)
        instrument = self.rng.choice(len(self.weights), len(ts), p=self.weights).astype(np.int32)
        return self._fill(ts, instrument, end_ts)

    def trades(self, n_trades: int, start_ts: int, duration_us: int | None = None) -> TradeBatch:
        """Exactly `n_trades` trades spread over `duration_us` (default: n_trades / rate)."""
        if duration_us is None:
            duration_us = max(1, round(n_trades / self.rate * _US))
        end_ts = start_ts + duration_us
        ts = np.sort(self.rng.integers(start_ts, end_ts, n_trades))
        instrument = self.rng.choice(len(self.weights), n_trades, p=self.weights).astype(np.int32)
        return self._fill(ts, instrument, end_ts)

    def _regime_length(self) -> int:
        return max(1, round(self.rng.exponential(self._regime_duration[self.regime]) * _US))

    def _fill(self, ts: np.ndarray, instrument: np.ndarray, end_ts: int) -> TradeBatch:
        """Prices, sizes, sides and ids for trades at `ts` (sorted) of `instrument`."""
        n = len(ts)
        rng = self.rng
        n_sym = len(self.instruments)
        unset = self.last_ts < 0
        self.last_ts[unset] = ts[0] if n else end_ts
        # Work symbol by symbol: a stable sort keeps each symbol's trades in time order (and a
        # 16-bit key makes numpy use a radix sort, five times faster).
        key = instrument.astype(np.uint16) if n_sym <= 1 << 16 else instrument
        order = np.argsort(key, kind="stable")
        sym = instrument[order]
        counts = np.bincount(sym, minlength=n_sym)
        starts = np.cumsum(counts) - counts
        rank = np.arange(n) - starts[sym]
        t = np.maximum(ts[order], self.last_ts[sym])
        prev = np.empty_like(t)
        prev[1:] = t[:-1]
        first = rank == 0
        prev[first] = self.last_ts[sym[first]]
        z = rng.standard_normal(n)
        step = self.volatility[sym] * np.sqrt((t - prev) / _US) * z
        walk = np.cumsum(step)
        before_group = (walk - step)[starts[counts > 0]]
        offset = np.zeros(n_sym)
        offset[counts > 0] = before_group
        log_price = self.log_price[sym] + walk - offset[sym]
        price = self._tick.round(np.exp(log_price), sym)
        notional = _MEDIAN_NOTIONAL * np.exp(1.3 * rng.standard_normal(n))
        size = self._lot.round(notional / price, sym)
        buy_chance = 0.5 + 0.3 * np.sign(z)
        side = np.where(rng.random(n) < buy_chance, SIDE_BUY, SIDE_SELL).astype(np.int8)
        seq = self.next_seq[sym] + rank
        latency = _LATENCY_US[0] + rng.exponential(_LATENCY_US[1], n).astype(np.int64)
        recv = np.minimum(t + latency, max(end_ts, int(t.max()) if n else end_ts))

        active = counts > 0
        last = (starts + counts - 1)[active]
        self.log_price[active] = log_price[last]
        self.last_ts[active] = t[last]
        self.next_seq += counts

        # Back to time order: a merged feed delivers trades as they happen.
        back = np.empty(n, np.int64)
        back[order] = np.arange(n)
        return TradeBatch(
            source=self.source,
            instruments=self.instruments,
            instrument=sym[back],
            seq=seq[back],
            price=price[back],
            size=size[back],
            side=side[back],
            ts=t[back],
            recv_ts=recv[back],
        )


class _Grid:
    """Per-symbol rounding to a number of decimals (negative: tens, hundreds, ...).

    Rounds through exact powers of ten, so 0.1 comes out as the float that "0.1" parses to.
    """

    def __init__(self, decimals: np.ndarray) -> None:
        self.up = np.where(decimals >= 0, 10.0 ** np.maximum(decimals, 0), 1.0)
        self.down = np.where(decimals < 0, 10.0 ** np.maximum(-decimals, 0), 1.0)
        self.step = self.down / self.up

    def round(self, x: np.ndarray, sym: np.ndarray) -> np.ndarray:
        """`x` (of symbols `sym`) on the grid, and at least one step: never zero."""
        up = self.up[sym]
        down = self.down[sym]
        return np.maximum(np.round(x * up / down) * down / up, self.step[sym])


class SimulatedMarket:
    """A `Source` of simulated trades, paced to the wall clock (`tickpipe demo`).

    Every `batch_interval` seconds it emits the trades of the wall-clock time that passed,
    with `ts` in that interval and `recv_ts` a little later. Trade ids continue from the
    start time (see `SEQ_PER_US`), so a restarted demo never reuses stored ids.
    """

    def __init__(
        self,
        symbols: int | list[str] = 20,
        rate: float = 2000.0,
        seed: int = 0,
        exchange: str = "simulated",
        name: str = "simulated",
        batch_interval: float = 0.05,
        start_seq: int | None = None,
    ) -> None:
        if not batch_interval > 0:
            raise ValueError(f"batch_interval must be positive (seconds), got {batch_interval!r}")
        self.name = name
        self.batch_interval = float(batch_interval)
        self.simulator = MarketSimulator(
            symbols,
            rate,
            seed,
            exchange=exchange,
            source=name,
            start_seq=seq_start() if start_seq is None else start_seq,
        )

    def generate(self, n_trades: int, start_ts: int, duration_us: int | None = None) -> TradeBatch:
        """Exactly `n_trades` next trades, without sleeping (tests and benchmarks)."""
        return self.simulator.trades(n_trades, start_ts, duration_us)

    def span(self, start_ts: int, end_ts: int) -> TradeBatch:
        """The next trades of event-time span [start_ts, end_ts), without sleeping."""
        return self.simulator.span(start_ts, end_ts)

    async def run(self, ctx: SourceContext) -> None:
        """Emit a batch every `batch_interval` until cancelled."""
        wall0 = time.time_ns() // 1000
        mono0 = time.monotonic_ns()

        def now_us() -> int:
            # The wall clock read once and advanced by the monotonic clock, so `ts` never
            # goes backwards when the system clock is adjusted.
            return wall0 + (time.monotonic_ns() - mono0) // 1000

        # When `emit` waits (backpressure) or generation cannot keep up, the market skips the
        # time it missed instead of generating it later: a backlog would only grow.
        max_span = max(1, round(4 * self.batch_interval * _US))
        ctx.stats.connected = True
        prev_end = now_us()
        wake = time.monotonic()
        try:
            while True:
                wake += self.batch_interval
                delay = wake - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    wake = time.monotonic()
                    await asyncio.sleep(0)
                end = now_us()
                batch = self.simulator.span(max(prev_end, end - max_span), end)
                prev_end = end
                if len(batch):
                    ctx.stats.frames += 1
                    ctx.stats.trades += len(batch)
                    await ctx.emit(batch)
        finally:
            ctx.stats.connected = False
