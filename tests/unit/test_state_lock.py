"""One process at a time manages a state directory (broker/localstate/lock.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from broker.localstate.lock import StateDirectoryInUse, StateLock


def test_the_holder_writes_its_pid_and_a_second_is_refused_with_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with StateLock(state):
        assert (state / "dev.lock").read_text() == f"{os.getpid()}\n"
        assert (state.stat().st_mode & 0o777, (state / "dev.lock").stat().st_mode & 0o777) == (
            0o700,
            0o600,
        )
        # A flock belongs to an open file: a second opening conflicts, in this process too.
        with pytest.raises(StateDirectoryInUse) as refused:
            StateLock(state).acquire()
    assert refused.value.pid == os.getpid()
    assert refused.value.detail == (
        f"keybroker dev is already running (pid {os.getpid()}) on {state}; stop it first "
        "(Ctrl-C or SIGTERM: it stops the cluster as it exits)"
    )
    # Released: emptied, never removed, and free for the next holder.
    assert (state / "dev.lock").read_text() == ""
    with StateLock(state):
        pass


def test_a_pid_left_by_a_crashed_holder_does_not_lock(tmp_path: Path) -> None:
    (tmp_path / "dev.lock").write_text("999999\n")  # no process holds its flock
    with StateLock(tmp_path):
        assert (tmp_path / "dev.lock").read_text() == f"{os.getpid()}\n"


def test_a_holder_that_has_not_written_its_pid_yet_is_named_unknown(tmp_path: Path) -> None:
    holder = StateLock(tmp_path)
    holder.acquire()
    os.truncate(tmp_path / "dev.lock", 0)
    try:
        with pytest.raises(StateDirectoryInUse, match=r"already running \(pid unknown\)"):
            StateLock(tmp_path).acquire()
    finally:
        holder.release()
