"""The Azure vTPM vectors (tests/vectors/azure-vtpm) and what their manifests say of them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

AZURE = Path(__file__).parents[2] / "vectors" / "azure-vtpm"
SNP_DIR = AZURE / "trustee-az-snp-vtpm"
TDX_DIR = AZURE / "trustee-az-tdx-vtpm"
#: Inside every VCEK's window (2025-01-28 to 2030-05-02) and the TDX PCK's (2023-09-13 to
#: 2030-09-13): the manifests need no special instant.
AT = datetime(2026, 1, 1, tzinfo=UTC)
CHALLENGE = b"challenge".hex()


@dataclass(frozen=True)
class SnpVector:
    """One Azure SNP vTPM evidence and its manifest's values."""

    name: str
    evidence: bytes
    collateral: dict[str, bytes]
    product: str
    measurement: str
    reported_tcb: int
    pcr0: str
    extra_data: str
    form: str


def _read(name: str) -> bytes:
    return (SNP_DIR / name).read_bytes()


def vcek_bundle() -> dict[str, bytes]:
    """vcek.pem holds the VCEK, then the Milan ASK and ARK (its manifest)."""
    bundle = _read("vcek.pem")
    end = b"-----END CERTIFICATE-----\n"
    split = bundle.index(end) + len(end)
    return {"vcek": bundle[:split], "cert_chain": bundle[split:]}


V2_NONCE = (
    "982f5c6e45df0ed3f10b6f60b02f0c8390e281300f3805e2279c16168cd6ae9a"
    "a398f647caa2338748cd0fd9f5f819ef"
)
GENOA_NONCE = (
    "0218488bae25d2509232bf676f1a66a30d7372add909109b36016ef136f2938c"
    "a05475f8b46094de6b64270ea35d950f"
)
V0_MEASUREMENT = (
    "6a063be9dd79f6371c842e480f8dc3b5c725961344e57130e88c5adf49e8f7f6"
    "c79b75a5eb77fc769959f4aeb2f9401e"
)


HCL_MEASUREMENT = (
    "9ac48fcac8a2d88aeeff8d427ad4f2be0e3917c748a18bdf"
    "52cc317e7fe20308b459d5ef1a12e0c22944eb386d17c315"
)
V2_MEASUREMENT = (
    "5b0ce64ad1c1f6375dbda5f760b98526ca1bcf91b8195091"
    "afc28e7b024251d68fe32e05af34048d6607678cd23283ff"
)
GENOA_MEASUREMENT = (
    "f57dc09a507c6ecd82369bffb600f0003792f4d99bc26e98"
    "5ec0c266fc34faf3706faf814c9e61065768a6ff917c89ae"
)
V0_PCR0 = "e15c44796beabf46abcec7c57e590942041e47497e4ec27571c8b7664f48dced"
MILAN_V3_TCB = 0xDB18000000000004


def snp_vectors() -> tuple[SnpVector, ...]:
    """Every SNP vTPM evidence of the vectors, with the collateral it needs."""
    hcl_collateral = {"tpm_quote": _read("tpm-quote-v1.json"), **vcek_bundle()}
    return (
        SnpVector(
            "hcl-report",
            _read("hcl-report.bin"),
            hcl_collateral,
            "Milan",
            HCL_MEASUREMENT,
            0x7308000000000003,
            "f3a7e99a5f819a034386bce753a48a73cfdaa0bea0ecfc124bedbf5a8c4799be",
            CHALLENGE,
            "hcl",
        ),
        SnpVector(
            "v0",
            _read("evidence-v0.json"),
            {},
            "Milan",
            V0_MEASUREMENT,
            MILAN_V3_TCB,
            V0_PCR0,
            CHALLENGE,
            "trustee-v0",
        ),
        SnpVector(
            "v1",
            _read("evidence-v1.json"),
            {},
            "Milan",
            V0_MEASUREMENT,
            MILAN_V3_TCB,
            V0_PCR0,
            CHALLENGE,
            "trustee-v1",
        ),
        SnpVector(
            "v2",
            _read("evidence-v2.json"),
            {},
            "Milan",
            V2_MEASUREMENT,
            MILAN_V3_TCB,
            "84275b2f4312cd4fc6cbe6b152ad3c3683e513d9f1e23c34fca160c8cca7a6a7",
            V2_NONCE,
            "trustee-v2",
        ),
        SnpVector(
            "genoa",
            _read("evidence-genoa.json"),
            {},
            "Genoa",
            GENOA_MEASUREMENT,
            0x541700000000000A,
            "afd689d0bb1c5f36f023fbaf574135f555a28a10c1f6b938d2a25e70c7783338",
            GENOA_NONCE,
            "trustee-v0",
        ),
    )


def json_document(path: Path) -> dict[str, Any]:
    document = json.loads(path.read_text())
    assert isinstance(document, dict)
    return document


TDX_PCR0 = "782b20b10f55cc46e2142cc2145d548698073e5beb82752c8d7f9279f0d8a273"
TDX_MR_TD = (
    "024a32b070383331181619fa387cb4d55d1e38879f989933"
    "055ccad5bc2db795d1737b66205949d15469dc8c1ba7ab7b"
)
