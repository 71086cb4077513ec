"""The guest's vTPM through tpm2-tools: NV reads and TPM2_Quote, as a confidential VM's
vTPM answers them.

tpm2-tools (Debian ``tpm2-tools``) rather than PyPI ``tpm2-pytss``: the tools are packaged
with the TSS they were built against, need no compiler at install time, and their file
formats are exactly keybroker's documented bundle members (``tpm2_quote -m`` writes the
TPMS_ATTEST, ``-s`` the TPMT_SIGNATURE, ``-o -F values`` the selected PCR values in selection
order). Each call is one process; without a resource manager (swtpm reached directly) the
transient objects and sessions a tool leaves behind are flushed after it, since the TPM's few
object slots would otherwise fill up.

Where a vTPM keeps its pieces:

* Azure's paravisor: the HCL report in NV index 0x01400001, the AK persistent at handle
  0x81000003, its certificate in NV index 0x01C101D0 (DER, then zeros to the index's size);
* a GCE shielded VM: the RSA AK certificate in NV index 0x01C10000.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from keybroker_guest.errors import EvidenceError

AZURE_HCL_REPORT_INDEX = 0x01400001
AZURE_AK_HANDLE = 0x81000003
AZURE_AK_CERT_INDEX = 0x01C101D0
GCE_AK_CERT_INDEX = 0x01C10000
#: The PCRs a quote selects: the whole sha256 bank of a PC Client TPM.
QUOTED_PCRS = range(24)
_TIMEOUT_SECONDS = 30


class Tpm2Error(EvidenceError):
    """A tpm2-tools command failed; the message names the command and its stderr."""


@dataclass(frozen=True, slots=True)
class TpmQuote:
    message: bytes
    """TPMS_ATTEST."""
    signature: bytes
    """TPMT_SIGNATURE."""
    sha256: dict[int, bytes]
    """The quoted sha256 PCR values by index."""


@dataclass(frozen=True, slots=True)
class Tpm2Tools:
    """tpm2-tools against ``tcti`` (``device:/dev/tpmrm0``, ``swtpm:host=...,port=...``);
    None leaves the tools' own default (the kernel's resource manager)."""

    tcti: str | None = None
    flush: bool = False
    """Flush transient objects and sessions after each command (no resource manager)."""

    def run(self, *args: str) -> bytes:
        """Run tool ``args[0]`` with ``args[1:]``; its stdout, or ``Tpm2Error``."""
        env = dict(os.environ)
        if self.tcti is not None:
            env["TPM2TOOLS_TCTI"] = self.tcti
        try:
            done = _run(args, env)
        finally:
            if self.flush and args[0] != "tpm2_flushcontext":
                for kind in ("-t", "-s"):
                    _run(("tpm2_flushcontext", kind), env)
        if done.returncode != 0:
            lines = done.stderr.decode(errors="replace").strip().splitlines()
            # tpm2-tools ends with "Unable to run <tool>"; the line before says why
            detail = "; ".join(lines[-2:]) if lines else f"exit status {done.returncode}"
            raise Tpm2Error(f"{args[0]} failed: {detail}")
        return done.stdout

    def nv_read(self, index: int) -> bytes:
        """The whole NV index (an index is read as the owner, as Azure's paravisor allows)."""
        return self.run("tpm2_nvread", "-C", "o", f"{index:#010x}")

    def nv_exists(self, index: int) -> bool:
        return index in self.handles("handles-nv-index")

    def handles(self, capability: str) -> set[int]:
        """The handles ``tpm2_getcap`` lists (YAML lines ``- 0x1C101D0``)."""
        listed = self.run("tpm2_getcap", capability).decode()
        return {int(line.strip("- \t"), 16) for line in listed.splitlines() if "0x" in line}

    def nv_write(self, index: int, data: bytes, attributes: str) -> None:
        """Define ``index`` of ``len(data)`` bytes (undefining it first) and write ``data``."""
        if self.nv_exists(index):
            self.run("tpm2_nvundefine", "-C", "o", f"{index:#010x}")
        self.run(
            "tpm2_nvdefine", "-C", "o", "-s", str(len(data)), "-a", attributes, f"{index:#010x}"
        )
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder, "data")
            path.write_bytes(data)
            self.run("tpm2_nvwrite", "-C", "o", "-i", str(path), f"{index:#010x}")

    def quote(
        self, ak_handle: int, qualifying_data: bytes, pcrs: Sequence[int] = QUOTED_PCRS
    ) -> TpmQuote:
        """TPM2_Quote of the sha256 ``pcrs`` by the AK at ``ak_handle``, ``qualifying_data``
        as extraData; the AK's own scheme signs (RSASSA or ECDSA, SHA-256)."""
        selection = "sha256:" + ",".join(str(pcr) for pcr in pcrs)
        with tempfile.TemporaryDirectory() as folder:
            message, signature, values = (Path(folder, name) for name in ("m", "s", "o"))
            self.run(
                "tpm2_quote", "-c", f"{ak_handle:#010x}", "-l", selection,
                "-q", qualifying_data.hex(), "-g", "sha256",
                "-m", str(message), "-s", str(signature), "-o", str(values), "-F", "values",
            )  # fmt: skip
            raw = values.read_bytes()
            if len(raw) != 32 * len(pcrs):
                raise Tpm2Error(
                    f"tpm2_quote wrote {len(raw)} bytes of PCR values, not {32 * len(pcrs)}"
                )
            sha256 = {pcr: raw[32 * n : 32 * n + 32] for n, pcr in enumerate(pcrs)}
            return TpmQuote(message.read_bytes(), signature.read_bytes(), sha256)


def _run(args: Sequence[str], env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    """One tpm2-tools process; the program is found on PATH, the arguments are ours."""
    program = shutil.which(args[0])
    if program is None:
        raise Tpm2Error(f"{args[0]} is not installed (Debian package tpm2-tools)")
    try:
        return subprocess.run(  # noqa: S603 - a fixed tool, arguments built here
            (program, *args[1:]),
            env=env,
            capture_output=True,
            timeout=_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Tpm2Error(f"{args[0]}: {exc}") from None
