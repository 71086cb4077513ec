"""A real TPM 2.0 (swtpm, Debian ``swtpm``) playing a confidential VM's vTPM, for the demo
and the end-to-end tests of ``keybroker guest fetch --simulate --tee snp-vtpm|tdx-vtpm|tpm``.

:class:`Swtpm` runs one swtpm on loopback for as long as its ``with`` block, its state in a
directory (so the AK made on first use is the same next time). :class:`SimulatedPlatform`
then does what the cloud does before the guest runs: it "boots" (extends PCR0 and PCR4 with
the demo firmware's and boot loader's digests, in a TPM whose PCRs start from their reset
values), creates the AK once and makes it persistent at Azure's handle, and either writes an
HCL report binding the AK (the paravisor: SEV-SNP report signed by the synthetic AMD kit, or
TDREPORT stand-in with a TD quote from the synthetic Intel kit) into NV index 0x01400001, or
certifies the AK by a synthetic vTPM CA into NV index 0x01C10000 (GCE). The guest then reads
and quotes through :mod:`keybroker_guest.tpm2`, exactly as on a cloud VM.

swtpm caps an NV index at 2048 bytes, so the simulated HCL report is 2048 bytes, not Azure's
2600; the verifier reads any size.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from keybroker_guest.errors import EvidenceError
from keybroker_guest.tpm2 import (
    AZURE_AK_HANDLE,
    AZURE_HCL_REPORT_INDEX,
    GCE_AK_CERT_INDEX,
    Tpm2Error,
    Tpm2Tools,
)

from broker.simulate.intel import IntelKit
from broker.simulate.snp import SnpKit
from broker.simulate.tpm import AkAuthority
from broker.simulate.vtpm import runtime_data, snp_hcl_report, tdx_evidence
from hsm.pubkey import b64url

#: What the simulated firmware and boot loader measure (PCR0 and PCR4, sha256 bank).
DEMO_FIRMWARE = hashlib.sha256(b"keybroker demo vTPM firmware v1").digest()
DEMO_BOOT_LOADER = hashlib.sha256(b"keybroker demo boot loader v1").digest()
#: NV attributes of the indexes the platform writes: the owner reads and writes them.
_NV_ATTRIBUTES = "ownerread|ownerwrite|authread|authwrite"
_START_SECONDS = 10.0


def extended(measurement: bytes) -> bytes:
    """A sha256 PCR's value after one extend from its reset value (zeros)."""
    return hashlib.sha256(bytes(32) + measurement).digest()


#: The sha256 PCRs the simulated boot leaves, as the demo policy pins them.
DEMO_PCRS = {0: extended(DEMO_FIRMWARE), 4: extended(DEMO_BOOT_LOADER)}


class SwtpmError(EvidenceError):
    """swtpm did not start: the simulated guest has no evidence (exit status 5)."""


def _free_port_pair() -> int:
    """A loopback port P with P+1 free too (swtpm's server and control channels)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port >= 65535:
            continue
        with socket.socket() as other:
            try:
                other.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise SwtpmError("no two adjacent free loopback ports for swtpm")


@contextmanager
def swtpm(state: Path) -> Iterator[Tpm2Tools]:
    """swtpm with its state in ``state``, powered on and started up (TPM2_Startup(CLEAR):
    PCRs at their reset values); yields tpm2-tools speaking to it. Stopped on exit."""
    binary = shutil.which("swtpm")
    if binary is None:
        raise SwtpmError("swtpm is not installed (Debian package swtpm)")
    state.mkdir(parents=True, exist_ok=True)
    port = _free_port_pair()
    process = subprocess.Popen(  # noqa: S603 - swtpm from PATH, arguments built here
        (
            binary, "socket", "--tpm2", "--tpmstate", f"dir={state}",
            "--server", f"type=tcp,port={port},bindaddr=127.0.0.1",
            "--ctrl", f"type=tcp,port={port + 1},bindaddr=127.0.0.1",
            "--flags", "not-need-init,startup-clear",
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        tools = Tpm2Tools(f"swtpm:host=127.0.0.1,port={port}", flush=True)
        _wait_until_up(process, tools)
        # A TPM counts a power loss without TPM2_Shutdown as a possible attack on its
        # dictionary-attack protection and locks the AK out after a few; a run that was
        # killed must not lock the next one out (the lockout authorization is empty here).
        tools.run("tpm2_dictionarylockout", "--clear-lockout")
        try:
            yield tools
        finally:
            tools.run("tpm2_shutdown")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def _wait_until_up(process: subprocess.Popen[bytes], tools: Tpm2Tools) -> None:
    deadline = time.monotonic() + _START_SECONDS
    while True:
        if process.poll() is not None:
            error = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise SwtpmError(f"swtpm exited with {process.returncode}: {error.strip()[:300]}")
        try:
            tools.run("tpm2_getcap", "properties-fixed")
            return
        except Tpm2Error:
            if time.monotonic() > deadline:
                raise SwtpmError("swtpm did not answer within 10 s") from None
            time.sleep(0.05)


class SimulatedPlatform:
    """The cloud's side of the vTPM in ``tools`` (see the module docstring)."""

    def __init__(self, tools: Tpm2Tools) -> None:
        self.tools = tools

    def boot(self) -> None:
        """Extend PCR0 and PCR4 as the demo firmware and boot loader would."""
        for pcr, digest in ((0, DEMO_FIRMWARE), (4, DEMO_BOOT_LOADER)):
            self.tools.run("tpm2_pcrextend", f"{pcr}:sha256={digest.hex()}")

    def ak(self) -> rsa.RSAPublicKey:
        """The AK persistent at Azure's handle, created (RSA-2048, RSASSA/SHA-256, under
        the EK) the first time."""
        if not self._ak_exists():
            with tempfile.TemporaryDirectory() as folder:
                ek, ak = Path(folder, "ek.ctx"), Path(folder, "ak.ctx")
                self.tools.run("tpm2_createek", "-c", str(ek), "-G", "rsa")
                self.tools.run(
                    "tpm2_createak", "-C", str(ek), "-c", str(ak),
                    "-G", "rsa", "-g", "sha256", "-s", "rsassa",
                )  # fmt: skip
                self.tools.run(
                    "tpm2_evictcontrol", "-C", "o", "-c", str(ak), f"{AZURE_AK_HANDLE:#010x}"
                )
        with tempfile.TemporaryDirectory() as folder:
            pem = Path(folder, "ak.pem")
            self.tools.run(
                "tpm2_readpublic", "-c", f"{AZURE_AK_HANDLE:#010x}", "-f", "pem", "-o", str(pem)
            )
            key = serialization.load_pem_public_key(pem.read_bytes())
        if not isinstance(key, rsa.RSAPublicKey):
            raise Tpm2Error("the persistent AK is not an RSA key")
        return key

    def _ak_exists(self) -> bool:
        return AZURE_AK_HANDLE in self.tools.handles("handles-persistent")

    def runtime_data(self, user_data: bytes = bytes(64)) -> bytes:
        """The paravisor's runtime data naming the AK (``HCLAkPub``), with the 64 bytes the
        guest last wrote to NV index 0x01400002 as its ``user-data``."""
        numbers = self.ak().public_numbers()
        jwk = {
            "kid": "HCLAkPub",
            "key_ops": ["sign"],
            "kty": "RSA",
            "e": _b64url(numbers.e),
            "n": _b64url(numbers.n),
        }
        return runtime_data(jwk, user_data=user_data)

    def azure_snp(self, kit: SnpKit, user_data: bytes = bytes(64)) -> None:
        """The paravisor of an SEV-SNP CVM: its HCL report into NV index 0x01400001 (Azure's
        paravisor makes a new one when the guest writes ``user_data``)."""
        report = snp_hcl_report(kit, self.runtime_data(user_data))
        self.tools.nv_write(AZURE_HCL_REPORT_INDEX, report, _NV_ATTRIBUTES)

    def azure_tdx(self, kit: IntelKit, user_data: bytes = bytes(64)) -> bytes:
        """The paravisor of a TDX CVM: its HCL report into NV index 0x01400001; returns the
        TD quote of its TDREPORT (which Azure's guests get from the host's quoting service)."""
        hcl, td_quote = tdx_evidence(kit, self.runtime_data(user_data))
        self.tools.nv_write(AZURE_HCL_REPORT_INDEX, hcl, _NV_ATTRIBUTES)
        return td_quote

    def gce(self, authority: AkAuthority) -> None:
        """GCE: the AK certificate, issued by the synthetic vTPM CA, into NV index
        0x01C10000."""
        certificate = authority.certify(self.ak())
        der = certificate.public_bytes(serialization.Encoding.DER)
        self.tools.nv_write(GCE_AK_CERT_INDEX, der, _NV_ATTRIBUTES)


def _b64url(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))
