"""Data quality per venue and the consolidated prices as Prometheus metrics, read from the
pipeline's `PipelineStatus` at each scrape (nothing is copied as trades arrive)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from tickpipe.runtime.status import PipelineStatus

# metric name (counters without _total) -> help, and the VenueQuality field it reads
_COUNTERS = {
    "tickpipe_venue_trades_received": ("Trades of the venue that reached the engine.",
                                       "received"),
    "tickpipe_venue_out_of_order_trades": ("Trades whose event time is earlier than one "
                                           "already received for their instrument.",
                                           "out_of_order"),
    "tickpipe_venue_gaps": ("Sequence gaps the sources reported for the venue.", "gaps"),
    "tickpipe_venue_missing_trades": ("Trades the venue's gaps left out (before backfill).",
                                      "missing"),
    "tickpipe_venue_duplicate_trades": ("The venue's trades dropped as already accepted.",
                                        "duplicates"),
    "tickpipe_venue_future_trades": ("Trades stamped beyond future_tolerance after receipt "
                                     "(kept, left out of the watermark).", "future"),
}  # fmt: skip


class QualityCollector(Collector):
    """`tickpipe_venue_*` and `tickpipe_composite_*` from the status read model."""

    def __init__(self, status: Callable[[], PipelineStatus]) -> None:
        self.status = status

    def collect(self) -> Iterable:
        status = self.status()
        venues = list(status.quality.values())
        for name, (doc, attr) in _COUNTERS.items():
            family = CounterMetricFamily(name, doc, labels=["exchange"])
            for q in venues:
                family.add_metric([q.exchange], getattr(q, attr))
            yield family
        delay = GaugeMetricFamily(
            "tickpipe_venue_receive_delay_seconds", "Local receipt minus event time of the "
            "venue's recent trades (last one to two minutes), by quantile.",
            labels=["exchange", "quantile"])  # fmt: skip
        for q in venues:
            for quantile, value in (("0.5", q.delay_p50_ms), ("0.99", q.delay_p99_ms)):
                if value is not None:
                    delay.add_metric([q.exchange, quantile], value / 1000)
        yield delay
        price = GaugeMetricFamily(
            "tickpipe_composite_price", "The consolidated price across venues.", labels=["symbol"]
        )
        deviation = GaugeMetricFamily(
            "tickpipe_venue_deviation_percent", "A venue's latest price against the composite, "
            "in percent.", labels=["composite", "exchange", "symbol"])  # fmt: skip
        stale = GaugeMetricFamily(
            "tickpipe_venue_staleness_seconds", "Seconds since a venue's latest trade of a "
            "composite's asset was received.",
            labels=["composite", "exchange", "symbol"])  # fmt: skip
        for c in status.composites:
            if c.price is not None:
                price.add_metric([c.symbol], c.price)
            for v in c.venues:
                deviation.add_metric([c.symbol, v.exchange, v.symbol], v.deviation_pct)
                stale.add_metric([c.symbol, v.exchange, v.symbol], v.stale_s)
        yield from (price, deviation, stale)
