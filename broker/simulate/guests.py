"""Simulated guests: evidence sources (``keybroker_guest.evidence.EvidenceSource``) that sign
with the synthetic vendors of this package, for demos and tests.

A simulated guest ships the collateral of its synthetic vendor (the SNP kit's VCEK; the Intel
kit's TCB Info, QE Identity, CRLs and TCB Signing chain; the synthetic vTPM CA's chain), since
no vendor service knows its fake platform. A simulated vTPM guest is the real guest code
(``keybroker_guest.vtpm``) against swtpm, provisioned as the cloud would. The lean guest
client (``keybroker_guest``) imports :func:`simulated_source`, and only it, when asked to
``--simulate``: its one import of this package.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path

from keybroker_guest.evidence import BindingInput, EvidenceSource
from keybroker_guest.vtpm import VTPM_TEES, VtpmGuest

from broker.evidence.claims import Tee
from broker.evidence.sgx.claims import ATTRIBUTE_BITS
from broker.evidence.snp.abi import GuestPolicy
from broker.evidence.tdx.claims import TD_ATTRIBUTE_BITS
from broker.simulate.intel import IntelKit
from broker.simulate.nitro import FakeNitroAuthority
from broker.simulate.snp import SnpKit
from broker.simulate.swtpm import SimulatedPlatform, swtpm
from broker.simulate.tpm import AkAuthority
from broker.timeutil import utcnow

#: The measurement the demo's simulated guest reports, and the demo policy admits.
DEMO_MEASUREMENT = hashlib.sha384(b"keybroker demo guest image v1").digest()


@dataclass
class SimulatedSnp:
    """A report signed by the synthetic AMD chain of ``broker.simulate.snp``."""

    kit_dir: Path
    measurement: bytes = DEMO_MEASUREMENT
    debug: bool = False
    tee: str = "snp"

    def produce(self, binding: BindingInput) -> tuple[bytes, dict[str, bytes]]:
        kit = SnpKit.load(self.kit_dir)
        report = kit.report(
            report_data=binding.report_data,
            measurement=self.measurement,
            policy=GuestPolicy(abi_minor=0, abi_major=1, smt=True, debug=self.debug),
        )
        return kit.sign(report), kit.collateral()


#: MRTD of the demo's simulated TD (its virtual firmware); its RTMRs are zero by default.
DEMO_MR_TD = hashlib.sha384(b"keybroker demo TD firmware v1").digest()
#: MRENCLAVE and MRSIGNER of the demo's simulated SGX enclave.
DEMO_MR_ENCLAVE = hashlib.sha256(b"keybroker demo enclave v1").digest()
DEMO_MR_SIGNER = hashlib.sha256(b"keybroker demo enclave signing key").digest()
ZERO_RTMRS = (bytes(48),) * 4

# TD_ATTRIBUTES is a little-endian 64-bit field (Intel TDX Module ABI, "TD_ATTRIBUTES"). A
# production TD disables SEPT #VE (as the example TDX policy requires); DEBUG is bit 0.
_TD_PRODUCTION = 1 << TD_ATTRIBUTE_BITS["sept_ve_disable"]
_TD_DEBUG = 1 << TD_ATTRIBUTE_BITS["debug"]
# SECS.ATTRIBUTES (Intel SDM vol. 3D): FLAGS (little-endian 64-bit: INIT, MODE64BIT, and
# DEBUG for a debug enclave) then XFRM (x87, SSE, AVX: 0x7).
_ENCLAVE_FLAGS = 1 << ATTRIBUTE_BITS["init"] | 1 << ATTRIBUTE_BITS["mode64bit"]
_ENCLAVE_DEBUG = 1 << ATTRIBUTE_BITS["debug"]
_ENCLAVE_XFRM = (0x7).to_bytes(8, "little")


@dataclass
class SimulatedTdx:
    """A TDX quote (v4) signed by the synthetic Intel kit of ``broker.simulate.intel``.

    REPORTDATA carries the binding, as on a real TD (configfs-tsm ``inblob``). The quote's
    certification data holds the kit's PCK chain; the collateral the broker needs to appraise
    it (TCB Info, QE Identity, PCK and root CRLs, and the TCB Signing chain, which is not
    Intel's) travels in the attest request's ``collateral`` member. The collateral is issued
    at ``clock()`` because the broker verifies at its own clock: TCB Info, QE Identity and
    CRLs must be inside their windows (the kit's run 30 days from issue) then.
    """

    kit_dir: Path
    mr_td: bytes = DEMO_MR_TD
    rtmrs: Sequence[bytes] = ZERO_RTMRS
    debug: bool = False
    clock: Callable[[], datetime] = utcnow
    tee: str = "tdx"

    def produce(self, binding: BindingInput) -> tuple[bytes, dict[str, bytes]]:
        kit = IntelKit.load(self.kit_dir)
        attributes = _TD_PRODUCTION | (_TD_DEBUG if self.debug else 0)
        quote = kit.tdx_quote(
            binding.report_data,
            mr_td=self.mr_td,
            rtmrs=self.rtmrs,
            td_attributes=attributes.to_bytes(8, "little"),
        )
        return quote, kit.collateral(Tee.TDX, now=self.clock())


@dataclass
class SimulatedSgx:
    """An SGX quote (v3) signed by the synthetic Intel kit; REPORTDATA carries the binding
    and the kit's collateral travels with the request, as for :class:`SimulatedTdx`."""

    kit_dir: Path
    mr_enclave: bytes = DEMO_MR_ENCLAVE
    mr_signer: bytes = DEMO_MR_SIGNER
    isv_prod_id: int = 1
    isv_svn: int = 1
    debug: bool = False
    clock: Callable[[], datetime] = utcnow
    tee: str = "sgx"

    def produce(self, binding: BindingInput) -> tuple[bytes, dict[str, bytes]]:
        kit = IntelKit.load(self.kit_dir)
        flags = _ENCLAVE_FLAGS | (_ENCLAVE_DEBUG if self.debug else 0)
        quote = kit.sgx_quote(
            binding.report_data,
            mr_enclave=self.mr_enclave,
            mr_signer=self.mr_signer,
            attributes=flags.to_bytes(8, "little") + _ENCLAVE_XFRM,
            isv_prod_id=self.isv_prod_id,
            isv_svn=self.isv_svn,
        )
        return quote, kit.collateral(Tee.SGX, now=self.clock())


#: PCR0..2 of the demo's simulated enclave (image, kernel, application).
DEMO_PCRS = {
    index: hashlib.sha384(f"keybroker demo enclave pcr{index}".encode()).digest()
    for index in (0, 1, 2)
}
#: The PCRs an enclave started in debug mode reports as zeros (AWS Nitro Enclaves User Guide:
#: a debug-mode enclave's attestation documents carry zeroed measurements): image, kernel,
#: application and signing certificate. The real debug document in
#: tests/vectors/nitro/evervault-docs has exactly these zero; PCR3/PCR4 describe the parent.
DEBUG_ZERO_PCRS = (0, 1, 2, 8)


@dataclass
class SimulatedNitro:
    """An attestation document signed by the synthetic Nitro PKI of ``broker.simulate.nitro``.

    The document binds the challenge in its own fields: ``nonce`` is the challenge nonce and
    ``public_key`` the tee public key (DER SubjectPublicKeyInfo); no collateral is needed,
    since the document carries its certificate chain.
    """

    authority_dir: Path
    pcrs: dict[int, bytes] | None = None
    debug: bool = False
    clock: Callable[[], datetime] = utcnow
    tee: str = "nitro"

    def produce(self, binding: BindingInput) -> tuple[bytes, dict[str, bytes]]:
        return self.document(binding.public_key_der, binding.nonce), {}

    def document(self, public_key_der: bytes, nonce: bytes | None = None) -> bytes:
        """A document binding ``public_key_der`` (and ``nonce``, absent: null), as a KMS
        ``Recipient`` carries it (``keybroker guest evidence``, docs/kms.md)."""
        authority = FakeNitroAuthority.load(self.authority_dir)
        pcrs = dict(self.pcrs if self.pcrs is not None else DEMO_PCRS)
        if self.debug:
            pcrs.update({index: bytes(48) for index in DEBUG_ZERO_PCRS})
        for index in range(3, 16):
            pcrs.setdefault(index, bytes(48))
        return authority.sign_document(
            pcrs=pcrs, timestamp=self.clock(), nonce=nonce, public_key=public_key_der
        )


@dataclass
class SimulatedVtpm:
    """A vTPM guest on swtpm (state in ``kit_dir/swtpm-<tee>``), its platform provisioned
    from the synthetic kit in ``kit_dir``: the AMD kit (``snp-vtpm``), the Intel kit
    (``tdx-vtpm``) or a saved :class:`~broker.simulate.tpm.AkAuthority` (``tpm``)."""

    kit_dir: Path
    tee: str

    def produce(self, binding: BindingInput) -> tuple[bytes, dict[str, bytes]]:
        with swtpm(self.kit_dir / f"swtpm-{self.tee}") as tools:
            platform = SimulatedPlatform(tools)
            platform.boot()
            guest = VtpmGuest(self.tee, tools)
            if self.tee == "snp-vtpm":
                kit = SnpKit.load(self.kit_dir)
                platform.azure_snp(kit)
                guest.collateral = kit.collateral()
            elif self.tee == "tdx-vtpm":
                intel = IntelKit.load(self.kit_dir)
                guest.td_quote = platform.azure_tdx(intel)
                guest.collateral = intel.collateral(Tee.TDX, now=utcnow())
            else:
                authority = AkAuthority.load(self.kit_dir)
                platform.gce(authority)
                # A GCE guest reads only its AK certificate; the broker pins Google's
                # intermediates, but not the synthetic CA's, which travels as collateral.
                guest.collateral = {"ak_chain": authority.chain_pem()}
            return guest.produce(binding)


#: ``--simulate`` sources: each takes the kit directory (``broker.simulate``'s saved SNP kit,
#: Intel kit, Nitro authority or vTPM CA) and produces evidence signed by it.
SIMULATED: dict[str, Callable[[Path], EvidenceSource]] = {
    "snp": SimulatedSnp,
    "tdx": SimulatedTdx,
    "sgx": SimulatedSgx,
    "nitro": SimulatedNitro,
    **{tee: partial(SimulatedVtpm, tee=tee) for tee in VTPM_TEES},
}


def simulated_source(tee: str, kit: Path) -> EvidenceSource:
    """The simulated guest of ``tee`` signing with the kit saved in ``kit``."""
    return SIMULATED[tee](kit)
