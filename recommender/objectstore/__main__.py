"""`python -m recommender.objectstore --dir D --port P`: serve D over S3 on 127.0.0.1:P and
delete the record batches that every reader has stored (see recommender.objectstore)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

from recommender.config import setup_logging
from recommender.objectstore.disk import DiskStore
from recommender.objectstore.retention import Policy, Retention
from recommender.objectstore.server import S3App, serve_connection

log = logging.getLogger("flashrec.objectstore")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = Policy()
    p = argparse.ArgumentParser(prog="python -m recommender.objectstore", description=__doc__)
    p.add_argument("--dir", type=Path, required=True, help="data directory (created if missing)")
    p.add_argument("--port", type=int, required=True, help="TCP port on --host")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--fsync", action="store_true",
                   help="fsync each object before answering (survives a power loss, slower)")
    p.add_argument("--retention-interval", type=float, default=5.0,
                   help="seconds between retention passes (0: no retention)")
    p.add_argument("--min-age", type=float, default=d.min_age_s,
                   help="seconds a batch is kept at least, even below every group's offset")
    p.add_argument("--stale-hours", type=float, default=d.stale_s / 3600,
                   help="a group that has not committed to a topic for this long stops "
                   "holding its batches back")
    p.add_argument("--plain-hours", type=float, default=d.plain_age_s / 3600,
                   help="topics no live group reads: keep batches this long (unless the topic's "
                   "retention.ms says otherwise; <= 0: forever)")
    p.add_argument("--plain-bytes", type=int, default=d.plain_bytes,
                   help="topics no live group reads: keep at most this many bytes per "
                   "partition (unless the topic's retention.bytes says otherwise; <= 0: no cap)")
    p.add_argument("--log-level", default=None)
    return p.parse_args(argv)


async def _main(args: argparse.Namespace) -> None:
    store = DiskStore(args.dir / "objects", fsync=args.fsync)
    objects, size = store.load()
    policy = Policy(min_age_s=args.min_age, stale_s=args.stale_hours * 3600,
                    plain_age_s=args.plain_hours * 3600, plain_bytes=args.plain_bytes)
    retention = Retention(store, policy)
    retention.load()
    app = S3App(store, on_put=retention.on_put)
    server = await asyncio.start_server(
        lambda r, w: serve_connection(app, r, w), args.host, args.port, backlog=256
    )
    log.info("object store on http://%s:%d: data dir %s, %d objects, %d bytes, fsync %s; "
             "retention every %gs (%s)", args.host, args.port, args.dir.resolve(), objects, size,
             "on" if args.fsync else "off", args.retention_interval, policy)  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=args.retention_interval or None)
            except TimeoutError:
                try:
                    retention.run()
                except Exception:
                    log.exception("retention pass failed")
    count, size = store.stats()
    log.info("object store stopped: %d objects, %d bytes, %d requests served", count, size,
             app.requests)  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging(args.log_level)
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
