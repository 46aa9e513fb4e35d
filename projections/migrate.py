"""Plain, versioned SQL migrations, applied in order on start-up.

Files are `projections/migrations/NNNN_name.sql`. Each is applied once, in its own
transaction, and recorded with its checksum; an edited, already-applied file is an error.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
READER_TIMEOUT_S = 60
"""The read-only role's statement and idle-in-transaction limit, in seconds
(`projections.query` sets the same per session too): a reader's locks hold up projectors
at most this long."""
READER_TIMEOUT = f"{READER_TIMEOUT_S}s"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise MigrationError(f"bad migration file name: {path.name}")
        version = int(m.group(1))
        if version in found:
            raise MigrationError(f"two migrations share version {version}")
        found[version] = Migration(version, path.name, path.read_text())
    return [found[v] for v in sorted(found)]


def apply_migrations(
    dsn: str, *, readonly_role: str | None = None, pin_reader: bool = True
) -> list[str]:
    """Apply pending migrations. Returns the names applied now.

    `pin_reader=False` leaves the read-only role's session settings to the caller: the
    local stack pins them with its superuser right after (`harden_reader`), so trying here
    as the owner would only log a warning that is not true a moment later.
    """
    applied_now: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute("SELECT pg_advisory_lock(7478201)")
        try:
            done = {
                row[0]: row[1]
                for row in conn.execute("SELECT version, checksum FROM schema_migrations")
            }
            for mig in discover():
                if mig.version in done:
                    if done[mig.version] != mig.checksum:
                        raise MigrationError(f"{mig.name} changed after it was applied")
                    continue
                with conn.transaction():
                    conn.execute(mig.sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                        (mig.version, mig.name, mig.checksum),
                    )
                applied_now.append(mig.name)
            if readonly_role:
                grant_read_only(conn, readonly_role, pin=pin_reader)
        finally:
            conn.execute("SELECT pg_advisory_unlock(7478201)")
    return applied_now


def grant_read_only(
    conn: psycopg.Connection[tuple[object, ...]], role: str, *, pin: bool = True
) -> None:
    """SELECT on every application schema, now and for tables created later; nothing else.

    Also pins the role's sessions in this database read-only by default and
    time-limited, when the migrating role may alter roles (a superuser; the owner of a
    local stack may not, and then `projections.query` sets the same per session).
    """
    if pin:
        _pin_reader_settings(conn, role)
    rows = conn.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' "
        "AND nspname <> 'information_schema'"
    ).fetchall()
    ident = sql.Identifier(role)
    for (schema,) in rows:
        s = sql.Identifier(str(schema))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(s, ident))
        conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(s, ident))
        conn.execute(
            sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT ON TABLES TO {}").format(
                s, ident
            )
        )


SUPERUSER_MIGRATIONS = ("0109_reader_hardening.sql", "0123_reader_wal_messages.sql")
"""Migrations with a block only a superuser can run (it is skipped with a WARNING
otherwise): `harden_reader` runs them again as one."""


def harden_reader(admin: psycopg.Connection[tuple[object, ...]], role: str) -> None:
    """What only a superuser may do for the analysts' role, on `admin`'s database.

    0109's second block (EXECUTE on the large-object and advisory-lock functions taken
    from PUBLIC), 0123 (EXECUTE on pg_logical_emit_message, a WAL write, taken from
    PUBLIC) and the role's pinned session settings. Idempotent; the local stack runs it
    with its admin connection after every migration run, so its reader is hardened
    without an operator step.
    """
    for name in SUPERUSER_MIGRATIONS:
        admin.execute((MIGRATIONS_DIR / name).read_bytes())
    _pin_reader_settings(admin, role)


def _pin_reader_settings(conn: psycopg.Connection[tuple[object, ...]], role: str) -> None:
    """`ALTER ROLE role IN DATABASE db SET ...`: defaults every reader session starts with."""
    ident, db = sql.Identifier(role), sql.Identifier(conn.info.dbname)
    try:
        with conn.transaction():
            for name, value in (
                ("default_transaction_read_only", "on"),
                ("statement_timeout", READER_TIMEOUT),
                ("idle_in_transaction_session_timeout", READER_TIMEOUT),
            ):
                conn.execute(
                    sql.SQL("ALTER ROLE {} IN DATABASE {} SET {} = {}").format(
                        ident, db, sql.Identifier(name), sql.Literal(value)
                    )
                )
    except psycopg.errors.InsufficientPrivilege:
        log.warning(
            "cannot pin %s's session settings (read-only, %s timeouts): the migrating role "
            "may not alter roles; run migrations as a superuser to set them",
            role,
            READER_TIMEOUT,
        )
