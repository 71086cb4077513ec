"""The benchmark's own broker: PostgreSQL cluster and SoftHSM token under the state directory,
``keybroker serve`` with N uvicorn workers on a free loopback port, CPU pinning.

Everything lives under ``--state-dir`` (``make bench`` uses ``.keybroker/bench``): the
cluster (``postgres/``), the token (``softhsm/``), the synthetic vendor material
(``scenarios/<name>/``), the guest key pool and the broker logs (``logs/``). The cluster is
stopped when the benchmark ends; the material, the key pool and the databases are kept, so a
second run skips their set-up (the 100,000-key database in particular).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

from broker.errors import ConfigurationError
from broker.localstate.postgres import LocalPostgres
from broker.localstate.softhsm import LocalSoftHsm
from broker.store.database import Database
from broker.store.migrate import migrate


@dataclass(frozen=True)
class Cores:
    """Which CPUs the broker gets, and which the generator and PostgreSQL get, when pinned."""

    broker: frozenset[int]
    others: frozenset[int]
    every: frozenset[int]

    @classmethod
    def detect(cls) -> Cores:
        every = sorted(os.sched_getaffinity(0))
        if len(every) < 2:
            return cls(frozenset(every), frozenset(every), frozenset(every))
        return cls(frozenset(every[:1]), frozenset(every[1:]), frozenset(every))

    @property
    def can_pin(self) -> bool:
        return not self.broker & self.others


def pin_tree(root_pid: int, cpus: frozenset[int]) -> None:
    """Set the affinity of ``root_pid`` and every descendant (later children inherit it)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    todo = [root_pid]
    while todo:
        pid = todo.pop()
        with suppress(OSError):
            os.sched_setaffinity(pid, cpus)
        todo.extend(children.get(pid, []))


def tree_cpu_seconds(root_pid: int) -> float:
    """User + system CPU seconds of ``root_pid`` and its live descendants so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)
    total, todo, seen = 0.0, [root_pid], set()
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in stats:
            continue
        seen.add(pid)
        total += stats[pid][1]
        todo.extend(child for child, (parent, _) in stats.items() if parent == pid)
    return total


class BenchState:
    """The benchmark's state directory and the local services in it."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.postgres = LocalPostgres(self.root)
        self.softhsm = LocalSoftHsm(self.root)
        self.logs = self.root / "logs"
        self.key_pool = self.root / "guest-keys.pem"

    def material_dir(self, scenario: str) -> Path:
        return self.root / "scenarios" / scenario

    def up(self, cores: Cores) -> None:
        """Start the cluster on the non-broker cores and make the token; set SOFTHSM2_CONF."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        self.softhsm.up()
        os.environ.update(self.softhsm.environment())
        self.postgres.stop()  # a cluster left running by a killed run: restart it pinned
        own = os.sched_getaffinity(0)
        os.sched_setaffinity(0, cores.others)
        try:
            self.postgres.up()
        finally:
            os.sched_setaffinity(0, own)

    def down(self) -> None:
        self.postgres.stop()

    def postgres_pid(self) -> int:
        return int((self.postgres.data_dir / "postmaster.pid").read_text().split()[0])

    async def database(self, name: str) -> str:
        """The DSN of database ``name`` in the cluster, created and migrated if new."""
        admin = await asyncpg.connect(self.postgres.dsn("postgres"))
        try:
            if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        dsn = self.postgres.dsn(name)
        db = await Database.connect(dsn, 1, 1)
        try:
            async with db.connection() as conn:
                await migrate(conn)
        finally:
            await db.close()
        return dsn


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@dataclass(frozen=True)
class BrokerConfig:
    dsn: str
    workers: int
    cpus: frozenset[int]
    trusted_roots: tuple[Path, ...]
    log_file: Path
    log_level: str = "info"
    hsm_threads: int = 4
    db_pool_max: int = 20


@dataclass(frozen=True)
class RunningBroker:
    host: str
    port: int
    pid: int

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"


@contextmanager
def broker(
    state: BenchState, config: BrokerConfig, port: int | None = None
) -> Iterator[RunningBroker]:
    """``keybroker serve --workers N`` pinned to ``config.cpus``, until the block exits; on
    ``port``, or on a free one."""
    port = port or free_port()
    env = {
        **os.environ,
        **state.softhsm.environment(),
        "KEYBROKER_STATE_DIR": str(state.root),
        "KEYBROKER_DATABASE_URL": config.dsn,
        "KEYBROKER_TOKEN_LABEL": state.softhsm.token_label,
        "KEYBROKER_USER_PIN_FILE": str(state.softhsm.user_pin_file),
        "KEYBROKER_INSECURE_TEST_ROOTS": os.pathsep.join(map(str, config.trusted_roots)),
        # The load generator is a whole fleet of guests on one address.
        "KEYBROKER_RATE_LIMIT_PER_SECOND": "0",
        "KEYBROKER_MAX_OPEN_REQUESTS_PER_CLIENT": "0",
        "KEYBROKER_LOG_FORMAT": "json",
        "KEYBROKER_LOG_LEVEL": config.log_level,
        "KEYBROKER_HSM_THREADS": str(config.hsm_threads),
        "KEYBROKER_DB_POOL_MAX": str(config.db_pool_max),
    }
    env.pop("KEYBROKER_CONFIG", None)
    command = [
        sys.executable,
        "-m",
        "broker",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(config.workers),
    ]
    cpus = set(config.cpus)
    with config.log_file.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            command,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: os.sched_setaffinity(0, cpus),  # noqa: PLW1509
            start_new_session=True,
        )
    running = RunningBroker("127.0.0.1", port, process.pid)
    try:
        wait_ready(running, process, config.workers, config.log_file)
        yield running
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a graceful stop), then SIGKILL if it has not exited within 30 s."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_ready(
    running: RunningBroker, process: subprocess.Popen[bytes], workers: int, log: Path
) -> None:
    """Until /readyz answers 200 on as many distinct connections as there are workers."""
    deadline = time.monotonic() + 60
    ready = 0
    while ready < 3 * workers:
        if process.poll() is not None:
            raise ConfigurationError(f"the broker exited ({process.returncode}); see {log}")
        if time.monotonic() > deadline:
            raise ConfigurationError(f"the broker was not ready within 60 s; see {log}")
        try:
            answer = httpx.get(f"{running.base}/readyz", timeout=5)
            ready = ready + 1 if answer.status_code == 200 else 0
        except httpx.HTTPError:
            ready = 0
        time.sleep(0.1)
