"""Retention of tansu's record batches in the object store.

tansu (s3:// storage) keeps each partition's log as one object per record batch,
`clusters/C/topics/T/partitions/P/records/<base offset>.batch`, and never deletes any; every
fetch below the end of a partition lists all of its batches, so their number sets tansu's CPU.
Only these batch objects are ever deleted here (never a topic's, watermark's or group's JSON).

A topic is *read* when a consumer group has committed an offset to it within `stale_s`
(the object store sees the commits: `clusters/C/groups/consumers/G/offsets/T/partitions/P.json`).
Then a batch is deleted once the next batch starts at or below the lowest committed offset of
those groups for its partition (every event of it has been read by all of them) and it is
older than `min_age_s`. A group that read the topic but has no offset for the partition holds
the whole partition. A group that stops committing holds its batches for `stale_s`, then
is ignored (logged). Topics nobody reads (the dead letters) keep batches for `plain_age_s`
and at most `plain_bytes` per partition, or what the topic's own `retention.ms` /
`retention.bytes` configs say. The newest batch of a partition is always kept.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import defaultdict
from dataclasses import dataclass

from recommender.objectstore.disk import DiskStore

log = logging.getLogger("flashrec.objectstore.retention")

_OFFSETS = re.compile(r"^clusters/([^/]+)/groups/consumers/(.+)/offsets/([^/]+)/partitions/"
                      r"(\d+)\.json$")  # fmt: skip
_RECORDS = re.compile(r"^clusters/([^/]+)/topics/([^/]+)/partitions/(\d+)/records/$")
_META = re.compile(r"^clusters/([^/]+)/meta\.json$")


@dataclass(frozen=True)
class Policy:
    """Retention settings (see the module's docstring)."""

    min_age_s: float = 10.0
    stale_s: float = 24 * 3600.0
    plain_age_s: float = 7 * 24 * 3600.0
    plain_bytes: int = 1 << 30

    def __str__(self) -> str:
        return (f"read topics: below every group's offset, older than {self.min_age_s:g} s, "
                f"groups silent for {self.stale_s / 3600:g} h ignored; other topics: "
                f"{self.plain_age_s / 3600:g} h, {self.plain_bytes} bytes per partition")


@dataclass
class Commit:
    offset: int
    at: float  # wall-clock time of the commit


TopicKey = tuple[str, str, str]  # (bucket, cluster, topic)


class Retention:
    """Tracks the groups' committed offsets and deletes the batches every reader is past."""

    def __init__(self, store: DiskStore, policy: Policy, clock=time.time) -> None:
        self.store = store
        self.policy = policy
        self.clock = clock
        # (bucket, cluster, topic) -> group -> partition -> Commit
        self.commits: dict[TopicKey, dict[str, dict[int, Commit]]] = defaultdict(dict)
        self.configs: dict[TopicKey, dict[str, str]] = {}  # topic configs from meta.json
        self._stale_logged: set[tuple[TopicKey, str]] = set()
        self.deleted = 0  # batches deleted since start

    # --- what the store sees ------------------------------------------------------------

    def load(self) -> None:
        """Read the committed offsets and topic configs already on disk."""
        for bucket, keys in self.store.keys.items():
            for key in list(keys):
                if _OFFSETS.match(key) or _META.match(key):
                    found = self.store.read(bucket, key)
                    if found is not None:
                        self._note(bucket, key, found[1], found[0].mtime_ns / 1e9)

    def on_put(self, bucket: str, key: str, body: bytes) -> None:
        if key.endswith(".json"):
            self._note(bucket, key, body, self.clock())

    def _note(self, bucket: str, key: str, body: bytes, at: float) -> None:
        m = _OFFSETS.match(key)
        if m:
            cluster, group, topic, partition = m.groups()
            try:
                offset = int(json.loads(body)["offset"])
            except (ValueError, KeyError, TypeError):
                log.warning("unreadable committed offset %s: %r", key, body[:200])
                return
            parts = self.commits[(bucket, cluster, topic)].setdefault(group, {})
            parts[int(partition)] = Commit(offset, at)
            self._stale_logged.discard(((bucket, cluster, topic), group))
            return
        m = _META.match(key)
        if m:
            self._note_meta(bucket, m.group(1), body)

    def _note_meta(self, bucket: str, cluster: str, body: bytes) -> None:
        try:
            topics = json.loads(body).get("topics") or {}
            for name, entry in topics.items():
                configs = (entry.get("topic") or {}).get("configs") or []
                self.configs[(bucket, cluster, name)] = {
                    c["name"]: c["value"] for c in configs
                    if isinstance(c, dict) and c.get("value") is not None
                }  # fmt: skip
        except (ValueError, AttributeError, KeyError, TypeError) as exc:
            log.warning("topic configs not read from %s/clusters/%s/meta.json: %s", bucket,
                        cluster, exc)  # fmt: skip

    # --- the pass -----------------------------------------------------------------------

    def partitions(self) -> list[tuple[str, str, str, int, str]]:
        """(bucket, cluster, topic, partition, records prefix) of every partition with
        batches."""
        found = []
        for bucket, keys in self.store.keys.items():
            seen: set[str] = set()
            for key in keys:
                if not key.endswith(".batch"):
                    continue
                prefix = key[: key.rfind("/") + 1]
                if prefix in seen:
                    continue
                seen.add(prefix)
                m = _RECORDS.match(prefix)
                if m:
                    cluster, topic, partition = m.groups()
                    found.append((bucket, cluster, topic, int(partition), prefix))
        return found

    def readers(self, topic: TopicKey, now: float) -> dict[str, dict[int, Commit]]:
        """The groups that committed to `topic` within stale_s (logs the others once)."""
        live = {}
        for group, parts in self.commits.get(topic, {}).items():
            last = max((c.at for c in parts.values()), default=0.0)
            if now - last <= self.policy.stale_s:
                live[group] = parts
            elif (topic, group) not in self._stale_logged:
                self._stale_logged.add((topic, group))
                log.warning("group %s has not committed to topic %s for %.1f h: it no longer "
                            "holds the topic's batches back", group, topic[2],
                            (now - last) / 3600)  # fmt: skip
        return live

    def run(self) -> int:
        """One pass over every partition; return the batches deleted."""
        now = self.clock()
        total = 0
        for bucket, cluster, topic, partition, prefix in self.partitions():
            key = (bucket, cluster, topic)
            readers = self.readers(key, now)
            batches = self.store.scan(bucket, prefix)
            if readers:
                floor = min(parts[partition].offset if partition in parts else 0
                            for parts in readers.values())  # fmt: skip
                doomed = self._below(bucket, batches, floor, now)
                why = f"below offset {floor} committed by {', '.join(sorted(readers))}"
            else:
                doomed = self._plain(key, batches, now)
                why = "past the retention of a topic no group reads"
            if doomed:
                size = sum(self.store.meta[bucket][k].size for k in doomed)
                for k in doomed:
                    self.store.delete(bucket, k)
                total += len(doomed)
                log.info("%s[%d]: deleted %d batches (%d bytes) up to offset %d, %s", topic,
                         partition, len(doomed), size, _base(batches[len(doomed)]) - 1,
                         why)  # fmt: skip
        self.deleted += total
        return total

    def _below(self, bucket: str, batches: list[str], floor: int, now: float) -> list[str]:
        """The leading batches whose successor starts at or below `floor`, old enough."""
        metas = self.store.meta[bucket]
        n = 0
        while n + 1 < len(batches) and _base(batches[n + 1]) <= floor:
            age = now - metas[batches[n]].mtime_ns / 1e9
            if self.policy.min_age_s > 0 and age < self.policy.min_age_s:
                break
            n += 1
        return batches[:n]

    def _plain(self, topic: TopicKey, batches: list[str], now: float) -> list[str]:
        """The leading batches past the topic's time or size retention."""
        configs = self.configs.get(topic, {})
        age_s = _number(configs.get("retention.ms"), 1e-3, self.policy.plain_age_s)
        cap = int(_number(configs.get("retention.bytes"), 1, self.policy.plain_bytes))
        metas = self.store.meta[topic[0]]
        n = 0
        if age_s > 0:
            while n + 1 < len(batches) and now - metas[batches[n]].mtime_ns / 1e9 > age_s:
                n += 1
        if cap > 0:
            size = sum(metas[k].size for k in batches[n:])
            while n + 1 < len(batches) and size > cap:
                size -= metas[batches[n]].size
                n += 1
        return batches[:n]


def _base(key: str) -> int:
    """The base offset in a batch's key (…/records/<base offset>.batch)."""
    return int(key[key.rfind("/") + 1 : -len(".batch")])


def _number(text: str | None, scale: float, default: float) -> float:
    """A topic config value times `scale`; `default` when unset or unreadable (-1: none)."""
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        return default
    return value * scale if value >= 0 else 0.0
