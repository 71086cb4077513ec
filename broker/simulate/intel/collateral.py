"""The signed collateral of the synthetic DCAP kit: TCB Info and QE Identity documents.

The kit's TCB Signing key signs them exactly as Intel's PCS does: ECDSA P-256 over the served
bytes of the inner JSON member, hex ``r || s`` (``IntelCollateral._signed``). By default TCB
Info has one UpToDate level that the platform meets exactly and an older OutOfDate one; QE
Identity likewise; :meth:`IntelCollateral.collateral` gives a whole valid set, CRLs and the
TCB Signing chain included, under the names the verifier reads.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker.evidence.claims import Tee
from broker.simulate.intel.pki import DAY, PEM, IntelPki, qe_prod_id, raw_signature
from broker.timeutil import iso

# --- collateral shapes ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Level:
    """A TCB Info level; ``None`` components default to the kit's platform."""

    status: str
    sgx: Sequence[int] | None = None
    pce_svn: int | None = None
    tdx: Sequence[int] | None = None
    advisories: Sequence[str] = ()
    date: str = "2024-03-13T00:00:00Z"


@dataclass(frozen=True, slots=True)
class IdentityLevel:
    """A QE Identity or TDX module identity level."""

    isvsvn: int
    status: str = "UpToDate"
    advisories: Sequence[str] = ()
    date: str = "2024-03-13T00:00:00Z"

    def to_json(self) -> dict[str, Any]:
        return _level_json({"isvsvn": self.isvsvn}, self.status, self.advisories, self.date)


@dataclass(frozen=True, slots=True)
class ModuleIdentity:
    """An entry of ``tdxModuleIdentities`` (id ``TDX_<major>``)."""

    major: int
    levels: Sequence[IdentityLevel]
    mrsigner: bytes = bytes(48)
    attributes: bytes = bytes(8)
    attributes_mask: bytes = b"\xff" * 8

    def to_json(self) -> dict[str, Any]:
        return {
            "id": f"TDX_{self.major:02X}",
            **_module_json(self.mrsigner, self.attributes, self.attributes_mask),
            "tcbLevels": [level.to_json() for level in self.levels],
        }


def _level_json(
    tcb: dict[str, Any], status: str, advisories: Sequence[str], date: str
) -> dict[str, Any]:
    level: dict[str, Any] = {"tcb": tcb, "tcbDate": date, "tcbStatus": status}
    if advisories:
        level["advisoryIDs"] = list(advisories)
    return level


def _module_json(mrsigner: bytes, attributes: bytes, mask: bytes) -> dict[str, str]:
    return {
        "mrsigner": mrsigner.hex().upper(),
        "attributes": attributes.hex().upper(),
        "attributesMask": mask.hex().upper(),
    }


def _pcs_time(value: dt.datetime) -> str:
    """A time as Intel's PCS writes one in collateral: UTC, to the second, with Z."""
    return iso(value.astimezone(dt.UTC), zulu=True, timespec="seconds")


class IntelCollateral(IntelPki):
    """The PKI, and the collateral its TCB Signing key signs."""

    def _signed(self, member: str, body: Mapping[str, Any], key: str = "tcb_signing") -> bytes:
        inner = json.dumps(body, separators=(",", ":")).encode()
        signature = raw_signature(self.keys[key], inner)
        return (
            b'{"'
            + member.encode()
            + b'":'
            + inner
            + b',"signature":"'
            + signature.hex().encode()
            + b'"}'
        )

    def tcb_info(
        self,
        tee: Tee,
        *,
        now: dt.datetime,
        levels: Sequence[Level] | None = None,
        version: int = 3,
        module_identities: Sequence[ModuleIdentity] = (),
        module_mrsigner: bytes | None = None,
        fmspc: bytes | None = None,
        tee_id: str | None = None,
        issue_date: dt.datetime | None = None,
        next_update: dt.datetime | None = None,
        evaluation_data_number: int = 17,
    ) -> bytes:
        """Signed TCB Info; by default one UpToDate level that the platform meets exactly and
        an older OutOfDate level."""
        platform = self.platform
        is_tdx = tee is Tee.TDX
        if levels is None:
            older = tuple(max(c - 1, 0) for c in platform.components)
            levels = (
                Level("UpToDate"),
                Level(
                    "OutOfDate",
                    sgx=older,
                    advisories=("INTEL-SA-00001",),
                    date="2020-01-01T00:00:00Z",
                ),
            )
        body: dict[str, Any] = {}
        if version >= 3:
            body["id"] = tee_id or ("TDX" if is_tdx else "SGX")
        body.update(
            {
                "version": version,
                "issueDate": _pcs_time(issue_date or now - DAY),
                "nextUpdate": _pcs_time(next_update or now + 30 * DAY),
                "fmspc": (fmspc or platform.fmspc).hex(),
                "pceId": platform.pce_id.hex(),
                "tcbType": 0,
                "tcbEvaluationDataNumber": evaluation_data_number,
            }
        )
        if is_tdx:
            body["tdxModule"] = _module_json(
                platform.mr_signer_seam if module_mrsigner is None else module_mrsigner,
                bytes(8),
                b"\xff" * 8,
            )
            if module_identities:
                body["tdxModuleIdentities"] = [m.to_json() for m in module_identities]
        body["tcbLevels"] = [self._level_json(level, version, is_tdx) for level in levels]
        return self._signed("tcbInfo", body)

    def _level_json(self, level: Level, version: int, is_tdx: bool) -> dict[str, Any]:
        sgx = list(self.platform.components if level.sgx is None else level.sgx)
        pce_svn = self.platform.pce_svn if level.pce_svn is None else level.pce_svn
        tcb: dict[str, Any]
        if version == 2:
            tcb = {f"sgxtcbcomp{i:02d}svn": svn for i, svn in enumerate(sgx, 1)}
            tcb["pcesvn"] = pce_svn
        else:
            tcb = {"sgxtcbcomponents": [{"svn": svn} for svn in sgx], "pcesvn": pce_svn}
            if is_tdx:
                tdx = list(self.platform.tee_tcb_svn if level.tdx is None else level.tdx)
                tcb["tdxtcbcomponents"] = [{"svn": svn} for svn in tdx]
        return _level_json(tcb, level.status, level.advisories, level.date)

    def qe_identity(
        self,
        tee: Tee,
        *,
        now: dt.datetime,
        levels: Sequence[IdentityLevel] | None = None,
        identity_id: str | None = None,
        mrsigner: bytes | None = None,
        isvprodid: int | None = None,
        miscselect: bytes = bytes(4),
        attributes: bytes = bytes.fromhex("11000000000000000000000000000000"),
        attributes_mask: bytes = bytes.fromhex("fbffffffffffffff0000000000000000"),
        issue_date: dt.datetime | None = None,
        next_update: dt.datetime | None = None,
        evaluation_data_number: int = 17,
    ) -> bytes:
        if levels is None:
            levels = (
                IdentityLevel(self.platform.qe_svn),
                IdentityLevel(max(self.platform.qe_svn - 2, 0), "OutOfDate", ("INTEL-SA-00002",)),
            )
        body = {
            "id": identity_id or ("TD_QE" if tee is Tee.TDX else "QE"),
            "version": 2,
            "issueDate": _pcs_time(issue_date or now - DAY),
            "nextUpdate": _pcs_time(next_update or now + 30 * DAY),
            "tcbEvaluationDataNumber": evaluation_data_number,
            "miscselect": miscselect.hex().upper(),
            "miscselectMask": "FFFFFFFF",
            "attributes": attributes.hex().upper(),
            "attributesMask": attributes_mask.hex().upper(),
            "mrsigner": (mrsigner or self.platform.qe_mrsigner).hex().upper(),
            "isvprodid": qe_prod_id(tee) if isvprodid is None else isvprodid,
            "tcbLevels": [level.to_json() for level in levels],
        }
        return self._signed("enclaveIdentity", body)

    def collateral(self, tee: Tee, *, now: dt.datetime, **overrides: bytes) -> dict[str, bytes]:
        """A complete, valid collateral set for ``tee`` at ``now`` (names as the verifier's)."""
        collateral = {
            "tcb_info": self.tcb_info(tee, now=now),
            "qe_identity": self.qe_identity(tee, now=now),
            "pck_crl": self.pck_crl(now=now),
            "root_crl": self.root_crl(now=now),
            "tcb_signing_chain": self.tcb_signing_chain(),
        }
        collateral.update(overrides)
        return collateral

    def write_collateral(self, directory: Path, tee: Tee, *, now: dt.datetime) -> None:
        """Collateral under the file names ``keybroker evidence verify --collateral`` reads."""
        directory.mkdir(parents=True, exist_ok=True)
        names = {
            "tcb_info": "tcbInfo.json",
            "qe_identity": "qeIdentity.json",
            "pck_crl": "pck_crl.der",
            "root_crl": "root_crl.der",
            "tcb_signing_chain": "tcb_signing_chain.pem",
        }
        for name, data in self.collateral(tee, now=now).items():
            (directory / names[name]).write_bytes(data)
        (directory / "root.pem").write_bytes(self.certificates["root"].public_bytes(PEM))
