"""SNP fixtures: the real vectors with their manifest instants, and one synthetic kit per
session (two RSA-4096 keys take a second or two to generate)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

from broker.evidence.snp.products import Product
from broker.simulate.snp import SnpKit
from broker.timeutil import parse_instant

SNP = Path(__file__).parents[2] / "vectors" / "snp"


@dataclass(frozen=True)
class Vector:
    """One real report, its collateral files and the instant its manifest gives."""

    name: str
    report: str
    collateral: Mapping[str, str]
    at: str
    expected: Mapping[str, object] = field(default_factory=dict)

    @property
    def now(self) -> datetime:
        return parse_instant(self.at)

    def evidence(self) -> bytes:
        return (SNP / self.name / self.report).read_bytes()

    def collateral_bytes(self) -> dict[str, bytes]:
        return {key: (SNP / path).read_bytes() for key, path in self.collateral.items()}

    def path(self, file: str) -> Path:
        return SNP / self.name / file


def _tcb(bootloader: int, tee: int, snp: int, microcode: int) -> dict[str, object]:
    return {"bootloader": bootloader, "tee": tee, "snp": snp, "microcode": microcode, "fmc": None}


# Expected values as each MANIFEST.md lists them.
GO_SEV_GUEST = Vector(
    "go-sev-guest-milan-v2",
    "attestation.bin",
    {"vcek": "go-sev-guest-milan-v2/vcek.der"},
    "2022-09-24T01:00:00Z",
    {
        "version": 2,
        "guest_svn": 0,
        "vmpl": 0,
        "signature_algo": 1,
        "policy.smt": True,
        "policy.debug": True,
        "policy.migrate_ma": False,
        "report_data": "0102030405" + "00" * 59,
        "measurement": "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b"
        "6bdf8a9ece31a5a608eb0cf2e4872b01",
        "host_data": "00" * 32,
        "id_key_digest": "00" * 48,
        "author_key_digest": "00" * 48,
        "report_id": "8edc638e1857c555d21f6b11bda3c8b1b5a09dba4852b4c8ee7aa2f16f22cc0a",
        "report_id_ma": "ff" * 32,
        "chip_id": "3ac3fe21e13fb0990eb28a802e3fb6a29483a6b0753590c951bdd3b8e5378618"
        "4ca39e359669a2b76a1936776b564ea464cdce40c05f63c9b610c5068b006b5d",
        "reported_tcb": _tcb(2, 0, 5, 68),
        "current_tcb": _tcb(2, 0, 5, 68),
        "committed_tcb": _tcb(2, 0, 5, 68),
        "launch_tcb": _tcb(2, 0, 5, 68),
        "current_version": {"major": 1, "minor": 49, "build": 3},
        "committed_version": {"major": 1, "minor": 49, "build": 3},
        "platform_info.smt_enabled": True,
        "platform_info.tsme_enabled": False,
        "signer_info.signing_key": "vcek",
        "signer_info.mask_chip_key": False,
        "cpuid": None,
        "signer.key": "vcek",
    },
)
TRUSTEE_VCEK = Vector(
    "trustee-milan-vcek",
    "test-report.bin",
    {"vcek": "trustee-milan-vcek/test-vcek.der"},
    "2023-11-01T00:00:00Z",
    {
        "version": 2,
        "guest_svn": 4,
        "vmpl": 0,
        "policy.abi_minor": 0x1F,
        "policy.smt": True,
        "policy.debug": False,
        "family_id": "01" + "00" * 15,
        "image_id": "02" + "00" * 15,
        "report_data": "ec6c52d7533cc2c4f45be7849cf112ab82b2009fe7bd43e71ed08c14400ad7e2"
        + "00" * 32,
        "measurement": "a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c"
        "23500644e0e692e6be917f9050d3d38c",
        "id_key_digest": "0356215882a825279a85b300b0b742931d113bf7e32dde2e50ffde7ec743ca49"
        "1ecdd7f336dc28a6e0b2bb57af7a44a3",
        "author_key_digest": "00" * 48,
        "report_id": "385eba81216de4776548fcb86f8ead03c1ebc92b6207f3210d9ccebb89c99005",
        "report_id_ma": "ff" * 32,
        "chip_id": "c38427a30d4c7af9d96f7a15b97269825a64cb76a2352ffd5d18115d89ad473f"
        "8e8c0bcd9a5d9286612bad4aadfb4426205a3b9e4fea82301135a170e477524e",
        "reported_tcb": _tcb(3, 0, 8, 115),
        "committed_tcb": _tcb(3, 0, 8, 115),
        "launch_tcb": _tcb(3, 0, 8, 115),
        "current_tcb": _tcb(3, 0, 8, 206),
        "current_version": {"major": 1, "minor": 52, "build": 4},
        "platform_info.smt_enabled": True,
        "signer.key": "vcek",
    },
)
TRUSTEE_VLEK = Vector(
    "trustee-milan-vlek",
    "test-vlek-report.bin",
    {"vcek": "trustee-milan-vlek/test-vlek.der"},
    "2025-06-01T00:00:00Z",
    {
        "version": 3,
        "guest_svn": 0,
        "vmpl": 1,
        "policy.smt": True,
        "policy.debug": False,
        "cpuid": {"family": 0x19, "model": 0x01, "stepping": 0x01},
        "report_data": "819770b7e6ea6df8dd8fd4dd146b073c0bf4f3ce5b0977ecac486e3a05ed1bd5"
        "4e2a7ac1f5d1ca02e7d7d5ef9f73b8574fd9359e3a480d741a4478e8a7bc27ca",
        "measurement": "8922ebbdd00ec2c541f36a6e7a82a8773a7accb451ed67bc94e740dbe92c93c4"
        "e8c9af857f5ceeb5a493df2a570d7bf0",
        "host_data": "00" * 32,
        "report_id": "62e04fba700afd93b3a0cc0649b633ee36587fa8a8c2eb5d9b7cd7bc5f4bb057",
        "chip_id": "00" * 64,
        "reported_tcb": _tcb(4, 0, 24, 217),
        "current_tcb": _tcb(4, 0, 24, 220),
        "committed_tcb": _tcb(4, 0, 24, 219),
        "launch_tcb": _tcb(4, 0, 24, 219),
        "current_version": {"major": 1, "minor": 55, "build": 29},
        "platform_info.smt_enabled": True,
        "platform_info.tsme_enabled": True,
        "platform_info.ecc_enabled": True,
        "platform_info.alias_check_complete": True,
        "signer_info.signing_key": "vlek",
        "launch_mit_vector": None,
        "signer.key": "vlek",
    },
)
VIRTEE = Vector(
    "virtee-sev-milan-v2",
    "report_milan.bin",
    {"vcek": "virtee-sev-milan-v2/vcek_milan.der"},
    "2024-01-01T00:00:00Z",
    {
        "version": 2,
        "guest_svn": 0,
        "vmpl": 0,
        "policy.smt": True,
        "policy.debug": False,
        "report_data": "d447b55d197491bfe15cf298f9de9986b7a7c4be2468b4f6e2d53b71d7c64581"
        "0b0f2cdfca0040433be063fc1a8293f0f3f8dae7b79fecb3d1cd82bd6a93ebfd",
        "measurement": "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d"
        "3e1a0dc39b2c60bd95b9c480cd81841f",
        "report_id": "92b3b47d59f0a2a10a74c5678868a80238cf593c01a82f3cffb878e904c28d5b",
        "chip_id": "d49554ec717f4e5b0fe6b143bcf0405bd7ae304727edf46603f2a76aef6a3abc"
        "15d7af38db757039029f0efacfd08e244324884738c72b082e2f87a44d541eb6",
        "reported_tcb": _tcb(3, 0, 8, 115),
        "current_tcb": _tcb(3, 0, 8, 115),
        "committed_tcb": _tcb(3, 0, 8, 115),
        "launch_tcb": _tcb(3, 0, 8, 115),
        "current_version": {"major": 1, "minor": 52, "build": 4},
        "platform_info.smt_enabled": True,
        "signer.key": "vcek",
    },
)
VECTORS = (GO_SEV_GUEST, TRUSTEE_VCEK, TRUSTEE_VLEK, VIRTEE)


@pytest.fixture(scope="session")
def kit() -> SnpKit:
    return SnpKit.generate(Product.MILAN)


@pytest.fixture(scope="session")
def turin_kit() -> SnpKit:
    return SnpKit.generate(Product.TURIN)
