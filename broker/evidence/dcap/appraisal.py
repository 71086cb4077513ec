"""Intel's TCB appraisal: match the platform, the TDX module and the QE to their collateral.

The rules follow Intel's quote verification model (Intel SGX/TDX DCAP Quote Verification
Library, "Quote verification" §4.1.2.4.9-17, the steps its implementation cites):

* TCB Info must be for this TEE (``id`` SGX/TDX; version 2 is SGX only) and this platform
  (FMSPC and PCE-ID of the PCK certificate).
* TDX module identity: MRSIGNERSEAM must equal ``tdxModule.mrsigner`` and SEAMATTRIBUTES
  under ``attributesMask`` must equal ``attributes``; when TEE_TCB_SVN[1] (the module's major
  version) is not zero, the entry ``TDX_<major, 2 hex digits>`` of ``tdxModuleIdentities``
  supplies them instead, and its first level whose ``isvsvn`` <= TEE_TCB_SVN[0] gives the
  module's status.
* Platform TCB level: the first level (levels are served newest first) whose 16 SGX
  component SVNs and PCESVN are all <= the PCK certificate's; for TDX, the first such level
  whose 16 ``tdxtcbcomponents`` are also <= TEE_TCB_SVN (from byte 2 on when the module's
  major version is not zero, since bytes 0-1 were judged by the module identity). TDX takes
  the status of that TDX level.
* QE Identity: ``id`` must be QE (SGX) or TD_QE (TDX); MISCSELECT and ATTRIBUTES under
  their masks, MRSIGNER and ISVPRODID must match the QE report; the first level whose
  ``isvsvn`` <= the QE's ISVSVN gives its status.
* Status convergence (TDX module, then QE): an OutOfDate component turns UpToDate and
  SWHardeningNeeded into OutOfDate, and ConfigurationNeeded and
  ConfigurationAndSWHardeningNeeded into OutOfDateConfigurationNeeded; a Revoked component
  makes the result Revoked; otherwise the platform status stands.

Not applied: the TD relaunch advice of TDX 1.5 (TEE_TCB_SVN2), which yields statuses outside
the list above; a v5 TD 1.5 quote is appraised on TEE_TCB_SVN like a 1.0 one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from broker.errors import (
    CollateralInvalid,
    EvidenceError,
    QeIdentityMismatch,
    TcbLevelNotFound,
    TcbMismatch,
)
from broker.evidence.dcap.abi import EnclaveReportBody, TdReportBody10
from broker.evidence.dcap.collateral import (
    EnclaveIdentity,
    IdentityTcbLevel,
    TcbInfo,
    TcbLevel,
    TcbStatus,
    TdxModule,
    TdxModuleIdentity,
)
from broker.evidence.dcap.pck import PckExtensions

_CONFIGURATION = (
    TcbStatus.CONFIGURATION_NEEDED,
    TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED,
)


@dataclass(frozen=True, slots=True)
class Appraisal:
    status: TcbStatus
    advisory_ids: tuple[str, ...]
    """Union of the advisories of every matched level (platform, TDX module, QE), sorted."""
    tcb_date: datetime
    """The oldest tcbDate of the matched levels."""
    tcb_evaluation_data_number: int
    """The lower of the TCB Info's and the QE Identity's numbers."""
    platform_level: TcbLevel
    qe_level: IdentityTcbLevel
    module_level: IdentityTcbLevel | None


def appraise(
    tcb_info: TcbInfo,
    qe_identity: EnclaveIdentity,
    pck: PckExtensions,
    body: EnclaveReportBody | TdReportBody10,
    qe_report: EnclaveReportBody,
) -> Appraisal:
    """Apply Intel's rules; raise when the collateral does not fit or nothing matches."""
    is_tdx = isinstance(body, TdReportBody10)
    check_tcb_info_applies(tcb_info, pck, is_tdx)
    tee_tcb_svn = body.tee_tcb_svn if isinstance(body, TdReportBody10) else None
    module_level = check_tdx_module(tcb_info, body) if isinstance(body, TdReportBody10) else None
    qe_level = match_qe_identity(qe_identity, qe_report, is_tdx)
    platform_level = select_platform_level(tcb_info, pck, tee_tcb_svn)
    status = platform_level.status
    if module_level is not None:
        status = converge(status, module_level.status)
    status = converge(status, qe_level.status)
    levels: list[TcbLevel | IdentityTcbLevel] = [platform_level, qe_level]
    if module_level is not None:
        levels.append(module_level)
    return Appraisal(
        status=status,
        advisory_ids=tuple(sorted({a for level in levels for a in level.advisory_ids})),
        tcb_date=min(level.tcb_date for level in levels),
        tcb_evaluation_data_number=min(
            tcb_info.tcb_evaluation_data_number, qe_identity.tcb_evaluation_data_number
        ),
        platform_level=platform_level,
        qe_level=qe_level,
        module_level=module_level,
    )


def check_tcb_info_applies(tcb_info: TcbInfo, pck: PckExtensions, is_tdx: bool) -> None:
    wanted = "TDX" if is_tdx else "SGX"
    if tcb_info.id != wanted:
        raise CollateralInvalid(
            f"tcbInfo.id {tcb_info.id} (version {tcb_info.version}) != {wanted} for a "
            f"{wanted} quote"
        )
    if tcb_info.fmspc != pck.fmspc:
        raise CollateralInvalid(
            f"tcbInfo.fmspc {tcb_info.fmspc.hex()} != PCK FMSPC {pck.fmspc.hex()}"
        )
    if tcb_info.pce_id != pck.pce_id:
        raise CollateralInvalid(
            f"tcbInfo.pceId {tcb_info.pce_id.hex()} != PCK PCE-ID {pck.pce_id.hex()}"
        )


def module_identity_id(major: int) -> str:
    return f"TDX_{major:02X}"


def check_tdx_module(tcb_info: TcbInfo, body: TdReportBody10) -> IdentityTcbLevel | None:
    """Match MRSIGNERSEAM/SEAMATTRIBUTES; return the module identity level (major > 0)."""
    major, minor = body.tee_tcb_svn[1], body.tee_tcb_svn[0]
    identity: TdxModuleIdentity | None = None
    module = tcb_info.tdx_module
    where = "tcbInfo.tdxModule"
    if major > 0:
        identity = find_module_identity(tcb_info.tdx_module_identities, major)
        module = identity.module
        where = f"tcbInfo.tdxModuleIdentities[{identity.id}]"
    if module is None:
        raise CollateralInvalid("TDX tcbInfo has no tdxModule")
    _match_module(module, body, where)
    if identity is None:
        return None
    for level in identity.tcb_levels:
        if minor >= level.isvsvn:
            return level
    raise TcbLevelNotFound(
        f"TEE_TCB_SVN[0] (TDX module SVN) {minor} is below every {where}.tcbLevels isvsvn "
        f"({_svns(identity.tcb_levels)})"
    )


def find_module_identity(identities: Sequence[TdxModuleIdentity], major: int) -> TdxModuleIdentity:
    wanted = module_identity_id(major)
    for identity in identities:
        if identity.id.upper() == wanted:
            return identity
    known = ", ".join(i.id for i in identities) or "none"
    raise TcbMismatch(
        f"TEE_TCB_SVN[1] (TDX module major version) {major}: no tcbInfo.tdxModuleIdentities "
        f"entry {wanted} (found {known})"
    )


def _match_module(module: TdxModule, body: TdReportBody10, where: str) -> None:
    if body.mr_signer_seam != module.mrsigner:
        raise TcbMismatch(
            f"MRSIGNERSEAM {body.mr_signer_seam.hex()} != {where}.mrsigner {module.mrsigner.hex()}"
        )
    _check_masked(
        ("SEAMATTRIBUTES", body.seam_attributes),
        module.attributes_mask,
        (f"{where}.attributes", module.attributes),
        TcbMismatch,
    )


def match_qe_identity(
    identity: EnclaveIdentity, qe_report: EnclaveReportBody, is_tdx: bool
) -> IdentityTcbLevel:
    wanted = "TD_QE" if is_tdx else "QE"
    if identity.id != wanted:
        raise QeIdentityMismatch(
            f"enclaveIdentity.id {identity.id} != {wanted} for a {'TDX' if is_tdx else 'SGX'} quote"
        )
    # The identity's hex strings are the report's bytes in memory order (little-endian u32).
    _check_masked(
        ("QE MISCSELECT", qe_report.misc_select.to_bytes(4, "little")),
        identity.miscselect_mask,
        ("enclaveIdentity.miscselect", identity.miscselect),
        QeIdentityMismatch,
    )
    _check_masked(
        ("QE ATTRIBUTES", qe_report.attributes),
        identity.attributes_mask,
        ("enclaveIdentity.attributes", identity.attributes),
        QeIdentityMismatch,
    )
    if qe_report.mr_signer != identity.mrsigner:
        raise QeIdentityMismatch(
            f"QE MRSIGNER {qe_report.mr_signer.hex()} != enclaveIdentity.mrsigner "
            f"{identity.mrsigner.hex()}"
        )
    if qe_report.isv_prod_id != identity.isvprodid:
        raise QeIdentityMismatch(
            f"QE ISVPRODID {qe_report.isv_prod_id} != enclaveIdentity.isvprodid "
            f"{identity.isvprodid}"
        )
    for level in identity.tcb_levels:
        if qe_report.isv_svn >= level.isvsvn:
            return level
    raise TcbLevelNotFound(
        f"QE ISVSVN {qe_report.isv_svn} is below every enclaveIdentity.tcbLevels isvsvn "
        f"({_svns(identity.tcb_levels)})"
    )


def select_platform_level(
    tcb_info: TcbInfo, pck: PckExtensions, tee_tcb_svn: bytes | None
) -> TcbLevel:
    """The platform level: SGX components and PCESVN, then (TDX) the TDX components."""
    sgx_level: TcbLevel | None = None
    for level in tcb_info.tcb_levels:
        if not _sgx_at_least(pck, level):
            continue
        sgx_level = sgx_level or level
        if tee_tcb_svn is None:
            return level
        if level.tdx_components is not None and _tdx_at_least(tee_tcb_svn, level.tdx_components):
            return level
    comps = ",".join(str(c) for c in pck.tcb.components)
    if sgx_level is None:
        raise TcbLevelNotFound(
            f"no tcbInfo.tcbLevels entry is met by the PCK SGX TCB components [{comps}] and "
            f"PCESVN {pck.tcb.pce_svn} (fmspc {tcb_info.fmspc.hex()}, "
            f"tcbEvaluationDataNumber {tcb_info.tcb_evaluation_data_number})"
        )
    raise TcbLevelNotFound(
        f"no tcbInfo.tcbLevels entry is met by TEE_TCB_SVN {(tee_tcb_svn or b'').hex()} together "
        f"with the PCK SGX TCB components [{comps}] and PCESVN {pck.tcb.pce_svn}"
    )


def _sgx_at_least(pck: PckExtensions, level: TcbLevel) -> bool:
    return pck.tcb.pce_svn >= level.pce_svn and all(
        mine >= theirs
        for mine, theirs in zip(pck.tcb.components, level.sgx_components, strict=True)
    )


def _tdx_at_least(tee_tcb_svn: bytes, components: tuple[int, ...]) -> bool:
    # Bytes 0-1 are the module's SVN and major version; with a versioned module identity they
    # were judged there, so the comparison starts at byte 2.
    start = 2 if tee_tcb_svn[1] > 0 else 0
    return all(tee_tcb_svn[index] >= components[index] for index in range(start, 16))


def converge(status: TcbStatus, component: TcbStatus) -> TcbStatus:
    """Combine the platform status with a component's (TDX module or QE) status."""
    if component is TcbStatus.REVOKED:
        return TcbStatus.REVOKED
    if component is not TcbStatus.UP_TO_DATE:
        # Any other component status counts as out of date (QVL treats every
        # non-UpToDate, non-Revoked QE or module level so).
        if status in (TcbStatus.UP_TO_DATE, TcbStatus.SW_HARDENING_NEEDED):
            return TcbStatus.OUT_OF_DATE
        if status in _CONFIGURATION:
            return TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED
    return status


def _check_masked(
    found: tuple[str, bytes],
    mask: bytes,
    wanted: tuple[str, bytes],
    error: type[EvidenceError],
) -> None:
    """Raise ``error`` unless ``found & mask == wanted``, naming both fields."""
    masked = bytes(a & b for a, b in zip(found[1], mask, strict=True))
    if masked != wanted[1]:
        raise error(
            f"{found[0]} {found[1].hex()} under mask {mask.hex()} != {wanted[0]} {wanted[1].hex()}"
        )


def _svns(levels: Sequence[IdentityTcbLevel]) -> str:
    return ", ".join(str(level.isvsvn) for level in levels)
