"""What can go wrong for a guest, one class per failure, each with its own exit status.

A boot script, clevis and an operator reading a console all need to know *which* failure
happened: a broker that cannot be reached yet is worth waiting for, a refusal is not, and a
broker that fails a TLS or signature check may be an attacker. The statuses are part of the
command-line contract (docs/boot.md, "Exit statuses").
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ExitStatus(IntEnum):
    OK = 0
    UNEXPECTED = 1
    """A bug or an environment this client does not know (Python's own status for an
    uncaught exception)."""
    USAGE = 2
    """Bad arguments or configuration: nothing was sent."""
    UNREACHABLE = 3
    """The broker could not be reached or stayed unavailable (connection, DNS, timeout, 429,
    502-504) until the wait ran out."""
    DENIED = 4
    """The broker refused: policy, unknown or disabled key, token, nonce, request."""
    EVIDENCE = 5
    """No evidence could be produced here (configfs-tsm), or the broker found it invalid."""
    UNTRUSTED = 6
    """The broker is not the one pinned, or its answer cannot be trusted: TLS certificate,
    SPKI pin, broker signing key, envelope signature, an answer that breaks the protocol."""


class GuestError(Exception):
    """Base of every failure the client reports; ``exit_status`` is the process's."""

    exit_status = ExitStatus.UNEXPECTED

    def __init__(self, message: str, status: int | None = None, problem: Any = None) -> None:
        super().__init__(message)
        self.status = status
        """The broker's HTTP status, when the failure is a broker's answer."""
        self.problem = problem
        """The broker's RFC 7807 problem document (or text), when it sent one."""


class UsageError(GuestError):
    exit_status = ExitStatus.USAGE


class Unreachable(GuestError):
    exit_status = ExitStatus.UNREACHABLE


class Denied(GuestError):
    exit_status = ExitStatus.DENIED


class EvidenceError(GuestError):
    exit_status = ExitStatus.EVIDENCE


class Untrusted(GuestError):
    exit_status = ExitStatus.UNTRUSTED
