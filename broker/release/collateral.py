"""Collateral for verification at attest time: supplied, stored, or fetched and stored.

The request may carry collateral (``collateral`` member: name -> base64); anything it does
not supply comes from the collateral store in PostgreSQL, which ``keybroker collateral
import`` fills and the vendor fetchers (AMD KDS, Intel PCS) cache into. Each TEE that has
such collateral has a ``Lookup`` (``broker/collateral/snp.py``, ``broker/collateral/dcap.py``);
what the request supplies always wins over what is looked up. The paravisor vTPMs look up
their hardware report's (``broker/collateral/vtpm.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime

import httpx

from broker.collateral.amd_kds import AmdKdsClient
from broker.collateral.dcap import DcapLookup
from broker.collateral.fetcher import Fetcher, Observe, unobserved
from broker.collateral.intel_pcs import IntelPcsClient
from broker.collateral.snp import SnpLookup
from broker.collateral.vtpm import HardwareLookup
from broker.evidence.claims import Tee
from broker.settings import Settings
from broker.store.collateral import state as collateral_state
from broker.store.database import Database

# (evidence, already supplied, now) -> additional items, looked up or fetched
Lookup = Callable[[Database, bytes, Mapping[str, bytes], datetime], Awaitable[dict[str, bytes]]]


class CollateralResolver:
    def __init__(self, db: Database, lookups: Mapping[Tee, Lookup] | None = None) -> None:
        self.db = db
        self.lookups = dict(lookups or {})

    async def stored(self, now: datetime) -> list[tuple[str, str, int, int]]:
        """(tee, kind, fresh, stale) of what the collateral store holds at ``now``."""
        return await collateral_state(self.db, now)

    async def resolve(
        self, tee: Tee, evidence: bytes, supplied: Mapping[str, bytes], now: datetime
    ) -> Mapping[str, bytes]:
        lookup = self.lookups.get(tee)
        if lookup is None:
            return supplied
        found = await lookup(self.db, evidence, supplied, now)
        return {**found, **supplied}


def default_lookups(
    settings: Settings, http: httpx.AsyncClient, observe: Observe = unobserved
) -> dict[Tee, Lookup]:
    """The store and vendor lookups of every TEE that has them (SNP: AMD KDS; TDX and SGX:
    Intel PCS or a PCCS), fetching through ``http`` when ``settings.collateral_fetch``;
    ``observe`` is told each item's result."""
    fetcher = Fetcher(enabled=settings.collateral_fetch, observe=observe)
    kds = pcs = None
    if settings.collateral_fetch:
        kds = AmdKdsClient(http, settings.amd_kds_url, timeout=settings.collateral_timeout_seconds)
        pcs = IntelPcsClient(http, settings.intel_pcs_url, root_crl_url=settings.intel_root_crl_url)
    dcap = DcapLookup(pcs, fetcher)
    snp = SnpLookup(kds, fetcher)
    return {
        Tee.SNP: snp,
        Tee.TDX: dcap,
        Tee.SGX: dcap,
        Tee.SNP_VTPM: HardwareLookup(Tee.SNP_VTPM, snp, snp.endorsed),
        Tee.TDX_VTPM: HardwareLookup(Tee.TDX_VTPM, dcap),
    }
