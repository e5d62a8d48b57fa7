"""The embedded streaming engine: Kafka -> validated events -> the views of sql/ -> PostgreSQL.

One loop in one thread: consume a batch, validate each message against the event contract
(malformed ones and repeated event_ids go to the dead-letter topic with the reason), store the
batch's events and offsets in one DuckDB transaction, and every `refresh_interval` seconds
recompute the views at the engine clock, publish the changes to PostgreSQL in one transaction
and hand them to subscribers. The clock is the wall clock, or with `clock="event"` the newest
event time seen (deterministic replays).
"""

from __future__ import annotations

import functools
import gc
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from recommender import sqlfiles
from recommender.changefeed import ChangeBatch, FeedHub, Subscription
from recommender.engine.background import (
    Tier,
    TierContext,
    TierFactory,
    split_views,
    thread_tier,
)
from recommender.engine.baseline import seed_views
from recommender.engine.dead_letters import DeadLetterSink, dead_letter
from recommender.engine.refresh import ViewRunner
from recommender.engine.settings import EngineConfig
from recommender.engine.store import StateStore
from recommender.events import Rejected
from recommender.kafka_io import validated
from recommender.postgres.local import local_backend
from recommender.postgres.upkeep import IndexUpkeep, UpkeepThread
from recommender.processes import lower_priority

log = logging.getLogger(__name__)

_gc_lock = threading.Lock()
_gc_pauses = 0  # threads inside gc_paused()
_gc_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Python's automatic GC off inside (collections still run when called); back on when
    the last thread inside leaves, if it was on when the first came in."""
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


def incremental_overrides(objects: list[sqlfiles.SqlObject],
                          apart: frozenset[str] = frozenset()) -> dict[str, Any]:  # fmt: skip
    """Views maintained incrementally rather than recomputed (same result as their SQL):
    those whose catalog entry (sql/*.toml) names a maintainer. ValueError when a view's SQL
    does not have the shape of query its maintainer reproduces.
    `apart`: views refreshed on a cadence or in a tier of their own. The session views
    share one state and are refreshed together: with one of them apart, or read by
    another view's SQL, their SQL maintains them."""
    from recommender.engine import maintainers

    views = sqlfiles.views(objects)
    out = maintainers.build(views)
    shared = {v.name for v in maintainers.declared(views).get("sessions", [])}
    # their tables are not kept once they report their own changes: every other view that
    # reads them must be maintained too (those read only the bot set the runner keeps)
    readers = [v.name for v in views if v.name not in out and v.name not in shared
               and sqlfiles.reads(v) & shared]  # fmt: skip
    why = ""
    if shared and readers:
        why = f"{', '.join(readers)} read them by SQL"
    elif apart & shared:
        why = "they have their own cadence or tier"
    if why:
        log.warning("session views refreshed by their SQL: %s", why)
        out = {n: o for n, o in out.items() if n not in shared}
    return out


def _only(overrides: dict[str, Any], objects: list[sqlfiles.SqlObject]) -> dict[str, Any]:
    """The overrides of these objects' views."""
    names = {v.name for v in sqlfiles.views(objects)}
    return {name: o for name, o in overrides.items() if name in names}


def _apart(config: EngineConfig) -> frozenset[str]:
    """Views refreshed on a cadence (view_intervals) or in a tier of their own."""
    apart = set(config.refresh.view_intervals)
    if config.background.interval > 0:
        apart |= set(config.background.views)
    return frozenset(apart)


@dataclass(frozen=True)
class Computed:
    """One main refresh, computed and waiting to be published."""

    epoch: int
    results: list[Any]  # ViewResult per view
    raw: Any  # the raw events stored since the last publish (Arrow), or None
    raw_seq: int
    now: datetime
    watermark: datetime | None
    counters: dict[str, int]
    started: float  # perf_counter when the refresh began
    scan_ms: float  # the session scan's share of it


class Engine:
    """Maintains the views of sql/ from the clickstream topic into PostgreSQL.

    `tier`: how the background views are refreshed (`thread_tier` by default;
    `recommender.engine.worker.process_tier` runs them in a child process)."""

    def __init__(self, config: EngineConfig, tier: TierFactory = thread_tier) -> None:
        from recommender.postgres.publisher import Publisher
        from recommender.postgres.schema import view_comments

        config.check()  # before anything is opened
        self.config = config
        self.store = StateStore(config.state_path, threads=config.duckdb_threads)
        sql_dir = config.refresh.sql_dir
        objects = sqlfiles.load(sql_dir)
        views_all = sqlfiles.views(objects)
        overrides = dict(config.refresh.overrides)
        if config.refresh.incremental:
            overrides.update(incremental_overrides(objects, _apart(config)))
        ordered = [v.name for v in sqlfiles.views(objects)]
        objects, background = self._split(objects)
        self.background_names = [v.name for v in background]
        own = {v.name for v in sqlfiles.views(objects)} | set(self.background_names)
        self.view_names = [n for n in ordered if n in own]  # both tiers, in sql/ order
        # each tier only its own views' maintainers: none is refreshed by two runners
        self.runner = ViewRunner(self.store.con, objects, _only(overrides, objects))
        publish = config.publish
        self.publisher = Publisher(publish.dsn, feed_views=publish.feed_views,
                                   unlogged=publish.unlogged,
                                   comments=view_comments(views_all, sql_dir))  # fmt: skip
        if config.role == "background" and config.background.nice:
            lower_priority(local_backend(self.publisher.conn), config.background.nice,
                           "its PostgreSQL backend")  # fmt: skip
        self.hub = FeedHub()
        self.epoch = int(self.publisher.meta("epoch") or 0)
        self.raw_seq = int(self.publisher.meta("raw_seq") or 0)
        self.tier: Tier | None = None
        self.upkeep: UpkeepThread | None = None
        if background:
            self.tier = tier(TierContext(self.store.con, background, _only(overrides, background),
                                         config, self.clock, self.hub, lambda: self.epoch))
        self.horizon = max(self.runner.horizon(),
                           self.tier.horizon() if self.tier else timedelta(0))  # fmt: skip
        seed_views(self.runner, self.publisher, "main views")  # the diff's baseline
        self.last_refresh_ms = 0.0
        self.refresh_ms: deque[float] = deque(maxlen=10_000)  # main refreshes, newest last
        self._due: dict[str, float] = {}
        self._gc_full_due = time.monotonic() + config.refresh.gc_full_interval
        self._publishing: threading.Thread | None = None
        self._publish_error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer = None
        folder = None if config.state_path is None else config.state_path.parent
        self.dead_letters = DeadLetterSink(config.source.bootstrap, config.source.dlq_topic,
                                           folder)  # fmt: skip
        self.main_epoch = 0  # background role: the main tier's epoch last read
        self._drop_unpublishable()
        self.error: BaseException | None = None
        self.published_at: float | None = None  # wall time of the last publish
        self.published_seq = self.raw_seq  # the newest event it carried
        self._next_stall_warning = 0.0
        self._last_offsets: dict[tuple[str, int], int] = {}  # of the last batch stored
        log.info("engine ready: views %s, epoch %d, %d events stored",
                 ", ".join(self.view_names), self.epoch, self.store.count())  # fmt: skip

    def _drop_unpublishable(self) -> None:
        """Events stored before the contract refused NUL in text go to the dead letters."""
        dropped = self.store.drop_nul_events()
        if not dropped:
            return
        log.warning("%d stored events hold a NUL character, which PostgreSQL text cannot "
                    "hold: removed and sent to the dead letters", len(dropped))  # fmt: skip
        self._send_dead_letters([dead_letter(
            "field contains a NUL character (\\u0000); stored before such events were refused",
            orjson.dumps(event, default=str), self.config.source.topic, -1, -1)
            for event in dropped])  # fmt: skip

    def _split(self, objects: list[sqlfiles.SqlObject]
               ) -> tuple[list[sqlfiles.SqlObject], list[sqlfiles.SqlObject]]:  # fmt: skip
        """(objects of this engine's main tier, views of its background tier)."""
        if self.config.role == "background":  # the background views are this engine's own
            return split_views(objects, self.config.background.views)[1], []
        if self.config.background.interval <= 0:
            return objects, []
        return split_views(objects, self.config.background.views)

    # --- clock and change feed ------------------------------------------------------------
    def clock(self) -> datetime | None:
        """NOW() for the views: wall time, or the newest event time seen (naive UTC)."""
        if self.config.source.clock == "wall":
            return datetime.now(UTC).replace(tzinfo=None)
        return self.store.max_event_time()

    def subscribe(self, view: str) -> Subscription:
        """Follow a view's changes from the next refresh on (in process)."""
        if view not in self.view_names:
            raise KeyError(f"unknown view {view!r} (views: {', '.join(self.view_names)})")
        if self.tier is not None and not self.tier.in_process and view in self.background_names:
            raise KeyError(f"{view} is maintained by the background process: follow it in "
                           "PostgreSQL (flashrec_status, or the table itself)")
        return self.hub.subscribe(view)

    # --- ingest ---------------------------------------------------------------------------
    def ingest(self, messages: list[Any]) -> int:
        """Validate and store a batch of Kafka messages; returns events accepted."""
        keep: list[dict[str, Any]] = []
        where: dict[str, tuple[str, int, int, bytes]] = {}
        letters: list[bytes] = []
        offsets: dict[tuple[str, int], int] = {}
        repeats = 0  # event_ids repeated inside this batch
        for msg, value, checked in validated(messages):
            topic, part, off = msg.topic(), msg.partition(), msg.offset()
            offsets[(topic, part)] = off + 1
            if not isinstance(checked, Rejected) and checked["event_id"] in where:
                checked = Rejected(f"duplicate event_id {checked['event_id']!r}")
                repeats += 1
            if isinstance(checked, Rejected):
                letters.append(dead_letter(checked.reason, value, topic, part, off))
                continue
            keep.append(checked)
            where[checked["event_id"]] = (topic, part, off, value)

        def flush_letters(dups: list[str]) -> None:
            for event_id in dups:
                topic, part, off, value = where[event_id]
                letters.append(
                    dead_letter(f"duplicate event_id {event_id!r}", value, topic, part, off)
                )
            self._send_dead_letters(letters)

        dups = self.store.apply(keep, offsets, rejected=len(letters), duplicates=repeats,
                                before_commit=flush_letters)  # fmt: skip
        self._last_offsets = offsets
        return len(keep) - len(dups)

    def _send_dead_letters(self, letters: list[bytes]) -> None:
        if self.config.role == "main":  # the main engine reads the same messages
            self.dead_letters.send(letters)

    # --- refresh --------------------------------------------------------------------------
    def refresh(self) -> list[ChangeBatch]:
        """Recompute the views at the clock and publish the changes; returns them.

        The background tier's views are refreshed here too while it is not running (an
        engine driven by hand, as in tests; a process tier then refreshes nothing), each
        tier in its own transaction."""
        batches = self._refresh_main()
        if self.tier is not None and not self.tier.running:
            batches += self.tier.refresh()
        return batches

    def _refresh_main(self, wait: bool = True) -> list[ChangeBatch]:
        """Compute the main views; publish them here (wait) or in a publish thread while the
        loop goes on (one publish in flight, in epoch order; returns [] then)."""
        now = self.clock()
        if now is None:
            return []
        started = time.perf_counter()
        tick = time.monotonic()
        only = {n for n in self.runner.names if self._due.get(n, 0.0) <= tick}
        for name in only & set(self.config.refresh.view_intervals):
            self._due[name] = tick + self.config.refresh.view_intervals[name]
        with self._gc_paused():
            results = self.runner.refresh(now, only=only)
        raw = self.store.events_since(self.raw_seq) if self.config.role == "main" else None
        raw_seq = self.store.last_seq
        self.wait_published()
        self.epoch += 1
        job = functools.partial(self._publish, Computed(
            self.epoch, results, raw, raw_seq, now, self.store.max_event_time(),
            self.store.counters(), started, self.runner.scan_ms,
        ))  # fmt: skip
        self.runner.commit([r.name for r in results])
        self.raw_seq = raw_seq
        if self.epoch % 60 == 0:
            self.store.prune(self._prune_before(now))
        self._settle_gc()
        if wait:
            return job()
        self._publishing = threading.Thread(target=self._publish_quietly, args=(job,),
                                            name="publish", daemon=True)  # fmt: skip
        self._publishing.start()
        return []

    def _prune_before(self, now: datetime) -> datetime:
        """Events older than this are no view's: the horizon behind the older clock of the
        two tiers (the customer views still take out the events leaving their windows)."""
        last = self.tier.last_now if self.tier is not None else None
        return min(now, last or now) - self.horizon - timedelta(minutes=1)

    def _publish(self, c: Computed) -> list[ChangeBatch]:
        """One refresh into PostgreSQL (one transaction), then to in-process subscribers."""
        if self.config.role == "background":
            return self._publish_background(c)
        publish_started = time.perf_counter()
        self.publisher.publish(
            c.epoch, c.results, c.raw, c.raw_seq, watermark=c.watermark,
            raw_keep_after=c.now - self.config.publish.raw_retention, counters=c.counters,
        )  # fmt: skip
        publish_ms = (time.perf_counter() - publish_started) * 1000
        self.published_at, self.published_seq = time.time(), c.raw_seq
        batches = self.hub.publish_refresh(c.results, c.epoch)
        self.last_refresh_ms = (time.perf_counter() - c.started) * 1000
        self.refresh_ms.append(self.last_refresh_ms)
        if self.last_refresh_ms > max(1000.0, 2000 * self.config.refresh.interval):
            parts = ", ".join(f"{r.name} {r.refresh_ms:.0f} ms ({len(r.inserts)}+/"
                              f"{len(r.deletes)}-)" for r in c.results)  # fmt: skip
            spent = ", ".join(f"{k} {v:.0f}" for k, v in self.publisher.timings.items())
            log.warning("slow refresh %d: %.0f ms (session scan %.0f ms, %s; publish %.0f ms "
                        "(%s), %d raw events)", c.epoch, self.last_refresh_ms, c.scan_ms, parts,
                        publish_ms, spent, 0 if c.raw is None else c.raw.num_rows)  # fmt: skip
        return batches

    def _publish_background(self, c: Computed) -> list[ChangeBatch]:
        """The background role's views and status rows, under the main tier's epoch."""
        import psycopg

        try:
            self.main_epoch = int(self.publisher.meta("epoch") or 0)
        except psycopg.OperationalError as exc:  # publish_views waits for PostgreSQL
            log.warning("epoch of the main tier not read (%s): the last one known is used", exc)
        self.publisher.publish_views(c.results, watermark=c.now, epoch=self.main_epoch)
        self.last_refresh_ms = (time.perf_counter() - c.started) * 1000
        self.refresh_ms.append(self.last_refresh_ms)
        log.info("background refresh: %.0f ms (%s)", self.last_refresh_ms, ", ".join(
            f"{r.name} {len(r.inserts)}+/{len(r.deletes)}-" for r in c.results))  # fmt: skip
        return self.hub.publish_refresh(c.results, self.main_epoch)

    def _publish_busy(self) -> bool:
        """Whether a publish is still in flight in the publish thread."""
        return self._publishing is not None and self._publishing.is_alive()

    def _warn_if_stuck(self, tick: float) -> None:
        """Log, every stall_warning seconds, a publish that has not finished for as long."""
        health = self.health()
        stuck = health["publish_in_flight_s"] or 0.0
        if stuck < self.config.publish.stall_warning or tick < self._next_stall_warning:
            return
        self._next_stall_warning = tick + self.config.publish.stall_warning
        log.warning("the publish of epoch %d to PostgreSQL has not finished for %.0f s (%s); "
                    "%d events stored meanwhile wait for it", self.epoch, stuck,
                    health["publish_error"] or "no answer", health["unpublished_events"])

    def health(self) -> dict[str, Any]:
        """The pipeline's state for /readyz and the logs: 'running', 'stalled' (a publish
        in flight for stall_warning seconds or more, or failing), 'failed' or 'stopped'."""
        busy = self.publisher.busy_since
        in_flight = None if busy is None else round(time.monotonic() - busy, 3)
        error = self.publisher.last_error
        if self.error is not None:
            state = "failed"
        elif self._thread is not None and not self._thread.is_alive():
            state = "stopped"
        elif error or (in_flight or 0.0) >= self.config.publish.stall_warning:
            state = "stalled"
        else:
            state = "running"
        published = self.published_at
        return {
            "state": state, "publish_in_flight_s": in_flight, "publish_error": error,
            "last_published_s_ago": None if published is None
            else round(time.time() - published, 3),
            "unpublished_events": max(0, self.store.last_seq - self.published_seq),
            "error": None if self.error is None else str(self.error),
        }  # fmt: skip

    def _publish_quietly(self, job: Any) -> None:
        try:
            job()
        except BaseException as exc:  # raised in the loop by wait_published()
            self._publish_error = exc

    def wait_published(self) -> None:
        """Wait for the publish in flight; raise its error if it failed."""
        if self._publishing is not None:
            self._publishing.join()
            self._publishing = None
        if self._publish_error is not None:
            error, self._publish_error = self._publish_error, None
            raise error

    def _gc_paused(self) -> AbstractContextManager[None]:
        """No automatic GC collection while the views are computed (with gc_full_interval:
        what a refresh makes is frozen right after it): a collection in the middle of a
        refresh would walk its new objects again and again."""
        return gc_paused() if self.config.refresh.gc_full_interval > 0 else nullcontext()

    def _settle_gc(self) -> None:
        """Freeze what is alive now (GC pauses stay short); a full collection once per
        gc_full_interval frees cycles frozen meanwhile."""
        if self.config.refresh.gc_full_interval <= 0:
            return
        tick = time.monotonic()
        if tick >= self._gc_full_due:
            gc.unfreeze()
            found = gc.collect()
            log.info("full GC collection: %d objects freed in %.0f ms", found,
                     (time.monotonic() - tick) * 1000)  # fmt: skip
            self._gc_full_due = time.monotonic() + self.config.refresh.gc_full_interval
        gc.freeze()

    # --- the loop -------------------------------------------------------------------------
    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        from confluent_kafka import OFFSET_BEGINNING

        for topic in sorted({tp.topic for tp in partitions}):
            self._check_log(consumer, topic, [tp.partition for tp in partitions
                                              if tp.topic == topic])  # fmt: skip
        stored = self.store.offsets()
        for tp in partitions:
            tp.offset = stored.get((tp.topic, tp.partition), OFFSET_BEGINNING)
        consumer.assign(partitions)
        log.info("assigned %s", ", ".join(f"{tp.topic}[{tp.partition}]@{tp.offset}"
                                         for tp in partitions))  # fmt: skip

    def _check_log(self, consumer: Any, topic: str, parts: list[int]) -> None:
        """Make sure the stored offsets of `topic` belong to the log the broker holds now.
        A new incarnation of the topic (another id: recreated, or a broker that keeps its log
        in memory and was restarted) or a stored offset beyond the log's end is read from its
        beginning, with a warning; repeated events are refused by event_id."""
        from recommender.local_broker import topic_id

        bootstrap = self.config.source.bootstrap
        current = topic_id(bootstrap, topic) if bootstrap else None
        known = self.store.topic_id(topic)
        stored = {p: o for (t, p), o in self.store.offsets().items() if t == topic}
        why = ""
        if stored and current is not None and known is not None and current != known:
            why = f"the topic is a new incarnation (id {current}, offsets stored for {known})"
        elif stored and (current is None or known is None):
            ends = self._log_ends(consumer, topic, list(stored))
            beyond = {p: (o, ends[p]) for p, o in stored.items()
                      if p in ends and o > ends[p]}  # fmt: skip
            if beyond:
                why = "stored offsets lie beyond the log's end (" + ", ".join(
                    f"partition {p}: stored {o}, log end {end}"
                    for p, (o, end) in sorted(beyond.items())) + ")"  # fmt: skip
        if why:
            log.warning("%s: %s; reading partitions %s from the beginning (events already "
                        "stored are refused as duplicates)", topic, why,
                        ", ".join(map(str, sorted(set(parts) | set(stored)))))  # fmt: skip
        if why or (current is not None and current != known):
            self.store.follow_topic(topic, current, restart=bool(why))
        if current is not None:
            log.info("%s: topic id %s, stored offsets %s", topic, current,
                     dict(sorted(stored.items())) if not why else "none")  # fmt: skip

    @staticmethod
    def _log_ends(consumer: Any, topic: str, parts: list[int]) -> dict[int, int]:
        """Each partition's end offset as the broker reports it (partitions it does not
        answer for are left out)."""
        from confluent_kafka import TopicPartition

        ends = {}
        for p in parts:
            try:
                ends[p] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10,
                                                         cached=False)[1]  # fmt: skip
            except Exception as exc:  # KafkaException: unknown partition, timeout
                log.warning("%s[%d]: no end offset from the broker: %s", topic, p, exc)
        return ends

    def _commit_stored(self, consumer: Any) -> None:
        """Tell the broker how far this engine has stored (its group's committed offsets):
        an embedded broker keeps the log only until its readers have stored it. Reading
        positions come from the state file, never from these."""
        from confluent_kafka import TopicPartition

        offsets = [TopicPartition(t, p, o) for (t, p), o in self._last_offsets.items()]
        if not offsets:
            return
        try:
            consumer.commit(offsets=offsets, asynchronous=True)
        except Exception as exc:  # KafkaException: e.g. the group is rebalancing
            log.debug("offsets not committed to the broker: %s", exc)

    def _attach(self, consumer: Any) -> None:
        """Join the consumer group; partitions start at the stored offsets. The background
        role reads every partition, assigned by hand (no group membership: a restart after a
        kill never waits for the group to give up the dead member's partitions)."""
        from confluent_kafka import TopicPartition

        topic = self.config.source.topic
        if self.config.role == "main":
            consumer.subscribe([topic], on_assign=self._on_assign)
            return
        meta = consumer.list_topics(topic, timeout=30).topics[topic]
        if meta.error is not None:
            raise RuntimeError(f"topic {topic!r}: {meta.error}")
        self._on_assign(consumer, [TopicPartition(topic, p) for p in sorted(meta.partitions)])

    def run(self) -> None:
        """Consume and refresh until stop() (blocking)."""
        from recommender.kafka_io import make_consumer

        source = self.config.source
        consumer = make_consumer(source.group_id, bootstrap=source.bootstrap)
        self._attach(consumer)
        self._consumer = consumer
        next_refresh = time.monotonic() + self.config.refresh.interval
        last_refresh = time.monotonic()
        try:
            while not self._stop.is_set():
                wait = max(0.0, min(0.1, next_refresh - time.monotonic()))
                messages = consumer.consume(source.max_batch, timeout=wait)
                if messages:
                    with self.store.lock:
                        self.ingest(messages)
                    self._commit_stored(consumer)
                behind = len(messages) >= source.max_batch // 5
                tick = time.monotonic()
                if tick >= next_refresh and self._publish_busy():
                    # PostgreSQL has not taken the last refresh yet: go on storing events
                    self._warn_if_stuck(tick)
                    next_refresh = tick + 0.05
                elif tick >= next_refresh and (
                    not behind or tick - last_refresh >= self.config.refresh.catchup
                ):
                    # refreshes start every refresh_interval (back to back when one takes
                    # longer); the publish of one overlaps the next. While behind, at least
                    # catchup_refresh s of ingest lie between the end of one and the next.
                    with self.store.lock:
                        self._refresh_main(wait=not self.config.publish.thread)
                    last_refresh = time.monotonic()
                    next_refresh = tick + self.config.refresh.interval
                if self.tier is not None and self.tier.error is not None:
                    raise self.tier.error
                if self._publish_error is not None:
                    self.wait_published()
        except BaseException as exc:
            self.error = exc
            log.exception("engine stopped on an error")
            raise
        finally:
            try:
                self.wait_published()  # the last refresh reaches PostgreSQL
            except BaseException as exc:  # it failed after the loop had ended
                self.error = self.error or exc
                log.exception("the last publish failed")
            consumer.close()
            self.dead_letters.close()

    def start(self) -> Engine:
        """Run the loop in a background thread."""
        self._thread = threading.Thread(target=self._run_quietly, name="engine", daemon=True)
        self._thread.start()
        if self.tier is not None:
            self.tier.start()
        self.start_upkeep()
        return self

    def start_upkeep(self) -> None:
        """The view tables' index upkeep in a thread (the main role; none at interval 0)."""
        interval = self.config.publish.reindex_interval
        if interval > 0 and self.config.role != "background" and self.upkeep is None:
            upkeep = IndexUpkeep(self.config.publish.dsn)
            self.upkeep = UpkeepThread(upkeep, interval, self.config.background.nice).start()

    def _run_quietly(self) -> None:
        try:
            self.run()
        except BaseException:  # recorded in self.error and logged
            pass

    def stop(self) -> None:
        self._stop.set()
        self.publisher.stop.set()
        if self.tier is not None:
            self.tier.stop()
        if self.upkeep is not None:
            self.upkeep.stop()
        if self._thread is not None:
            self._thread.join(timeout=300)  # let a running refresh finish
        self.publisher.close()
        self.store.close()
        if self.config.refresh.gc_full_interval > 0:
            gc.unfreeze()  # the process may go on without this engine

    def stats(self) -> dict[str, Any]:
        return {"epoch": self.epoch, **self.store.counters(), "stored": self.store.count(),
                "last_refresh_ms": self.last_refresh_ms}  # fmt: skip
