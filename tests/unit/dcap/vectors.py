"""Paths, instants and collateral of the real Intel vectors (see each MANIFEST.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

VECTORS = Path(__file__).resolve().parents[2] / "vectors"
TDX = VECTORS / "tdx"
SGX = VECTORS / "sgx"
INTEL_ROOTS = VECTORS / "intel-roots"

SPR_DIR = TDX / "go-tdx-guest-spr-v4"
DEBUG_TD_DIR = TDX / "trustee-tdx-v4-debug"
GCP_DIR = TDX / "go-tdx-guest-gcp-ccel"
SIGNAL_2023_DIR = SGX / "libsignal-dcap-2023"
SIGNAL_2022_DIR = SGX / "libsignal-dcap_v3-2022"
OCCLUM_DIR = SGX / "trustee-occlum-v3"

SPR_QUOTE = SPR_DIR / "tdx_prod_quote_SPR_E4.dat"
#: go-tdx-guest appends "\nextra bytes(only for testing purpose)." (39 bytes) after the
#: 4935-byte quote; the quote itself ends where its signature data length says.
SPR_QUOTE_LENGTH = 4935
DEBUG_TD_QUOTE = DEBUG_TD_DIR / "tdx_quote_4.dat"
GCP_QUOTE = GCP_DIR / "cos-113-tdx-quote.dat"
SIGNAL_2023_QUOTE = SIGNAL_2023_DIR / "quote.dat"
SIGNAL_2022_QUOTE = SIGNAL_2022_DIR / "quote.dat"
OCCLUM_QUOTE = OCCLUM_DIR / "occlum_quote.dat"

JUNE_2023 = datetime(2023, 7, 1, 1, 0, tzinfo=UTC)
SIGNAL_2023_NOW = datetime.fromtimestamp(1674105089, UTC)
SIGNAL_2022_NOW = datetime.fromtimestamp(1657856984, UTC)
#: Inside every PCK validity window of the collateral-less vectors.
COLLATERAL_LESS_NOW = datetime(2025, 1, 1, tzinfo=UTC)


def spr_quote() -> bytes:
    return SPR_QUOTE.read_bytes()[:SPR_QUOTE_LENGTH]


def collateral(directory: Path, tcb_chain: str) -> dict[str, bytes]:
    """The collateral files of a vector folder under the verifier's collateral names."""
    return {
        "tcb_info": (directory / "tcbInfo.json").read_bytes(),
        "qe_identity": (directory / "qeIdentity.json").read_bytes(),
        "pck_crl": (directory / "pck_platform_crl.der").read_bytes(),
        "root_crl": (directory / "root_ca_crl.der").read_bytes(),
        "tcb_signing_chain": (directory / tcb_chain).read_bytes(),
    }


def spr_collateral() -> dict[str, bytes]:
    """The June-2023 TDX collateral of go-tdx-guest (FMSPC 50806f000000)."""
    return collateral(SPR_DIR, "tcb_info_issuer_chain.pem")


def signal_collateral(directory: Path) -> dict[str, bytes]:
    return collateral(directory, "tcb_issuer_chain.pem")
