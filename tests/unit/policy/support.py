"""Claims built by hand following docs/claims.md, and small helpers for policy tests."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from broker.evidence.claims import Claims, Signer, SignerOrigin, Tee
from broker.policy import Policy, load_policy_text

REPO = Path(__file__).resolve().parents[3]
POLICIES = REPO / "policies"
DATA = Path(__file__).resolve().parent / "data"
NOW = datetime(2023, 1, 1, tzinfo=UTC)

#: Values of tests/vectors/snp/go-sev-guest-milan-v2/MANIFEST.md.
GO_SEV_GUEST_MEASUREMENT = (
    "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a6"
    "08eb0cf2e4872b01"
)
#: The clauses of policies/snp-production-disk-key.yaml that the go-sev-guest report passes,
#: as (kind, claim): all but debug.
GO_SEV_GUEST_PASSES_IN_PRODUCTION = [
    ("tee", "tee"),
    ("signer", "signer.origin"),
    ("signer", "signer.root"),
    ("reference_values", "measurement"),
    ("minimum_tcb", "reported_tcb.bootloader"),
    ("minimum_tcb", "reported_tcb.tee"),
    ("minimum_tcb", "reported_tcb.snp"),
    ("minimum_tcb", "reported_tcb.microcode"),
    ("require", "vmpl"),
    ("require", "policy.migrate_ma"),
]
AMD_MILAN = Signer("amd", SignerOrigin.SILICON_VENDOR, "amd-ark-milan", "vcek", "Milan")
INTEL = Signer("intel", SignerOrigin.SILICON_VENDOR, "intel-sgx-root-ca", "pck")
AWS = Signer("aws", SignerOrigin.INFRASTRUCTURE_PROVIDER, "aws-nitro-root", "nitro")


def go_sev_guest_claims(*, debug: bool = True, **fields: Any) -> Claims:
    """The claims of the go-sev-guest Milan v2 report (policy 0xb0000: SMT, DEBUG)."""
    tcb = {"bootloader": 2, "tee": 0, "snp": 5, "microcode": 68, "fmc": None}
    version = {"major": 1, "minor": 49, "build": 3}
    document: dict[str, Any] = {
        "version": 2,
        "guest_svn": 0,
        "policy": {
            "abi_minor": 0,
            "abi_major": 0,
            "smt": True,
            "migrate_ma": False,
            "debug": debug,
            "single_socket": False,
            "cxl_allow": False,
            "mem_aes_256_xts": False,
            "rapl_dis": False,
            "ciphertext_hiding": False,
            "page_swap_disable": False,
        },
        "family_id": "00" * 16,
        "image_id": "00" * 16,
        "vmpl": 0,
        "signature_algo": 1,
        "current_tcb": tcb,
        "reported_tcb": tcb,
        "committed_tcb": tcb,
        "launch_tcb": tcb,
        "platform_info": {
            "smt_enabled": True,
            "tsme_enabled": False,
            "ecc_enabled": False,
            "rapl_disabled": False,
            "ciphertext_hiding_enabled": False,
            "alias_check_complete": False,
            "tio_enabled": False,
        },
        "signer_info": {"signing_key": "vcek", "mask_chip_key": False, "author_key_en": False},
        "report_data": "0102030405" + "00" * 59,
        "measurement": GO_SEV_GUEST_MEASUREMENT,
        "host_data": "00" * 32,
        "id_key_digest": "00" * 48,
        "author_key_digest": "00" * 48,
        "report_id": "8edc638e1857c555d21f6b11bda3c8b1b5a09dba4852b4c8ee7aa2f16f22cc0a",
        "report_id_ma": "ff" * 32,
        "chip_id": (
            "3ac3fe21e13fb0990eb28a802e3fb6a29483a6b0753590c951bdd3b8e53786184ca39e359669a2b7"
            "6a1936776b564ea464cdce40c05f63c9b610c5068b006b5d"
        ),
        "cpuid": None,
        "current_version": version,
        "committed_version": version,
        "launch_mit_vector": None,
        "current_mit_vector": None,
    }
    document.update(fields)
    return Claims(
        tee=Tee.SNP,
        signer=AMD_MILAN,
        debug=debug,
        fields=document,
        report_data=bytes.fromhex("0102030405") + bytes(59),
    )


def claims_of(
    tee: Tee,
    signer: Signer = AMD_MILAN,
    *,
    debug: bool = False,
    evidence_time: datetime | None = None,
    collateral_time: datetime | None = None,
    **fields: Any,
) -> Claims:
    """Claims of any TEE with just the fields a test needs."""
    return Claims(
        tee=tee,
        signer=signer,
        debug=debug,
        fields=fields,
        evidence_time=evidence_time,
        collateral_time=collateral_time,
    )


def policy(admit: str, *, extra: str = "", base_dir: Path | None = None) -> Policy:
    """A policy whose ``admit:`` block is ``admit`` (YAML, indented by two spaces)."""
    text = f"format: keybroker-policy/1\nname: test\nversion: 1\n{extra}admit:\n{admit}"
    return load_policy_text(text, source="test.yaml", base_dir=base_dir)


def one_condition(condition: str, tee: str = "snp") -> Policy:
    """A policy that admits debug ``tee`` claims and requires exactly ``condition``."""
    body = "\n".join("        " + line for line in condition.strip().splitlines())
    return policy(f"  {tee}:\n    insecure_allow_debug: true\n    require:\n      -\n{body}\n")
