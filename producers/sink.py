"""Where producers send events: a Kafka topic (`KafkaSink`) or a JSONL file (`JsonlSink`).

Both take a contract event (dict) or raw bytes (a deliberately malformed message) in `send`, and
return a summary dict from `close`. Kafka messages are keyed by session_id so a session stays in
one partition, in order; malformed messages have no key.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)


class DeliveryFailed(RuntimeError):
    """The broker did not confirm messages within the delivery timeout (broker lost?)."""


class KafkaSink:
    """Confluent-kafka producer: acks=all, idempotent, batched (see recommender.kafka_io)."""

    def __init__(
        self,
        bootstrap: str | None,
        topic: str,
        wait: float = 10.0,
        delivery_timeout: float = 30.0,
        **overrides: Any,
    ) -> None:
        from recommender.kafka_io import make_producer, resolve_bootstrap

        self.bootstrap = resolve_bootstrap(bootstrap)
        self.topic = topic
        self.delivery_timeout = delivery_timeout
        self.sent = 0
        self.failed = 0
        self.errors: list[str] = []
        self._started = time.monotonic()
        self._producer = make_producer(
            self.bootstrap,
            wait=wait,
            delivery_timeout=delivery_timeout,
            on_delivery=self._on_delivery,
            delivery_report_only_error=True,
            log_level=2,  # a lost broker is reported once by DeliveryFailed, not per retry
            **overrides,
        )
        self._produce = self._producer.produce
        self._poll = self._producer.poll

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.failed += 1
            if len(self.errors) < 5:
                self.errors.append(str(err))

    def send(self, item: dict[str, Any] | bytes) -> None:
        """Queue one message; raises DeliveryFailed once any earlier message has failed."""
        if self.failed:
            raise DeliveryFailed(
                f"{self.failed} message(s) not confirmed by {self.bootstrap} within "
                f"{self.delivery_timeout:g} s: {self.errors[0] if self.errors else ''}"
            )
        if isinstance(item, dict):
            value, key = orjson.dumps(item), item.get("session_id")
        else:
            value, key = item, None
        while True:
            try:
                self._produce(self.topic, value, key)
                break
            except BufferError:  # local queue full: let librdkafka send, then retry
                self._poll(0.05)
                if self.failed:
                    raise DeliveryFailed(f"broker {self.bootstrap} stopped confirming messages: "
                                         f"{self.errors[0] if self.errors else ''}") from None
        self.sent += 1
        if self.sent & 0x3FF == 0:
            self._poll(0)

    @property
    def in_flight(self) -> int:
        return len(self._producer)

    @property
    def delivered(self) -> int:
        return self.sent - self.failed - self.in_flight

    def close(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait (bounded) until every sent message is confirmed or failed; return a summary."""
        left = self._producer.flush(self.delivery_timeout + 1 if timeout is None else timeout)
        seconds = time.monotonic() - self._started
        summary = {
            "sink": "kafka",
            "bootstrap": self.bootstrap,
            "topic": self.topic,
            "sent": self.sent,
            "delivered": self.sent - self.failed - left,
            "failed": self.failed,
            "unconfirmed": left,
            "errors": self.errors,
            "seconds": round(seconds, 3),
        }
        if self.failed or left:
            log.error("%d messages failed, %d unconfirmed: %s", self.failed, left, self.errors)
        return summary


class JsonlSink:
    """One message per line: the event as compact JSON, or a malformed message's raw bytes
    (the generators never put a newline inside one)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "wb", buffering=1 << 20)  # noqa: SIM115 (closed in close)
        self.sent = 0
        self.malformed = 0
        self._started = time.monotonic()

    def send(self, item: dict[str, Any] | bytes) -> None:
        if isinstance(item, dict):
            self._file.write(orjson.dumps(item, option=orjson.OPT_APPEND_NEWLINE))
        else:
            self._file.write(item.replace(b"\n", b" ") + b"\n")
            self.malformed += 1
        self.sent += 1

    @property
    def delivered(self) -> int:
        return self.sent

    def close(self) -> dict[str, Any]:
        self._file.close()
        return {
            "sink": "jsonl",
            "path": str(self.path),
            "sent": self.sent,
            "delivered": self.sent,
            "malformed": self.malformed,
            "failed": 0,
            "seconds": round(time.monotonic() - self._started, 3),
        }
