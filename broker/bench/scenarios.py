"""Benchmark scenarios: one per TEE, each saying how to make evidence and what to admit.

A scenario prepares its synthetic vendor material once under the benchmark's state directory
(a fake root the broker trusts through ``insecure_test_roots``), writes the production-like
release policy its keys are bound to, and, inside a load-generator process, turns the
binding a guest must prove into evidence and collateral. The scenarios are ``snp``, ``tdx``,
``sgx`` and ``nitro``; the runner, the generator and the floor take everything TEE-specific
from here. The SNP scenario also simulates a fleet (``--platforms N``): N chips under one
ASK, each its own chip ID and VCEK, so that what the broker remembers per platform stops
hiding the per-platform cost.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from keybroker_guest.evidence import BindingInput

from broker.evidence.claims import Tee
from broker.evidence.sgx.claims import ATTRIBUTE_BITS
from broker.evidence.snp.abi import GuestPolicy
from broker.evidence.tdx.claims import TD_ATTRIBUTE_BITS
from broker.evidence.trust import TrustedRoot
from broker.privatefiles import write_private_bytes
from broker.runtime import trusted_test_roots
from broker.simulate.intel import IntelKit
from broker.simulate.nitro import FakeNitroAuthority
from broker.simulate.snp import DEFAULT_TCB, SnpKit
from broker.timeutil import utcnow

#: The launch measurement of the benchmark's simulated guest image (what the policy admits).
MEASUREMENT = hashlib.sha384(b"keybroker bench guest image v1").digest()


class Source(Protocol):
    """Evidence for one attestation, inside a generator process (material loaded once)."""

    tee: str

    def produce(self, binding: BindingInput, platform: int = 0) -> tuple[bytes, dict[str, bytes]]:
        """Evidence binding ``binding``, from the simulated platform ``platform`` (of the
        fleet the scenario was prepared with; 0 when it has one)."""
        ...


@dataclass(frozen=True)
class Material:
    """What a scenario made on disk: its folder and the root file(s) the broker trusts."""

    folder: Path
    root_files: tuple[Path, ...]
    platforms: int = 1
    """How many simulated platforms (chip identities) the folder holds."""

    def roots(self) -> tuple[TrustedRoot, ...]:
        return trusted_test_roots(self.root_files)

    def root_names(self) -> list[str]:
        return [root.name for root in self.roots()]


@dataclass(frozen=True)
class Scenario:
    name: str
    tee: str
    prepare: Callable[[Path, int], Material]
    """Create (once) and return the scenario's vendor material under a folder, for a fleet
    of the given number of platforms (``ValueError`` for more than the scenario simulates)."""
    policy: Callable[[str, list[str]], dict[str, Any]]
    """The production-like policy document, given its name and the trusted root names."""
    source: Callable[[Material], Source]
    """A loaded evidence source, given the material (called in each generator)."""
    max_platforms: int = 1
    """The largest fleet it simulates (one chip identity per platform)."""


def _single_platform(name: str, platforms: int) -> None:
    if platforms != 1:
        raise ValueError(f"scenario {name} simulates one platform; --platforms is for snp")


# --- SNP ---------------------------------------------------------------------------------


class KitSnpSource:
    """Reports of the benchmark's synthetic chips, each signed by its own VCEK (one chip
    identity per platform: chip ID, VCEK key and certificate); the fleet loaded once."""

    tee = "snp"

    def __init__(self, material: Material) -> None:
        self.kit = SnpKit.load(material.folder / "kit")
        self.chain = self.kit.collateral()["cert_chain"]
        self.chips = [(self.kit.chip_id, self.kit.vcek_key, self.kit.collateral()["vcek"])]
        if material.platforms > 1:
            self.chips = load_fleet(_fleet_file(material.folder, material.platforms))
        self.policy = GuestPolicy(abi_minor=0, abi_major=1, smt=True)

    def produce(self, binding: BindingInput, platform: int = 0) -> tuple[bytes, dict[str, bytes]]:
        chip_id, key, vcek = self.chips[platform % len(self.chips)]
        report = self.kit.report(
            report_data=binding.report_data,
            measurement=MEASUREMENT,
            policy=self.policy,
            chip_id=chip_id,
        )
        return self.kit.sign(report, key), {"vcek": vcek, "cert_chain": self.chain}


def _prepare_snp(folder: Path, platforms: int = 1) -> Material:
    """A synthetic AMD chain like the real one (RSA-4096 ARK/ASK, P-384 VCEK), kept for
    later runs so the broker's chain cache sees the same chip every time; with ``platforms``
    above one, that many chips under the same ASK, each its own chip ID and VCEK (made once,
    about 5 ms of RSA-4096 signing each, and kept)."""
    root_file = folder / "bench-snp-ark.pem"
    if not (folder / "kit" / "kit.json").exists() or not root_file.exists():
        folder.mkdir(parents=True, exist_ok=True)
        kit = SnpKit.generate()
        kit.save(folder / "kit")
        root_file.write_bytes(kit.ark.public_bytes(Encoding.PEM))
    if platforms > 1:
        fleet = _fleet_file(folder, platforms)
        if not fleet.exists():
            save_fleet(SnpKit.load(folder / "kit"), platforms, fleet)
    return Material(folder, (root_file,), platforms)


def _fleet_file(folder: Path, platforms: int) -> Path:
    return folder / f"fleet-{platforms}.bin"


def save_fleet(kit: SnpKit, platforms: int, path: Path) -> None:
    """``platforms`` chips of ``kit``'s product under its ASK, written to ``path``: per chip
    its 64-byte chip ID, its VCEK's 48-byte private scalar, and the VCEK (DER, length-prefixed)."""
    records = bytearray()
    for _ in range(platforms):
        chip = replace(kit, chip_id=os.urandom(kit.product.hwid_size).ljust(64, b"\0"))
        key, certificate = chip.issue_vcek()
        der = certificate.public_bytes(Encoding.DER)
        scalar = key.private_numbers().private_value.to_bytes(48, "big")
        records += chip.chip_id + scalar + len(der).to_bytes(2, "big") + der
    write_private_bytes(path, bytes(records))


def load_fleet(path: Path) -> list[tuple[bytes, ec.EllipticCurvePrivateKey, bytes]]:
    """The chips :func:`save_fleet` wrote: (chip ID, VCEK private key, VCEK DER) each."""
    data, chips, offset = path.read_bytes(), [], 0
    while offset < len(data):
        chip_id, scalar = data[offset : offset + 64], data[offset + 64 : offset + 112]
        length = int.from_bytes(data[offset + 112 : offset + 114], "big")
        der = data[offset + 114 : offset + 114 + length]
        key = ec.derive_private_key(int.from_bytes(scalar, "big"), ec.SECP384R1())
        chips.append((chip_id, key, der))
        offset += 114 + length
    return chips


def _snp_policy(name: str, roots: list[str]) -> dict[str, Any]:
    """As ``policies/snp-production-disk-key.yaml``, with the kit's root as the signer and
    its TCB as the minimum: signer root, reference values, minimum TCB, VMPL 0, no migration
    agent, debug refused (no ``insecure_allow_debug``)."""
    tcb = {
        "bootloader": DEFAULT_TCB.bootloader,
        "tee": DEFAULT_TCB.tee,
        "snp": DEFAULT_TCB.snp,
        "microcode": DEFAULT_TCB.microcode,
    }
    return {
        "format": "keybroker-policy/1",
        "name": name,
        "version": 1,
        "description": "benchmark: production-like SNP disk-key policy",
        "reference_values": {
            "bench-images": {"tee": "snp", "values": [{"measurement": MEASUREMENT.hex()}]}
        },
        "admit": {
            "snp": {
                "signer": {"roots": roots},
                "reference_values": ["bench-images"],
                "minimum_tcb": tcb,
                "require": [
                    {"claim": "vmpl", "equals": 0},
                    {"claim": "policy.migrate_ma", "equals": False},
                ],
            }
        },
    }


SNP = Scenario(
    name="snp",
    tee="snp",
    prepare=_prepare_snp,
    policy=_snp_policy,
    source=KitSnpSource,
    max_platforms=100_000,
)


# --- Intel DCAP: TDX and SGX ---------------------------------------------------------------

#: What the benchmark's simulated TD and enclave measure (what their policies admit).
TDX_MR_TD = hashlib.sha384(b"keybroker bench TD firmware v1").digest()
SGX_MR_ENCLAVE = hashlib.sha256(b"keybroker bench enclave v1").digest()
SGX_MR_SIGNER = hashlib.sha256(b"keybroker bench enclave signing key").digest()


def _prepare_intel(folder: Path, platforms: int = 1) -> Material:
    """A synthetic Intel hierarchy (root, PCK platform CA, PCK, TCB Signing), kept."""
    _single_platform(folder.name, platforms)
    root_file = folder / "bench-intel-root.pem"
    if not (folder / "kit").is_dir() or not root_file.exists():
        folder.mkdir(parents=True, exist_ok=True)
        kit = IntelKit.create(now=utcnow())
        kit.save(folder / "kit")
        root_file.write_bytes(kit.certificates["root"].public_bytes(Encoding.PEM))
    return Material(folder, (root_file,))


class KitTdxSource:
    """TDX quotes of the synthetic kit's platform; its collateral issued once, at load (the
    kit's documents are good for 30 days), and sent with every attestation."""

    tee = "tdx"

    def __init__(self, material: Material) -> None:
        self.kit = IntelKit.load(material.folder / "kit")
        self.collateral = self.kit.collateral(Tee.TDX, now=utcnow())
        self.attributes = (1 << TD_ATTRIBUTE_BITS["sept_ve_disable"]).to_bytes(8, "little")

    def produce(self, binding: BindingInput, platform: int = 0) -> tuple[bytes, dict[str, bytes]]:
        quote = self.kit.tdx_quote(
            binding.report_data, mr_td=TDX_MR_TD, td_attributes=self.attributes
        )
        return quote, self.collateral


class KitSgxSource:
    """SGX quotes of the synthetic kit's platform, its collateral issued once at load."""

    tee = "sgx"

    def __init__(self, material: Material) -> None:
        self.kit = IntelKit.load(material.folder / "kit")
        self.collateral = self.kit.collateral(Tee.SGX, now=utcnow())
        flags = 1 << ATTRIBUTE_BITS["init"] | 1 << ATTRIBUTE_BITS["mode64bit"]
        self.attributes = flags.to_bytes(8, "little") + (0x7).to_bytes(8, "little")

    def produce(self, binding: BindingInput, platform: int = 0) -> tuple[bytes, dict[str, bytes]]:
        quote = self.kit.sgx_quote(
            binding.report_data,
            mr_enclave=SGX_MR_ENCLAVE,
            mr_signer=SGX_MR_SIGNER,
            attributes=self.attributes,
            isv_prod_id=1,
            isv_svn=1,
        )
        return quote, self.collateral


def _tdx_policy(name: str, roots: list[str]) -> dict[str, Any]:
    """As ``policies/tdx-production.yaml`` with the kit's root as signer: reference MRTD,
    TCB UpToDate, SEPT #VE disabled, collateral no older than 30 days, debug refused."""
    return _policy(
        name,
        "tdx",
        {"mr_td": TDX_MR_TD.hex()},
        {
            "signer": {"roots": roots},
            "minimum_tcb": {"tcb_status": ["UpToDate"]},
            "freshness": {"max_collateral_age": "30d"},
            "require": [{"claim": "td_attributes.sept_ve_disable", "equals": True}],
        },
    )


def _sgx_policy(name: str, roots: list[str]) -> dict[str, Any]:
    """As ``policies/sgx-enclave-data-key.yaml`` with the kit's root as signer: MRENCLAVE
    and MRSIGNER, ISV SVN >= 1, product 1, TCB UpToDate, debug refused."""
    return _policy(
        name,
        "sgx",
        {"mr_enclave": SGX_MR_ENCLAVE.hex(), "mr_signer": SGX_MR_SIGNER.hex()},
        {
            "signer": {"roots": roots},
            "minimum_tcb": {"tcb_status": ["UpToDate"], "isv_svn": 1},
            "freshness": {"max_collateral_age": "30d"},
            "require": [{"claim": "isv_prod_id", "equals": 1}],
        },
    )


# --- AWS Nitro Enclaves ----------------------------------------------------------------------

NITRO_PCRS = {
    index: hashlib.sha384(f"keybroker bench enclave pcr{index}".encode()).digest()
    for index in (0, 1, 2)
}


def _prepare_nitro(folder: Path, platforms: int = 1) -> Material:
    """A synthetic Nitro PKI (root, intermediate), kept."""
    _single_platform("nitro", platforms)
    root_file = folder / "bench-nitro-root.pem"
    if not (folder / "authority").is_dir() or not root_file.exists():
        folder.mkdir(parents=True, exist_ok=True)
        authority = FakeNitroAuthority.generate()
        authority.save(folder / "authority")
        root_file.write_bytes(authority.root.public_bytes(Encoding.PEM))
    return Material(folder, (root_file,))


class KitNitroSource:
    """Attestation documents of the synthetic enclave, binding the nonce and the public key
    in their own fields; one document-signing leaf per generator, as an enclave keeps its
    NSM's for hours, so the generator does not spend a key generation per document."""

    tee = "nitro"

    def __init__(self, material: Material) -> None:
        self.authority = FakeNitroAuthority.load(material.folder / "authority")
        now = utcnow().replace(microsecond=0)
        self.leaf = self.authority.issue_leaf(not_before=now - timedelta(seconds=3))
        self.pcrs = {**{index: bytes(48) for index in range(16)}, **NITRO_PCRS}

    def produce(self, binding: BindingInput, platform: int = 0) -> tuple[bytes, dict[str, bytes]]:
        document, _ = self.authority.build(
            pcrs=self.pcrs,
            timestamp=utcnow(),
            nonce=binding.nonce,
            public_key=binding.public_key_der,
        )
        signed = replace(document, certificate=self.leaf.certificate.public_bytes(Encoding.DER))
        return FakeNitroAuthority.sign(signed, self.leaf), {}


def _nitro_policy(name: str, roots: list[str]) -> dict[str, Any]:
    """As ``policies/nitro-enclave.yaml`` with the kit's root as signer: PCR0-2, SHA-384,
    documents no older than five minutes, the infrastructure signer acknowledged."""
    return _policy(
        name,
        "nitro",
        {f"pcrs.{index}": value.hex() for index, value in NITRO_PCRS.items()},
        {
            "signer": {"roots": roots},
            "freshness": {"max_evidence_age": "5m"},
            "require": [{"claim": "digest", "equals": "SHA384"}],
            "acknowledged_warnings": {
                "infrastructure-signer": "Nitro has no silicon-vendor attestation"
            },
        },
    )


def _policy(
    name: str, tee: str, reference: dict[str, str], section: dict[str, Any]
) -> dict[str, Any]:
    return {
        "format": "keybroker-policy/1",
        "name": name,
        "version": 1,
        "description": f"benchmark: production-like {tee} policy",
        "reference_values": {"bench-images": {"tee": tee, "values": [reference]}},
        "admit": {tee: {**section, "reference_values": ["bench-images"]}},
    }


TDX = Scenario("tdx", "tdx", _prepare_intel, _tdx_policy, KitTdxSource)
SGX = Scenario("sgx", "sgx", _prepare_intel, _sgx_policy, KitSgxSource)
NITRO = Scenario("nitro", "nitro", _prepare_nitro, _nitro_policy, KitNitroSource)

SCENARIOS: dict[str, Scenario] = {scenario.name: scenario for scenario in (SNP, TDX, SGX, NITRO)}


def scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(
            f"scenario {name!r} is not one of {', '.join(sorted(SCENARIOS))}"
        ) from None
