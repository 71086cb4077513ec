"""Trustee's az-snp-vtpm and az-tdx-vtpm evidence (JSON), read into :class:`VtpmEvidence`.

Pure: a parsed JSON document in, evidence out, no verification and no I/O, so that both
``/v1/attest`` and a KBS front door can read what Trustee's guest attesters send
(confidential-containers/trustee, ``deps/verifier/src/az_{snp,tdx}_vtpm``). The versions:

* **v0** (no ``version``): az-snp-vtpm ``{"quote": Q, "report": [HCL report bytes], "vcek":
  PEM}``; az-tdx-vtpm ``{"tpm_quote": Q, "hcl_report": [bytes], "td_quote": [bytes]}``; in Q
  (``az-cvm-vtpm``'s ``Quote``) ``signature``, ``message`` and each of ``pcrs`` are arrays of
  byte values;
* **v1** and **v2** (``"version": 1`` or ``2``): ``{"tpm_quote": {"signature": hex,
  "message": hex, "pcrs": [hex, ...]}, "hcl_report": base64url, "vcek": base64url DER}``
  (az-snp-vtpm) or ``..., "td_quote": base64url}`` (az-tdx-vtpm), base64url with padding.
  v2 is v1 whose runtime data's ``user-data`` carries the report data (the quote's extraData)
  zero-padded to 64 bytes.

Trustee's quote ``signature`` is the bare RSASSA-PKCS1-v1_5/SHA-256 signature of the
HCLAkPub key (not a TPMT_SIGNATURE), and ``pcrs`` lists the SHA-256 values in the order the
quote selects them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from broker.errors import MalformedEvidence, UnsupportedEvidence
from broker.evidence.claims import Tee
from broker.evidence.tpm.abi import Alg, QuoteInfo, Signature, parse_attest
from broker.evidence.tpm.evidence import TpmEvidence, optional, padded_base64, required
from broker.evidence.tpm.quote import Quote
from broker.evidence.vtpm.evidence import VtpmEvidence
from broker.evidence.vtpm.hcl import parse_hcl_report

#: Trustee's tee names for these evidence kinds.
TRUSTEE_TEES = {"az-snp-vtpm": Tee.SNP_VTPM, "az-tdx-vtpm": Tee.TDX_VTPM}
VERSIONS = (1, 2)
_MAX_ARRAY = 1 << 20


def is_trustee(document: Mapping[str, Any]) -> bool:
    """Whether ``document`` is one of Trustee's forms rather than keybroker's bundle: it
    names a ``version``, is v0 az-snp-vtpm (``quote``, ``report``), or holds byte arrays."""
    return (
        "version" in document
        or "quote" in document
        or "report" in document
        or isinstance(document.get("hcl_report"), list)
    )


def is_trustee_quote(document: Mapping[str, Any]) -> bool:
    """Trustee's quote object lists its PCR values; keybroker's maps banks to them."""
    return isinstance(document.get("pcrs"), list)


def parse_trustee(document: Mapping[str, Any], tee: Tee) -> VtpmEvidence:
    """Trustee's evidence for ``tee`` (``snp-vtpm`` or ``tdx-vtpm``), any version."""
    where = f"Trustee {_trustee_name(tee)} evidence"
    version = optional(document, "version", int, where)
    if version is not None and version not in VERSIONS:
        raise UnsupportedEvidence(f"{where}: version {version} is not 1 or 2 (or absent, v0)")
    collateral: dict[str, bytes] = {}
    if version is None:
        if tee is Tee.SNP_VTPM:
            quote = trustee_quote(required(document, "quote", dict, where), f"{where}.quote")
            hcl_data = _byte_array(document.get("report"), f"{where}.report")
            collateral["vcek"] = required(document, "vcek", str, where).encode("ascii", "replace")
            hardware: bytes | None = None
        else:
            quote = trustee_quote(
                required(document, "tpm_quote", dict, where), f"{where}.tpm_quote"
            )
            hcl_data = _byte_array(document.get("hcl_report"), f"{where}.hcl_report")
            hardware = _byte_array(document.get("td_quote"), f"{where}.td_quote")
    else:
        quote = trustee_quote(required(document, "tpm_quote", dict, where), f"{where}.tpm_quote")
        hcl_data = _b64url(required(document, "hcl_report", str, where), f"{where}.hcl_report")
        if tee is Tee.SNP_VTPM:
            collateral["vcek"] = _b64url(required(document, "vcek", str, where), f"{where}.vcek")
            hardware = None
        else:
            hardware = _b64url(required(document, "td_quote", str, where), f"{where}.td_quote")
    hcl = parse_hcl_report(hcl_data)
    return VtpmEvidence(
        tee=tee,
        hardware=hcl.snp_report() if hardware is None else hardware,
        runtime_data=hcl.variable_data,
        tpm=TpmEvidence(quotes=(quote,)),
        hcl=hcl,
        collateral=collateral,
        form=f"trustee-v{version or 0}",
        user_data_bound=version == 2,
    )


def trustee_quote(document: Mapping[str, Any], where: str) -> Quote:
    """Trustee's quote object, hex (v1, v2) or byte arrays (v0)."""
    message = _bytes(document.get("message"), f"{where}.message")
    signature = _bytes(document.get("signature"), f"{where}.signature")
    values = document.get("pcrs")
    if not isinstance(values, list):
        raise MalformedEvidence(f"{where}.pcrs is not a list")
    pcrs = _pcr_values(values, where)
    # The values are those of the PCRs the quote selects, in its order: read the selection.
    attest = parse_attest(message)
    info = attest.attested
    if not isinstance(info, QuoteInfo):
        raise UnsupportedEvidence(f"{where}.message is not a TPM2_Quote's TPMS_ATTEST")
    if [s.hash_alg for s in info.pcr_select] != [Alg.SHA256]:
        raise UnsupportedEvidence(
            f"{where}: Trustee's quotes select the sha256 bank alone; this one does not"
        )
    selected = info.pcr_select[0].pcrs
    if len(pcrs) != len(selected):
        raise MalformedEvidence(
            f"{where}.pcrs lists {len(pcrs)} values; the quote selects {len(selected)} PCRs"
        )
    return Quote(
        message,
        Signature(Alg.RSASSA, Alg.SHA256, rsa=signature),
        {Alg.SHA256: dict(zip(selected, pcrs, strict=True))},
        parsed=attest,
    )


def _pcr_values(values: list[Any], where: str) -> list[bytes]:
    """The listed PCR values: hex text (v1, v2), read in one pass when every one is, or
    arrays of byte values (v0), each with its own error."""
    try:
        return [bytes.fromhex(value) for value in values]
    except (TypeError, ValueError):
        return [_bytes(value, f"{where}.pcrs[{index}]") for index, value in enumerate(values)]


def _trustee_name(tee: Tee) -> str:
    return next(name for name, value in TRUSTEE_TEES.items() if value is tee)


def _bytes(value: Any, where: str) -> bytes:
    """Hex text (v1, v2) or an array of byte values (v0)."""
    if isinstance(value, str):
        try:
            return bytes.fromhex(value)
        except ValueError:
            raise MalformedEvidence(f"{where} is not hex") from None
    return _byte_array(value, where)


def _byte_array(value: Any, where: str) -> bytes:
    if not isinstance(value, list) or len(value) > _MAX_ARRAY:
        raise MalformedEvidence(f"{where} is not an array of byte values")
    if not all(type(item) is int and 0 <= item <= 255 for item in value):
        raise MalformedEvidence(f"{where} holds a value that is not a byte (0-255)")
    return bytes(value)


def _b64url(text: str, where: str) -> bytes:
    """URL-safe base64 with padding (serde_with ``Base64<UrlSafe>``)."""
    try:
        return padded_base64(text, urlsafe=True)
    except ValueError:
        raise MalformedEvidence(f"{where} is not padded base64url") from None
