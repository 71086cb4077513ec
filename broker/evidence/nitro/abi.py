"""AWS Nitro Enclaves attestation documents: bytes <-> frozen dataclasses, no judgement.

A document is a COSE_Sign1 message (RFC 9052 §4.2), tagged 18 or untagged::

    COSE_Sign1 = [protected: bstr .cbor {1: -35}, unprotected: {}, payload: bstr, signature: bstr]

whose payload is the CBOR map that the AWS Nitro Enclaves User Guide specifies ("Verifying the
root of trust", section "Attestation document specification")::

    AttestationDocument = {
        module_id: text, timestamp: uint .size 8, digest: digest, pcrs: { + index => pcr },
        certificate: cert, cabundle: [* cert],
        ? public_key: user_data, ? user_data: user_data, ? nonce: user_data }
    cert = bytes .size (1..1024)   user_data = bytes .size (0..1024)
    pcr = bytes .size (32/48/64)   index = 0..31   digest = "SHA384"

The same page's "Semantic validity" adds: ``module_id`` is not empty, ``timestamp`` > 0,
``pcrs`` has 1 to 32 entries, ``cabundle`` at least one. This module enforces all of that as
*format*: types, sizes, the closed key set, no duplicate keys, no trailing bytes, no
indefinite lengths and no CBOR tags other than the optional outer 18, all with
``MalformedEvidence``. Whether a well-formed document is *acceptable* (its digest, its chain,
its signature) is ``verify.py``'s business.

Encoding. The envelope must be in preferred serialization (RFC 8949 §4.1, shortest heads,
definite lengths), which is what every COSE library and the Nitro Secure Module (NSM) emit;
``CoseSign1.to_bytes`` is therefore its exact inverse. The payload is *not* in RFC 8949 §4.2
deterministic form: the NSM writes the map keys in its own fixed order (``module_id, digest,
timestamp, pcrs, certificate, cabundle, public_key, user_data, nonce``, the order of the NSM
API's ``AttestationDoc`` structure), PCRs by ascending index, and absent optional fields as
``null``. Sorting the keys would change the signed bytes, so ``AttestationDocument.to_bytes``
re-creates the NSM's form instead; it reproduces every real document byte for byte. A payload
that orders keys differently or omits optional keys still parses (the CDDL allows both) and
re-encodes to the NSM form with the same meaning; the signature is always checked over the
bytes as received (``CoseSign1.payload``), never over a re-encoding.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NoReturn

import cbor2

from broker.errors import MalformedEvidence

# RFC 9052 §2, Table 1: the COSE_Sign1 CBOR tag, written as the one-byte head 0xd2.
COSE_SIGN1_TAG = 18
_COSE_SIGN1_TAG_HEAD = b"\xd2"
# RFC 9052 §3.1, Table 2: header label of the algorithm.
COSE_HEADER_ALG = 1
# RFC 9053 §2.1, Table 1: ECDSA with SHA-384; the Nitro documents use nothing else.
COSE_ALG_ES384 = -35
# RFC 9053 §2.1: the signature is r || s, each as long as the P-384 group order (48 bytes).
ES384_SIGNATURE_SIZE = 96
# RFC 9052 §4.4: the context string of a COSE_Sign1 Sig_structure.
SIG_STRUCTURE_CONTEXT = "Signature1"

# Our bound on a whole document: real ones are 4.4-4.8 KiB; the CDDL bounds every byte string
# but not the length of cabundle, so without it a bundle could be arbitrarily long.
MAX_DOCUMENT_SIZE = 64 * 1024
# Containers nest at most two deep in a valid envelope (array > map) and payload (map > map).
_MAX_DEPTH = 4

# AWS CDDL sizes (see module docstring).
CERT_MIN_SIZE, CERT_MAX_SIZE = 1, 1024
USER_DATA_MAX_SIZE = 1024
PCR_SIZES = frozenset({32, 48, 64})
PCR_INDEX_MAX = 31
PCR_COUNT_MAX = 32
TIMESTAMP_MAX = 2**64 - 1  # uint .size 8

# The NSM's key order (module docstring); also the closed set of keys the CDDL allows.
PAYLOAD_KEYS = (
    "module_id",
    "digest",
    "timestamp",
    "pcrs",
    "certificate",
    "cabundle",
    "public_key",
    "user_data",
    "nonce",
)
_REQUIRED_KEYS = frozenset(PAYLOAD_KEYS[:6])

# Tags cbor2 (>= 6.1) decodes by itself instead of passing them to ``tag_hook``: bignums (2, 3)
# would turn into ints, string references and shared values (25, 28, 29, 256) into ordinary
# strings and containers, 55799 disappears. None of them belongs in a Nitro document, so each
# is routed to the same rejection as every other tag.
_BUILTIN_TAGS = frozenset(
    (0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258, 260, 261, 1004, 55799)
)


class _TagFound(Exception):
    def __init__(self, tag: int) -> None:
        super().__init__(f"CBOR tag {tag}")
        self.tag = tag


def _reject_tag(tag: cbor2.CBORTag, _immutable: bool) -> NoReturn:
    raise _TagFound(tag.tag)


def _reject_builtin(tag: int) -> Any:
    def reject(_value: Any, _immutable: bool) -> NoReturn:
        raise _TagFound(tag)

    return reject


_NO_BUILTIN_TAGS = {tag: _reject_builtin(tag) for tag in _BUILTIN_TAGS}


def decode_strict(data: bytes, what: str) -> Any:
    """Decode exactly one CBOR item filling ``data``; ``MalformedEvidence`` for anything else.

    Refused: invalid CBOR, truncation, trailing bytes, indefinite lengths, duplicate map keys,
    any tag, nesting deeper than the Nitro structures need.
    """
    stream = io.BytesIO(data)
    decoder = cbor2.CBORDecoder(
        stream,
        tag_hook=_reject_tag,
        semantic_decoders=_NO_BUILTIN_TAGS,
        max_depth=_MAX_DEPTH,
        allow_indefinite=False,
        allow_duplicate_keys=False,
    )
    try:
        value = decoder.decode()
    except cbor2.CBORDecodeError as exc:
        cause = exc.__cause__
        if isinstance(cause, _TagFound):
            raise MalformedEvidence(f"{what}: {cause} is not allowed here") from None
        raise MalformedEvidence(f"{what} is not valid CBOR: {_reason(exc)}") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise MalformedEvidence(f"{what} is not valid CBOR: {_reason(exc)}") from None
    consumed = stream.tell()
    if consumed != len(data):
        raise MalformedEvidence(
            f"{what}: {len(data) - consumed} trailing bytes after the CBOR item "
            f"(item ends at offset {consumed} of {len(data)})"
        )
    return value


def _reason(exc: BaseException) -> str:
    reason = str(exc) or type(exc).__name__
    if exc.__cause__ is not None and str(exc.__cause__):
        reason = f"{reason}: {exc.__cause__}"
    return reason


# --- COSE_Sign1 -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CoseSign1:
    """A COSE_Sign1 message as Nitro uses it: ES384, empty unprotected header."""

    protected: bytes
    """The serialized protected header exactly as signed (it encodes ``{1: -35}``)."""
    payload: bytes
    """The serialized attestation document exactly as signed."""
    signature: bytes
    """ES384 signature, ``r || s`` (96 bytes)."""
    tagged: bool = False
    """Whether the message carried the COSE_Sign1 tag 18."""

    def to_bytes(self) -> bytes:
        encoded: bytes = cbor2.dumps([self.protected, {}, self.payload, self.signature])
        return _COSE_SIGN1_TAG_HEAD + encoded if self.tagged else encoded

    def sig_structure(self) -> bytes:
        """The bytes ES384 signs (RFC 9052 §4.4), with empty external AAD."""
        encoded: bytes = cbor2.dumps([SIG_STRUCTURE_CONTEXT, self.protected, b"", self.payload])
        return encoded


def parse_cose_sign1(data: bytes) -> CoseSign1:
    """A COSE_Sign1 message from its bytes; ``MalformedEvidence`` unless it is exactly one
    Nitro uses (ES384, empty unprotected header, preferred serialization)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedEvidence(f"document must be bytes, not {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise MalformedEvidence("document is empty")
    if len(data) > MAX_DOCUMENT_SIZE:
        raise MalformedEvidence(
            f"document is {len(data)} bytes; at most {MAX_DOCUMENT_SIZE} are accepted"
        )
    tagged = data.startswith(_COSE_SIGN1_TAG_HEAD)
    body = data[1:] if tagged else data
    # Major type 6 is 0xc0..0xdb: any tag head other than the one-byte 18 (RFC 8949 §3.4).
    if body[:1] and 0xC0 <= body[0] <= 0xDB:
        raise MalformedEvidence(
            f"COSE_Sign1: CBOR tag head 0x{body[0]:02x} where only tag {COSE_SIGN1_TAG} "
            "(0xd2) or no tag is allowed"
        )
    items = decode_strict(body, "COSE_Sign1")
    if not isinstance(items, list) or len(items) != 4:
        found = f"{len(items)}-element array" if isinstance(items, list) else _kind(items)
        raise MalformedEvidence(f"COSE_Sign1 must be a 4-element array, found {found}")
    protected, unprotected, payload, signature = items
    _require_bytes(protected, "COSE_Sign1 protected header")
    if not isinstance(unprotected, dict):
        raise MalformedEvidence(
            f"COSE_Sign1 unprotected header must be a map, found {_kind(unprotected)}"
        )
    if unprotected:
        # Nothing in it would be signed; AWS leaves it empty, so we refuse rather than ignore.
        labels = ", ".join(repr(k) for k in unprotected)
        raise MalformedEvidence(
            f"COSE_Sign1 unprotected header must be empty, found labels {labels}"
        )
    _require_bytes(payload, "COSE_Sign1 payload (detached payloads are not used by Nitro)")
    _require_bytes(signature, "COSE_Sign1 signature")
    if len(signature) != ES384_SIGNATURE_SIZE:
        raise MalformedEvidence(
            f"COSE_Sign1 signature is {len(signature)} bytes != {ES384_SIGNATURE_SIZE} "
            "(ES384 r || s)"
        )
    _check_protected_header(protected)
    message = CoseSign1(protected=protected, payload=payload, signature=signature, tagged=tagged)
    if message.to_bytes() != data:
        raise MalformedEvidence(
            "COSE_Sign1 is not in preferred serialization (RFC 8949 §4.1: shortest "
            "argument encodings)"
        )
    return message


def _check_protected_header(protected: bytes) -> None:
    header = decode_strict(protected, "COSE_Sign1 protected header")
    if not isinstance(header, dict):
        raise MalformedEvidence(f"COSE_Sign1 protected header must be a map, found {_kind(header)}")
    alg = header.get(COSE_HEADER_ALG)
    if alg is None:
        raise MalformedEvidence("COSE_Sign1 protected header lacks alg (label 1)")
    if type(alg) is not int or alg != COSE_ALG_ES384:
        raise MalformedEvidence(
            f"COSE_Sign1 protected header alg {alg!r} != {COSE_ALG_ES384} (ES384); Nitro "
            "documents are signed with ES384 only"
        )
    others = [label for label in header if label != COSE_HEADER_ALG]
    if others:
        labels = ", ".join(repr(label) for label in others)
        raise MalformedEvidence(
            f"COSE_Sign1 protected header has labels {labels} besides alg; Nitro documents "
            "carry alg only"
        )


# --- The attestation document ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AttestationDocument:
    """The payload of a Nitro attestation document, field for field (AWS CDDL)."""

    module_id: str
    """Issuing Nitro hypervisor module (``i-<instance>-enc<enclave>``)."""
    digest: str
    """Digest the PCRs were computed with; only ``"SHA384"`` is defined."""
    timestamp: int
    """UTC time the document was made, in milliseconds since the Unix epoch."""
    pcrs: Mapping[int, bytes] = field(hash=False)
    """Locked PCRs by index, in ascending index order (read-only)."""
    certificate: bytes
    """DER of the certificate whose key signed the document (the leaf)."""
    cabundle: tuple[bytes, ...]
    """DER certificates from the root (``cabundle[0]``) towards the leaf's issuer (last)."""
    public_key: bytes | None = None
    """Optional key the enclave chose (by convention a DER SubjectPublicKeyInfo)."""
    user_data: bytes | None = None
    nonce: bytes | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.pcrs, MappingProxyType):
            ordered = dict(sorted(self.pcrs.items()))
            object.__setattr__(self, "pcrs", MappingProxyType(ordered))
        object.__setattr__(self, "cabundle", tuple(self.cabundle))

    def to_bytes(self) -> bytes:
        """The NSM's encoding of this document (see the module docstring)."""
        payload = {
            "module_id": self.module_id,
            "digest": self.digest,
            "timestamp": self.timestamp,
            "pcrs": dict(sorted(self.pcrs.items())),
            "certificate": self.certificate,
            "cabundle": list(self.cabundle),
            "public_key": self.public_key,
            "user_data": self.user_data,
            "nonce": self.nonce,
        }
        encoded: bytes = cbor2.dumps(payload)
        return encoded


def parse_attestation_document(data: bytes) -> AttestationDocument:
    """The attestation document a COSE_Sign1 payload encodes, checked against AWS's CDDL."""
    payload = decode_strict(bytes(data), "attestation document")
    if not isinstance(payload, dict):
        raise MalformedEvidence(f"attestation document must be a map, found {_kind(payload)}")
    unknown = [key for key in payload if key not in PAYLOAD_KEYS]
    if unknown:
        names = ", ".join(repr(key) for key in unknown)
        raise MalformedEvidence(f"attestation document has keys outside the CDDL: {names}")
    missing = [key for key in PAYLOAD_KEYS if key in _REQUIRED_KEYS and key not in payload]
    if missing:
        raise MalformedEvidence(f"attestation document lacks {', '.join(missing)}")
    return AttestationDocument(
        module_id=_module_id(payload["module_id"]),
        digest=_digest(payload["digest"]),
        timestamp=_timestamp(payload["timestamp"]),
        pcrs=_pcrs(payload["pcrs"]),
        certificate=_cert(payload["certificate"], "certificate"),
        cabundle=_cabundle(payload["cabundle"]),
        public_key=_user_data(payload.get("public_key"), "public_key"),
        user_data=_user_data(payload.get("user_data"), "user_data"),
        nonce=_user_data(payload.get("nonce"), "nonce"),
    )


@dataclass(frozen=True, slots=True)
class SignedDocument:
    """A parsed Nitro attestation document: the COSE envelope and its decoded payload."""

    envelope: CoseSign1
    document: AttestationDocument

    def to_bytes(self) -> bytes:
        return self.envelope.to_bytes()


def parse_signed_document(data: bytes) -> SignedDocument:
    """A Nitro attestation document: its COSE_Sign1 envelope and the payload it signs."""
    envelope = parse_cose_sign1(data)
    return SignedDocument(envelope, parse_attestation_document(envelope.payload))


# --- Field checks (AWS CDDL and "Semantic validity") ----------------------------------------


def _module_id(value: Any) -> str:
    if not isinstance(value, str):
        raise MalformedEvidence(f"module_id must be text, found {_kind(value)}")
    if not value:
        raise MalformedEvidence("module_id is empty")
    return value


def _digest(value: Any) -> str:
    if not isinstance(value, str):
        raise MalformedEvidence(f"digest must be text, found {_kind(value)}")
    if not value:
        raise MalformedEvidence("digest is empty")
    return value


def _timestamp(value: Any) -> int:
    if type(value) is not int:
        raise MalformedEvidence(f"timestamp must be an unsigned integer, found {_kind(value)}")
    if not 0 < value <= TIMESTAMP_MAX:
        raise MalformedEvidence(f"timestamp {value} is outside 1..2^64-1 ms")
    return value


def _pcrs(value: Any) -> dict[int, bytes]:
    if not isinstance(value, dict):
        raise MalformedEvidence(f"pcrs must be a map, found {_kind(value)}")
    if not 1 <= len(value) <= PCR_COUNT_MAX:
        raise MalformedEvidence(f"pcrs has {len(value)} entries; 1..{PCR_COUNT_MAX} allowed")
    pcrs: dict[int, bytes] = {}
    for index, pcr in value.items():
        if type(index) is not int or not 0 <= index <= PCR_INDEX_MAX:
            raise MalformedEvidence(f"pcrs index {index!r} is not an integer in 0..{PCR_INDEX_MAX}")
        if not isinstance(pcr, bytes):
            raise MalformedEvidence(f"pcrs[{index}] must be a byte string, found {_kind(pcr)}")
        if len(pcr) not in PCR_SIZES:
            raise MalformedEvidence(f"pcrs[{index}] is {len(pcr)} bytes; 32, 48 or 64 allowed")
        pcrs[index] = pcr
    return pcrs


def _cert(value: Any, name: str) -> bytes:
    _require_bytes(value, name)
    if not CERT_MIN_SIZE <= len(value) <= CERT_MAX_SIZE:
        raise MalformedEvidence(
            f"{name} is {len(value)} bytes; {CERT_MIN_SIZE}..{CERT_MAX_SIZE} allowed"
        )
    return bytes(value)


def _cabundle(value: Any) -> tuple[bytes, ...]:
    if not isinstance(value, list):
        raise MalformedEvidence(f"cabundle must be an array, found {_kind(value)}")
    if not value:
        raise MalformedEvidence("cabundle is empty; it must hold at least the root")
    return tuple(_cert(cert, f"cabundle[{i}]") for i, cert in enumerate(value))


def _user_data(value: Any, name: str) -> bytes | None:
    if value is None:
        return None
    _require_bytes(value, name)
    if len(value) > USER_DATA_MAX_SIZE:
        raise MalformedEvidence(f"{name} is {len(value)} bytes; at most {USER_DATA_MAX_SIZE}")
    return bytes(value)


def _require_bytes(value: Any, name: str) -> None:
    if not isinstance(value, bytes):
        raise MalformedEvidence(f"{name} must be a byte string, found {_kind(value)}")


_KINDS: tuple[tuple[type, str], ...] = (
    (bool, "a boolean"),  # before int: bool is an int subclass in Python
    (int, "an integer"),
    (float, "a float"),
    (str, "text"),
    (bytes, "a byte string"),
    (list, "an array"),
    (dict, "a map"),
)


def _kind(value: Any) -> str:
    """A CBOR-ish name for the type of a decoded value, for messages."""
    if value is None:
        return "null"
    for kind, name in _KINDS:
        if isinstance(value, kind):
            return name
    return type(value).__name__
