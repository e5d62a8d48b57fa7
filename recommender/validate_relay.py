"""The validating relay in front of RisingWave: the producers' topic -> the topic RisingWave reads.

RisingWave's Kafka connector turns malformed JSON or wrong types into NULL columns or skips
them, and writes no dead letter. The relay applies the embedded engine's validator
(`recommender.events.validate_batch`) to every message of the raw topic: a valid event goes
on unchanged to the valid topic, keyed by its session_id (so a session's clicks stay in one
partition, in order); a refused one goes to the dead-letter topic as the same record the
engine writes (`recommender.engine.dead_letters.dead_letter`: reason, payload, topic,
partition, offset; the local file of `DeadLetterSink` when the broker refuses it).

Delivery is at least once: the consumer's offsets are committed only after the broker has
confirmed every valid event and every dead letter of the batch. After a crash the batch is
read and sent again, so a valid event can arrive twice; the clickstream table of sql/010
keeps the first copy of each event_id. Duplicates therefore pass the relay and are dropped
by RisingWave, not dead-lettered (the relay keeps no state).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recommender.config import DEFAULT_DLQ_TOPIC, DEFAULT_TOPIC, DEFAULT_VALID_TOPIC
from recommender.engine.dead_letters import DeadLetterSink, dead_letter
from recommender.events import Rejected
from recommender.kafka_io import validated

log = logging.getLogger(__name__)

DEFAULT_GROUP = "flashrec-relay"


class RelayError(RuntimeError):
    """Valid events the broker did not take: the batch's offsets were not committed."""


@dataclass
class RelayStats:
    """What the relay has done since it started."""

    consumed: int = 0
    relayed: int = 0
    rejected: int = 0
    batches: int = 0
    reasons: Counter[str] = field(default_factory=Counter)  # first words of each reason

    def line(self) -> str:
        """A one-line summary for the log."""
        top = ", ".join(f"{reason} x{n}" for reason, n in self.reasons.most_common(3))
        return (f"relay: {self.consumed} consumed, {self.relayed} relayed, {self.rejected} "
                f"rejected to the dead letters{' (' + top + ')' if top else ''}")  # fmt: skip


def reason_kind(reason: str) -> str:
    """A reason without its value-specific tail, to count reasons by kind."""
    return reason.split(":", 1)[0][:80]


@dataclass
class Relay:
    """Validates a batch of raw messages, forwards the valid ones and dead-letters the rest."""

    producer: Any  # confluent_kafka.Producer (or a stand-in with produce/flush/poll)
    dead_letters: DeadLetterSink
    valid_topic: str = DEFAULT_VALID_TOPIC
    flush_timeout: float = 30.0
    stats: RelayStats = field(default_factory=RelayStats)
    now: Callable[[], Any] | None = None  # the validator's clock (None: the wall clock)

    def relay(self, messages: list[Any]) -> dict[tuple[str, int], int]:
        """Send one batch on; returns the next offset per (topic, partition) to commit.
        Raises RelayError when a valid event was not delivered (nothing may be committed)."""
        checked_all = validated(messages, self.now() if self.now else None)
        failed: list[str] = []

        def done(err: Any, _msg: Any) -> None:
            if err is not None:
                failed.append(str(err))

        letters: list[bytes] = []
        offsets: dict[tuple[str, int], int] = {}
        for msg, value, checked in checked_all:
            topic, part, off = msg.topic(), msg.partition(), msg.offset()
            offsets[(topic, part)] = max(offsets.get((topic, part), 0), off + 1)
            if isinstance(checked, Rejected):
                letters.append(dead_letter(checked.reason, value, topic, part, off))
                self.stats.reasons[reason_kind(checked.reason)] += 1
                continue
            self._produce(value, checked["session_id"].encode(), done)
        self.dead_letters.send(letters)  # waits for the broker; a refusal goes to its file
        left = self.producer.flush(self.flush_timeout)
        if left or failed:
            why = failed[0] if failed else f"{left} not confirmed in {self.flush_timeout:.0f} s"
            raise RelayError(f"{len(failed) or left} valid events not delivered to "
                             f"{self.valid_topic} ({why}); offsets not committed")  # fmt: skip
        self.stats.consumed += len(checked_all)
        self.stats.rejected += len(letters)
        self.stats.relayed += len(checked_all) - len(letters)
        self.stats.batches += 1
        if letters:
            log.info("%d of %d messages refused to the dead letters", len(letters),
                     len(checked_all))
        return offsets

    def _produce(self, value: bytes, key: bytes, done: Callable[[Any, Any], None]) -> None:
        """Queue one valid event; waits for room when the producer's queue is full."""
        while True:
            try:
                self.producer.produce(self.valid_topic, value, key=key, on_delivery=done)
                return
            except BufferError:
                self.producer.poll(0.1)


def commit(consumer: Any, offsets: dict[tuple[str, int], int]) -> None:
    """Commit the next offsets to read (synchronously)."""
    from confluent_kafka import TopicPartition

    if offsets:
        consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                        asynchronous=False)  # fmt: skip


@dataclass
class RelayConfig:
    """Where the relay reads and writes."""

    bootstrap: str | None = None
    topic: str = DEFAULT_TOPIC
    valid_topic: str = DEFAULT_VALID_TOPIC
    dlq_topic: str = DEFAULT_DLQ_TOPIC
    group_id: str = DEFAULT_GROUP
    folder: Path | None = None  # the local dead-letter file's folder
    max_batch: int = 10_000
    report_every: float = 30.0  # seconds between summary log lines


def run(config: RelayConfig, should_stop: Callable[[RelayStats], bool]) -> RelayStats:
    """Relay until `should_stop(counts so far)`; returns the counts. Raises RelayError when
    events cannot be delivered (the caller exits; a restart resumes from the last committed
    offsets)."""
    from recommender.kafka_io import make_consumer, make_producer

    consumer = make_consumer(config.group_id, [config.topic], bootstrap=config.bootstrap)
    sink = DeadLetterSink(config.bootstrap, config.dlq_topic, config.folder)
    relay = Relay(make_producer(config.bootstrap), sink, config.valid_topic)
    next_report = time.monotonic() + config.report_every
    try:
        while not should_stop(relay.stats):
            messages = consumer.consume(config.max_batch, timeout=0.5)
            if messages:
                commit(consumer, relay.relay(messages))
            if time.monotonic() >= next_report:
                log.info(relay.stats.line())
                next_report = time.monotonic() + config.report_every
    finally:
        log.info(relay.stats.line())
        consumer.close()
        sink.close()
    return relay.stats
