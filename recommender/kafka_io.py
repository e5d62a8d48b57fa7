"""Kafka client factories (confluent-kafka) shared by producers and consumers.

Every factory takes the bootstrap address (flag --bootstrap-servers / FLASHREC_BOOTSTRAP_SERVERS,
see `recommender.config.bootstrap_servers`), checks that a broker answers within a bounded wait
and raises `BrokerUnavailable` with a readable message instead of hanging.
"""

from __future__ import annotations

import logging
from typing import Any

from recommender.config import bootstrap_servers
from recommender.local_broker import BrokerUnavailable, wait_for_broker

__all__ = ["BrokerUnavailable", "make_producer", "make_consumer", "resolve_bootstrap",
           "validated"]

log = logging.getLogger(__name__)

# Reliable and fast: every record confirmed by the broker, retried without duplicates, batched.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable.idempotence": True,
    "retries": 2_147_483_647,
    "max.in.flight.requests.per.connection": 5,
    "linger.ms": 20,
    "batch.num.messages": 10_000,
    "batch.size": 1_000_000,
    "compression.type": "lz4",
    "queue.buffering.max.messages": 500_000,
    "queue.buffering.max.kbytes": 512 * 1024,
}

CONSUMER_DEFAULTS: dict[str, Any] = {
    "auto.offset.reset": "earliest",
    "enable.auto.commit": False,
    "session.timeout.ms": 6_000,
    "heartbeat.interval.ms": 1_000,
    "partition.assignment.strategy": "range",
    "fetch.wait.max.ms": 100,
}


def resolve_bootstrap(value: str | None = None) -> str:
    """The flag value if given, else FLASHREC_BOOTSTRAP_SERVERS, else 127.0.0.1:9092."""
    return value or bootstrap_servers()


_PYTHON_KEYS = {
    "on_delivery", "error_cb", "stats_cb", "throttle_cb", "logger", "on_commit", "log_level"
}


def _conf_keys(overrides: dict[str, Any]) -> dict[str, Any]:
    """keyword names to librdkafka names: session_timeout_ms -> session.timeout.ms."""
    return {k if k in _PYTHON_KEYS else k.replace("_", "."): v for k, v in overrides.items()}


def _common(bootstrap: str, timeout: float) -> dict[str, Any]:
    ms = max(1000, int(timeout * 1000))
    return {
        "bootstrap.servers": bootstrap,
        "socket.connection.setup.timeout.ms": ms,
        "reconnect.backoff.max.ms": 1000,
        "logger": logging.getLogger("flashrec.kafka"),
        "log_level": 3,
    }


def make_producer(
    bootstrap: str | None = None,
    wait: float = 10.0,
    delivery_timeout: float = 30.0,
    **overrides: Any,
):
    """A confluent_kafka.Producer with acks=all, idempotence, batching.

    Raises BrokerUnavailable if no broker answers within `wait` seconds. A record that cannot
    be delivered within `delivery_timeout` seconds fails in its delivery callback (never hangs).
    """
    from confluent_kafka import Producer

    address = resolve_bootstrap(bootstrap)
    wait_for_broker(address, wait)
    conf = {**_common(address, wait), **PRODUCER_DEFAULTS}
    conf["delivery.timeout.ms"] = int(delivery_timeout * 1000)
    conf.update(_conf_keys(overrides))
    return Producer(conf)


def make_consumer(
    group_id: str,
    topics: list[str] | tuple[str, ...] | None = None,
    bootstrap: str | None = None,
    wait: float = 10.0,
    **overrides: Any,
):
    """A confluent_kafka.Consumer in `group_id`, subscribed to `topics` if given.

    Offsets are committed by the caller (enable.auto.commit=false); new groups read from the
    earliest offset. Raises BrokerUnavailable if no broker answers within `wait` seconds.
    """
    from confluent_kafka import Consumer

    address = resolve_bootstrap(bootstrap)
    wait_for_broker(address, wait)
    conf = {**_common(address, wait), **CONSUMER_DEFAULTS, "group.id": group_id}
    conf.update(_conf_keys(overrides))
    consumer = Consumer(conf)
    if topics:
        consumer.subscribe(list(topics))
    return consumer


def validated(messages: list[Any], now: Any = None) -> list[tuple[Any, Any, Any]]:
    """(message, value, event dict or Rejected) for each consumed message without an error
    (those are logged and left out), validated as one batch at clock `now`."""
    from recommender.events import validate_batch

    good = []
    for msg in messages:
        if msg.error() is not None:
            log.warning("consumer error: %s", msg.error())
        else:
            good.append(msg)
    values = [m.value() for m in good]
    return list(zip(good, values, validate_batch(values, now), strict=True))
