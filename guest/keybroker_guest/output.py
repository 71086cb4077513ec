"""Where a released key goes: standard output, or a file only its owner can read.

A file is written whole or not at all: the key goes to a new 0600 file beside the target,
which then replaces it, so a failure leaves the target as it was and no reader ever sees a
partial key or a moment of wider permissions. Nothing else is written to disk.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path


def write_secret(secret: bytes, out: Path | None) -> None:
    if out is None:
        sys.stdout.buffer.write(secret)
        sys.stdout.flush()
        return
    partial = out.with_name(f".{out.name}.{secrets.token_hex(6)}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(secret)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
