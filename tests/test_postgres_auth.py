"""The local PostgreSQL asks every connection for a password (SCRAM), keeps the passwords in
0600 files beside its data dir, gives analysts a read-only role, and moves a data dir of
earlier versions (trust authentication) to passwords when it starts."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
from pathlib import Path

import psycopg
import pytest
from conftest import free_port
from psycopg import errors

from recommender.postgres.local import PG_USER, READER, LocalPostgres
from recommender.postgres.publisher import Publisher


@pytest.fixture(autouse=True)
def no_ambient_password(monkeypatch, tmp_path) -> None:
    """No password from the environment or ~/.pgpass reaches the refused connections."""
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-such-file"))


@pytest.fixture(scope="module")
def server(postgres: LocalPostgres) -> LocalPostgres:
    """The module's server with a table made before the read-only role's grants were last
    set (a restart of flashrec up) and a view table the publisher made after them."""
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE before_table (x bigint)")
        conn.execute("INSERT INTO before_table VALUES (1)")
    postgres.start()  # already running: the grants are set again
    pub = Publisher(postgres.dsn, feed_views=())
    try:
        pub.ensure_view("later_view", ["k"], ["VARCHAR"])
        with pub.conn.transaction():
            pub.conn.execute("INSERT INTO later_view VALUES ('a')")
    finally:
        pub.close()
    return postgres


def _refused(**params: str | int) -> str:
    """The error of a connection PostgreSQL must refuse."""
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(**{"dbname": "postgres", "connect_timeout": 5, **params}).close()
    return str(info.value)


def _reader(pg: LocalPostgres) -> psycopg.Connection:
    return psycopg.connect(host=pg.host, port=pg.port, user=READER, dbname="postgres",
                           passfile=str(pg.reader_password_file), autocommit=True)  # fmt: skip


def test_connections_need_the_right_password(server: LocalPostgres) -> None:
    pg = server
    tcp = {"host": pg.host, "port": pg.port}
    assert "no password supplied" in _refused(**tcp, user=PG_USER)
    assert "password authentication failed" in _refused(**tcp, user=PG_USER, password="wrong")
    assert "password authentication failed" in _refused(**tcp, user=READER, password="wrong")
    socket = {"host": str(pg.data_dir), "port": pg.port}  # the Unix socket in the data dir
    assert "no password supplied" in _refused(**socket, user=PG_USER)
    with psycopg.connect(pg.dsn) as conn:  # what the engine, API and scorer use
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
                            ).fetchone() == (True,)  # fmt: skip
    with psycopg.connect(pg.passfile_dsn) as conn:  # the one flashrec up prints
        assert conn.execute("SELECT current_user").fetchone() == (PG_USER,)


def test_password_files_are_private(server: LocalPostgres) -> None:
    pg = server
    files = (pg.password_file, pg.reader_password_file)
    for path, user in zip(files, (PG_USER, READER), strict=True):
        assert path.parent == pg.data_dir.parent
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert path.stat().st_uid == os.getuid()
        assert path.read_text().startswith(f"*:*:*:{user}:")
    superuser, reader = (p.read_text().strip().split(":")[4] for p in files)
    assert len(superuser) >= 32 and superuser != reader and f":{superuser}@" in pg.dsn
    assert superuser not in pg.passfile_dsn and superuser not in pg.psql_command()
    pg.reader_password_file.chmod(0o644)  # loosened by hand: narrowed at the next start
    pg.start()
    assert stat.S_IMODE(pg.reader_password_file.stat().st_mode) == 0o600
    assert pg.reader_password_file.read_text().strip().split(":")[4] == reader


def test_reader_selects_and_writes_nothing(server: LocalPostgres, tmp_path: Path) -> None:
    pg = server
    out = subprocess.run(f"{pg.psql_command()} -w -At -c 'SELECT * FROM later_view'",
                         shell=True, capture_output=True, text=True, timeout=30)  # fmt: skip
    assert out.returncode == 0, out.stderr  # the printed command: no password typed
    assert out.stdout.split() == ["a"]
    marker = tmp_path / "ran"
    with _reader(pg) as conn:
        assert conn.execute("SELECT x FROM before_table").fetchall() == [(1,)]
        assert conn.execute("SELECT k FROM later_view").fetchall() == [("a",)]
        assert conn.execute("SELECT count(*) FROM flashrec_status").fetchone() is not None
        with pytest.raises(errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO before_table VALUES (2)")
        conn.execute("SET default_transaction_read_only = off")  # the grants still refuse
        for statement in (
            "INSERT INTO before_table VALUES (2)",
            "UPDATE later_view SET k = 'b'",
            "DELETE FROM before_table",
            "TRUNCATE flashrec.later_view",  # the view's table
            "CREATE TABLE mine (x int)",
            "CREATE TEMP TABLE mine (x int)",
            "CREATE SCHEMA mine",
            f"COPY (SELECT 1) TO PROGRAM 'touch {marker}'",
            f"COPY before_table TO '{tmp_path / 'copy.txt'}'",
            "ALTER ROLE flashrec_reader SUPERUSER",
            "SELECT pg_read_file('postgresql.conf')",
        ):
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(statement)
    assert not marker.exists()
    with psycopg.connect(pg.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM before_table").fetchone() == (1,)


@pytest.mark.parametrize("running", [False, True], ids=["stopped", "running"])
def test_a_trust_data_dir_is_moved_to_passwords(tmp_path: Path, caplog, running: bool) -> None:
    """A data dir that an earlier version made (initdb --auth=trust), its server stopped or
    still running, needs passwords after the next start, and keeps its tables."""
    port = free_port()
    old = LocalPostgres(tmp_path / "pg", port)
    old._prepare_dir()
    old._run("initdb", "--auth=trust", "--encoding=utf8", "-U", PG_USER,
             "-D", str(old.data_dir))  # fmt: skip
    old._run("pg_ctl", "-w", "-D", str(old.data_dir), "-l", str(old.data_dir / "server.log"),
             "-o", f"-h 127.0.0.1 -p {port} -k {old.data_dir}", "start")  # fmt: skip
    try:
        no_password = {"host": "127.0.0.1", "port": port, "user": PG_USER, "dbname": "postgres"}
        with psycopg.connect(**no_password, autocommit=True) as conn:  # trust: anyone
            conn.execute("CREATE TABLE kept (x bigint)")
            conn.execute("INSERT INTO kept VALUES (7)")
        if not running:
            old.stop()
        assert not old.password_file.exists()
        with caplog.at_level(logging.INFO, logger="recommender.postgres.local"):
            pg = LocalPostgres(tmp_path / "pg", port).start()
        assert "without a password (trust)" in caplog.text
        assert str(pg.password_file) in caplog.text
        assert "no password supplied" in _refused(**no_password)
        hba = (pg.data_dir / "pg_hba.conf").read_text()
        rules = [line.split() for line in hba.splitlines() if line.split()[:1] != ["#"]]
        methods = {fields[-1] for fields in rules if fields}
        assert methods == {"scram-sha-256"}, hba
        with psycopg.connect(pg.dsn) as conn:
            assert conn.execute("SELECT x FROM kept").fetchall() == [(7,)]
        with _reader(pg) as conn:
            assert conn.execute("SELECT x FROM kept").fetchall() == [(7,)]
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="recommender.postgres.local"):
            LocalPostgres(tmp_path / "pg", port).start()  # nothing left to move
        assert "(trust)" not in caplog.text
    finally:
        old.stop()
