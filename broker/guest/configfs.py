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

TSM_REPORT_ROOT = Path("/sys/kernel/config/tsm/report")


class ConfigfsError(RuntimeError):
    pass


def read_report(
    report_data: bytes, root: Path = TSM_REPORT_ROOT
) -> tuple[bytes, bytes | None, str]:
    """(outblob, auxblob or None, provider) for ``report_data`` (exactly 64 bytes)."""
    if len(report_data) != 64:
        raise ConfigfsError("REPORT_DATA must be 64 bytes")
    if not root.is_dir():
        raise ConfigfsError(f"{root} does not exist: not a confidential guest, or no configfs-tsm")
    entry = root / f"keybroker-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        entry.mkdir()
    except OSError as exc:
        raise ConfigfsError(f"cannot create {entry}: {exc.strerror}") from None
    try:
        before = _generation(entry)
        (entry / "inblob").write_bytes(report_data)
        outblob = (entry / "outblob").read_bytes()
        aux_path = entry / "auxblob"
        auxblob = aux_path.read_bytes() if aux_path.exists() else None
        after = _generation(entry)
        if after != before + 1:
            raise ConfigfsError(
                f"configfs-tsm generation went from {before} to {after}: another writer raced"
            )
        provider_path = entry / "provider"
        provider = provider_path.read_text().strip() if provider_path.exists() else "unknown"
        return outblob, auxblob or None, provider
    finally:
        with suppress(OSError):
            entry.rmdir()


def _generation(entry: Path) -> int:
    text = (entry / "generation").read_text().strip()
    if not text.isdigit():
        raise ConfigfsError(f"unexpected generation value {text!r}")
    return int(text)
