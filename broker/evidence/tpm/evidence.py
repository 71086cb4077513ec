"""The forms in which TPM evidence arrives, read into one :class:`TpmEvidence`.

* **keybroker's bundle** (JSON, docs/vtpm.md): ``{"tpm_quote": {"message", "signature",
  "pcrs": {"sha256": {"0": hex, ...}}}, "ak_cert", "ak_chain"?: [...], "event_log"?}``,
  binary members in standard base64; ``message`` is the TPMS_ATTEST and ``signature`` the
  TPMT_SIGNATURE exactly as ``tpm2_quote -m`` and ``-s`` write them, ``pcrs`` the values of
  the PCRs it selects by bank and index (lowercase hex). Unknown members are refused.
* **go-tpm-tools' ``attest.Attestation``** (protobuf, what ``gotpm attest`` writes on a GCE
  VM): ``ak_pub`` (1, TPMT_PUBLIC), ``quotes`` (2: ``quote`` TPMS_ATTEST, ``raw_sig``
  TPMT_SIGNATURE, ``pcrs`` {hash, map index -> value}), ``event_log`` (3), ``ak_cert`` (6),
  ``intermediate_certs`` (7); its other fields are skipped, as protobuf readers skip fields
  they do not use (:mod:`.protobuf`).

The ``tpm_quote`` object and the JSON helpers here serve the vTPM forms too
(:mod:`broker.evidence.vtpm.evidence`).
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from broker import fastjson
from broker.errors import MalformedEvidence, UnsupportedEvidence
from broker.evidence.tpm import protobuf
from broker.evidence.tpm.abi import HASH_IDS, Public, parse_public, parse_signature
from broker.evidence.tpm.quote import Quote

T = TypeVar("T")

#: Members of the keybroker TPM bundle.
BUNDLE_MEMBERS = frozenset({"tpm_quote", "ak_cert", "ak_chain", "event_log"})
QUOTE_MEMBERS = frozenset({"message", "signature", "pcrs"})
#: The collateral that completes TPM evidence (:func:`with_collateral`).
_TPM_COLLATERAL = frozenset({"ak_cert", "ak_chain", "event_log"})
#: Most PCRs a bank holds (a PC Client TPM has 24).
MAX_PCR_INDEX = 31


@dataclass(frozen=True, slots=True)
class TpmEvidence:
    quotes: tuple[Quote, ...]
    ak_cert: bytes | None = None
    ak_chain: tuple[bytes, ...] = ()
    event_log: bytes | None = None
    ak_public: Public | None = None
    """The AK's TPMT_PUBLIC, where the form carries it (go-tpm-tools)."""


def parse_tpm_evidence(data: bytes) -> TpmEvidence:
    """Either form, told apart by its first byte (a JSON object or a protobuf message)."""
    if data[:1] == b"{":
        return tpm_bundle(load_json(data, "TPM bundle"))
    return _attestation(data)


# --- JSON -------------------------------------------------------------------------------------


def load_json(data: bytes, what: str) -> Mapping[str, Any]:
    """A JSON object, duplicate members refused (``broker.fastjson``)."""
    try:
        document = fastjson.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise MalformedEvidence(f"{what} is not JSON: {str(exc)[:120]}") from None
    if not isinstance(document, dict):
        raise MalformedEvidence(f"{what} is not a JSON object")
    return document


def optional(document: Mapping[str, Any], name: str, kind: type[T], where: str) -> T | None:
    """Member ``name`` of ``kind``, or None when it is absent or null."""
    value = document.get(name)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise MalformedEvidence(f"{where}.{name} is not a {_kind(kind)}")
    return value


def required(document: Mapping[str, Any], name: str, kind: type[T], where: str) -> T:
    value = optional(document, name, kind, where)
    if value is None:
        raise MalformedEvidence(f"{where} lacks the member '{name}'")
    return value


def _kind(kind: type) -> str:
    return {str: "string", int: "integer", list: "list", dict: "JSON object"}.get(
        kind, kind.__name__
    )


def only_members(document: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(document) - allowed)
    if unknown:
        known = ", ".join(sorted(allowed))
        raise MalformedEvidence(
            f"{where} member '{unknown[0]}' is not one keybroker reads ({known})"
        )


def b64(text: str, where: str) -> bytes:
    """Standard base64 (RFC 4648 §4) with its padding; anything else is malformed."""
    try:
        return padded_base64(text)
    except ValueError:
        raise MalformedEvidence(f"{where} is not standard base64") from None


_URLSAFE = bytes.maketrans(b"-_", b"+/")


def padded_base64(text: str, *, urlsafe: bool = False) -> bytes:
    """Base64 in whole padded groups (RFC 4648 §4, or §5's alphabet when ``urlsafe``) and
    nothing else: no whitespace, no letter of the other alphabet, '=' only to complete the
    last group. ``ValueError`` otherwise (``binascii.Error`` is one).

    binascii's strict mode checks the alphabet and where the padding stands at C speed
    (``base64.b64decode(validate=True)`` runs a regular expression over the text, several
    times slower on an HCL report); it skips padding after a complete group, which the
    length check refuses."""
    data = text.encode("ascii")
    if urlsafe:
        if b"+" in data or b"/" in data:
            raise ValueError("standard base64 letters in base64url")
        data = data.translate(_URLSAFE)
    if len(data) % 4 or len(data) - len(data.rstrip(b"=")) > 2:
        raise ValueError("not whole padded base64 groups")
    return binascii.a2b_base64(data, strict_mode=True)


def unhex(text: str, where: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise MalformedEvidence(f"{where} is not hex") from None


def b64_member(document: Mapping[str, Any], name: str, where: str) -> bytes | None:
    text = optional(document, name, str, where)
    return None if text is None else b64(text, f"{where}.{name}")


def b64_list(document: Mapping[str, Any], name: str, where: str) -> tuple[bytes, ...]:
    items = optional(document, name, list, where) or []
    out = []
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise MalformedEvidence(f"{where}.{name}[{index}] is not a string")
        out.append(b64(item, f"{where}.{name}[{index}]"))
    return tuple(out)


def quote_from_json(document: Any, where: str = "tpm_quote") -> Quote:
    """keybroker's ``tpm_quote`` object."""
    if not isinstance(document, dict):
        raise MalformedEvidence(f"{where} is not a JSON object")
    only_members(document, QUOTE_MEMBERS, where)
    message = b64(required(document, "message", str, where), f"{where}.message")
    raw_signature = b64(required(document, "signature", str, where), f"{where}.signature")
    banks = required(document, "pcrs", dict, where)
    pcrs: dict[int, dict[int, bytes]] = {}
    for bank_name, values in banks.items():
        bank = HASH_IDS.get(bank_name)
        if bank is None:
            raise MalformedEvidence(
                f"{where}.pcrs bank '{bank_name}' is not sha1, sha256, sha384 or sha512"
            )
        if not isinstance(values, dict):
            raise MalformedEvidence(f"{where}.pcrs.{bank_name} is not a JSON object")
        pcrs[bank] = {
            pcr_index(index, f"{where}.pcrs.{bank_name}"): _hex_value(
                value, f"{where}.pcrs.{bank_name}.{index}"
            )
            for index, value in values.items()
        }
    return Quote(message, parse_signature(raw_signature), pcrs)


def pcr_index(text: str, where: str) -> int:
    """A PCR index as a bundle writes it: a decimal number 0-31 without leading zeros."""
    if not (text.isascii() and text.isdigit()) or str(int(text)) != text:
        raise MalformedEvidence(f"{where}: PCR index '{text[:8]}' is not a decimal number")
    index = int(text)
    if index > MAX_PCR_INDEX:
        raise MalformedEvidence(f"{where}: PCR index {index} > {MAX_PCR_INDEX}")
    return index


def _hex_value(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise MalformedEvidence(f"{where} is not a hex string")
    return unhex(value, where)


def tpm_bundle(document: Mapping[str, Any]) -> TpmEvidence:
    where = "TPM bundle"
    only_members(document, BUNDLE_MEMBERS, where)
    return TpmEvidence(
        quotes=(quote_from_json(document.get("tpm_quote"), "tpm_quote"),),
        ak_cert=b64_member(document, "ak_cert", where),
        ak_chain=b64_list(document, "ak_chain", where),
        event_log=b64_member(document, "event_log", where),
    )


# --- go-tpm-tools attest.Attestation ----------------------------------------------------------


def _attestation(data: bytes) -> TpmEvidence:
    where = "attest.Attestation"
    fields = protobuf.fields(data, where)
    ak_pub = protobuf.last_bytes(fields, 1, f"{where}.ak_pub")
    quotes = tuple(
        _pb_quote(body, f"{where}.quotes[{index}]")
        for index, body in enumerate(protobuf.all_bytes(fields, 2, f"{where}.quotes"))
    )
    return TpmEvidence(
        quotes=quotes,
        ak_cert=protobuf.last_bytes(fields, 6, f"{where}.ak_cert"),
        ak_chain=tuple(protobuf.all_bytes(fields, 7, f"{where}.intermediate_certs")),
        event_log=protobuf.last_bytes(fields, 3, f"{where}.event_log"),
        ak_public=None if ak_pub is None else parse_public(ak_pub),
    )


def _pb_quote(data: bytes, where: str) -> Quote:
    fields = protobuf.fields(data, where)
    message = protobuf.last_bytes(fields, 1, f"{where}.quote")
    signature = protobuf.last_bytes(fields, 2, f"{where}.raw_sig")
    pcrs = protobuf.last_bytes(fields, 3, f"{where}.pcrs")
    if message is None or signature is None or pcrs is None:
        raise MalformedEvidence(f"{where} lacks its quote, raw_sig or pcrs")
    pcr_fields = protobuf.fields(pcrs, f"{where}.pcrs")
    bank = protobuf.last_varint(pcr_fields, 1, f"{where}.pcrs.hash")
    if bank is None or bank not in HASH_IDS.values():
        raise UnsupportedEvidence(f"{where}.pcrs.hash {bank} is not a hash keybroker reads")
    values: dict[int, bytes] = {}
    for entry in protobuf.all_bytes(pcr_fields, 2, f"{where}.pcrs.pcrs"):
        entry_fields = protobuf.fields(entry, f"{where}.pcrs.pcrs entry")
        index = protobuf.last_varint(entry_fields, 1, f"{where}.pcrs.pcrs key") or 0
        value = protobuf.last_bytes(entry_fields, 2, f"{where}.pcrs.pcrs value") or b""
        if index > MAX_PCR_INDEX or index in values:
            raise MalformedEvidence(f"{where}.pcrs.pcrs: PCR {index} out of range or twice")
        values[index] = value
    return Quote(message, parse_signature(signature), {bank: values})


def one_source(
    name: str, in_evidence: bytes | None, collateral: Mapping[str, bytes]
) -> bytes | None:
    """A piece that may come in the evidence or as collateral ``name``, not both: two copies
    could differ, and which one was verified would then be a guess."""
    supplied = collateral.get(name)
    if in_evidence is not None and supplied is not None:
        raise MalformedEvidence(f"{name} is given both in the evidence and as collateral")
    return in_evidence if in_evidence is not None else supplied


def with_collateral(evidence: TpmEvidence, collateral: Mapping[str, bytes]) -> TpmEvidence:
    """``evidence`` completed by the collateral ``ak_cert``, ``ak_chain`` (PEM or DER
    certificates, added to the evidence's) and ``event_log``; ``evidence`` itself when the
    collateral holds none of them."""
    if not _TPM_COLLATERAL.intersection(collateral):
        return evidence
    extra_chain = collateral.get("ak_chain")
    return TpmEvidence(
        quotes=evidence.quotes,
        ak_cert=one_source("ak_cert", evidence.ak_cert, collateral),
        ak_chain=(*evidence.ak_chain, *(() if extra_chain is None else (extra_chain,))),
        event_log=one_source("event_log", evidence.event_log, collateral),
        ak_public=evidence.ak_public,
    )
