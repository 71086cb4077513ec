"""The KBS protocol's messages as the reference client and Trustee exchange them.

Request (``/auth``): ``{"version", "tee", "extra-params"}``; the version must be semver
``0.4.0`` (Trustee's requirement ``=0.4.0``: build metadata is ignored, a pre-release is not),
``tee`` a kbs-types TEE name, and ``extra-params`` anything: when it is an object with a
``supported-hash-algorithms`` list, the challenge selects one of them.

Challenge: ``{"nonce", "extra-params": {"selected-hash-algorithm": <name>}}``. Trustee sends
``""`` as ``extra-params`` (and the client then binds with sha384); keybroker always names
the hash it selected, which the client reads case-insensitively.

Attestation (``/attest``): ``{"init-data": null | {"format", "body"}, "runtime-data":
{"nonce", "tee-pubkey"}, "tee-evidence": {"primary_evidence", "additional_evidence"}}``, the
primary evidence in Trustee's JSON form for the TEE (``broker/evidence/trustee.py``).

Members besides those are refused, as on the native API: the reference client sends none.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from broker.errors import BadRequest, UnsupportedEvidence
from broker.evidence.claims import Tee
from broker.release.binding import RCAR_HASHES, InitData, RcarBinding

PROTOCOL_VERSION = (0, 4, 0)
#: kbs-types 0.18 ``Tee`` names, and the keybroker verifier behind each that has one.
KBS_TEES: dict[str, Tee | None] = {
    "az-snp-vtpm": Tee.SNP_VTPM,
    "az-tdx-vtpm": Tee.TDX_VTPM,
    "nvidia": None,
    "sgx": Tee.SGX,
    "snp": Tee.SNP,
    "tdx": Tee.TDX,
    "cca": None,
    "csv": None,
    "se": None,
    "hygondcu": None,
    "dpu": None,
    "tpm": None,
    "sample": None,
    "sampledevice": None,
}
#: The hash a challenge selects when the client offers no list (the client's own default).
DEFAULT_HASH = "sha384"

# semver.org's grammar: MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD], numbers without leading zeros.
_NUMBER = r"(0|[1-9][0-9]*)"
_IDENTIFIER = r"[0-9A-Za-z-]+"
_SEMVER = re.compile(
    rf"{_NUMBER}\.{_NUMBER}\.{_NUMBER}"
    rf"(?:-({_IDENTIFIER}(?:\.{_IDENTIFIER})*))?"
    rf"(?:\+{_IDENTIFIER}(?:\.{_IDENTIFIER})*)?"
)


@dataclass(frozen=True, slots=True)
class AuthRequest:
    tee: Tee
    hash_name: str


def _object(
    value: Any, what: str, members: set[str], optional: frozenset[str] = frozenset()
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be a JSON object")
    missing = sorted(members - optional - value.keys())
    if missing:
        raise BadRequest(f"{what} lacks {', '.join(missing)}")
    unknown = sorted(value.keys() - members)
    if unknown:
        raise BadRequest(f"{what} has unknown members {', '.join(unknown)}")
    return value


def _string(document: Mapping[str, Any], name: str, what: str) -> str:
    value = document[name]
    if not isinstance(value, str):
        raise BadRequest(f"{what}.{name} must be a string")
    return value


def check_version(text: str) -> None:
    """``BadRequest`` unless ``text`` is semver 0.4.0 (any build metadata)."""
    match = _SEMVER.fullmatch(text) if text.isascii() else None
    if match is None:
        raise BadRequest(f"version {text[:32]!r} is not a semantic version")
    numbers = tuple(int(part) for part in match.group(1, 2, 3))
    if numbers != PROTOCOL_VERSION or match.group(4) is not None:
        raise BadRequest(
            f"KBS Client Protocol Version Mismatch: expect =0.4.0 while the request is {text[:32]}"
        )


def parse_auth(document: Mapping[str, Any]) -> AuthRequest:
    request = _object(
        document, "Request", {"version", "tee", "extra-params"}, frozenset({"extra-params"})
    )
    check_version(_string(request, "version", "Request"))
    name = _string(request, "tee", "Request")
    if name not in KBS_TEES:
        raise BadRequest(f"tee {name[:32]!r} is not a KBS TEE name")
    tee = KBS_TEES[name]
    if tee is None:
        supported = ", ".join(n for n, t in KBS_TEES.items() if t is not None)
        raise UnsupportedEvidence(f"tee {name} is not verified by this KBS ({supported} are)")
    return AuthRequest(tee, select_hash(request.get("extra-params")))


def select_hash(extra_params: Any) -> str:
    """The binding hash for a client's ``extra-params``: keybroker's preferred one among
    the ``supported-hash-algorithms`` it offers (compared case-insensitively), sha384 when
    it offers no list."""
    offered = (
        extra_params.get("supported-hash-algorithms") if isinstance(extra_params, dict) else None
    )
    if not isinstance(offered, list):
        return DEFAULT_HASH
    names = {name.lower() for name in offered if isinstance(name, str)}
    for name in RCAR_HASHES:
        if name in names:
            return name
    shown = ", ".join(sorted(names))[:200] or "none"
    raise BadRequest(
        f"supported-hash-algorithms offers {shown}; keybroker binds with {', '.join(RCAR_HASHES)}"
    )


def challenge(nonce: str, hash_name: str) -> dict[str, Any]:
    return {"nonce": nonce, "extra-params": {"selected-hash-algorithm": hash_name}}


@dataclass(frozen=True, slots=True)
class Attestation:
    tee_pubkey: Any
    """The ``tee-pubkey`` JWK as sent."""
    primary_evidence: Any
    """The tee's evidence in Trustee's JSON; the release service reads both
    (``kbs_attest_request``)."""
    rcar: RcarBinding


def parse_attestation(
    document: Mapping[str, Any], tee: Tee, nonce: str, hash_name: str
) -> Attestation:
    """The attestation of a session of ``tee`` whose challenge was ``nonce``: its tee key,
    its evidence in native form, and its binding rule."""
    attestation = _object(
        document,
        "Attestation",
        {"init-data", "runtime-data", "tee-evidence"},
        frozenset({"init-data"}),
    )
    runtime = _object(attestation["runtime-data"], "runtime-data", {"nonce", "tee-pubkey"})
    sent = _string(runtime, "nonce", "runtime-data")
    if not hmac.compare_digest(sent.encode(), nonce.encode()):
        raise BadRequest("runtime-data.nonce is not this session's challenge nonce")
    evidence = _object(
        attestation["tee-evidence"], "tee-evidence", {"primary_evidence", "additional_evidence"}
    )
    init_data = None
    init = attestation.get("init-data")
    if init is not None:
        init = _object(init, "init-data", {"format", "body"})
        init_data = InitData.of(
            _string(init, "format", "init-data"), _string(init, "body", "init-data")
        )
    return Attestation(
        tee_pubkey=runtime["tee-pubkey"],
        primary_evidence=evidence["primary_evidence"],
        rcar=RcarBinding(
            hash_name=hash_name,
            additional_evidence=_string(evidence, "additional_evidence", "tee-evidence"),
            init_data=init_data,
        ),
    )
