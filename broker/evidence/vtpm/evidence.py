"""What paravisor-vTPM evidence is made of, whatever form it came in.

Every form (keybroker's: :mod:`.bundle`; Trustee's: :mod:`.trustee`) reads into one
:class:`VtpmEvidence`: the hardware report (an SEV-SNP ATTESTATION_REPORT or a TDX quote),
the runtime data whose hash it carries, the HCL report when the form has it, and the TPM
part (quotes, AK certificate and chain, event log).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from broker.evidence.claims import Tee
from broker.evidence.tpm.evidence import TpmEvidence
from broker.evidence.vtpm.hcl import HclReport


@dataclass(frozen=True, slots=True)
class VtpmEvidence:
    tee: Tee
    hardware: bytes
    """The SEV-SNP ATTESTATION_REPORT, or the TDX quote."""
    runtime_data: bytes
    tpm: TpmEvidence
    hcl: HclReport | None = None
    collateral: Mapping[str, bytes] = field(default_factory=dict)
    """Collateral the form carries (Trustee's embed the VCEK)."""
    form: str = "bundle"
    """``bundle``, ``hcl`` or ``trustee-v0``/``-v1``/``-v2``."""
    user_data_bound: bool = False
    """The form promises that the runtime data's user-data carries the quote's extraData
    (Trustee's v2)."""
