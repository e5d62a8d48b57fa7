"""What the embedded engine keeps is bounded by the views' windows, not by uptime.

sql/ is copied with every look-back shortened to minutes, and an engine on the event clock
is fed 40 minutes of event time with sessions that come and go. Afterwards: the state file
holds only events inside the longest look-back (plus the pruning margin), PostgreSQL's raw
`clickstream` only the raw retention, each change feed only its last epochs, and the view
tables only sessions and pairs inside their windows.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import psycopg
from engine_support import Msg, click, new_db, raw

from recommender import config
from recommender.engine import Engine, EngineConfig

SHORTER = {  # look-back in sql/ -> in the copy
    "'30 DAYS'": "'6 MINUTES'", "'14 DAYS'": "'5 MINUTES'", "'7 DAYS'": "'4 MINUTES'",
    "'1 DAY'": "'3 MINUTES'", "'1 HOUR'": "'3 MINUTES'", "'30 MINUTES'": "'2 MINUTES'",
    "'5 MINUTES'": "'1 MINUTES'",
}  # fmt: skip
LONGEST = timedelta(minutes=6)
T0 = datetime(2026, 3, 1, 12, 0)
STEP_S = 10  # event seconds between refreshes
MINUTES = 40


def short_sql(folder: Path) -> Path:
    folder.mkdir()
    for path in sorted(config.PROJECT_ROOT.joinpath("sql").glob("*.sql")):
        text = path.read_text()
        for old, new in SHORTER.items():
            text = text.replace(f"INTERVAL {old}", f"INTERVAL {new}")
        (folder / path.name).write_text(text)
    return folder


def test_state_and_tables_are_bounded_by_the_windows(postgres, tmp_path: Path) -> None:
    dsn = new_db(postgres.dsn)
    engine = Engine(EngineConfig.of(
        pg_dsn=dsn, state_path=tmp_path / "state.duckdb", clock="event",
        sql_dir=short_sql(tmp_path / "sql"), raw_retention=timedelta(minutes=2),
        background_interval=0,
    ))  # fmt: skip
    engine._send_dead_letters = lambda letters: None
    engine.publisher.change_epochs = 20
    assert engine.horizon == LONGEST
    n, offset = 0, 0
    for step in range(MINUTES * 60 // STEP_S):
        batch = []
        for k in range(STEP_S * 2):  # two clicks a second over six sessions at a time,
            at = T0 + timedelta(seconds=step * STEP_S + k / 2)  # each 40 clicks 3 s apart
            batch.append(click(n, f"s{n % 6}-{n // 240}", n % 17, at))
            n += 1
        engine.ingest([Msg(raw(x), offset + i) for i, x in enumerate(batch)])
        offset += len(batch)
        engine.refresh()
    end = engine.clock()
    assert end is not None and end >= T0 + timedelta(minutes=MINUTES - 1)
    # the state file: the longest look-back, a minute's margin, and up to 60 refreshes
    # between two prunes
    oldest = engine.store.con.execute("SELECT min(ts) FROM flashrec_events").fetchone()[0]
    assert oldest >= end - LONGEST - timedelta(minutes=1) - timedelta(seconds=60 * STEP_S)
    assert engine.store.count() < n / 3
    with psycopg.connect(dsn) as conn:
        raw_oldest = conn.execute("SELECT min(ts) AT TIME ZONE 'UTC' FROM clickstream"
                                  ).fetchone()[0]  # fmt: skip
        assert raw_oldest > end - timedelta(minutes=2)
        feeds = [t for (t,) in conn.execute(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE 'flashrec_changes_%'")]
        assert feeds
        for table in feeds:
            epochs = conn.execute(f"SELECT count(DISTINCT epoch) FROM {table}").fetchone()[0]
            assert epochs <= 20, table
        sessions = conn.execute("SELECT min(last_ts) AT TIME ZONE 'UTC', count(*) FROM "
                                "vmis_history").fetchone()  # fmt: skip
        assert sessions[0] > end - timedelta(minutes=4) and 0 < sessions[1] < n / 40 / 3
        features = conn.execute("SELECT count(*) FROM session_features").fetchone()[0]
        assert features < n / 40 / 3  # sessions of the last 4 minutes only
    engine.stop()
