"""The kbs-types shapes as the reference client reads and writes them (kbs-types 0.18.0).

Each ``parse_*`` reads a JSON value as serde would with kbs-types' derive: required members
must be present with their types, unknown members are ignored (serde's default), byte fields
are base64url without padding. ``ProtectedHeader.generate_aad`` is the AAD rule: the client
never uses the received ``protected`` string, it serialises the parsed header again.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any

PROTOCOL_VERSION = "0.4.0"
#: ``HashAlgorithm::list_all()`` in kbs-types main (sm3 since August 2025), lower case.
SUPPORTED_HASH_ALGORITHMS = ("sha256", "sha384", "sha512", "sm3")
DEFAULT_HASH = "sha384"
#: kbs-types 0.18 ``Tee`` (serde names).
TEES = (
    "az-snp-vtpm",
    "az-tdx-vtpm",
    "nvidia",
    "sgx",
    "snp",
    "tdx",
    "cca",
    "csv",
    "se",
    "hygondcu",
    "dpu",
    "tpm",
    "sample",
    "sampledevice",
)
ERROR_TYPE_PREFIX = "https://github.com/confidential-containers/kbs/errors/"


class WireError(ValueError):
    """The value is not what kbs-types would deserialise."""


def _require(document: Any, name: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(document, dict):
        raise WireError("expected a JSON object")
    if name not in document:
        raise WireError(f"missing field `{name}`")
    value = document[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind not in (bool, object)):
        raise WireError(f"field `{name}` has the wrong type")
    return value


_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def b64url_decode(text: str) -> bytes:
    """URL_SAFE_NO_PAD: no padding, URL alphabet only."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise WireError(f"not unpadded base64url: {text[:16]!r}")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise WireError(str(exc)) from None


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class Request:
    version: str
    tee: str
    extra_params: Any


def parse_request(document: Any) -> Request:
    tee = _require(document, "tee", str)
    if tee not in TEES:
        raise WireError(f"unknown variant `{tee}`")
    return Request(_require(document, "version", str), tee, document.get("extra-params", ""))


@dataclass(frozen=True)
class Challenge:
    nonce: str
    extra_params: Any

    def selected_hash(self) -> str:
        """The client's choice: ``extra-params["selected-hash-algorithm"]`` when extra-params
        is an object carrying a string that names a known algorithm (case-insensitively),
        else sha384."""
        if isinstance(self.extra_params, dict):
            selected = self.extra_params.get("selected-hash-algorithm")
            if isinstance(selected, str) and selected.lower() in SUPPORTED_HASH_ALGORITHMS:
                return selected.lower()
        return DEFAULT_HASH


def parse_challenge(document: Any) -> Challenge:
    nonce = _require(document, "nonce", str)
    if "extra-params" not in document:
        raise WireError("missing field `extra-params`")
    return Challenge(nonce, document["extra-params"])


@dataclass(frozen=True)
class Attestation:
    init_data: dict[str, str] | None
    nonce: str
    tee_pubkey: dict[str, str]
    primary_evidence: Any
    additional_evidence: str


_TEE_PUBKEY_MEMBERS = {
    "RSA": ("alg", "n", "e"),
    "EC": ("crv", "alg", "x", "y"),
    "AKP": ("alg", "pub"),
}


def parse_tee_pubkey(document: Any) -> dict[str, str]:
    kty = _require(document, "kty", str)
    members = _TEE_PUBKEY_MEMBERS.get(kty)
    if members is None:
        raise WireError(f"unknown variant `{kty}`")
    return {"kty": kty, **{name: _require(document, name, str) for name in members}}


def parse_attestation(document: Any) -> Attestation:
    runtime = _require(document, "runtime-data", dict)
    evidence = _require(document, "tee-evidence", dict)
    init = document.get("init-data")
    if init is not None:
        init = {"format": _require(init, "format", str), "body": _require(init, "body", str)}
    return Attestation(
        init_data=init,
        nonce=_require(runtime, "nonce", str),
        tee_pubkey=parse_tee_pubkey(_require(runtime, "tee-pubkey", dict)),
        primary_evidence=_require(evidence, "primary_evidence", object),
        additional_evidence=_require(evidence, "additional_evidence", str),
    )


def _sorted(value: Any) -> Any:
    # serde_json's Map is a BTreeMap: members come out sorted by name at every level.
    if isinstance(value, dict):
        return {name: _sorted(value[name]) for name in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


@dataclass(frozen=True)
class ProtectedHeader:
    alg: str
    enc: str
    other_fields: dict[str, Any] = field(default_factory=dict)

    def generate_aad(self) -> str:
        """``alg``, ``enc``, the other members sorted, compact; base64url without padding."""
        header = {"alg": self.alg, "enc": self.enc, **_sorted(self.other_fields)}
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False)
        return b64url(text.encode("utf-8"))


def parse_protected_header(text: str) -> ProtectedHeader:
    document = json.loads(b64url_decode(text))
    others = {k: v for k, v in document.items() if k not in ("alg", "enc")}
    return ProtectedHeader(_require(document, "alg", str), _require(document, "enc", str), others)


@dataclass(frozen=True)
class Response:
    protected: ProtectedHeader
    encrypted_key: bytes
    iv: bytes
    ciphertext: bytes
    tag: bytes
    aad: bytes | None


def parse_response(document: Any) -> Response:
    aad = document.get("aad") if isinstance(document, dict) else None
    return Response(
        protected=parse_protected_header(_require(document, "protected", str)),
        encrypted_key=b64url_decode(_require(document, "encrypted_key", str)),
        iv=b64url_decode(_require(document, "iv", str)),
        ciphertext=b64url_decode(_require(document, "ciphertext", str)),
        tag=b64url_decode(_require(document, "tag", str)),
        aad=None if aad is None else aad.encode(),  # kept raw, never base64-decoded
    )


@dataclass(frozen=True)
class ErrorInformation:
    type: str
    detail: str

    @property
    def variant(self) -> str | None:
        """The kbs error name when ``type`` is a KBS error URI."""
        if self.type.startswith(ERROR_TYPE_PREFIX):
            return self.type[len(ERROR_TYPE_PREFIX) :]
        return None


def parse_error_information(document: Any) -> ErrorInformation:
    return ErrorInformation(_require(document, "type", str), _require(document, "detail", str))
