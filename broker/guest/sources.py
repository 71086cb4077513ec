"""Where a guest's evidence comes from: real hardware (configfs-tsm) or a simulation.

A source turns the 64 bytes of REPORT_DATA the binding requires into evidence plus any
collateral the broker may need (a simulated guest ships its synthetic VCEK, since no vendor
service knows its fake chip).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from broker.evidence.snp.abi import GuestPolicy
from broker.guest.configfs import TSM_REPORT_ROOT, ConfigfsError, read_report
from broker.simulate.nitro import FakeNitroAuthority
from broker.simulate.snp import SnpKit
from broker.timeutil import utcnow

#: The measurement the demo's simulated guest reports, and the demo policy admits.
DEMO_MEASUREMENT = hashlib.sha384(b"keybroker demo guest image v1").digest()


@dataclass(frozen=True)
class BindingInput:
    """What the evidence must bind: REPORT_DATA for SNP/TDX/SGX; nonce and key for Nitro."""

    report_data: bytes
    nonce: bytes
    public_key_der: bytes


class EvidenceSource(Protocol):
    tee: str

    def produce(self, binding: BindingInput) -> tuple[bytes, dict[str, bytes]]: ...


@dataclass
class SimulatedSnp:
    """A report signed by the synthetic AMD chain of ``broker.simulate.snp``."""

    kit_dir: Path
    measurement: bytes = DEMO_MEASUREMENT
    debug: bool = False
    tee: str = "snp"

    def produce(self, binding: BindingInput) -> tuple[bytes, dict[str, bytes]]:
        kit = SnpKit.load(self.kit_dir)
        report = kit.report(
            report_data=binding.report_data,
            measurement=self.measurement,
            policy=GuestPolicy(abi_minor=0, abi_major=1, smt=True, debug=self.debug),
        )
        return kit.sign(report), kit.collateral()


@dataclass
class HardwareTsm:
    """A real confidential guest: SEV-SNP report or TDX quote through configfs-tsm."""

    tee: str
    root: Path = TSM_REPORT_ROOT

    def produce(self, binding: BindingInput) -> tuple[bytes, dict[str, bytes]]:
        outblob, _auxblob, provider = read_report(binding.report_data, self.root)
        expected = {"snp": "sev_guest", "tdx": "tdx_guest"}.get(self.tee)
        if expected is not None and provider not in (expected, "unknown"):
            raise ConfigfsError(f"configfs-tsm provider is {provider}, not {expected}")
        return outblob, {}


#: PCR0..2 of the demo's simulated enclave (image, kernel, application).
DEMO_PCRS = {
    index: hashlib.sha384(f"keybroker demo enclave pcr{index}".encode()).digest()
    for index in (0, 1, 2)
}


@dataclass
class SimulatedNitro:
    """An attestation document signed by the synthetic Nitro PKI of ``broker.simulate.nitro``."""

    authority_dir: Path
    pcrs: dict[int, bytes] | None = None
    tee: str = "nitro"

    def produce(self, binding: BindingInput) -> tuple[bytes, dict[str, bytes]]:
        authority = FakeNitroAuthority.load(self.authority_dir)
        pcrs = dict(self.pcrs if self.pcrs is not None else DEMO_PCRS)
        for index in range(3, 16):
            pcrs.setdefault(index, bytes(48))
        document = authority.sign_document(
            pcrs=pcrs,
            timestamp=utcnow(),
            nonce=binding.nonce,
            public_key=binding.public_key_der,
        )
        return document, {}
