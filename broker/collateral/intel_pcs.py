"""Intel PCS / PCCS client for DCAP collateral (Provisioning Certification Service API v4).

Endpoints (Intel SGX and TDX PCS API v4; a PCCS serves the same paths):

* ``GET {base}/sgx|tdx/certification/v4/tcb?fmspc=<hex>`` -> TCB Info JSON, issuer chain in
  ``TCB-Info-Issuer-Chain`` (``SGX-TCB-Info-Issuer-Chain`` on API v3 servers);
* ``GET {base}/sgx|tdx/certification/v4/qe/identity`` -> QE Identity JSON (``TD_QE`` under
  ``tdx``), issuer chain in ``SGX-Enclave-Identity-Issuer-Chain``;
* ``GET {base}/sgx/certification/v4/pckcrl?ca=platform|processor&encoding=der`` -> PCK CRL,
  issuer chain in ``SGX-PCK-CRL-Issuer-Chain``;
* the Intel SGX Root CA CRL from ``root_crl_url`` (Intel publishes it on
  certificates.trustedservices.intel.com; a PCCS serves it at ``.../v4/rootcacrl``).

Issuer chains arrive URL-encoded PEM. Nothing is verified here (the verifier does that at the
instant it needs it); each result carries its ``next_update`` so that a cache can keep it
exactly that long. Every failure, network or HTTP or an unparseable body, is
``CollateralUnavailable``: the broker could not obtain collateral, which is worth retrying.

Time and network are parameters: the ``httpx.AsyncClient`` is injected (ARCHITECTURE §8.4).
"""

from __future__ import annotations

import asyncio
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypeVar
from urllib.parse import unquote

import httpx

from broker.errors import CollateralInvalid, CollateralUnavailable, MalformedEvidence
from broker.evidence.claims import Tee
from broker.evidence.dcap.abi import CERT_PCK_CHAIN, CERT_PCK_LEAF, parse_quote
from broker.evidence.dcap.cache import Memo, digest
from broker.evidence.dcap.collateral import parse_qe_identity, parse_tcb_info
from broker.evidence.dcap.pck import pck_extensions
from broker.evidence.trust import common_name, load_certificates, load_crls

DEFAULT_BASE_URL = "https://api.trustedservices.intel.com"
DEFAULT_ROOT_CRL_URL = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"

PckCa = Literal["platform", "processor"]
_T = TypeVar("_T")
_TCB_INFO_CHAIN_HEADERS = ("TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain")
_QE_IDENTITY_CHAIN_HEADERS = ("SGX-Enclave-Identity-Issuer-Chain",)
_PCK_CRL_CHAIN_HEADERS = ("SGX-PCK-CRL-Issuer-Chain",)


@dataclass(frozen=True, slots=True)
class FetchedCollateral:
    name: str
    """The verifier's collateral name: ``tcb_info``, ``qe_identity``, ``pck_crl``, ``root_crl``."""
    body: bytes
    issuer_chain: bytes | None
    """PEM issuer chain from the response header (None for the root CRL)."""
    next_update: datetime
    url: str


@dataclass(frozen=True, slots=True)
class QuoteCollateral:
    """Everything one quote needs, as fetched."""

    tcb_info: FetchedCollateral
    qe_identity: FetchedCollateral
    pck_crl: FetchedCollateral
    root_crl: FetchedCollateral

    @property
    def next_update(self) -> datetime:
        """The earliest nextUpdate: the set must be refreshed then."""
        return min(
            item.next_update
            for item in (self.tcb_info, self.qe_identity, self.pck_crl, self.root_crl)
        )

    def as_collateral(self) -> dict[str, bytes]:
        """The mapping the TDX/SGX verifiers read (``tcb_signing_chain`` from the TCB Info
        issuer chain)."""
        collateral = {
            "tcb_info": self.tcb_info.body,
            "qe_identity": self.qe_identity.body,
            "pck_crl": self.pck_crl.body,
            "root_crl": self.root_crl.body,
        }
        if self.tcb_info.issuer_chain is not None:
            collateral["tcb_signing_chain"] = self.tcb_info.issuer_chain
        return collateral


@dataclass(frozen=True, slots=True)
class PlatformId:
    """What to fetch for a quote: its TEE, the PCK's FMSPC and the PCK's issuing CA."""

    tee: Tee
    fmspc: bytes
    ca: PckCa


def platform_of(evidence: bytes) -> PlatformId:
    """Read (without verifying) which collateral a quote needs; ``EvidenceError`` if it
    carries no PCK certificate."""
    quote = parse_quote(evidence)
    cert_data = quote.signature_data.qe.certification_data
    if cert_data.type not in (CERT_PCK_CHAIN, CERT_PCK_LEAF):
        raise CollateralUnavailable(
            f"quote certification data type {cert_data.type} carries no PCK certificate"
        )
    # A platform's quotes all carry the same PCK chain: its FMSPC and CA are read once.
    fmspc, ca = _pck_platforms.get_or_compute(
        digest(cert_data.data), lambda: _pck_platform(cert_data.data)
    )
    return PlatformId(tee=Tee.TDX if quote.is_tdx else Tee.SGX, fmspc=fmspc, ca=ca)


def _pck_platform(chain: bytes) -> tuple[bytes, PckCa]:
    certificates = load_certificates(chain)
    if not certificates:  # e.g. only NULs or blank text: nothing to read a platform from
        raise CollateralUnavailable("quote certification data holds no PCK certificate")
    leaf = certificates[0]
    ca: PckCa = "processor" if "Processor" in common_name(leaf.issuer) else "platform"
    return pck_extensions(leaf).fmspc, ca


_pck_platforms: Memo[tuple[bytes, PckCa]] = Memo(256)


class IntelPcsClient:
    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str = DEFAULT_BASE_URL,
        *,
        root_crl_url: str = DEFAULT_ROOT_CRL_URL,
    ) -> None:
        self._client = client
        self._base = base_url.rstrip("/")
        self._root_crl_url = root_crl_url

    async def tcb_info(self, tee: Tee, fmspc: bytes) -> FetchedCollateral:
        url = f"{self._base}/{_path(tee)}/certification/v4/tcb"
        response = await self._get(url, {"fmspc": fmspc.hex()})
        body = response.content
        info = _parsed(url, lambda: parse_tcb_info(body).body)
        return FetchedCollateral(
            "tcb_info", body, _chain(response, _TCB_INFO_CHAIN_HEADERS), info.next_update, url
        )

    async def qe_identity(self, tee: Tee) -> FetchedCollateral:
        url = f"{self._base}/{_path(tee)}/certification/v4/qe/identity"
        response = await self._get(url, {})
        body = response.content
        identity = _parsed(url, lambda: parse_qe_identity(body).body)
        return FetchedCollateral(
            "qe_identity",
            body,
            _chain(response, _QE_IDENTITY_CHAIN_HEADERS),
            identity.next_update,
            url,
        )

    async def pck_crl(self, ca: PckCa = "platform") -> FetchedCollateral:
        url = f"{self._base}/sgx/certification/v4/pckcrl"
        response = await self._get(url, {"ca": ca, "encoding": "der"})
        body = response.content
        return FetchedCollateral(
            "pck_crl",
            body,
            _chain(response, _PCK_CRL_CHAIN_HEADERS),
            _crl_next_update(url, body),
            url,
        )

    async def root_crl(self) -> FetchedCollateral:
        url = self._root_crl_url
        body = _unhex((await self._get(url, {})).content)
        return FetchedCollateral("root_crl", body, None, _crl_next_update(url, body), url)

    async def quote_collateral(self, platform: PlatformId) -> QuoteCollateral:
        """TCB Info, QE Identity, PCK CRL and Root CA CRL for ``platform``, concurrently."""
        tcb_info, qe_identity, pck_crl, root_crl = await asyncio.gather(
            self.tcb_info(platform.tee, platform.fmspc),
            self.qe_identity(platform.tee),
            self.pck_crl(platform.ca),
            self.root_crl(),
        )
        return QuoteCollateral(tcb_info, qe_identity, pck_crl, root_crl)

    async def _get(self, url: str, params: Mapping[str, str]) -> httpx.Response:
        try:
            response = await self._client.get(url, params=params)
        except httpx.HTTPError as exc:
            raise CollateralUnavailable(
                f"{url}: {type(exc).__name__}: {exc or 'no detail'}"
            ) from None
        if response.status_code != httpx.codes.OK:
            error = response.headers.get("Error-Code") or response.headers.get("Error-Message")
            reason = f" ({error})" if error else ""
            raise CollateralUnavailable(f"{url}: HTTP {response.status_code}{reason}")
        return response


def _path(tee: Tee) -> str:
    if tee not in (Tee.TDX, Tee.SGX):
        raise ValueError(f"Intel PCS serves SGX and TDX collateral, not {tee.value}")
    return tee.value


def _chain(response: httpx.Response, names: tuple[str, ...]) -> bytes:
    for name in names:
        value = response.headers.get(name)
        if value:
            return unquote(value).encode()
    raise CollateralUnavailable(f"{response.request.url}: response has no {names[0]} header")


def _parsed(url: str, parse: Callable[[], _T]) -> _T:
    """Parse a fetched body; an unusable body means the collateral is unavailable."""
    try:
        return parse()
    except CollateralInvalid as exc:
        raise CollateralUnavailable(f"{url}: {exc.detail}") from None


def _crl_next_update(url: str, body: bytes) -> datetime:
    try:
        crls = load_crls(body)
    except MalformedEvidence as exc:
        raise CollateralUnavailable(f"{url}: {exc.detail}") from None
    if len(crls) != 1:
        raise CollateralUnavailable(f"{url}: {len(crls)} CRLs, not one")
    next_update = crls[0].next_update_utc
    if next_update is None:
        raise CollateralUnavailable(f"{url}: CRL has no nextUpdate")
    return next_update


def _unhex(body: bytes) -> bytes:
    """A PCCS serves the root CA CRL as hex text; Intel serves DER."""
    text = body.strip()
    if text and len(text) % 2 == 0 and all(c in b"0123456789abcdefABCDEF" for c in text):
        try:
            return binascii.unhexlify(text)
        except binascii.Error:
            return body
    return body
