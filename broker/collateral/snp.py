"""SEV-SNP collateral at attest time: the VCEK (or VLEK), cert chain and CRL of a report.

Used only when the request carries no ``vcek``/``vlek``: a guest that ships its endorsement is
verified with what it ships. Otherwise the report names what it needs (chip id, REPORTED_TCB,
product from CPUID: :func:`~broker.collateral.keys.report_endorsements`) and each item comes
from the store or from AMD KDS (:mod:`.fetcher`):

* the VCEK: required; fetched from KDS by chip id and REPORTED_TCB and kept for good. A VLEK
  is not served by chip id (it comes from the cloud provider): it must be imported;
* the ASK/ASVK + ARK ``cert_chain``: fetched once per product and kept; without fetching and
  none imported, the verifier uses the pinned chain;
* the ARK's ``crl``: fetched and kept until its nextUpdate, then refreshed. With fetching
  off, an imported CRL is used (a stale one is reported as ``collateral-expired``) and none
  means no revocation check, as in the offline CLI.

A v2 report without CPUID and without ``product`` collateral may come from any product: the
store is searched under each; KDS cannot be asked without knowing the product.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from cryptography import x509

from broker.collateral.amd_kds import AmdKdsClient, VcekRequest
from broker.collateral.fetcher import Fetch, gather_all
from broker.collateral.keys import (
    CERT_CHAIN,
    CRL,
    VCEK,
    VLEK,
    EndorsementRef,
    ItemKey,
    report_endorsements,
)
from broker.collateral.lookup import StoreLookup
from broker.collateral.store import CollateralItem, CollateralRepository
from broker.errors import CollateralInvalid, CollateralUnavailable, MalformedEvidence
from broker.evidence.snp.abi import parse_report
from broker.evidence.snp.endorsement import load_endorsement
from broker.evidence.trust import UNREADABLE
from broker.store.database import Database


class SnpLookup(StoreLookup[AmdKdsClient]):
    """The release flow's SNP :data:`~broker.release.collateral.Lookup`."""

    async def resolve(
        self,
        store: CollateralRepository,
        evidence: bytes,
        supplied: Mapping[str, bytes],
        now: datetime,
    ) -> dict[str, bytes]:
        if VCEK in supplied or VLEK in supplied:
            return {}
        report = parse_report(evidence)
        candidates = report_endorsements(report, supplied.get("product"))
        keys = [k for ref in candidates for k in (ref.key, ref.cert_chain_key, ref.crl_key)]
        stored = await store.get_many(keys)
        ref = _choose(candidates, stored, report.version)
        endorsement = self.fetcher.obtain(
            store, ref.key, stored.get(ref.key), self._fetch_endorsement(ref), now, hint=_hint(ref)
        )
        # Optional: without them (not stored, fetching off) the verifier uses the pinned
        # chain and checks no CRL.
        optional = [
            self.fetcher.obtain(
                store,
                key,
                stored.get(key),
                self._fetch_product_document(ref, name),
                now,
                required=False,
            )
            for name, key in ((CERT_CHAIN, ref.cert_chain_key), (CRL, ref.crl_key))
        ]
        endorsed, chain, crl = await gather_all(endorsement, *optional)
        found = {ref.kind: endorsed[0].body}
        for name, items in ((CERT_CHAIN, chain), (CRL, crl)):
            if items:
                found[name] = items[0].body
        return found

    async def endorsed(
        self, db: Database, evidence: bytes, supplied: Mapping[str, bytes], now: datetime
    ) -> dict[str, bytes]:
        """:meth:`product_documents` from the store of ``db``: a release-flow lookup."""
        return await self.product_documents(self.store(db, now), evidence, supplied, now)

    async def product_documents(
        self,
        store: CollateralRepository,
        evidence: bytes,
        supplied: Mapping[str, bytes],
        now: datetime,
    ) -> dict[str, bytes]:
        """The ``cert_chain`` and ``crl`` of the product of a report whose endorsement comes
        with it (Trustee's vTPM evidence embeds the VCEK), as the store holds them (imported,
        or fetched for a guest that sent no endorsement); what ``supplied`` holds is not
        looked up. Nothing is fetched: a guest that brings its endorsement does not come to
        depend on AMD KDS. The product is the report's CPUID, the ``product`` collateral or
        the endorsement's productName; when none names it, nothing is looked up, and the
        verifier uses the pinned chain, as for a guest that supplies everything."""
        kind = VLEK if VLEK in supplied else VCEK
        endorsement = supplied.get(kind)
        wanted = [name for name in (CERT_CHAIN, CRL) if name not in supplied]
        if endorsement is None or not wanted:
            return {}
        report = parse_report(evidence)
        hint = supplied.get("product")
        if hint is None:
            hint = _product_name(endorsement)
        try:
            candidates = report_endorsements(report, hint)
        except CollateralUnavailable:
            return {}  # an unsigned report or a masked chip id: the verifier says which
        if len(candidates) != 1 or candidates[0].kind != kind:
            return {}
        ref = candidates[0]
        keys = {CERT_CHAIN: ref.cert_chain_key, CRL: ref.crl_key}
        stored = await store.get_many([keys[name] for name in wanted])
        found = await gather_all(
            *(
                self.fetcher.obtain(
                    store, keys[name], stored.get(keys[name]), None, now, required=False
                )
                for name in wanted
            )
        )
        return {name: items[0].body for name, items in zip(wanted, found, strict=True) if items}

    # --- fetching from AMD KDS --------------------------------------------------------------

    def _fetch_endorsement(self, ref: EndorsementRef) -> Fetch | None:
        kds = self.client
        if kds is None or ref.kind != VCEK or ref.hwid is None:
            return None
        hwid = ref.hwid

        async def fetch() -> list[CollateralItem]:
            body = await kds.fetch_vcek(ref.product, hwid, ref.tcb)
            request = VcekRequest(ref.product, hwid, ref.tcb)
            return [CollateralItem(ref.key, body, None, f"{kds.base_url}{request.path}")]

        return fetch

    def _fetch_product_document(self, ref: EndorsementRef, kind: str) -> Fetch | None:
        """The product's ``cert_chain`` (kept for good) or ``crl`` (kept to its nextUpdate)."""
        kds = self.client
        if kds is None:
            return None
        key_type = _key_type(ref)

        async def fetch() -> list[CollateralItem]:
            next_update = None
            if kind == CRL:
                body = await kds.fetch_crl(ref.product, key_type)  # checked to parse as DER
                next_update = _next_update(body)
                key = ref.crl_key
            else:
                body = await kds.fetch_cert_chain(ref.product, key_type)
                key = ref.cert_chain_key
            source = f"{kds.base_url}/{key_type}/v1/{ref.product.value}/{kind}"
            return [CollateralItem(key, body, next_update, source)]

        return fetch


def _next_update(crl: bytes) -> datetime | None:
    try:  # cryptography reads CRL fields lazily: a broken one fails here, not at load
        return x509.load_der_x509_crl(crl).next_update_utc
    except UNREADABLE as exc:
        raise CollateralInvalid(f"KDS crl: {exc}") from None


def _product_name(endorsement: bytes) -> bytes | None:
    """The productName of a VCEK/VLEK, as a ``product`` hint; None when it has none or does
    not parse (the verifier reports that)."""
    try:
        name = load_endorsement(endorsement).product_name
    except MalformedEvidence:
        return None
    return None if name is None else name.encode()


def _key_type(ref: EndorsementRef) -> Literal["vcek", "vlek"]:
    return "vlek" if ref.kind == VLEK else "vcek"


def _choose(
    candidates: list[EndorsementRef], stored: Mapping[ItemKey, CollateralItem], version: int
) -> EndorsementRef:
    """The one candidate when the product is known; else the one whose endorsement is
    stored (KDS cannot be asked without the product)."""
    if len(candidates) == 1:
        return candidates[0]
    for ref in candidates:
        if ref.key in stored:
            return ref
    name = candidates[0].kind
    remedy = (
        "supply the 'vlek' or import it"
        if name == VLEK
        else "supply the 'vcek', or the 'product' (Milan, Genoa, Turin) to fetch it from AMD KDS"
    )
    raise CollateralUnavailable(
        f"report version {version} carries no CPUID and no {name.upper()} for its chip and "
        f"REPORTED_TCB is stored under any product: {remedy}"
    )


def _hint(ref: EndorsementRef) -> str:
    if ref.kind == VLEK:
        return " (a VLEK comes from the cloud provider, not from AMD KDS by chip id)"
    return ""
