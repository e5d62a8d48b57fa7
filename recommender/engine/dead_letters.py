"""Dead letters: the record of a refused message, and where it is written.

A record is JSON with the reason, the original payload (cut to `MAX_PAYLOAD_BYTES`, saying
so) and where the message was (topic, partition, offset), so the original can be found in
the clickstream topic. Records go to the dead-letter topic; a record the broker does not take
goes to a bounded local file instead, so a dead letter never stops ingestion.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 4096  # of the original message kept in its record
MAX_REASON_CHARS = 1000
MAX_FILE_BYTES = 16 * 1024 * 1024  # the local file rolls over to FILE.1 beyond this
FILE_NAME = "dead-letters.jsonl"


def dead_letter(reason: str, value: bytes | None, topic: str, partition: int, offset: int) -> bytes:
    """The dead-letter record of one message (a few KB at most, whatever the message)."""
    payload = value or b""
    doc: dict[str, Any] = {"reason": reason[:MAX_REASON_CHARS]}
    kept = payload[:MAX_PAYLOAD_BYTES]
    try:
        payload.decode("utf-8")
        original: str = kept.decode("utf-8", errors="ignore")  # a cut character is dropped
    except UnicodeDecodeError:
        original = kept.hex()
        doc["reason"] += " (payload shown as hex: not UTF-8)"
    doc.update(payload=original, topic=topic, partition=partition, offset=offset)
    if len(payload) > MAX_PAYLOAD_BYTES:
        doc.update(payload_truncated=True, payload_bytes=len(payload))
    return orjson.dumps(doc)


class DeadLetterSink:
    """Writes dead-letter records to a topic; what the broker refuses goes to a local file."""

    def __init__(self, bootstrap: str | None, topic: str, folder: Path | None) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.path = None if folder is None else folder / FILE_NAME
        self._producer: Any = None
        self.kept_locally = 0  # records written to the local file, all time

    def send(self, letters: list[bytes]) -> None:
        """Deliver `letters` (waits for the broker's answer); never raises for a refusal."""
        if not letters:
            return
        failed: list[tuple[bytes, str]] = []
        try:
            producer = self._get_producer()
        except Exception as exc:  # BrokerUnavailable
            self._keep(list(zip(letters, [str(exc)] * len(letters), strict=True)))
            return

        def done(err: Any, msg: Any) -> None:
            if err is not None:
                failed.append((msg.value(), str(err)))

        for letter in letters:
            try:
                producer.produce(self.topic, letter, on_delivery=done)
            except Exception as exc:  # BufferError, KafkaException (e.g. too large)
                failed.append((letter, str(exc)))
        if producer.flush(30):
            producer.purge()  # their delivery reports say so, and they go to the file
            producer.flush(0)
        self._keep(failed)

    def _get_producer(self) -> Any:
        if self._producer is None:
            from recommender.kafka_io import make_producer

            self._producer = make_producer(self.bootstrap)
        return self._producer

    def _keep(self, failed: list[tuple[bytes, str]]) -> None:
        """Records the broker refused: into the local file (or the log, with no folder)."""
        if not failed:
            return
        why = failed[0][1]
        if self.path is None:
            log.error("%d dead letters not written to %s (%s): %s", len(failed), self.topic,
                      why, b" ".join(letter[:300] for letter, _ in failed[:3]))  # fmt: skip
            return
        if self.path.exists() and self.path.stat().st_size > MAX_FILE_BYTES:
            self.path.replace(self.path.with_name(FILE_NAME + ".1"))
        with open(self.path, "ab") as f:
            for letter, error in failed:
                f.write(orjson.dumps({"error": error, "letter": orjson.loads(letter)}) + b"\n")
        self.kept_locally += len(failed)
        log.error("%d dead letters not written to topic %s (%s): kept in %s", len(failed),
                  self.topic, why, self.path)  # fmt: skip

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(10)
