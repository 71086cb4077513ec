"""Intel DCAP collateral: TCB Info (v2, v3; SGX and TDX) and QE Identity (v2).

TCB Info and QE Identity arrive as ``{"tcbInfo"|"enclaveIdentity": {...}, "signature": hex}``
(Intel PCS API v4, appendices A and B). The TCB Signing key signs the *exact bytes* of the
inner member as served (ECDSA P-256 with SHA-256, signature r || s in hex), so this module
keeps those bytes next to the parsed object; re-serialising the JSON would not verify.

Collateral extracted from Open Enclave endorsements ends in a C-string NUL: trailing NULs and
whitespace are tolerated; anything else that is not the documented shape is
``CollateralInvalid`` with the JSON path of the offending member. CRLs and certificate
chains are read by :mod:`broker.evidence.trust` (``load_crls``, ``load_certificates``), which
tolerate the same terminator.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from broker.errors import CollateralInvalid
from broker.evidence import der

COMPONENT_COUNT = 16
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_T = TypeVar("_T")


class TcbStatus(StrEnum):
    """TCB statuses of TCB Info levels, QE Identity levels and the final appraisal."""

    UP_TO_DATE = "UpToDate"
    SW_HARDENING_NEEDED = "SWHardeningNeeded"
    CONFIGURATION_NEEDED = "ConfigurationNeeded"
    CONFIGURATION_AND_SW_HARDENING_NEEDED = "ConfigurationAndSWHardeningNeeded"
    OUT_OF_DATE = "OutOfDate"
    OUT_OF_DATE_CONFIGURATION_NEEDED = "OutOfDateConfigurationNeeded"
    REVOKED = "Revoked"


@dataclass(frozen=True, slots=True)
class TcbLevel:
    sgx_components: tuple[int, ...]
    pce_svn: int
    tdx_components: tuple[int, ...] | None
    """The 16 TDX TCB component SVNs (TDX TCB Info only), compared with TEE_TCB_SVN."""
    tcb_date: datetime
    status: TcbStatus
    advisory_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IdentityTcbLevel:
    """A level of a QE Identity or a TDX module identity, keyed by ISVSVN."""

    isvsvn: int
    tcb_date: datetime
    status: TcbStatus
    advisory_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TdxModule:
    mrsigner: bytes
    attributes: bytes
    attributes_mask: bytes


@dataclass(frozen=True, slots=True)
class TdxModuleIdentity:
    id: str
    """``TDX_<major version as two hex digits>``, e.g. ``TDX_01``."""
    module: TdxModule
    tcb_levels: tuple[IdentityTcbLevel, ...]


@dataclass(frozen=True, slots=True)
class TcbInfo:
    id: str
    """``SGX`` or ``TDX`` (version 2 has no id and is SGX)."""
    version: int
    issue_date: datetime
    next_update: datetime
    fmspc: bytes
    pce_id: bytes
    tcb_type: int
    tcb_evaluation_data_number: int
    tcb_levels: tuple[TcbLevel, ...]
    tdx_module: TdxModule | None = None
    tdx_module_identities: tuple[TdxModuleIdentity, ...] = ()


@dataclass(frozen=True, slots=True)
class EnclaveIdentity:
    id: str
    """``QE`` (SGX), ``TD_QE`` (TDX) or ``QVE``."""
    version: int
    issue_date: datetime
    next_update: datetime
    tcb_evaluation_data_number: int
    miscselect: bytes
    miscselect_mask: bytes
    attributes: bytes
    attributes_mask: bytes
    mrsigner: bytes
    isvprodid: int
    tcb_levels: tuple[IdentityTcbLevel, ...]


@dataclass(frozen=True, slots=True)
class SignedCollateral(Generic[_T]):
    """A parsed collateral body with the exact bytes its signature covers."""

    body: _T
    signed_bytes: bytes
    signature: bytes


# --- signed JSON envelope -------------------------------------------------------------------


def _text(data: bytes, name: str) -> str:
    stripped = bytes(data).rstrip(b"\x00").strip()
    try:
        return stripped.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CollateralInvalid(f"{name} is not UTF-8: {exc.reason}") from None


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def top_level_members(data: bytes, name: str) -> dict[str, tuple[Any, str]]:
    """Each top-level member of a JSON object: (decoded value, exact source text).

    Parsing member by member with ``raw_decode`` keeps every value's source span, which is
    what the collateral signature covers. Duplicate keys are refused: two ``tcbInfo``
    members could otherwise make the signed and the evaluated object differ.
    """
    text = _text(data, name)
    decoder = json.JSONDecoder()
    members: dict[str, tuple[Any, str]] = {}
    try:
        pos = _skip_ws(text, 0)
        if text[pos : pos + 1] != "{":
            raise CollateralInvalid(f"{name} is not a JSON object")
        pos = _skip_ws(text, pos + 1)
        closed = text[pos : pos + 1] == "}"
        pos += closed
        while not closed:
            key, pos = decoder.raw_decode(text, pos)
            if not isinstance(key, str):
                raise CollateralInvalid(f"{name}: object key is not a string")
            pos = _skip_ws(text, pos)
            if text[pos : pos + 1] != ":":
                raise CollateralInvalid(f"{name}: expected ':' at character {pos}")
            start = _skip_ws(text, pos + 1)
            value, end = decoder.raw_decode(text, start)
            if key in members:
                raise CollateralInvalid(f"{name}: duplicate member '{key}'")
            members[key] = (value, text[start:end])
            pos = _skip_ws(text, end)
            separator = text[pos : pos + 1]
            if separator not in (",", "}"):
                raise CollateralInvalid(f"{name}: expected ',' or '}}' at character {pos}")
            closed = separator == "}"
            pos = _skip_ws(text, pos + 1)
    except json.JSONDecodeError as exc:
        raise CollateralInvalid(f"{name} is not valid JSON: {exc.msg} at {exc.pos}") from None
    except ValueError:  # the json module refuses integers of more than 4,300 digits this way
        raise CollateralInvalid(f"{name} holds an integer too long to read") from None
    except RecursionError:
        raise CollateralInvalid(f"{name} nests too deeply") from None
    if pos != len(text):
        raise CollateralInvalid(f"{name}: unexpected text after the JSON object")
    return members


def _signed_member(data: bytes, name: str, member: str) -> tuple[dict[str, Any], bytes, bytes]:
    members = top_level_members(data, name)
    if member not in members:
        raise CollateralInvalid(f"{name} has no '{member}' member")
    if "signature" not in members:
        raise CollateralInvalid(f"{name} has no 'signature' member")
    body, source = members[member]
    if not isinstance(body, dict):
        raise CollateralInvalid(f"{name}.{member} is not an object")
    signature = _hex_value(members["signature"][0], 64, f"{name}.signature")
    return body, source.encode("utf-8"), signature


def verify_collateral_signature(
    signed: SignedCollateral[Any], signer: x509.Certificate, name: str
) -> None:
    """Raise ``CollateralInvalid`` unless ``signer`` signed ``signed.signed_bytes``."""
    key = signer.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise CollateralInvalid(f"{name} signer key is not ECDSA P-256")
    try:
        key.verify(der.ecdsa_signature(signed.signature), signed.signed_bytes, _ECDSA_SHA256)
    except InvalidSignature:
        raise CollateralInvalid(
            f"{name} signature does not verify with the TCB Signing key "
            f"(SHA-256 of the signed member {_digest(signed.signed_bytes)})"
        ) from None


def _digest(data: bytes) -> str:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize().hex()[:16]


# --- typed JSON access ----------------------------------------------------------------------


def _get(obj: Mapping[str, Any], key: str, path: str) -> Any:
    if key not in obj:
        raise CollateralInvalid(f"{path}.{key} is missing")
    return obj[key]


def _int(obj: Mapping[str, Any], key: str, path: str, maximum: int = 0xFFFFFFFF) -> int:
    value = _get(obj, key, path)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise CollateralInvalid(f"{path}.{key} {value!r} is not an integer in 0..{maximum}")
    return value


def _str(obj: Mapping[str, Any], key: str, path: str) -> str:
    value = _get(obj, key, path)
    if not isinstance(value, str):
        raise CollateralInvalid(f"{path}.{key} {value!r} is not a string")
    return value


def _hex_value(value: Any, size: int, path: str) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * size:
        raise CollateralInvalid(f"{path} is not {size} bytes of hex")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise CollateralInvalid(f"{path} is not {size} bytes of hex") from None


def _hex(obj: Mapping[str, Any], key: str, size: int, path: str) -> bytes:
    return _hex_value(_get(obj, key, path), size, f"{path}.{key}")


def _time(obj: Mapping[str, Any], key: str, path: str) -> datetime:
    text = _str(obj, key, path)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise CollateralInvalid(f"{path}.{key} {text!r} is not an ISO 8601 time") from None
    if value.tzinfo is None:
        raise CollateralInvalid(f"{path}.{key} {text!r} has no time zone")
    return value


def _object(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise CollateralInvalid(f"{path} is not an object")
    return value


def _list(obj: Mapping[str, Any], key: str, path: str) -> list[Any]:
    value = _get(obj, key, path)
    if not isinstance(value, list) or not value:
        raise CollateralInvalid(f"{path}.{key} is not a non-empty list")
    return value


def _status(obj: Mapping[str, Any], path: str) -> TcbStatus:
    text = _str(obj, "tcbStatus", path)
    try:
        return TcbStatus(text)
    except ValueError:
        raise CollateralInvalid(f"{path}.tcbStatus {text!r} is not a known TCB status") from None


def _advisories(obj: Mapping[str, Any], path: str) -> tuple[str, ...]:
    value = obj.get("advisoryIDs", [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise CollateralInvalid(f"{path}.advisoryIDs is not a list of strings")
    return tuple(value)


def _levels(
    obj: Mapping[str, Any], path: str, parse: Callable[[Mapping[str, Any], str], _T]
) -> tuple[_T, ...]:
    return tuple(
        parse(_object(item, f"{path}.tcbLevels[{index}]"), f"{path}.tcbLevels[{index}]")
        for index, item in enumerate(_list(obj, "tcbLevels", path))
    )


# --- TCB Info -------------------------------------------------------------------------------


def parse_tcb_info(data: bytes) -> SignedCollateral[TcbInfo]:
    """Parse a signed TCB Info document (``{"tcbInfo": ..., "signature": ...}``)."""
    body, signed, signature = _signed_member(data, "TCB Info", "tcbInfo")
    return SignedCollateral(_tcb_info(body), signed, signature)


def _tcb_info(obj: Mapping[str, Any]) -> TcbInfo:
    path = "tcbInfo"
    version = _int(obj, "version", path)
    if version == 2:
        if "id" in obj:
            raise CollateralInvalid("tcbInfo version 2 has an 'id' member")
        tee_id = "SGX"
    elif version == 3:
        tee_id = _str(obj, "id", path)
        if tee_id not in ("SGX", "TDX"):
            raise CollateralInvalid(f"tcbInfo.id {tee_id!r} is not 'SGX' or 'TDX'")
    else:
        raise CollateralInvalid(f"tcbInfo.version {version} is not 2 or 3")
    tcb_type = _int(obj, "tcbType", path)
    if tcb_type != 0:
        # Type 0 is the only defined mapping: component i of the TCB level is CPUSVN byte i.
        raise CollateralInvalid(f"tcbInfo.tcbType {tcb_type} != 0")
    is_tdx = tee_id == "TDX"
    tdx_module = None
    identities: tuple[TdxModuleIdentity, ...] = ()
    if is_tdx:
        tdx_module = _tdx_module(_object(_get(obj, "tdxModule", path), f"{path}.tdxModule"), path)
        if "tdxModuleIdentities" in obj:
            identities = tuple(
                _tdx_module_identity(_object(item, f"{path}.tdxModuleIdentities[{i}]"), i)
                for i, item in enumerate(_list(obj, "tdxModuleIdentities", path))
            )
    return TcbInfo(
        id=tee_id,
        version=version,
        issue_date=_time(obj, "issueDate", path),
        next_update=_time(obj, "nextUpdate", path),
        fmspc=_hex(obj, "fmspc", 6, path),
        pce_id=_hex(obj, "pceId", 2, path),
        tcb_type=tcb_type,
        tcb_evaluation_data_number=_int(obj, "tcbEvaluationDataNumber", path),
        tcb_levels=_levels(
            obj, path, lambda level, where: _tcb_level(level, where, version, is_tdx)
        ),
        tdx_module=tdx_module,
        tdx_module_identities=identities,
    )


def _tcb_level(obj: Mapping[str, Any], path: str, version: int, is_tdx: bool) -> TcbLevel:
    tcb = _object(_get(obj, "tcb", path), f"{path}.tcb")
    where = f"{path}.tcb"
    if version == 2:
        sgx = tuple(
            _int(tcb, f"sgxtcbcomp{index:02d}svn", where, 255)
            for index in range(1, COMPONENT_COUNT + 1)
        )
    else:
        sgx = _components(tcb, "sgxtcbcomponents", where)
    tdx = _components(tcb, "tdxtcbcomponents", where) if is_tdx else None
    return TcbLevel(
        sgx_components=sgx,
        pce_svn=_int(tcb, "pcesvn", where, 0xFFFF),
        tdx_components=tdx,
        tcb_date=_time(obj, "tcbDate", path),
        status=_status(obj, path),
        advisory_ids=_advisories(obj, path),
    )


def _components(tcb: Mapping[str, Any], key: str, path: str) -> tuple[int, ...]:
    items = _list(tcb, key, path)
    if len(items) != COMPONENT_COUNT:
        raise CollateralInvalid(f"{path}.{key} has {len(items)} entries, expected 16")
    svns = []
    for i, item in enumerate(items):
        # Sixteen components a level, a dozen levels a document: the path for a message is
        # made only when there is something wrong to say.
        svn = item.get("svn") if isinstance(item, dict) else None
        if type(svn) is not int or not 0 <= svn <= 255:  # exactly int: a bool is not an SVN
            svn = _int(_object(item, f"{path}.{key}[{i}]"), "svn", f"{path}.{key}[{i}]", 255)
        svns.append(svn)
    return tuple(svns)


def _tdx_module(obj: Mapping[str, Any], path: str) -> TdxModule:
    return TdxModule(
        mrsigner=_hex(obj, "mrsigner", 48, path),
        attributes=_hex(obj, "attributes", 8, path),
        attributes_mask=_hex(obj, "attributesMask", 8, path),
    )


def _tdx_module_identity(obj: Mapping[str, Any], index: int) -> TdxModuleIdentity:
    path = f"tcbInfo.tdxModuleIdentities[{index}]"
    return TdxModuleIdentity(
        id=_str(obj, "id", path),
        module=_tdx_module(obj, path),
        tcb_levels=_levels(obj, path, _identity_level),
    )


def _identity_level(obj: Mapping[str, Any], path: str) -> IdentityTcbLevel:
    tcb = _object(_get(obj, "tcb", path), f"{path}.tcb")
    return IdentityTcbLevel(
        isvsvn=_int(tcb, "isvsvn", f"{path}.tcb", 0xFFFF),
        tcb_date=_time(obj, "tcbDate", path),
        status=_status(obj, path),
        advisory_ids=_advisories(obj, path),
    )


# --- QE Identity ----------------------------------------------------------------------------


def parse_qe_identity(data: bytes) -> SignedCollateral[EnclaveIdentity]:
    """Parse a signed QE Identity (``{"enclaveIdentity": ..., "signature": ...}``, v2)."""
    body, signed, signature = _signed_member(data, "QE Identity", "enclaveIdentity")
    path = "enclaveIdentity"
    version = _int(body, "version", path)
    if version != 2:
        raise CollateralInvalid(f"enclaveIdentity.version {version} != 2")
    identity = EnclaveIdentity(
        id=_str(body, "id", path),
        version=version,
        issue_date=_time(body, "issueDate", path),
        next_update=_time(body, "nextUpdate", path),
        tcb_evaluation_data_number=_int(body, "tcbEvaluationDataNumber", path),
        miscselect=_hex(body, "miscselect", 4, path),
        miscselect_mask=_hex(body, "miscselectMask", 4, path),
        attributes=_hex(body, "attributes", 16, path),
        attributes_mask=_hex(body, "attributesMask", 16, path),
        mrsigner=_hex(body, "mrsigner", 32, path),
        isvprodid=_int(body, "isvprodid", path, 0xFFFF),
        tcb_levels=_levels(body, path, _identity_level),
    )
    return SignedCollateral(identity, signed, signature)
