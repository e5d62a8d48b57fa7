"""Objects as files under a data directory, with an in-memory sorted index of the keys.

Each object is one file: the key's segments become directories and the last one the file
name, each percent-encoded (only letters, digits and `-_.=` stay as they are, and a leading
dot is encoded) and the file name ends in `~`, which the encoding never leaves, so a key and
a longer key below it (`a` and `a/b`) never collide. A write goes to a temporary file that
replaces the object's file in one rename: a reader or a kill -9 sees the old or the new
object, never a mix. The index (size and modification time of each key) is rebuilt from the
files at start. The modification time is the object's LastModified, strictly increasing over
all writes; the ETag is derived from it and the size, so it changes with every write.
"""

from __future__ import annotations

import bisect
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

log = logging.getLogger("flashrec.objectstore")

_SAFE = "-_.="
_SUFFIX = "~"
_TMP = "~tmp-"
_TOP = "\U0010ffff"  # sorts after every character of a key


class StoreError(ValueError):
    """A key or bucket name this store cannot hold."""


@dataclass(frozen=True, slots=True)
class Meta:
    size: int
    mtime_ns: int

    @property
    def etag(self) -> str:
        return f'"{self.mtime_ns:x}-{self.size:x}"'


def _encode(segment: str) -> str:
    text = quote(segment, safe=_SAFE)
    return "%2E" + text[1:] if text.startswith(".") else text


class DiskStore:
    """The objects of every bucket under `root` (root/BUCKET/...)."""

    def __init__(self, root: Path | str, fsync: bool = False) -> None:
        self.root = Path(root)
        self.fsync = fsync
        self.keys: dict[str, list[str]] = {}  # bucket -> sorted keys
        self.meta: dict[str, dict[str, Meta]] = {}  # bucket -> key -> Meta
        self._last_ns = 0

    # --- paths ---------------------------------------------------------------------------

    def path(self, bucket: str, key: str) -> Path:
        if not bucket or "/" in bucket or bucket.startswith("."):
            raise StoreError(f"invalid bucket name {bucket!r}")
        if not key:
            raise StoreError("empty key")
        parts = key.split("/")
        return self.root.joinpath(bucket, *map(_encode, parts[:-1]), _encode(parts[-1]) + _SUFFIX)

    def _key_of(self, relative: Path) -> str:
        parts = relative.parts
        return "/".join([*map(unquote, parts[:-1]), unquote(parts[-1][: -len(_SUFFIX)])])

    # --- start ---------------------------------------------------------------------------

    def load(self) -> tuple[int, int]:
        """Rebuild the index from the files (and remove temporary files a kill left);
        return (objects, bytes)."""
        self.root.mkdir(parents=True, exist_ok=True)
        count = total = 0
        for bucket_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            bucket = bucket_dir.name
            metas: dict[str, Meta] = {}
            for dirpath, _dirs, files in os.walk(bucket_dir):
                for name in files:
                    full = Path(dirpath, name)
                    if _TMP in name:
                        full.unlink(missing_ok=True)
                        continue
                    if not name.endswith(_SUFFIX):
                        continue
                    st = full.stat()
                    metas[self._key_of(full.relative_to(bucket_dir))] = Meta(
                        st.st_size, st.st_mtime_ns
                    )
                    self._last_ns = max(self._last_ns, st.st_mtime_ns)
                    total += st.st_size
            self.meta[bucket] = metas
            self.keys[bucket] = sorted(metas)
            count += len(metas)
        return count, total

    # --- operations ----------------------------------------------------------------------

    def head(self, bucket: str, key: str) -> Meta | None:
        return self.meta.get(bucket, {}).get(key)

    def read(self, bucket: str, key: str) -> tuple[Meta, bytes] | None:
        meta = self.head(bucket, key)
        if meta is None:
            return None
        try:
            return meta, self.path(bucket, key).read_bytes()
        except FileNotFoundError:  # removed behind our back: forget it
            self._forget(bucket, key)
            return None

    def _next_ns(self) -> int:
        """A modification time after every earlier one, in whole microseconds."""
        now = time.time_ns() // 1000 * 1000
        self._last_ns = max(now, self._last_ns + 1000)
        return self._last_ns

    def write(self, bucket: str, key: str, body: bytes) -> Meta:
        """Store `body` as the object `key` (replacing it atomically)."""
        path = self.path(bucket, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}{_TMP}{os.getpid()}")
        with open(tmp, "wb") as f:
            f.write(body)
            if self.fsync:
                f.flush()
                os.fsync(f.fileno())
        mtime = self._next_ns()
        os.utime(tmp, ns=(mtime, mtime))
        os.replace(tmp, path)
        if self.fsync:
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        meta = Meta(len(body), mtime)
        metas = self.meta.setdefault(bucket, {})
        if key not in metas:
            keys = self.keys.setdefault(bucket, [])
            if not keys or keys[-1] < key:
                keys.append(key)
            else:
                bisect.insort(keys, key)
        metas[key] = meta
        return meta

    def delete(self, bucket: str, key: str) -> bool:
        """Remove the object; False when there was none."""
        if self.head(bucket, key) is None:
            return False
        self.path(bucket, key).unlink(missing_ok=True)
        self._forget(bucket, key)
        return True

    def _forget(self, bucket: str, key: str) -> None:
        self.meta.get(bucket, {}).pop(key, None)
        keys = self.keys.get(bucket, [])
        i = bisect.bisect_left(keys, key)
        if i < len(keys) and keys[i] == key:
            del keys[i]

    def scan(self, bucket: str, prefix: str = "", after: str = "") -> list[str]:
        """The keys that start with `prefix` and sort after `after`, in order (a new list)."""
        keys = self.keys.get(bucket, [])
        lo, hi = self._span(keys, prefix, after)
        return keys[lo:hi]

    @staticmethod
    def _span(keys: list[str], prefix: str, after: str) -> tuple[int, int]:
        lo = bisect.bisect_left(keys, prefix)
        if after:
            lo = max(lo, bisect.bisect_right(keys, after))
        hi = bisect.bisect_left(keys, prefix + _TOP) if prefix else len(keys)
        return lo, hi

    def list(
        self, bucket: str, prefix: str, delimiter: str, after: str, max_keys: int
    ) -> tuple[list[str], list[str], str | None]:
        """One page of a listing: (keys, common prefixes, what the next page starts after
        when more follow, else None). Keys that contain `delimiter` after `prefix` are rolled
        up into one common prefix each."""
        keys = self.keys.get(bucket, [])
        i, hi = self._span(keys, prefix, after)
        found: list[str] = []
        prefixes: list[str] = []
        last = ""  # what the next page starts after
        while i < hi:
            if len(found) + len(prefixes) >= max_keys:
                return found, prefixes, last
            key = keys[i]
            cut = key.find(delimiter, len(prefix)) if delimiter else -1
            if cut < 0:
                found.append(key)
                last = key
                i += 1
                continue
            common = key[: cut + len(delimiter)]
            prefixes.append(common)
            last = common + _TOP  # after every key below the common prefix
            i = bisect.bisect_left(keys, last, i, hi)
        return found, prefixes, None

    def stats(self) -> tuple[int, int]:
        """(objects, bytes) over every bucket."""
        count = sum(len(m) for m in self.meta.values())
        return count, sum(m.size for metas in self.meta.values() for m in metas.values())
