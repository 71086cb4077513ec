"""Trustee's evidence JSON, per TEE, translated to keybroker's native evidence and collateral.

Confidential Containers guests send each TEE's evidence as a JSON value (the KBS attestation's
``primary_evidence``); keybroker verifies raw reports and quotes with collateral beside them.
Each TEE's pure translation lives next to its verifier (``snp/trustee.py``,
``dcap/trustee.py``); this module picks the one for a TEE, and recognises the JSON form in a
file for ``keybroker evidence verify``. Raw evidence never starts with ``{``: SNP reports
begin with their version (2, 3 or 5 as a little-endian u32), DCAP quotes with theirs (3 to 5
as a little-endian u16), so the two forms cannot be confused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from broker import fastjson
from broker.errors import MalformedEvidence, UnsupportedEvidence
from broker.evidence.claims import Tee
from broker.evidence.dcap.trustee import parse_sgx, parse_tdx
from broker.evidence.snp.trustee import parse as parse_snp
from broker.evidence.vtpm.trustee import TRUSTEE_TEES, is_trustee

#: The paravisor vTPM tees, by their Trustee names.
VTPM_TEES = {tee: name for name, tee in TRUSTEE_TEES.items()}


@dataclass(frozen=True, slots=True)
class NativeEvidence:
    """What the native verifier of a TEE reads: the raw evidence and its collateral."""

    evidence: bytes
    collateral: dict[str, bytes]

    def __repr__(self) -> str:
        return (
            f"NativeEvidence(evidence=<{len(self.evidence)} bytes>, "
            f"collateral={sorted(self.collateral)})"
        )


def to_native(tee: Tee, primary_evidence: Any) -> NativeEvidence:
    """The native form of Trustee's evidence JSON value for ``tee``; ``MalformedEvidence``
    when it is not that TEE's form, ``UnsupportedEvidence`` for a TEE with no Trustee form."""
    if tee is Tee.SNP:
        snp = parse_snp(primary_evidence)
        return NativeEvidence(snp.report_bytes, snp.collateral())
    if tee is Tee.TDX:
        tdx = parse_tdx(primary_evidence)
        return NativeEvidence(tdx.quote, tdx.collateral())
    if tee is Tee.SGX:
        return NativeEvidence(parse_sgx(primary_evidence).quote, {})
    if tee in VTPM_TEES:
        # The vTPM verifiers read Trustee's forms themselves (docs/vtpm.md), from the JSON
        # text; here only the form is told from keybroker's own bundle, which a KBS guest
        # does not send.
        if not isinstance(primary_evidence, dict) or not is_trustee(primary_evidence):
            raise MalformedEvidence(
                f"primary_evidence is not Trustee's {VTPM_TEES[tee]} evidence (an object "
                "with version, tpm_quote and hcl_report)"
            )
        return NativeEvidence(fastjson.dumps(primary_evidence), {})
    raise UnsupportedEvidence(f"tee '{tee.value}' has no Trustee evidence form")


def looks_like_json(data: bytes) -> bool:
    """Whether ``data`` is a JSON object rather than raw evidence (see the module's note)."""
    return data.lstrip(b" \t\r\n")[:1] == b"{"


#: The TEEs whose native verifier reads raw bytes only; the vTPM tees read their JSON forms,
#: Trustee's included, themselves (docs/vtpm.md).
TRANSLATED_TEES = frozenset({Tee.SNP, Tee.TDX, Tee.SGX})


def read_file(tee: Tee, data: bytes) -> NativeEvidence | None:
    """The native form of a file holding Trustee's evidence JSON for ``tee``; None when the
    file holds raw evidence, or evidence the tee's verifier reads as it is."""
    if tee not in TRANSLATED_TEES or not looks_like_json(data):
        return None
    try:
        document = fastjson.loads(data)
    except fastjson.DuplicateMember as exc:  # which one would a verifier believe? Neither.
        raise MalformedEvidence(f"evidence JSON names member {exc.name[:64]!r} twice") from None
    except (ValueError, RecursionError):
        raise MalformedEvidence("evidence starts like JSON but is not valid JSON") from None
    return to_native(tee, document)
