"""One process at a time manages a state directory's local services (``keybroker dev``).

``keybroker dev run`` stops the cluster as it exits: a second one on the same directory would
attach to the first one's PostgreSQL and stop it under the first broker. So ``dev run`` holds
an exclusive ``flock`` on ``<state>/dev.lock`` for as long as it runs, and ``dev up`` and
``dev down`` for as long as they work; whoever finds it held is refused with the holder's pid,
which the file holds. The kernel releases a ``flock`` when its holder exits, however it exits,
so a crashed run leaves no lock behind (its pid may stay in the file until the next holder
writes its own; the lock, not the file, decides). The file is never removed: removing it
would let two processes lock two different files of the same name.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from broker.errors import ConfigurationError

LOCK_FILE = "dev.lock"


class StateDirectoryInUse(ConfigurationError):
    """Another process holds the state directory's lock."""

    def __init__(self, state_dir: Path, pid: int | None) -> None:
        holder = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(
            f"keybroker dev is already running ({holder}) on {state_dir}; stop it first "
            "(Ctrl-C or SIGTERM: it stops the cluster as it exits)"
        )
        self.pid = pid


class StateLock:
    """``with StateLock(state_dir):`` holds the lock, or raises :class:`StateDirectoryInUse`."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Not inherited by children (PEP 446): PostgreSQL must not keep the lock after us.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _pid_in(fd)
            os.close(fd)
            raise StateDirectoryInUse(self.state_dir, pid) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # releases the flock
            self._fd = None

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def _pid_in(fd: int) -> int | None:
    """The pid its holder wrote (None while it has not yet written it)."""
    text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    return int(text) if text.isdigit() else None
