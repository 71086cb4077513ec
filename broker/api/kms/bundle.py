"""A Recipient's ``AttestationDocument``: a Nitro document, or keybroker's evidence bundle.

The SDKs send only the KMS model's members (boto3 refuses any other in ``Recipient``), so
evidence other than a Nitro document travels in the one blob there is: a JSON object
(docs/kms.md, "Evidence bundles"; written by ``keybroker_guest.kms``). A Nitro document is
COSE_Sign1, a CBOR array (first byte 0x84) or that array tagged 18 (0xD2); neither starts
with ``{`` (0x7B, in CBOR a text string with an 8-byte length), so the first byte tells the
two apart and no document is read as the other.
"""

from __future__ import annotations

from typing import Any

from keybroker_guest.kms import FORMAT

from broker import fastjson
from broker.api.body import decode_base64, member
from broker.api.guest import collateral_items
from broker.errors import BadRequest, KeybrokerError
from broker.evidence.registry import parse_tee
from broker.release.kms import EvidenceBundle, RecipientEvidence

#: The first byte of a bundle.
BUNDLE_START = b"{"
MEMBERS = {"format", "tee", "evidence", "public_key", "nonce", "collateral"}
WHAT = "Recipient.AttestationDocument"


def read(document: bytes) -> RecipientEvidence:
    """``document`` as sent when it is not a bundle (a Nitro document, which its verifier
    reads); the bundle it holds otherwise, every member checked: ``BadRequest``."""
    if not document.startswith(BUNDLE_START):
        return document
    try:
        body = fastjson.loads(document)
    except fastjson.DuplicateMember as exc:
        raise BadRequest(f"{WHAT} names member {exc.name[:64]!r} twice") from None
    except (ValueError, RecursionError):
        raise BadRequest(f"{WHAT} starts with '{{' but is not a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest(f"{WHAT} starts with '{{' but is not a JSON object")
    unknown = sorted(set(body) - MEMBERS)
    if unknown:
        raise BadRequest(f"{WHAT} has no member {', '.join(unknown)[:200]}")
    if body.get("format") != FORMAT:
        raise BadRequest(f"{WHAT} is a JSON object whose format is not {FORMAT}")
    try:
        return _bundle(body)
    except BadRequest as exc:
        raise BadRequest(f"{WHAT}: {exc.detail}") from None


def _bundle(body: dict[str, Any]) -> EvidenceBundle:
    try:
        tee = parse_tee(member(body, "tee", str))
    except KeybrokerError as exc:
        raise BadRequest(exc.detail) from None
    evidence = decode_base64(member(body, "evidence", str), "evidence")
    public_key = decode_base64(member(body, "public_key", str), "public_key")
    if not evidence or not public_key:
        raise BadRequest("members 'evidence' and 'public_key' must not be empty")
    return EvidenceBundle(
        tee=tee,
        evidence=evidence,
        public_key_der=public_key,
        nonce_text=member(body, "nonce", str),
        collateral=collateral_items(member(body, "collateral", dict, required=False) or {}),
    )
