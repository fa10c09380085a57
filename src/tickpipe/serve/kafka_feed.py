"""`tickpipe serve --kafka`: live candle updates from the candles topic into the /api/live hub.

In the distributed mode the engine runs in `tickpipe process` replicas, not in the API's
process; they publish every candle update to the candles topic. Each serve instance reads it
with a group of its own (every instance sees every update), from the newest offset (a live
feed, not history: history comes from the store), and hands the updates to its hub on the
event loop (the hub is not thread-safe).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid

from tickpipe.records import Candle
from tickpipe.serve.live import Hub
from tickpipe.transport.codecs import candle_decoder
from tickpipe.transport.kafka import consumer_settings
from tickpipe.transport.schema import SchemaError
from tickpipe.transport.settings import KafkaConfig

log = logging.getLogger("tickpipe.serve")


class CandleFeed:
    """A consumer thread: candles topic -> `hub.publish` on `loop`."""

    def __init__(self, kafka: KafkaConfig, hub: Hub, loop: asyncio.AbstractEventLoop) -> None:
        from confluent_kafka import Consumer

        settings = consumer_settings(kafka)
        settings["group.id"] = f"{kafka.group}-serve-{uuid.uuid4().hex[:12]}"
        settings["auto.offset.reset"] = "latest"
        self.topic = kafka.candles_topic
        self.hub = hub
        self.loop = loop
        self.decode = candle_decoder(kafka)  # JSON; Avro too with a schema registry
        self.received = 0
        self.malformed = 0
        self.assigned = threading.Event()
        self._consumer = Consumer(settings, logger=log)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tickpipe-candle-feed", daemon=True)

    def start(self) -> None:
        self._consumer.subscribe([self.topic], on_assign=lambda *_: self.assigned.set())
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                candles: list[Candle] = []
                for msg in self._consumer.consume(1000, 0.2):
                    value = msg.value()
                    if msg.error() is not None or value is None:
                        continue
                    try:
                        candles.append(self.decode(value))
                    except SchemaError:
                        self.malformed += 1
                if candles:
                    self.received += len(candles)
                    self.loop.call_soon_threadsafe(self.hub.publish, candles)
        except RuntimeError:  # the loop closed under us at shutdown
            pass
        finally:
            self._consumer.close()
