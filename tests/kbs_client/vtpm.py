"""Azure vTPM guests for the KBS client: Trustee's ``az-snp-vtpm`` and ``az-tdx-vtpm``
evidence, version 2, made on a real TPM 2.0 (swtpm) the way guest-components' attesters make
it on Azure (``attestation-agent/attester/src/az_{snp,tdx}_vtpm``):

1. the attester writes the digest it is handed to the vTPM's user-data index (0x01400002),
   and the paravisor answers with a new HCL report (NV 0x01400001) whose runtime data carries
   it, zero-padded to 64 bytes, as ``user-data``;
2. it quotes the 24 sha256 PCRs with the AK (0x81000003), the digest, unpadded, as the
   quote's qualifying data (extraData);
3. it sends ``{"version": 2, "tpm_quote": {"signature", "message", "pcrs"}, "hcl_report",
   "vcek" | "td_quote"}``: the bare RSASSA signature, the TPMS_ATTEST and each PCR value in
   lowercase hex, the rest in padded base64url.

The platform (the paravisor's HCL report signed by the synthetic AMD kit or quoted by the
synthetic Intel kit) is :mod:`broker.simulate.swtpm`'s; the evidence is written here, from
the attesters' description, without the server's code.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding
from keybroker_guest.tpm2 import AZURE_AK_HANDLE, AZURE_HCL_REPORT_INDEX, Tpm2Tools

from broker.simulate.intel import IntelKit
from broker.simulate.snp import SnpKit
from broker.simulate.swtpm import SimulatedPlatform, swtpm

EVIDENCE_VERSION = 2
#: The PCR the attesters extend with the init-data digest (``INIT_DATA_PCR``).
INIT_DATA_PCR = 8
#: A TPMT_SIGNATURE of an RSASSA key begins with sigAlg TPM_ALG_RSASSA (0x0014) and hash
#: TPM_ALG_SHA256 (0x000B), then the signature's 16-bit size (TPM 2.0 Library Part 2).
_RSASSA_SHA256 = bytes.fromhex("0014000b")
_SIGNATURE_HEADER = 6


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def bare_signature(tpmt_signature: bytes) -> bytes:
    """The RSASSA signature inside a TPMT_SIGNATURE, which is what Trustee's ``TpmQuote``
    carries."""
    if tpmt_signature[:4] != _RSASSA_SHA256:
        raise ValueError("not an RSASSA/SHA-256 TPMT_SIGNATURE")
    size = int.from_bytes(tpmt_signature[4:_SIGNATURE_HEADER], "big")
    return tpmt_signature[_SIGNATURE_HEADER : _SIGNATURE_HEADER + size]


@dataclass
class AzureVtpmGuest:
    """An Azure CVM behind the paravisor, on swtpm (state in ``state``), its platform from the
    synthetic kit in ``kit_dir`` (the AMD kit for ``az-snp-vtpm``, the Intel kit for
    ``az-tdx-vtpm``)."""

    kit_dir: Path
    state: Path
    tee: str = "az-snp-vtpm"
    init_data_digest: bytes | None = None
    """Extended into PCR8 at boot, as the attester's ``bind_init_data`` does."""
    bound: bytes | None = None
    """What to write and quote instead of the digest the client hands over (a guest bound
    to another challenge)."""
    quote_data: bytes | None = None
    """What to quote instead (the user data still carries the digest)."""

    def primary_evidence(self, runtime_digest: bytes) -> Any:
        digest = runtime_digest if self.bound is None else self.bound
        with swtpm(self.state) as tools:
            platform = SimulatedPlatform(tools)
            platform.boot()
            if self.init_data_digest is not None:
                tools.run("tpm2_pcrextend", f"{INIT_DATA_PCR}:sha256={self.init_data_digest.hex()}")
            user_data = digest.ljust(64, b"\0")
            evidence: dict[str, Any] = {"version": EVIDENCE_VERSION}
            if self.tee == "az-snp-vtpm":
                kit = SnpKit.load(self.kit_dir)
                platform.azure_snp(kit, user_data)
                evidence["vcek"] = _b64url(kit.vcek.public_bytes(Encoding.DER))
            else:
                intel = IntelKit.load(self.kit_dir)
                evidence["td_quote"] = _b64url(platform.azure_tdx(intel, user_data))
            evidence["hcl_report"] = _b64url(tools.nv_read(AZURE_HCL_REPORT_INDEX))
            evidence["tpm_quote"] = _quote(tools, self.quote_data or digest)
        return evidence


def _quote(tools: Tpm2Tools, qualifying_data: bytes) -> dict[str, Any]:
    quote = tools.quote(AZURE_AK_HANDLE, qualifying_data)
    return {
        "signature": bare_signature(quote.signature).hex(),
        "message": quote.message.hex(),
        "pcrs": [quote.sha256[pcr].hex() for pcr in sorted(quote.sha256)],
    }


def init_data_pcr(digest: bytes) -> bytes:
    """PCR8 after the attester extended it once with ``digest`` from its reset value."""
    return hashlib.sha256(bytes(32) + digest).digest()
