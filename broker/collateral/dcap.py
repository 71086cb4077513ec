"""TDX and SGX collateral at attest time: TCB Info, QE Identity, PCK CRL, Root CA CRL.

Whatever of the four the request does not supply comes from the store or from Intel's PCS
(or a PCCS) for the quote's platform (:func:`~broker.collateral.intel_pcs.platform_of`: FMSPC
and issuing CA of its PCK certificate). All four are required and go stale at their
nextUpdate, when they are fetched again (:mod:`.fetcher`). The TCB Signing chain that PCS
sends with TCB Info and QE Identity is stored too and handed to the verifier unless the
request supplies one; without it the verifier uses the pinned Intel TCB Signing certificates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from broker.collateral.fetcher import Fetch, gather_all
from broker.collateral.intel_pcs import FetchedCollateral, IntelPcsClient, PlatformId, platform_of
from broker.collateral.keys import (
    PCK_CRL,
    QE_IDENTITY,
    ROOT_CRL,
    ROOT_CRL_ITEM,
    TCB_INFO,
    TCB_SIGNING_CHAIN,
    TCB_SIGNING_ITEM,
    ItemKey,
    pck_crl_key,
    qe_identity_key,
    tcb_info_key,
)
from broker.collateral.lookup import StoreLookup
from broker.collateral.store import CollateralItem, CollateralRepository

#: The collateral every quote needs, in the verifier's names.
REQUIRED = (TCB_INFO, QE_IDENTITY, PCK_CRL, ROOT_CRL)


def platform_keys(platform: PlatformId) -> dict[str, ItemKey]:
    """Where each required item of ``platform`` is stored."""
    return {
        TCB_INFO: tcb_info_key(platform.tee, platform.fmspc),
        QE_IDENTITY: qe_identity_key(platform.tee),
        PCK_CRL: pck_crl_key(platform.ca),
        ROOT_CRL: ROOT_CRL_ITEM,
    }


class DcapLookup(StoreLookup[IntelPcsClient]):
    """The release flow's TDX and SGX :data:`~broker.release.collateral.Lookup`."""

    async def resolve(
        self,
        store: CollateralRepository,
        evidence: bytes,
        supplied: Mapping[str, bytes],
        now: datetime,
    ) -> dict[str, bytes]:
        needed = [name for name in REQUIRED if name not in supplied]
        if not needed:
            return {}
        platform = platform_of(evidence)
        keys = platform_keys(platform)
        want_chain = TCB_SIGNING_CHAIN not in supplied
        stored = await store.get_many(
            [keys[name] for name in needed] + ([TCB_SIGNING_ITEM] if want_chain else [])
        )
        results = await gather_all(
            *(
                self.fetcher.obtain(
                    store,
                    keys[name],
                    stored.get(keys[name]),
                    self._fetch(name, platform, keys[name]),
                    now,
                    hint=f" (platform FMSPC {platform.fmspc.hex()}, PCK {platform.ca} CA)",
                )
                for name in needed
            )
        )
        found = {name: items[0].body for name, items in zip(needed, results, strict=True)}
        if want_chain:
            chain = await self._signing_chain(store, stored, results)
            if chain is not None:
                found[TCB_SIGNING_CHAIN] = chain.body
        return found

    async def _signing_chain(
        self,
        store: CollateralRepository,
        stored: Mapping[ItemKey, CollateralItem],
        results: Sequence[Sequence[CollateralItem]],
    ) -> CollateralItem | None:
        """The chain fetched just now, else the stored one (read again when another request
        may have fetched a document, and its chain, while this one waited)."""
        for items in results:
            for item in items[1:]:
                if item.key == TCB_SIGNING_ITEM:
                    return item
        snapshot = all(items[0] is stored.get(items[0].key) for items in results)
        if snapshot:
            return stored.get(TCB_SIGNING_ITEM)
        return await store.get(TCB_SIGNING_ITEM)

    def _fetch(self, name: str, platform: PlatformId, key: ItemKey) -> Fetch | None:
        pcs = self.client
        if pcs is None:
            return None

        async def fetch() -> list[CollateralItem]:
            if name == TCB_INFO:
                return _items(key, await pcs.tcb_info(platform.tee, platform.fmspc))
            if name == QE_IDENTITY:
                return _items(key, await pcs.qe_identity(platform.tee))
            if name == PCK_CRL:
                # Its issuer chain is not kept: the verifier checks the CRL with the PCK's CA
                # from the quote itself.
                return _items(key, await pcs.pck_crl(platform.ca), keep_chain=False)
            return _items(key, await pcs.root_crl())

        return fetch


def _items(
    key: ItemKey, fetched: FetchedCollateral, *, keep_chain: bool = True
) -> list[CollateralItem]:
    items = [CollateralItem(key, fetched.body, fetched.next_update, fetched.url)]
    if keep_chain and fetched.issuer_chain is not None:
        items.append(CollateralItem(TCB_SIGNING_ITEM, fetched.issuer_chain, None, fetched.url))
    return items
