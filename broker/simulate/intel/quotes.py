"""The quotes of the synthetic DCAP kit: the Quoting Enclave's report, SGX and TDX quotes.

The PCK key signs the QE report, whose REPORTDATA binds the attestation key
(SHA-256(attestation key || auth data)); the attestation key signs TDX (v4, v5) and SGX (v3,
v4, v5) quotes, whose certification data carries the PCK chain (type 5). :func:`event_log`
makes a CCEL event log and the RTMR values it replays to, for a TDX quote.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace

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
from broker.simulate.intel.pki import IntelPki, qe_prod_id, raw_signature


class IntelQuotes(IntelPki):
    """The PKI, and the quotes its attestation key signs."""

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
            isv_prod_id=qe_prod_id(tee),
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
            qe_report_signature=raw_signature(self.keys["pck"], report.to_bytes()),
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
        signature = raw_signature(self.keys["attestation"], unsigned.signed_bytes())
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
