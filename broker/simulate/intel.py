"""A synthetic Intel DCAP kit: fake Intel root, PCK chain, TCB Signing key, QE and quotes.

The kit mirrors Intel's real hierarchy so that every branch of ``broker.evidence.dcap`` can be
driven: a "Fake Intel SGX Root CA" issues a "Fake Intel SGX PCK Platform CA" (which issues a
PCK certificate with the SGX extensions: FMSPC, PCE-ID, TCB components, PCESVN, CPUSVN) and
a "Fake Intel SGX TCB Signing" certificate (which signs TCB Info and QE Identity exactly as
Intel's PCS does: ECDSA P-256 over the served bytes of the inner JSON member, hex r || s). The
PCK key signs the QE report, whose REPORTDATA binds the attestation key, and the attestation
key signs TDX (v4, v5) and SGX (v3, v4) quotes.

The root is trusted only when passed as ``extra_roots`` (:meth:`IntelKit.extra_roots`, named
``insecure-test-intel-sim``). ``save``/``load`` keep a kit in a directory, private keys 0600.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from broker.evidence.claims import Tee
from broker.evidence.dcap.abi import (
    BODY_TYPE_SGX,
    BODY_TYPE_TD10,
    BODY_TYPE_TD15,
    CERT_PCK_CHAIN,
    INTEL_QE_VENDOR_ID,
    TEE_TYPE_SGX,
    TEE_TYPE_TDX,
    CertificationData,
    EcdsaSignatureData,
    EnclaveReportBody,
    QeReportCertificationData,
    Quote,
    QuoteHeader,
    TdReportBody10,
    TdReportBody15,
)
from broker.evidence.dcap.pck import SGX_EXTENSION_OID
from broker.evidence.der import encode_tlv
from broker.evidence.trust import TrustedRoot, insecure_root
from broker.privatefiles import write_private_bytes
from broker.simulate.crl import without_next_update

SIM_ROOT_LABEL = "intel-sim"
_ECDSA = ec.ECDSA(hashes.SHA256())
_PEM = serialization.Encoding.PEM
_DAY = dt.timedelta(days=1)


# --- a minimal DER writer for the SGX extension ---------------------------------------------


def _oid(dotted: str) -> bytes:
    arcs = [int(arc) for arc in dotted.split(".")]
    body = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        rest = arc >> 7
        while rest:
            chunk.append(0x80 | (rest & 0x7F))
            rest >>= 7
        body.extend(reversed(chunk))
    return encode_tlv(0x06, bytes(body))


def _integer(value: int, tag: int = 0x02) -> bytes:
    return encode_tlv(tag, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _member(oid: str, value: bytes) -> bytes:
    return encode_tlv(0x30, _oid(oid) + value)


def sgx_extension_der(
    *,
    ppid: bytes,
    components: Sequence[int],
    pce_svn: int,
    cpu_svn: bytes,
    pce_id: bytes,
    fmspc: bytes,
    sgx_type: int = 0,
    platform_instance_id: bytes | None = None,
) -> bytes:
    """DER of the SGX extension value (PCK certificate profile §1.3.5)."""
    base = SGX_EXTENSION_OID
    tcb = b"".join(
        _member(f"{base}.2.{index}", _integer(svn)) for index, svn in enumerate(components, 1)
    )
    tcb += _member(f"{base}.2.17", _integer(pce_svn))
    tcb += _member(f"{base}.2.18", encode_tlv(0x04, cpu_svn))
    members = [
        _member(f"{base}.1", encode_tlv(0x04, ppid)),
        _member(f"{base}.2", encode_tlv(0x30, tcb)),
        _member(f"{base}.3", encode_tlv(0x04, pce_id)),
        _member(f"{base}.4", encode_tlv(0x04, fmspc)),
        _member(f"{base}.5", _integer(sgx_type, tag=0x0A)),
    ]
    if platform_instance_id is not None:
        members.append(_member(f"{base}.6", encode_tlv(0x04, platform_instance_id)))
        flags = b"".join(
            _member(f"{base}.7.{index}", encode_tlv(0x01, b"\xff" if on else b"\x00"))
            for index, on in ((1, True), (2, False), (3, True))
        )
        members.append(_member(f"{base}.7", encode_tlv(0x30, flags)))
    return encode_tlv(0x30, b"".join(members))


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


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the kit --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Platform:
    """What the fake platform reports (PCK extensions, QE, TDX module)."""

    fmspc: bytes = bytes.fromhex("5a5a5a000000")
    pce_id: bytes = bytes(2)
    components: tuple[int, ...] = (5, 5, 13, 2, 3, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0)
    pce_svn: int = 13
    qe_svn: int = 8
    qe_mrsigner: bytes = bytes.fromhex("5a" * 32)
    tee_tcb_svn: bytes = bytes.fromhex("03000500000000000000000000000000")
    mr_seam: bytes = bytes.fromhex("5e" * 48)
    mr_signer_seam: bytes = bytes(48)

    @property
    def cpu_svn(self) -> bytes:
        return bytes(self.components)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        for name, value in asdict(self).items():
            doc[name] = value.hex() if isinstance(value, bytes) else value
        doc["components"] = list(self.components)
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Platform:
        values: dict[str, Any] = {}
        for name, value in doc.items():
            if name == "components":
                values[name] = tuple(int(v) for v in value)
            elif isinstance(value, str):
                values[name] = bytes.fromhex(value)
            else:
                values[name] = int(value)
        return cls(**values)


_KEY_FILES = ("root", "platform_ca", "pck", "tcb_signing", "attestation")


@dataclass(frozen=True)
class IntelKit:
    keys: Mapping[str, ec.EllipticCurvePrivateKey]
    certificates: Mapping[str, x509.Certificate]
    platform: Platform = field(default_factory=Platform)

    # -- creation and storage ---------------------------------------------------------------

    @classmethod
    def create(
        cls,
        *,
        now: dt.datetime,
        platform: Platform | None = None,
        validity: Mapping[str, tuple[dt.datetime, dt.datetime]] | None = None,
    ) -> IntelKit:
        """A new kit at ``now``; ``validity`` overrides the (not before, not after) of any of
        ``root``, ``platform_ca``, ``pck``, ``tcb_signing`` (by default a year before ``now``
        until 9000, 5000, 2500 and 2000 days after it)."""
        platform = platform or Platform()
        keys = {name: ec.generate_private_key(ec.SECP256R1()) for name in _KEY_FILES}
        not_before = now - 365 * _DAY
        windows = {
            "root": (not_before, now + 9000 * _DAY),
            "platform_ca": (not_before, now + 5000 * _DAY),
            "pck": (not_before, now + 2500 * _DAY),
            "tcb_signing": (not_before, now + 2000 * _DAY),
            **(validity or {}),
        }
        root = _certificate(
            "Fake Intel SGX Root CA", keys["root"], None, keys["root"], windows["root"], ca=True
        )
        ca = _certificate(
            "Fake Intel SGX PCK Platform CA",
            keys["platform_ca"],
            root,
            keys["root"],
            windows["platform_ca"],
            ca=True,
        )
        signing = _certificate(
            "Fake Intel SGX TCB Signing",
            keys["tcb_signing"],
            root,
            keys["root"],
            windows["tcb_signing"],
        )
        pck = _pck_certificate(
            platform, keys["pck"], ca, keys["platform_ca"], now, validity=windows["pck"]
        )
        certificates = {"root": root, "platform_ca": ca, "pck": pck, "tcb_signing": signing}
        return cls(keys=keys, certificates=certificates, platform=platform)

    def save(self, directory: Path) -> None:
        """Write keys (0600), certificates and the platform description to ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        for name, key in self.keys.items():
            pem = key.private_bytes(
                _PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            write_private_bytes(directory / f"{name}.key", pem)
        for name, cert in self.certificates.items():
            (directory / f"{name}.pem").write_bytes(cert.public_bytes(_PEM))
        (directory / "platform.json").write_text(json.dumps(self.platform.to_json(), indent=2))

    @classmethod
    def load(cls, directory: Path) -> IntelKit:
        keys = {}
        for name in _KEY_FILES:
            key = serialization.load_pem_private_key(
                (directory / f"{name}.key").read_bytes(), password=None
            )
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{name}.key is not an EC private key")
            keys[name] = key
        certificates = {
            name: x509.load_pem_x509_certificate((directory / f"{name}.pem").read_bytes())
            for name in ("root", "platform_ca", "pck", "tcb_signing")
        }
        platform = Platform.from_json(json.loads((directory / "platform.json").read_text()))
        return cls(keys=keys, certificates=certificates, platform=platform)

    def with_pck(self, platform: Platform, *, now: dt.datetime) -> IntelKit:
        """The same roots and keys with a PCK certificate re-issued for ``platform``."""
        pck = _pck_certificate(
            platform,
            self.keys["pck"],
            self.certificates["platform_ca"],
            self.keys["platform_ca"],
            now,
        )
        return replace(self, certificates={**self.certificates, "pck": pck}, platform=platform)

    def extra_roots(self) -> tuple[TrustedRoot, ...]:
        return (insecure_root(self.certificates["root"], SIM_ROOT_LABEL),)

    # -- certificates and CRLs --------------------------------------------------------------

    def pck_chain(self) -> bytes:
        return b"".join(
            self.certificates[name].public_bytes(_PEM) for name in ("pck", "platform_ca", "root")
        )

    def tcb_signing_chain(self) -> bytes:
        return b"".join(
            self.certificates[name].public_bytes(_PEM) for name in ("tcb_signing", "root")
        )

    def pck_crl(
        self,
        *,
        now: dt.datetime,
        revoked: Sequence[int] = (),
        days: int | None = 30,
        this_update: dt.datetime | None = None,
    ) -> bytes:
        """The PCK CA's DER CRL: thisUpdate a day before ``now`` unless given, nextUpdate
        ``days`` after ``now`` (none at all when ``days`` is None)."""
        return self._crl("platform_ca", now, revoked, days, this_update)

    def root_crl(
        self,
        *,
        now: dt.datetime,
        revoked: Sequence[int] = (),
        days: int | None = 365,
        this_update: dt.datetime | None = None,
    ) -> bytes:
        """The root's DER CRL, as :meth:`pck_crl`."""
        return self._crl("root", now, revoked, days, this_update)

    def _crl(
        self,
        issuer: str,
        now: dt.datetime,
        revoked: Sequence[int],
        days: int | None,
        this_update: dt.datetime | None,
    ) -> bytes:
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificates[issuer].subject)
            .last_update(this_update or now - _DAY)
            .next_update(now + (days or 0) * _DAY)
        )
        for serial in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(now - _DAY)
                .build()
            )
        crl = builder.sign(self.keys[issuer], hashes.SHA256())
        encoded = crl.public_bytes(serialization.Encoding.DER)
        if days is None:
            return without_next_update(encoded, lambda tbs: self.keys[issuer].sign(tbs, _ECDSA))
        return encoded

    # -- signed collateral ------------------------------------------------------------------

    def _signed(self, member: str, body: Mapping[str, Any], key: str = "tcb_signing") -> bytes:
        inner = json.dumps(body, separators=(",", ":")).encode()
        signature = _raw_signature(self.keys[key], inner)
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
                "issueDate": _iso(issue_date or now - _DAY),
                "nextUpdate": _iso(next_update or now + 30 * _DAY),
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
            "issueDate": _iso(issue_date or now - _DAY),
            "nextUpdate": _iso(next_update or now + 30 * _DAY),
            "tcbEvaluationDataNumber": evaluation_data_number,
            "miscselect": miscselect.hex().upper(),
            "miscselectMask": "FFFFFFFF",
            "attributes": attributes.hex().upper(),
            "attributesMask": attributes_mask.hex().upper(),
            "mrsigner": (mrsigner or self.platform.qe_mrsigner).hex().upper(),
            "isvprodid": _qe_prod_id(tee) if isvprodid is None else isvprodid,
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
        (directory / "root.pem").write_bytes(self.certificates["root"].public_bytes(_PEM))

    # -- quotes -----------------------------------------------------------------------------

    def qe_report(self, tee: Tee, auth_data: bytes = bytes(32)) -> EnclaveReportBody:
        """The QE's report: REPORTDATA = SHA-256(attestation key || auth data) || 0^32."""
        binding = hashlib.sha256(self.attestation_key_raw + auth_data).digest()
        return EnclaveReportBody(
            cpu_svn=self.platform.cpu_svn,
            misc_select=0,
            reserved1=bytes(12),
            isv_ext_prod_id=bytes(16),
            attributes=bytes.fromhex("11000000000000000700000000000000"),
            mr_enclave=hashlib.sha256(b"fake quoting enclave").digest(),
            reserved2=bytes(32),
            mr_signer=self.platform.qe_mrsigner,
            reserved3=bytes(32),
            config_id=bytes(64),
            isv_prod_id=_qe_prod_id(tee),
            isv_svn=self.platform.qe_svn,
            config_svn=0,
            reserved4=bytes(42),
            isv_family_id=bytes(16),
            report_data=binding + bytes(32),
        )

    @property
    def attestation_key_raw(self) -> bytes:
        numbers = self.keys["attestation"].public_key().public_numbers()
        return numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")

    def sign_quote(
        self,
        header: QuoteHeader,
        body: EnclaveReportBody | TdReportBody10,
        *,
        tee: Tee,
        body_type: int | None = None,
        qe_report: EnclaveReportBody | None = None,
        auth_data: bytes = bytes(32),
        certification_data: CertificationData | None = None,
    ) -> bytes:
        """Sign ``header || [descriptor] || body`` and attach the QE certification data
        (by default type 5, the PEM PCK chain)."""
        report = qe_report or self.qe_report(tee, auth_data)
        qe = QeReportCertificationData(
            qe_report=report,
            qe_report_signature=_raw_signature(self.keys["pck"], report.to_bytes()),
            qe_auth_data=auth_data,
            certification_data=certification_data
            or CertificationData(CERT_PCK_CHAIN, self.pck_chain()),
        )
        unsigned = Quote(
            header,
            body,
            EcdsaSignatureData(bytes(64), self.attestation_key_raw, qe, header.version >= 4),
            body_type,
        )
        signature = _raw_signature(self.keys["attestation"], unsigned.signed_bytes())
        signed = replace(
            unsigned, signature_data=replace(unsigned.signature_data, signature=signature)
        )
        return signed.to_bytes()

    def _header(self, version: int, tee_type: int) -> QuoteHeader:
        svns = (self.platform.qe_svn, self.platform.pce_svn) if version == 3 else (0, 0)
        return QuoteHeader(
            version=version,
            attestation_key_type=2,
            tee_type=tee_type,
            qe_svn=svns[0],
            pce_svn=svns[1],
            qe_vendor_id=INTEL_QE_VENDOR_ID,
            user_data=bytes(20),
        )

    def tdx_quote(
        self,
        report_data: bytes = bytes(64),
        *,
        version: int = 4,
        mr_td: bytes = bytes.fromhex("7d" * 48),
        rtmrs: Sequence[bytes] = (bytes(48),) * 4,
        td_attributes: bytes = bytes.fromhex("0000001000000000"),
        xfam: bytes = bytes.fromhex("e702060000000000"),
        tee_tcb_svn: bytes | None = None,
        mr_signer_seam: bytes | None = None,
        seam_attributes: bytes = bytes(8),
        mr_config_id: bytes = bytes(48),
        mr_owner: bytes = bytes(48),
        mr_owner_config: bytes = bytes(48),
        mr_service_td: bytes | None = None,
    ) -> bytes:
        """A signed TDX quote (v4, or v5 with a TD 1.5 body when ``mr_service_td`` is given)."""
        fields = {
            "tee_tcb_svn": tee_tcb_svn or self.platform.tee_tcb_svn,
            "mr_seam": self.platform.mr_seam,
            "mr_signer_seam": (
                self.platform.mr_signer_seam if mr_signer_seam is None else mr_signer_seam
            ),
            "seam_attributes": seam_attributes,
            "td_attributes": td_attributes,
            "xfam": xfam,
            "mr_td": mr_td,
            "mr_config_id": mr_config_id,
            "mr_owner": mr_owner,
            "mr_owner_config": mr_owner_config,
            "rtmr0": rtmrs[0],
            "rtmr1": rtmrs[1],
            "rtmr2": rtmrs[2],
            "rtmr3": rtmrs[3],
            "report_data": report_data,
        }
        body: TdReportBody10
        body_type = None
        if version == 5:
            if mr_service_td is None:
                body, body_type = TdReportBody10(**fields), BODY_TYPE_TD10
            else:
                body = TdReportBody15(**fields, tee_tcb_svn2=bytes(16), mr_service_td=mr_service_td)
                body_type = BODY_TYPE_TD15
        else:
            body = TdReportBody10(**fields)
        return self.sign_quote(
            self._header(version, TEE_TYPE_TDX), body, tee=Tee.TDX, body_type=body_type
        )

    def sgx_quote(
        self,
        report_data: bytes = bytes(64),
        *,
        version: int = 3,
        mr_enclave: bytes = bytes.fromhex("e1" * 32),
        mr_signer: bytes = bytes.fromhex("51" * 32),
        attributes: bytes = bytes.fromhex("05000000000000000700000000000000"),
        isv_prod_id: int = 1,
        isv_svn: int = 1,
        config_svn: int = 0,
        config_id: bytes = bytes(64),
    ) -> bytes:
        """A signed SGX quote (v3, v4, or v5 with an SGX body)."""
        body = EnclaveReportBody(
            cpu_svn=self.platform.cpu_svn,
            misc_select=0,
            reserved1=bytes(12),
            isv_ext_prod_id=bytes(16),
            attributes=attributes,
            mr_enclave=mr_enclave,
            reserved2=bytes(32),
            mr_signer=mr_signer,
            reserved3=bytes(32),
            config_id=config_id,
            isv_prod_id=isv_prod_id,
            isv_svn=isv_svn,
            config_svn=config_svn,
            reserved4=bytes(42),
            isv_family_id=bytes(16),
            report_data=report_data,
        )
        return self.sign_quote(
            self._header(version, TEE_TYPE_SGX),
            body,
            tee=Tee.SGX,
            body_type=BODY_TYPE_SGX if version == 5 else None,
        )


def event_log(
    events: Sequence[tuple[int, int, bytes]], *, fill: int = 0xFF, size: int = 4096
) -> tuple[bytes, tuple[bytes, bytes, bytes, bytes]]:
    """A CCEL area with (MR index, event type, data) events digested with SHA-384, and the
    RTMR0-3 values it replays to (for :meth:`IntelKit.tdx_quote`)."""
    spec = b"Spec ID Event03\x00" + bytes(8) + (1).to_bytes(4, "little")
    spec += (0x000C).to_bytes(2, "little") + (48).to_bytes(2, "little") + b"\x00"
    log = bytearray(
        (0).to_bytes(4, "little")
        + (3).to_bytes(4, "little")  # EV_NO_ACTION
        + bytes(20)
        + len(spec).to_bytes(4, "little")
        + spec
    )
    registers = [bytes(48)] * 4
    for mr_index, event_type, data in events:
        digest = hashlib.sha384(data).digest()
        log += mr_index.to_bytes(4, "little") + event_type.to_bytes(4, "little")
        log += (1).to_bytes(4, "little") + (0x000C).to_bytes(2, "little") + digest
        log += len(data).to_bytes(4, "little") + data
        registers[mr_index - 1] = hashlib.sha384(registers[mr_index - 1] + digest).digest()
    log += bytes([fill]) * max(size - len(log), 0)
    return bytes(log), (registers[0], registers[1], registers[2], registers[3])


def _qe_prod_id(tee: Tee) -> int:
    # Intel's QE has ISVPRODID 1; the TD Quoting Enclave has 2 (real QE Identities).
    return 2 if tee is Tee.TDX else 1


def _raw_signature(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, _ECDSA))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _pck_certificate(
    platform: Platform,
    key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
    *,
    validity: tuple[dt.datetime, dt.datetime] | None = None,
) -> x509.Certificate:
    extension = sgx_extension_der(
        ppid=hashlib.sha256(b"ppid").digest()[:16],
        components=platform.components,
        pce_svn=platform.pce_svn,
        cpu_svn=platform.cpu_svn,
        pce_id=platform.pce_id,
        fmspc=platform.fmspc,
        platform_instance_id=hashlib.sha256(b"instance").digest()[:16],
    )
    return _certificate(
        "Fake Intel SGX PCK Certificate",
        key,
        ca,
        ca_key,
        validity or (now - 365 * _DAY, now + 2500 * _DAY),
        extension=extension,
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "keybroker test kit"),
        ]
    )


def _certificate(
    common_name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    validity: tuple[dt.datetime, dt.datetime],
    *,
    ca: bool = False,
    extension: bytes | None = None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name) if issuer is None else issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if extension is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(SGX_EXTENSION_OID), extension),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())
