"""Reading a hardware report through Linux configfs-tsm (Documentation/ABI/testing/configfs-tsm).

The kernel's one interface for SEV-SNP reports and TDX quotes: create a directory under
``/sys/kernel/config/tsm/report``, write the 64-byte REPORT_DATA to ``inblob``, read
``outblob``. ``generation`` counts writes to the entry; if it moved by anything other than
our one write, another writer raced us and the report may not carry our data, so it is
refused.
"""

from __future__ import annotations

import os
import secrets
from contextlib import suppress
from pathlib import Path

from keybroker_guest.errors import EvidenceError

TSM_REPORT_ROOT = Path("/sys/kernel/config/tsm/report")


class ConfigfsError(EvidenceError):
    """configfs-tsm gave no report for this request."""


class TsmFilesystem:
    """The file operations used on configfs; tests substitute a stand-in for the kernel."""

    def mkdir(self, entry: Path) -> None:
        entry.mkdir()

    def write(self, path: Path, data: bytes) -> None:
        path.write_bytes(data)

    def read(self, path: Path) -> bytes | None:
        return path.read_bytes() if path.exists() else None

    def rmdir(self, entry: Path) -> None:
        entry.rmdir()


def read_report(
    report_data: bytes, root: Path = TSM_REPORT_ROOT, fs: TsmFilesystem | None = None
) -> tuple[bytes, bytes | None, str]:
    """(outblob, auxblob or None, provider) for ``report_data`` (exactly 64 bytes)."""
    fs = fs or TsmFilesystem()
    if len(report_data) != 64:
        raise ConfigfsError("REPORT_DATA must be 64 bytes")
    if not root.is_dir():
        raise ConfigfsError(f"{root} does not exist: not a confidential guest, or no configfs-tsm")
    entry = root / f"keybroker-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        fs.mkdir(entry)
    except OSError as exc:
        raise ConfigfsError(f"cannot create {entry}: {exc.strerror}") from None
    try:
        before = _generation(fs, entry)
        fs.write(entry / "inblob", report_data)
        outblob = fs.read(entry / "outblob")
        auxblob = fs.read(entry / "auxblob")
        after = _generation(fs, entry)
        if outblob is None:
            raise ConfigfsError(f"{entry}/outblob is missing")
        if after != before + 1:
            raise ConfigfsError(
                f"configfs-tsm generation went from {before} to {after}: another writer raced"
            )
        provider = fs.read(entry / "provider")
        return outblob, auxblob or None, (provider or b"unknown").decode().strip()
    finally:
        with suppress(OSError):
            fs.rmdir(entry)


def _generation(fs: TsmFilesystem, entry: Path) -> int:
    text = (fs.read(entry / "generation") or b"").decode().strip()
    if not text.isdigit():
        raise ConfigfsError(f"unexpected generation value {text!r}")
    return int(text)
