"""Benchmark scenarios: one per TEE, each saying how to make evidence and what to admit.

A scenario prepares its synthetic vendor material once under the benchmark's state directory
(a fake root the broker trusts through ``insecure_test_roots``), writes the production-like
release policy its keys are bound to, and, inside a load-generator process, turns the
binding a guest must prove into evidence and collateral. Adding TDX, SGX or Nitro means one
more :class:`Scenario` in :data:`SCENARIOS`; the runner, the generator and the floor take
everything TEE-specific from here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.serialization import Encoding
from keybroker_guest.evidence import BindingInput

from broker.evidence.snp.abi import GuestPolicy
from broker.evidence.trust import TrustedRoot
from broker.runtime import trusted_test_roots
from broker.simulate.snp import DEFAULT_TCB, SnpKit

#: The launch measurement of the benchmark's simulated guest image (what the policy admits).
MEASUREMENT = hashlib.sha384(b"keybroker bench guest image v1").digest()


class Source(Protocol):
    """Evidence for one attestation, inside a generator process (material loaded once)."""

    tee: str

    def produce(self, binding: BindingInput) -> tuple[bytes, dict[str, bytes]]: ...


@dataclass(frozen=True)
class Material:
    """What a scenario made on disk: its folder and the root file(s) the broker trusts."""

    folder: Path
    root_files: tuple[Path, ...]

    def roots(self) -> tuple[TrustedRoot, ...]:
        return trusted_test_roots(self.root_files)

    def root_names(self) -> list[str]:
        return [root.name for root in self.roots()]


@dataclass(frozen=True)
class Scenario:
    name: str
    tee: str
    prepare: Callable[[Path], Material]
    """Create (once) and return the scenario's vendor material under a folder."""
    policy: Callable[[str, list[str]], dict[str, Any]]
    """The production-like policy document, given its name and the trusted root names."""
    source: Callable[[Path], Source]
    """A loaded evidence source, given the material folder (called in each generator)."""


# --- SNP ---------------------------------------------------------------------------------


class KitSnpSource:
    """Reports of the benchmark's synthetic chip, signed by its VCEK; the kit loaded once."""

    tee = "snp"

    def __init__(self, folder: Path) -> None:
        self.kit = SnpKit.load(folder / "kit")
        self.collateral = self.kit.collateral()
        self.policy = GuestPolicy(abi_minor=0, abi_major=1, smt=True)

    def produce(self, binding: BindingInput) -> tuple[bytes, dict[str, bytes]]:
        report = self.kit.report(
            report_data=binding.report_data, measurement=MEASUREMENT, policy=self.policy
        )
        return self.kit.sign(report), self.collateral


def _prepare_snp(folder: Path) -> Material:
    """A synthetic AMD chain like the real one (RSA-4096 ARK/ASK, P-384 VCEK), kept for
    later runs so the broker's chain cache sees the same chip every time."""
    root_file = folder / "bench-snp-ark.pem"
    if not (folder / "kit" / "kit.json").exists() or not root_file.exists():
        folder.mkdir(parents=True, exist_ok=True)
        kit = SnpKit.generate()
        kit.save(folder / "kit")
        root_file.write_bytes(kit.ark.public_bytes(Encoding.PEM))
    return Material(folder, (root_file,))


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
)

SCENARIOS: dict[str, Scenario] = {scenario.name: scenario for scenario in (SNP,)}


def scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(
            f"scenario {name!r} is not one of {', '.join(sorted(SCENARIOS))}"
        ) from None
