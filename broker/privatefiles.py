"""Small, careful helpers for private files: keys, PINs and passwords, readable by their owner
only (0600, in 0700 directories). The local state, the simulators' kits and the guest's output
use them alike.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from broker.redact import Secret


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) with mode 0700 for the leaf."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def write_private_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a new or existing file readable only by its owner (0600).

    The mode is set on the open descriptor before the first byte is written: ``O_CREAT``'s
    mode applies only to a new file, and an existing one must not hold a secret while it is
    still readable by others.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(data)


def write_private(path: Path, text: str) -> None:
    """:func:`write_private_bytes` for text (UTF-8)."""
    write_private_bytes(path, text.encode("utf-8"))


def read_secret(path: Path) -> Secret:
    return Secret(path.read_text(encoding="utf-8").strip())


def secret_file(path: Path, length: int = 24) -> Secret:
    """The secret stored at ``path``, generated (URL-safe, ``length`` bytes) on first use."""
    if not path.exists():
        write_private(path, secrets.token_urlsafe(length) + "\n")
    return read_secret(path)
