"""What identifies each piece of collateral in the store: (tee, kind, lookup key).

Pure functions, shared by the attest-time lookups (which derive keys from evidence) and by
``keybroker collateral import`` (which derives the same keys from the documents), so that an
imported document is found exactly where a lookup searches:

========  =====================  ================================================  ==========
tee       kind                   lookup key                                        goes stale
========  =====================  ================================================  ==========
snp       ``vcek``               ``Milan/<hwid hex>?blSPL=..&teeSPL=..&snpSPL=..``  never
                                 ``&ucodeSPL=..`` (``&fmcSPL=..`` on Turin): the
                                 AMD KDS request that serves it, less ``/vcek/v1/``
snp       ``vlek``               ``Milan?blSPL=..``: no chip id (a VLEK is per       never
                                 cloud provider, not per chip)
snp       ``cert_chain``         ``Milan/vcek`` or ``Milan/vlek`` (ASK or ASVK       never
                                 + ARK)
snp       ``crl``                ``Milan``: the ARK's CRL, complete for all that     nextUpdate
                                 ARK issued (ASKs and ASVKs, RFC 5280 §5)
tdx/sgx   ``tcb_info``           FMSPC, lowercase hex                              nextUpdate
tdx/sgx   ``qe_identity``        the identity id: ``TD_QE`` (tdx), ``QE`` (sgx)     nextUpdate
sgx       ``pck_crl``            ``platform`` or ``processor`` (the PCK's CA)       nextUpdate
sgx       ``root_crl``           ``root``                                          nextUpdate
sgx       ``tcb_signing_chain``  ``latest``: TCB Signing certificate + root         never
========  =====================  ================================================  ==========

PCK CRLs, the Root CA CRL and the TCB Signing chain belong to the Intel SGX PKI, which TDX
shares: they are stored once, under ``sgx``, for quotes of both TEEs.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from broker.collateral.amd_kds import spl_params
from broker.errors import CollateralInvalid, CollateralUnavailable
from broker.evidence.claims import Tee
from broker.evidence.snp.abi import AttestationReport, SigningKey, TcbParts
from broker.evidence.snp.endorsement import Endorsement, spl_layout
from broker.evidence.snp.products import Product, parse_product, product_from_cpuid
from broker.evidence.trust import common_name

# Kinds, named as the verifiers name their collateral.
VCEK = "vcek"
VLEK = "vlek"
CERT_CHAIN = "cert_chain"
CRL = "crl"
TCB_INFO = "tcb_info"
QE_IDENTITY = "qe_identity"
PCK_CRL = "pck_crl"
ROOT_CRL = "root_crl"
TCB_SIGNING_CHAIN = "tcb_signing_chain"

#: The namespace of the Intel SGX PKI items TDX quotes share with SGX quotes.
INTEL_PKI = Tee.SGX.value
ROOT_CRL_KEY = "root"
TCB_SIGNING_KEY = "latest"
QE_IDENTITY_ID = {Tee.TDX: "TD_QE", Tee.SGX: "QE"}


@dataclass(frozen=True, slots=True, order=True)
class ItemKey:
    """Where one document lives in the ``collateral`` table."""

    tee: str
    kind: str
    lookup_key: str

    def __str__(self) -> str:
        return f"{self.tee} {self.kind} {self.lookup_key}"


# --- SEV-SNP -----------------------------------------------------------------------------------


def spl_query(product: Product, tcb: TcbParts) -> str:
    """The SPL query as AMD KDS takes it (publication 57230, §4.1)."""
    return urlencode(spl_params(product, tcb))


@dataclass(frozen=True, slots=True)
class EndorsementRef:
    """The VCEK or VLEK a report needs: its kind, product, chip (VCEK only) and TCB."""

    kind: str
    product: Product
    hwid: bytes | None
    tcb: TcbParts

    @property
    def key(self) -> ItemKey:
        chip = f"/{self.hwid.hex()}" if self.hwid is not None else ""
        return ItemKey(
            Tee.SNP.value,
            self.kind,
            f"{self.product.value}{chip}?{spl_query(self.product, self.tcb)}",
        )

    @property
    def cert_chain_key(self) -> ItemKey:
        return cert_chain_key(self.product, self.kind)

    @property
    def crl_key(self) -> ItemKey:
        return crl_key(self.product)


def cert_chain_key(product: Product, kind: str) -> ItemKey:
    return ItemKey(Tee.SNP.value, CERT_CHAIN, f"{product.value}/{kind}")


def crl_key(product: Product) -> ItemKey:
    return ItemKey(Tee.SNP.value, CRL, product.value)


def report_endorsements(
    report: AttestationReport, product_hint: bytes | None = None
) -> list[EndorsementRef]:
    """The endorsement ``report`` needs, one candidate per product it may come from.

    The product is the report's CPUID (v3+), else ``product_hint`` (the ``product``
    collateral), else unknown: then every product is a candidate (a v2 report from Milan or
    Genoa). ``CollateralUnavailable`` when no endorsement can be named: an unsigned report,
    or a VCEK-signed one whose CHIP_ID is masked.
    """
    signing_key = report.signer_info.signing_key
    if signing_key is SigningKey.NONE:
        raise CollateralUnavailable("SIGNER_INFO.SIGNING_KEY 7: the report is not signed")
    kind = VCEK if signing_key is SigningKey.VCEK else VLEK
    if kind == VCEK and (report.signer_info.mask_chip_key or not any(report.chip_id)):
        raise CollateralUnavailable("CHIP_ID is masked: the VCEK cannot be looked up by chip id")
    hinted = parse_product(product_hint.decode(errors="replace")) if product_hint else None
    if report.cpuid is not None:
        products = [product_from_cpuid(report.cpuid)]
    elif hinted is not None:
        products = [hinted]
    else:
        products = list(Product)
    return [
        EndorsementRef(
            kind,
            product,
            report.chip_id[: product.hwid_size] if kind == VCEK else None,
            report.reported_tcb.parts(product.is_turin),
        )
        for product in products
    ]


def endorsement_ref(endorsement: Endorsement) -> EndorsementRef:
    """Where a VCEK or VLEK certificate is stored, from its AMD extensions (publication
    57230, §3): product from productName (else from the issuer, ``SEV-Milan`` /
    ``SEV-VLEK-Milan``), chip from hwID, TCB from the SPL extensions. A missing extension
    is ``CollateralInvalid``."""
    kind = endorsement.kind
    if kind not in (VCEK, VLEK):
        raise CollateralInvalid("the certificate is neither a SEV-VCEK nor a SEV-VLEK")
    product = product_of_endorsement(endorsement)
    named: dict[str, int] = {}
    for name, arc in spl_layout(product.is_turin):
        if name is None:
            continue
        if arc not in endorsement.spls:
            raise CollateralInvalid(
                f"{kind.upper()} lacks SPL extension 1.3.6.1.4.1.3704.1.3.{arc}"
            )
        named[name] = endorsement.spls[arc]
    hwid = None
    if kind == VCEK:
        if endorsement.hwid is None:
            raise CollateralInvalid("VCEK lacks the hwID extension (1.3.6.1.4.1.3704.1.4)")
        if len(endorsement.hwid) != product.hwid_size:
            raise CollateralInvalid(
                f"VCEK hwID is {len(endorsement.hwid)} bytes; {product.value} uses "
                f"{product.hwid_size}"
            )
        hwid = endorsement.hwid
    return EndorsementRef(kind, product, hwid, TcbParts(**named))


def product_of_endorsement(endorsement: Endorsement) -> Product:
    if endorsement.product_name is not None:
        product = parse_product(endorsement.product_name)
        if product is None:
            raise CollateralInvalid(
                f"productName '{endorsement.product_name}' is not Milan, Genoa or Turin"
            )
        return product
    product = amd_product_of_name(_issuer_common_name(endorsement))
    if product is None:
        raise CollateralInvalid("the certificate names no product (no productName, unknown issuer)")
    return product


def _issuer_common_name(endorsement: Endorsement) -> str:
    return common_name(endorsement.certificate.issuer)


def amd_product_of_name(common_name: str) -> Product | None:
    """``ARK-Milan``, ``SEV-Milan``, ``SEV-VLEK-Milan`` -> Milan (AMD's CA common names)."""
    return parse_product(common_name.rsplit("-", 1)[-1]) if "-" in common_name else None


# --- Intel DCAP --------------------------------------------------------------------------------


def tcb_info_key(tee: Tee, fmspc: bytes) -> ItemKey:
    return ItemKey(tee.value, TCB_INFO, fmspc.hex())


def qe_identity_key(tee: Tee) -> ItemKey:
    return ItemKey(tee.value, QE_IDENTITY, QE_IDENTITY_ID[tee])


def pck_crl_key(ca: str) -> ItemKey:
    return ItemKey(INTEL_PKI, PCK_CRL, ca)


ROOT_CRL_ITEM = ItemKey(INTEL_PKI, ROOT_CRL, ROOT_CRL_KEY)
TCB_SIGNING_ITEM = ItemKey(INTEL_PKI, TCB_SIGNING_CHAIN, TCB_SIGNING_KEY)
