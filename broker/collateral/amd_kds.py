"""AMD Key Distribution Service (KDS) client: VCEKs, cert chains and CRLs for SEV-SNP.

Source: AMD "Versioned Chip Endorsement Key (VCEK) Certificate and KDS Interface
Specification" (publication 57230), §4 "KDS Interface":

* ``GET /vcek/v1/{product}/{hwid}?blSPL=..&teeSPL=..&snpSPL=..&ucodeSPL=..`` (Turin adds
  ``fmcSPL`` and takes an 8-byte hwid) -> the VCEK, DER;
* ``GET /{vcek|vlek}/v1/{product}/cert_chain`` -> ASK (or ASVK) then ARK, PEM;
* ``GET /{vcek|vlek}/v1/{product}/crl`` -> the CRL signed by the ARK, DER.

The HTTP client is injected (ARCHITECTURE §8.4): tests pass one with a fake transport, and
the broker owns timeouts, proxies and connection reuse. What a report needs is decided by the
pure :func:`vcek_request`; every failure to obtain a document is ``CollateralUnavailable``
(worth retrying, unlike a document that arrives and is wrong: ``CollateralInvalid``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import httpx
from cryptography import x509

from broker.errors import CollateralInvalid, CollateralUnavailable
from broker.evidence.snp.abi import AttestationReport, SigningKey, TcbParts
from broker.evidence.snp.endorsement import load_endorsement
from broker.evidence.snp.products import Product, parse_product, product_from_cpuid
from broker.evidence.trust import UNREADABLE, load_certificates, parse_collateral

DEFAULT_KDS_URL = "https://kdsintf.amd.com"
DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class VcekRequest:
    """Which VCEK a report needs: the chip, the product and the REPORTED_TCB."""

    product: Product
    hwid: bytes
    tcb: TcbParts

    @property
    def path(self) -> str:
        return f"/vcek/v1/{self.product.value}/{self.hwid.hex()}"

    @property
    def params(self) -> dict[str, int]:
        return spl_params(self.product, self.tcb)


def spl_params(product: Product, tcb: TcbParts) -> dict[str, int]:
    """The SPL query parameters of a VCEK request, in the order AMD documents them."""
    params = {
        "blSPL": tcb.bootloader,
        "teeSPL": tcb.tee,
        "snpSPL": tcb.snp,
        "ucodeSPL": tcb.microcode,
    }
    if product.is_turin:
        params["fmcSPL"] = tcb.fmc or 0
    return params


def vcek_request(report: AttestationReport, product: Product | str | None = None) -> VcekRequest:
    """The VCEK that signs ``report``: KDS is asked by hwid and REPORTED_TCB, never by the
    current TCB (the host may report an older TCB than it runs).

    The product comes from the report's CPUID (v3+), else from ``product``; a v2 report
    without one is ``CollateralUnavailable``, as are reports no VCEK can fetch for (VLEK-
    signed, unsigned, or with CHIP_ID masked).
    """
    chosen = _product(report, product)
    signing_key = report.signer_info.signing_key
    if signing_key is not SigningKey.VCEK:
        raise CollateralUnavailable(
            f"the report is signed by SIGNING_KEY {signing_key.name}: AMD KDS serves VCEKs "
            "by chip id only; a VLEK comes from the cloud provider"
        )
    if report.signer_info.mask_chip_key or not any(report.chip_id):
        raise CollateralUnavailable("CHIP_ID is masked: the VCEK cannot be looked up by chip id")
    return VcekRequest(
        product=chosen,
        hwid=report.chip_id[: chosen.hwid_size],
        tcb=report.reported_tcb.parts(chosen.is_turin),
    )


def _product(report: AttestationReport, product: Product | str | None) -> Product:
    if report.cpuid is not None:
        return product_from_cpuid(report.cpuid)
    if isinstance(product, Product):
        return product
    if product is not None:
        parsed = parse_product(product)
        if parsed is not None:
            return parsed
        raise CollateralUnavailable(f"product '{product}' is not Milan, Genoa or Turin")
    raise CollateralUnavailable(
        f"report version {report.version} carries no CPUID: the product (Milan, Genoa, Turin) "
        "must be given to look up its VCEK"
    )


class AmdKdsClient:
    """Fetch SEV-SNP collateral from AMD KDS (or a mirror) with an injected httpx client."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str = DEFAULT_KDS_URL,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._client = client
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout

    @property
    def base_url(self) -> str:
        return self._base_url

    async def fetch_vcek(self, product: Product | str, hwid: bytes, tcb: TcbParts) -> bytes:
        """The DER VCEK of chip ``hwid`` at TCB ``tcb`` (checked to parse as a certificate)."""
        request = VcekRequest(_known_product(product), hwid, tcb)
        expected = request.product.hwid_size
        if len(hwid) != expected:
            raise ValueError(f"{request.product.value} hwid is {expected} bytes, got {len(hwid)}")
        body = await self._get(request.path, request.params)
        # load_endorsement tolerates the serial number 0 that AMD gives every VCEK.
        parse_collateral("KDS VCEK", load_endorsement, body)
        return body

    async def fetch_vcek_for(
        self, report: AttestationReport, product: Product | str | None = None
    ) -> bytes:
        """The DER VCEK that signed ``report`` (see :func:`vcek_request`)."""
        request = vcek_request(report, product)
        return await self.fetch_vcek(request.product, request.hwid, request.tcb)

    async def fetch_cert_chain(
        self, product: Product | str, key: Literal["vcek", "vlek"] = "vcek"
    ) -> bytes:
        """ASK (``key="vcek"``) or ASVK (``"vlek"``) then ARK, PEM, as KDS serves it."""
        body = await self._get(f"/{key}/v1/{_known_product(product).value}/cert_chain")
        certs = parse_collateral("KDS cert_chain", load_certificates, body)
        if len(certs) != 2:
            raise CollateralInvalid(f"KDS cert_chain holds {len(certs)} certificates, not 2")
        return body

    async def fetch_crl(
        self, product: Product | str, key: Literal["vcek", "vlek"] = "vcek"
    ) -> bytes:
        """The product's CRL (signed by its ARK), DER."""
        body = await self._get(f"/{key}/v1/{_known_product(product).value}/crl")
        try:
            x509.load_der_x509_crl(body)
        except UNREADABLE as exc:
            raise CollateralInvalid(f"KDS crl does not parse: {exc}") from None
        return body

    async def _get(self, path: str, params: dict[str, int] | None = None) -> bytes:
        url = f"{self._base_url}{path}"
        try:
            response = await self._client.get(url, params=params, timeout=self._timeout)
        except httpx.HTTPError as exc:
            raise CollateralUnavailable(
                f"AMD KDS {url}: {type(exc).__name__}: {exc or 'no detail'}"
            ) from None
        if response.status_code != httpx.codes.OK:
            hint = ""
            if response.status_code == httpx.codes.TOO_MANY_REQUESTS:
                hint = f" (rate limited; Retry-After {response.headers.get('Retry-After', '?')})"
            raise CollateralUnavailable(
                f"AMD KDS {response.request.url}: HTTP {response.status_code}{hint}"
            )
        return response.content


def _known_product(product: Product | str) -> Product:
    parsed = product if isinstance(product, Product) else parse_product(product)
    if parsed is None:
        raise ValueError(f"product '{product}' is not Milan, Genoa or Turin")
    return parsed
