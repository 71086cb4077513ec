"""A private PostgreSQL cluster under the state directory, for `make run` and the tests.

The cluster listens only on a unix socket in ``<state>/postgres/run`` (``listen_addresses``
empty: no TCP port to collide with or to expose), authenticates with SCRAM and a generated
password kept in a 0600 file. ``initdb`` and ``pg_ctl`` refuse to run as root, so as root
they run as the ``postgres`` user (or ``nobody``) through ``setpriv``, which owns the cluster
directory; the broker, as root, can still reach the socket.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from broker.errors import ConfigurationError
from broker.privatefiles import private_dir, read_secret, write_private
from broker.redact import Secret

SUPERUSER = "keybroker"
DATABASE = "keybroker"
_PORT = 5432  # only names the socket file (.s.PGSQL.5432); nothing listens on TCP


def postgres_bin_dir() -> Path:
    """The newest ``/usr/lib/postgresql/<N>/bin`` with initdb, else the one on PATH."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    raise ConfigurationError("no PostgreSQL binaries found; install the 'postgresql' package")


@dataclass(frozen=True)
class _RunAs:
    prefix: tuple[str, ...]
    uid: int | None
    gid: int | None


def _run_as() -> _RunAs:
    if os.geteuid() != 0:
        return _RunAs((), None, None)
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        prefix = (
            "setpriv",
            f"--reuid={entry.pw_uid}",
            f"--regid={entry.pw_gid}",
            "--clear-groups",
        )
        return _RunAs(prefix, entry.pw_uid, entry.pw_gid)
    raise ConfigurationError("running as root, but neither 'postgres' nor 'nobody' exists")


class LocalPostgres:
    """Create, start, stop and locate the state directory's cluster."""

    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir.resolve() / "postgres"
        self.data_dir = self.root / "data"
        self.socket_dir = self.root / "run"
        self.log_file = self.root / "postgres.log"
        self.password_file = self.root / "password"
        self._bin = postgres_bin_dir()
        self._as = _run_as()

    # --- life cycle ------------------------------------------------------------------------

    def ensure_initialized(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        private_dir(self.root)
        self._let_cluster_user_reach_root()
        self.socket_dir.mkdir(exist_ok=True)
        if not self.password_file.exists():
            write_private(self.password_file, secrets.token_urlsafe(24) + "\n")
        # initdb reads the superuser password from a file the cluster user can read; it is
        # removed right after.
        pwfile = self.root / ".initdb-pw"
        write_private(pwfile, self.password.reveal() + "\n")
        self._give_to_cluster_user(self.root, self.socket_dir, pwfile)
        try:
            self._pg(
                "initdb",
                "--pgdata",
                str(self.data_dir),
                "--username",
                SUPERUSER,
                "--pwfile",
                str(pwfile),
                "--auth",
                "scram-sha-256",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def is_running(self) -> bool:
        result = subprocess.run(  # noqa: S603
            [*self._as.prefix, str(self._bin / "pg_ctl"), "status", "-D", str(self.data_dir)],
            capture_output=True,
            check=False,
        )
        return result.returncode == 0

    def start(self) -> None:
        if self.is_running():
            return
        self.log_file.touch(exist_ok=True)
        self._give_to_cluster_user(self.log_file)
        options = (
            f"-c listen_addresses='' -c unix_socket_directories='{self.socket_dir}' "
            f"-c unix_socket_permissions=0770 -p {_PORT} -c max_connections=200 "
            "-c shared_buffers=128MB"
        )
        self._pg(
            "pg_ctl",
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-o",
            options,
            "-w",
            "-t",
            "60",
        )
        self._wait_for_socket()

    def stop(self) -> None:
        if self.is_running():
            self._pg("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60")

    def ensure_database(self) -> None:
        """Create the ``keybroker`` database if it does not exist (needs the cluster running)."""
        env = {**os.environ, "PGPASSWORD": self.password.reveal()}
        base = [
            str(self._bin / "psql"),
            "-h",
            str(self.socket_dir),
            "-p",
            str(_PORT),
            "-U",
            SUPERUSER,
            "-d",
            "postgres",
            "-tAc",
        ]
        exists = subprocess.run(  # noqa: S603
            [*base, f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"],  # noqa: S608
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        if exists.stdout.strip() != "1":
            subprocess.run(  # noqa: S603
                [*base, f'CREATE DATABASE "{DATABASE}"'],
                capture_output=True,
                env=env,
                check=True,
            )

    def up(self) -> str:
        """Initialise if needed, start, create the database; return the DSN."""
        self.ensure_initialized()
        self.start()
        self.ensure_database()
        return self.dsn()

    # --- connection ------------------------------------------------------------------------

    @property
    def password(self) -> Secret:
        return read_secret(self.password_file)

    def dsn(self, database: str = DATABASE) -> str:
        """A libpq/asyncpg URL over the unix socket. It embeds the password: never log it."""
        return (
            f"postgresql://{SUPERUSER}:{quote(self.password.reveal(), safe='')}@/{database}"
            f"?host={quote(str(self.socket_dir), safe='')}&port={_PORT}"
        )

    # --- helpers ---------------------------------------------------------------------------

    def _pg(self, tool: str, *args: str) -> None:
        result = subprocess.run(  # noqa: S603
            [*self._as.prefix, str(self._bin / tool), *args],
            capture_output=True,
            text=True,
            check=False,
            cwd=self.root,
        )
        if result.returncode != 0:
            raise ConfigurationError(
                f"{tool} failed ({result.returncode}): {result.stderr.strip()[-2000:]}"
            )

    def _give_to_cluster_user(self, *paths: Path) -> None:
        if self._as.uid is None or self._as.gid is None:
            return
        for path in paths:
            os.chown(path, self._as.uid, self._as.gid)

    def _let_cluster_user_reach_root(self) -> None:
        """As root, the cluster user must be able to traverse every ancestor of the cluster
        directory (a private temporary directory is 0700). Grant search permission (o+x)
        only, never read: names inside stay unlistable."""
        if self._as.uid is None:
            return
        for ancestor in self.root.parents:
            mode = ancestor.stat().st_mode
            if not mode & 0o001:
                ancestor.chmod((mode & 0o7777) | 0o001)

    def _wait_for_socket(self, timeout: float = 30.0) -> None:
        socket = self.socket_dir / f".s.PGSQL.{_PORT}"
        deadline = time.monotonic() + timeout
        while not socket.exists():
            if time.monotonic() > deadline:
                raise ConfigurationError(f"PostgreSQL socket {socket} did not appear")
            time.sleep(0.05)
