"""`tickpipe process`: the engine as one replica of a Kafka consumer group, exactly once.

A processor owns the partitions the group gives it. Per consumed batch it runs the same
`EngineStage` as the embedded pipeline (engine -> `StoreWriter`; its output hook publishes
candles to the candles topic), and its `Checkpoint` takes a mark; offsets are committed only
for marks the writer has made durable, each with its replay point as metadata.

On a store that keeps the consumed offsets in its write transaction (`OffsetStore`:
PostgreSQL), every flush stores the positions of the messages its rows came from, and on
assignment those stored offsets are the truth (Kafka's committed ones trail them: they are
committed after the write): a processor restarted after a crash knows exactly what is stored,
and a processor that lost a partition cannot store anything for it any more (its write is
fenced: `FencedWrite`). Kafka's commits go on, for the lag and for the other stores.

On assignment the processor seeks every new partition to its replay point and replays up to the
committed (or stored) offset through a stage without a writer (those trades are stored
already), then restores those partitions' windows with the stage's `restore`, exactly as the
embedded restart does (the trades stored after the last commit read back from the store, so
when they come again the engine drops them as duplicates), and goes live. On revocation it
writes what is pending and commits, so a rebalance replays little. Rebalances are cooperative:
only the partitions that change owner are revoked or assigned; on a revocation the processor
keeps consuming the others, with a new engine restored for their instruments from the store
(the instruments given away must not close windows here any more), without a replay.

The idle timer (a quiet instrument's windows close on wall-clock time) runs only while the
input is there: a lost connection to the brokers (librdkafka's `_TRANSPORT` or
`_ALL_BROKERS_DOWN`) stops it until every assigned partition has been read to its end again
(`_PARTITION_EOF`), and then it counts idle time from there, not from before the outage. The
trades that ingest's producer held while the brokers were away carry the
event times of the outage; with the timer running through it, the watermark would move on by
the outage's wall time and, for an outage longer than the correction horizon, they would all
be dead-lettered as late (a broker restart then lost them to the dead letters, unless the
consumer's session expired and the replay on reassignment took them in).

The store writer flushes when the input goes quiet (nothing more has arrived when the
processor asks), not only on its cadence: at a steady rate below what the store takes, a trade
waits for the transaction in progress and its own, not for `flush_every`; under a backlog
something has always arrived, and the flushes stay large.

With a lake (`--lake`), the lake follows the assignment, under the rule of
`tickpipe.stores.lake`: on going live, what the store holds of the assigned instruments and the
lake lacks is copied (`catch_up`), then a `LakeWriter` takes what the store writer commits
(`after_write`); on revocation it writes its buffers before the next owner catches up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tickpipe.config import Config
from tickpipe.deadletter import DeadLetters
from tickpipe.engine.candles import CandleEngine, EngineOutput
from tickpipe.engine.windows import restore_cutoff
from tickpipe.monitor.distributed import ProcessorMonitor
from tickpipe.records import Candle, TradeBatch
from tickpipe.runtime.checkpoint import Checkpoint, CommitFailed, Offset
from tickpipe.runtime.clock import SYSTEM_CLOCK, Clock
from tickpipe.runtime.stage import TICK_SECONDS, EngineStage
from tickpipe.runtime.writer import StoreWriter
from tickpipe.stores.base import OffsetStore, Store
from tickpipe.stores.flush import StreamOffsets
from tickpipe.stores.lake.location import open_lake
from tickpipe.stores.lake.sync import catch_up
from tickpipe.stores.lake.writer import LakeWriter
from tickpipe.transport.codecs import candle_encoder, trade_decoder
from tickpipe.transport.kafka import CandlePublisher, consumer_settings, producer_settings
from tickpipe.transport.offsets import OffsetTracker, encode_metadata
from tickpipe.transport.schema import DecodedTrades, SchemaError, is_heartbeat, to_batch

log = logging.getLogger("tickpipe.process")
CONSUME_MESSAGES = 2000
_UNNOTED = np.iinfo(np.int64).min // 4  # an instrument's max ts before the tracker saw it


@dataclass
class ProcessorStats:
    messages: int = 0
    trades: int = 0  # accepted by the engine and handed to the store (live, not replayed)
    replayed: int = 0  # trades replayed to rebuild windows after an assignment
    malformed: int = 0
    commits: int = 0
    assignments: int = 0
    started_s: float = field(default_factory=SYSTEM_CLOCK.monotonic_s)


class Processor:
    """One replica of `tickpipe process`; `run()` until `stop()` (or SIGTERM in the CLI)."""

    def __init__(
        self,
        config: Config,
        store: Store,
        name: str = "process",
        on_candles: Callable[[list[Candle]], None] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        from confluent_kafka import Consumer, Producer

        self.config = config
        self.kafka = config.kafka
        self.name = name
        self.store = store
        self.clock = clock
        self.dead_letters = DeadLetters(config.dead_letter_path)
        self.writer = StoreWriter(store, config.flush_every_s)
        # Offsets stored with the rows (the truth on assignment), where the store keeps them.
        self.offset_store = store if isinstance(store, OffsetStore) else None
        # End-of-partition events say the input is read to its end (the idle timer's guard).
        settings = {**consumer_settings(self.kafka), "client.id": name,
                    "enable.partition.eof": True}  # fmt: skip
        # The assignor's protocol (kafka.properties may name an eager one): cooperative
        # rebalances move only some partitions, with incremental (un)assignments.
        strategy = str(settings.get("partition.assignment.strategy", ""))
        self._cooperative = strategy == "cooperative-sticky"
        # Cut off from the brokers: the partitions that have not been read to their end since.
        self._unread: set[int] | None = None
        self.consumer = Consumer(settings, logger=log, error_cb=self._on_kafka_error)
        self.candles: CandlePublisher | None = None
        self._producer: Producer | None = None
        if self.kafka.candles_topic or self.kafka.dead_letter_topic:
            self._producer = Producer({**producer_settings(self.kafka), "client.id": name})
        if self.kafka.candles_topic and self._producer is not None:
            encode = candle_encoder(self.kafka)
            self.candles = CandlePublisher(self.kafka.candles_topic, self._producer, encode)
        self.on_candles = on_candles
        self.decode_trades = trade_decoder(self.kafka)  # any encoding; Avro with a registry
        # KPIs are kept under the replica's name unless the config names the process.
        process = config.monitor.process if config.monitor.process != "embedded" else name
        self.monitor = ProcessorMonitor(config, self.writer, process, clock)
        self.stats = ProcessorStats(started_s=clock.monotonic_s())
        self.lake = open_lake(config.lake_settings()) if config.lake else None
        self.lake_writer: LakeWriter | None = None  # while partitions are owned and live
        self._engine_config = config.engine_config()
        self._stop = threading.Event()
        self._gid: dict[tuple[str, str], int] = {}
        self._owner: dict[int, int] = {}  # instrument id -> its partition (keyed by instrument)
        self._new_assignment()

    # -- assignment lifecycle ------------------------------------------------------------

    def _new_assignment(self) -> None:
        engine_config = self._engine_config
        self._new_engine()
        align = max(w.size for w in engine_config.windows)
        self.tracker = OffsetTracker(engine_config.allowed_lateness, self.engine.horizon, align)
        self.checkpoint = Checkpoint(self._commit_offsets, self.name)
        self._replay_until: dict[int, int] = {}  # partition -> committed offset
        self._replaying: set[int] = set()  # partitions whose instruments the restore rebuilds
        self._held: list[Any] = []  # live messages consumed while others still replay
        self._assigned: list[int] = []
        self._paused: list[Any] = []

    def _new_engine(self) -> None:
        self.engine = CandleEngine(self._engine_config)
        self.stage = EngineStage(self.engine, self.writer, self.dead_letters, self.clock)
        self.stage.on_batch = self.monitor.received
        self.stage.on_output.append(self._publish)
        self._replay_stage = EngineStage(self.engine, None, self.dead_letters, self.clock)

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        """Partitions given to this processor: those whose windows need trades before their
        committed offset replay from their replay point into the engine, the others (and,
        under the cooperative protocol, the partitions owned already) wait paused meanwhile."""
        from confluent_kafka import OFFSET_BEGINNING

        cooperative = self._cooperative
        if not partitions:
            return
        if not self._assigned or not cooperative:
            self._new_assignment()
        self.stats.assignments += 1
        committed = consumer.committed(partitions, timeout=30)
        if self.offset_store is not None:
            committed = self._stored_offsets(committed)
        replaying: dict[int, int] = {}
        for tp in committed:
            if tp.offset < 0:
                tp.offset = OFFSET_BEGINNING
                continue
            replay = self.checkpoint.resume(tp.partition, tp.offset, tp.metadata)
            if replay is not None:
                replaying[tp.partition] = tp.offset
                tp.offset = replay
        live = bool(self._assigned) and not self._replay_until
        self._assigned = sorted({*self._assigned, *(tp.partition for tp in committed)})
        self._replay_until.update(replaying)
        self._replaying.update(replaying)
        log.info(
            "%s: assigned partitions %s (replaying %s)",
            self.name, self._assigned, sorted(replaying),
        )  # fmt: skip
        if cooperative:
            consumer.incremental_assign(committed)
        else:
            consumer.assign(committed)
        if not self._replay_until:
            if not live:
                self._finish_replay()
            return
        # Partitions with nothing to replay wait (paused) until the others have rebuilt their
        # windows, so what they fetch meanwhile need not be held in memory.
        from confluent_kafka import TopicPartition

        topic = self.kafka.trades_topic
        waiting = [TopicPartition(topic, p) for p in self._assigned
                   if p not in self._replay_until
                   and p not in {q.partition for q in self._paused}]  # fmt: skip
        if waiting:
            consumer.pause(waiting)
            self._paused.extend(waiting)

    def _stored_offsets(self, committed: list[Any]) -> list[Any]:
        """Where the store says the group stands: its offsets were written with the rows, so
        they are exact, where Kafka's commits trail (a crash between write and commit)."""
        from confluent_kafka import TopicPartition

        assert self.offset_store is not None
        stored = self.offset_store.stream_offsets(
            self.kafka.group, self.kafka.trades_topic, [tp.partition for tp in committed]
        )
        out = []
        for tp in committed:
            if tp.partition not in stored:
                out.append(tp)
                continue
            offset, metadata = stored[tp.partition]
            if offset != tp.offset:
                log.info("%s: partition %d: offset %d stored, %d committed: from %d",
                         self.name, tp.partition, offset, tp.offset, offset)  # fmt: skip
            out.append(TopicPartition(tp.topic, tp.partition, offset, metadata))
        return out

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        """Write what is pending, commit it; the next owner replays what it takes over. Under
        the cooperative protocol the partitions kept go on: the windows are rebuilt for their
        instruments alone, from the store (which holds everything consumed), not by a replay."""
        revoked = {tp.partition for tp in partitions}
        log.info("%s: partitions revoked: %s", self.name, sorted(revoked))
        if not revoked:
            return
        if not self._replay_until:
            self.writer.flush(timeout=60)
            self._commit(final=True)
        # Revoked mid-replay, nothing was flushed: the next owner claims these partitions'
        # stored offsets, so what is pending for them is written without moving those.
        self.writer.forget_offsets(revoked)
        self._stop_lake()
        if not self._cooperative:
            consumer.unassign()
            self._new_assignment()
            return
        consumer.incremental_unassign(partitions)
        self._keep_only([p for p in self._assigned if p not in revoked], consumer)

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        """Partitions lost without a clean revoke (session timeout): nothing may be committed."""
        log.warning("%s: partitions lost: %s", self.name, [tp.partition for tp in partitions])
        # Their new owner may have claimed their stored offsets already: what is pending for
        # them is written without moving those (the trades key keeps it from being doubled).
        self.writer.forget_offsets({tp.partition for tp in partitions})
        self._stop_lake()
        if not self._cooperative:
            consumer.unassign()
            self._new_assignment()
            return
        lost = {tp.partition for tp in partitions}
        consumer.incremental_unassign(partitions)
        self._reassign([p for p in self._assigned if p not in lost], consumer)

    def _keep_only(self, kept: list[int], consumer: Any) -> None:
        """Go on with the partitions `kept` after the others were revoked: a new engine,
        restored for their instruments from the store, exactly as a restart restores."""
        if not kept:
            self._new_assignment()
            return
        if self._replay_until:  # revoked mid-replay: the kept ones start over with a replay
            self._reassign(kept, consumer)
            return
        gone = set(self._assigned) - set(kept)
        for p in gone:
            self.tracker.partitions.pop(p, None)
        self.checkpoint.forget(gone)
        self.writer.forget_offsets(gone)
        self._paused = [tp for tp in self._paused if tp.partition in kept]
        self._assigned = kept
        self._new_engine()
        self._restore(kept)

    def _reassign(self, kept: list[int], consumer: Any) -> None:
        """Give `kept` back and take them again: they replay from their committed offsets."""
        self.writer.flush(timeout=60)  # stored before the restore reads the store
        self._new_assignment()
        if kept:
            from confluent_kafka import TopicPartition

            tps = [TopicPartition(self.kafka.trades_topic, p) for p in kept]
            consumer.incremental_unassign(tps)
            self._on_assign(consumer, tps)

    def _finish_replay(self) -> None:
        """The replayed trades rebuilt the windows: restore them as a restart would."""
        self._restore(sorted(self._replaying))
        self._replay_until = {}
        self._replaying = set()
        if self._paused:
            self.consumer.resume(self._paused)
        self._paused = []
        held, self._held = self._held, []
        if held:
            self._handle(held)

    def _restore(self, partitions: list[int]) -> None:
        """Restore the windows of the instruments of `partitions` (the trades stored after the
        last commit, or after what a replay fed the engine, read back from the store), then
        the lake for them, then resume what waited."""
        owned, noted = set(partitions), self.tracker.max_ts
        keys = [k for k, g in self._gid.items() if self._owner.get(g) in owned
                and g < len(noted) and noted[g] > _UNNOTED]  # fmt: skip
        if keys:
            max_ts = np.array([self.tracker.max_ts[self._gid[k]] for k in keys], np.int64)
            cut = restore_cutoff(max_ts, self.tracker.lateness, self.tracker.horizon,
                                 self.tracker.align)  # fmt: skip
            cutoff = dict(zip(keys, cut.tolist(), strict=True))
            # The replayed trades are seen already; those stored after the last commit are not.
            self.stage.restore(self.store, cutoff, self.store.restore_batches(cutoff))
        self._start_lake(keys)

    # -- the lake ------------------------------------------------------------------------

    def _start_lake(self, instruments: list[tuple[str, str]]) -> None:
        """Once the windows are restored and stored: what the store holds of `instruments` and
        the lake lacks (a crash between the two, a former owner's lost buffers), then the live
        feed, so restored candles are not handed to the lake again."""
        if self.lake is None:
            return
        self._stop_lake()  # a cooperative assignment while live: one lake writer at a time
        self.writer.flush(timeout=60)
        if instruments:
            horizon_us = self.engine.horizon + self._engine_config.allowed_lateness
            catch_up(self.store, self.lake, horizon_us, instruments=instruments)
        self.lake_writer = LakeWriter(self.lake, clock=self.clock)
        self.writer.after_write.append(self.lake_writer.offer)

    def _stop_lake(self) -> None:
        """Write what the lake writer holds (the next owner of these partitions catches up
        from the lake's files) and stop it."""
        lake_writer, self.lake_writer = self.lake_writer, None
        if lake_writer is not None:
            self.writer.after_write.remove(lake_writer.offer)
            lake_writer.close()

    # -- the loop ------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def run(self, duration: float | None = None) -> None:
        """Consume, process, commit; until `stop()` or `duration` seconds."""
        from tickpipe.transport.kafka import ensure_topic

        kafka = self.kafka
        # The trades topic first: the others get as many partitions (None).
        wanted = [(kafka.trades_topic, {}, kafka.partitions),
                  (kafka.candles_topic, {"cleanup.policy": "compact"}, None),
                  (kafka.dead_letter_topic, {}, None)]  # fmt: skip
        for topic, topic_config, partitions in wanted:
            warning = ensure_topic(kafka, topic, topic_config, partitions) if topic else None
            if warning:
                log.warning("%s: %s", self.name, warning)
        self.consumer.subscribe(
            [self.kafka.trades_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        clock = self.clock
        deadline = None if duration is None else clock.monotonic_s() + duration
        next_tick = clock.monotonic_s()
        try:
            while not self._stop.is_set():
                if deadline is not None and clock.monotonic_s() >= deadline:
                    break
                messages = self._consume()
                if messages:
                    self._handle(messages)
                idle_timer = not self._replay_until and self._unread is None
                if clock.monotonic_s() >= next_tick and idle_timer:
                    next_tick = clock.monotonic_s() + TICK_SECONDS
                    self.stage.tick()
                self._commit()
                self.monitor.step(self.consumer, self.kafka.trades_topic)
                while self.stage.behind:
                    time.sleep(0.005)  # the store is behind: stop consuming until it catches up
                    self._commit()
                    # the consumer lag goes on growing: /metrics must show it (the lag alert)
                    self.monitor.step(self.consumer, self.kafka.trades_topic)
        finally:
            self.close()

    def _consume(self) -> list[Any]:
        """What has arrived, or else wait for the first message (at most one tick).

        `consume(n, timeout)` waits until it has n messages or the timeout passes: under a
        light load that wait would be every message's latency, so take what is there first.
        """
        messages: list[Any] = self.consumer.consume(CONSUME_MESSAGES, 0)
        if not messages:
            # The input went quiet: store what it gave now (latency), not at the writer's
            # next cadence. Under a backlog something has always arrived: flushes stay large.
            self.writer.flush_soon()
            messages = self.consumer.consume(1, TICK_SECONDS)
            if messages:
                messages.extend(self.consumer.consume(CONSUME_MESSAGES - 1, 0))
        return messages

    def _on_kafka_error(self, err: Any) -> None:
        """librdkafka lost the brokers (a restart, a network cut): the input is not quiet, it
        is away, and the idle timer waits until every partition is read to its end again."""
        from confluent_kafka import KafkaError

        # librdkafka's local error codes are spelled with a leading underscore.
        lost = (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN)  # noqa: SLF001
        if err.code() not in lost:
            return
        if self._unread is None:
            log.warning("%s: input cut off (%s): windows close on trades only until every "
                        "partition is read to its end again", self.name, err.str())  # fmt: skip
        self._unread = set(self._assigned)

    def _read_to_end(self, partition: int) -> None:
        """An end-of-partition event: once every assigned partition had one since the input was
        cut off, all it held back has been consumed and the idle timer runs again."""
        if self._unread is None:
            return
        self._unread.discard(partition)
        if not self._unread & set(self._assigned):
            self._unread = None
            # The outage was not quiet time: the idle timers count from now.
            self.engine.restart_idle_timers(self.clock.now_us())
            log.info("%s: input back, read to its end", self.name)

    def close(self) -> None:
        """Write everything, commit it, leave the group (the others take over at once)."""
        try:
            if not self._replay_until and self.writer.error is None:
                self.stage.finish()
                self.writer.flush(timeout=60)
                self._commit(final=True)
                self.monitor.step(self.consumer, self.kafka.trades_topic, force=True)
        finally:
            self.monitor.close()
            try:
                self._stop_lake()  # before leaving the group: the next owner catches up
                self.consumer.close()
            finally:
                try:
                    self.writer.close()
                finally:
                    if self._producer is not None:
                        self._producer.flush(30)
                    self.dead_letters.close()

    # -- messages ------------------------------------------------------------------------

    def _handle(self, messages: list[Any]) -> None:
        from confluent_kafka import KafkaError

        replay: dict[str, list[DecodedTrades]] = {}
        live: dict[str, list[DecodedTrades]] = {}
        notes: dict[int, list[tuple[int, int, int]]] = {}
        skipped = False  # heartbeats and rejects move the commit point too
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:  # noqa: SLF001 (librdkafka's)
                    self._read_to_end(msg.partition())
                    continue
                if not err.retriable() and err.fatal():
                    raise RuntimeError(f"kafka: {err.str()}")
                continue
            partition, offset = msg.partition(), msg.offset()
            until = self._replay_until.get(partition)
            if self._replay_until and (until is None or offset >= until):
                self._held.append(msg)  # live, but other partitions are still replaying
                continue
            if is_heartbeat(msg.value()):  # for consumers without an idle timer (Spark)
                self.tracker.skip(partition, offset)
                skipped = True
                continue
            self.stats.messages += 1
            try:
                decoded = self.decode_trades(msg.value())
            except SchemaError as exc:
                self.stats.malformed += 1
                if until is None:  # a replayed one was dead-lettered the first time
                    self._dead_letter(msg, f"malformed: {exc}")
                self.tracker.skip(partition, offset)
                skipped = True
                continue
            inst = decoded.instrument
            gid = self._gid.setdefault((inst.exchange, inst.symbol), len(self._gid))
            self._owner[gid] = partition
            notes.setdefault(partition, []).append((offset, gid, decoded.max_ts))
            (replay if until is not None else live).setdefault(decoded.source, []).append(decoded)
        for partition, rows in notes.items():
            arr = np.array(rows, np.int64)
            self.tracker.note(partition, arr[:, 0], arr[:, 1], arr[:, 2])
        for parts in replay.values():
            batch = to_batch(parts)
            self.stats.replayed += len(batch)
            self._replay_stage.process(batch)
        if self._replay_until:
            self._check_replay_done()
        # A poll of heartbeats alone (the input went quiet) moves the offsets too, and must be
        # committed: else the group's offsets stay short of the topic's end forever and its
        # lag never reads zero.
        moved = bool(notes or live or skipped) and not self._replay_until
        with self.writer.atomic():  # the offsets go in the same flush as the trades
            for parts in live.values():
                self._process(to_batch(parts))
            if moved:
                self._submit_offsets()
        if moved:
            self.checkpoint.mark(self.writer.submitted, self.tracker)

    def _submit_offsets(self) -> None:
        """The positions after what was just handed to the writer, to store with it."""
        if self.offset_store is None:
            return
        tracker = self.tracker
        positions = {p: (plog.position, encode_metadata(tracker.replay_point(p)))
                     for p, plog in tracker.partitions.items() if plog.position >= 0}  # fmt: skip
        if positions:
            self.writer.submit_offsets(
                StreamOffsets(self.kafka.group, self.kafka.trades_topic, positions)
            )

    def _dead_letter(self, msg: Any, reason: str) -> None:
        """Keep a message the processor cannot use: in the dead-letter file, and as it was on
        the dead-letter topic (headers say why and where from), for every processor's rejects
        in one place."""
        origin = f"{msg.topic()}/{msg.partition()}@{msg.offset()}"
        self.dead_letters.write(f"kafka:{origin}", reason, msg.value() or b"")
        if self._producer is not None and self.kafka.dead_letter_topic:
            headers: dict[str, str | bytes | None] = {
                "tickpipe-reason": reason,
                "tickpipe-origin": origin,
            }
            self._producer.produce(
                self.kafka.dead_letter_topic, msg.value(), msg.key(), headers=headers
            )

    def _check_replay_done(self) -> None:
        done = []
        for partition, until in self._replay_until.items():
            log_ = self.tracker.partitions.get(partition)
            if log_ is not None and log_.position >= until:
                done.append(partition)
        if len(done) < len(self._replay_until):
            from confluent_kafka import TopicPartition

            paused = [TopicPartition(self.kafka.trades_topic, p) for p in done]
            new = [tp for tp in paused if tp.partition not in {q.partition for q in self._paused}]
            if new:
                self.consumer.pause(new)
                self._paused.extend(new)
            return
        self._finish_replay()

    def _process(self, batch: TradeBatch) -> None:
        before = self.stage.counters.trades
        self.stage.process(batch)
        self.stats.trades += self.stage.counters.trades - before

    def _publish(self, out: EngineOutput) -> None:
        """A step's candle updates to the candles topic (and the caller's hook)."""
        if out.candles:
            if self.candles is not None:
                self.candles.publish(out.candles)
            if self.on_candles is not None:
                self.on_candles(out.candles)

    # -- commits -------------------------------------------------------------------------

    def _commit(self, final: bool = False) -> None:
        """Commit what the store holds everything of (final: synchronously)."""
        if self.writer.error is not None:
            raise RuntimeError(f"the store writer failed: {self.writer.error}") from (
                self.writer.error
            )
        if self.checkpoint.commit(self.writer.durable, final):
            self.stats.commits += 1

    def _commit_offsets(self, offsets: list[Offset], final: bool) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        tps = [TopicPartition(self.kafka.trades_topic, o.partition, o.offset, o.metadata)
               for o in offsets]  # fmt: skip
        try:
            # In flight, commits are asynchronous (a lost one is covered by the next, which
            # is never older); on revoke and close they are waited for.
            if final:
                self.consumer.commit(offsets=tps, asynchronous=False)
            else:
                self.consumer.commit(offsets=tps, asynchronous=True)
        except KafkaException as exc:
            # The broker is away (restart) or the group is rebalancing: the mark is kept.
            raise CommitFailed(str(exc)) from exc
