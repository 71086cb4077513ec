"""``keybroker dev run`` as an operator and a supervisor run it: a process of its own on a
state directory of its own, stopped by signals, started twice, started on a busy port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from broker.bench.deploy import RunningBroker, free_port, wait_ready
from broker.localstate.postgres import LocalPostgres
from tests.integration.server import ROOT

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One state directory for the module: its cluster and token are made by the first run."""
    return tmp_path_factory.mktemp("dev-run")


def environment() -> dict[str, str]:
    """An operator's shell: no broker settings but the log format, no token of the tests."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("KEYBROKER_") and name != "SOFTHSM2_CONF"
    }
    env["KEYBROKER_LOG_FORMAT"] = "json"
    return env


def dev(state: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "broker", "dev", *args, "--state-dir", str(state)]


@dataclass(frozen=True)
class DevRun:
    process: subprocess.Popen[bytes]
    base: str


@contextmanager
def dev_run(state: Path, log: Path) -> Iterator[DevRun]:
    """``keybroker dev run`` on a free port, once it is ready; killed at the end of the block
    if still running."""
    port = free_port()
    with log.open("ab") as output:
        process = subprocess.Popen(
            [*dev(state, "run"), "--port", str(port)],
            env=environment(),
            stdout=output,
            stderr=output,
            cwd=ROOT,
        )
    run = DevRun(process, f"http://127.0.0.1:{port}")
    try:
        wait_ready(RunningBroker("127.0.0.1", port, process.pid), process, 1, log)
        yield run
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def postmaster(state: Path) -> int:
    """The pid of the running cluster's postmaster (first line of postmaster.pid)."""
    return int((state / "postgres" / "data" / "postmaster.pid").read_text().split()[0])


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped, does not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def gone(pid: int) -> bool:
    """Whether ``pid`` has exited, within a generous minute: ``pg_ctl stop`` returns once the
    postmaster has removed its pid file, an instant before the process itself ends."""
    deadline = time.monotonic() + 60
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.parametrize(
    ("signum", "status"),
    [
        (signal.SIGTERM, -signal.SIGTERM),  # ends by the signal a supervisor sent, as uvicorn
        (signal.SIGINT, 0),  # Ctrl-C: a clean exit, as before
    ],
    ids=["SIGTERM", "SIGINT"],
)
def test_a_signal_stops_the_broker_and_then_its_cluster(
    state: Path, tmp_path: Path, signum: int, status: int
) -> None:
    with dev_run(state, tmp_path / "run.log") as run:
        cluster = postmaster(state)
        assert alive(cluster)
        run.process.send_signal(signum)
        assert run.process.wait(timeout=120) == status, (tmp_path / "run.log").read_text()
    assert gone(cluster)
    assert not LocalPostgres(state).is_running()
    assert '"event":"postgres_stopped"' in (tmp_path / "run.log").read_text()


def test_a_second_run_on_the_same_state_is_refused_and_the_first_keeps_serving(
    state: Path, tmp_path: Path
) -> None:
    with dev_run(state, tmp_path / "first.log") as first:
        cluster = postmaster(state)
        in_use = (
            f"keybroker: keybroker dev is already running (pid {first.process.pid}) on {state}; "
            "stop it "
            "first (Ctrl-C or SIGTERM: it stops the cluster as it exits)\n"
        )
        second = subprocess.run(
            [*dev(state, "run"), "--port", str(free_port())],
            env=environment(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert (second.returncode, second.stderr) == (1, in_use)
        down = subprocess.run(
            dev(state, "down"), env=environment(), capture_output=True, text=True, check=False
        )
        assert (down.returncode, down.stderr) == (1, in_use)
        # The first run, and its cluster, never noticed.
        assert alive(cluster)
        assert httpx.get(f"{first.base}/readyz").status_code == 200
        first.process.send_signal(signal.SIGTERM)
        first.process.wait(timeout=120)
    # Once it has stopped, the state directory is free again.
    down = subprocess.run(dev(state, "down"), env=environment(), capture_output=True, check=False)
    assert down.returncode == 0


def test_a_crashed_run_does_not_lock_the_state_directory(state: Path, tmp_path: Path) -> None:
    with dev_run(state, tmp_path / "crashed.log") as crashed:
        crashed.process.kill()  # no clean-up at all: the cluster stays up, the pid in the file
        crashed.process.wait()
    assert (state / "dev.lock").read_text() == f"{crashed.process.pid}\n"
    assert LocalPostgres(state).is_running()
    with dev_run(state, tmp_path / "next.log") as run:
        assert (state / "dev.lock").read_text() == f"{run.process.pid}\n"
        run.process.send_signal(signal.SIGTERM)
        run.process.wait(timeout=120)
    assert not LocalPostgres(state).is_running()
    assert (state / "dev.lock").read_text() == ""


def test_a_busy_port_is_one_line_naming_it_and_nothing_is_started(
    state: Path, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*dev(state, "run"), "--port", str(port)],
            env=environment(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"keybroker: port {port} on 127.0.0.1 is already in use; choose another with "
        "--port N (make run PORT=N)\n"
    )
    assert not LocalPostgres(state).is_running()
