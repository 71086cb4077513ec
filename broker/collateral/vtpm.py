"""Collateral of the hardware report inside paravisor-vTPM evidence (``snp-vtpm``,
``tdx-vtpm``): the SNP or DCAP lookup, asked about the report or quote the evidence holds.

What the evidence's own form carries (Trustee's embed the VCEK) counts as supplied, so it is
neither looked up nor fetched; the request's collateral still wins over it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from broker.evidence.claims import Tee
from broker.evidence.vtpm.verify import read_evidence
from broker.store.database import Database

if TYPE_CHECKING:  # the release flow's type, which imports this module
    from broker.release.collateral import Lookup


class HardwareLookup:
    """A :data:`~broker.release.collateral.Lookup` for ``tee`` that delegates to ``inner``,
    the lookup of the hardware report's own tee; or, when the evidence's form carries the
    report's endorsement (Trustee's ``az-snp-vtpm`` embeds the VCEK), to ``endorsed``, which
    adds what the form lacks from the store: the product's ASK/ARK and CRL
    (:meth:`~broker.collateral.snp.SnpLookup.product_documents`)."""

    def __init__(self, tee: Tee, inner: Lookup, endorsed: Lookup | None = None) -> None:
        self.tee = tee
        self.inner = inner
        self.endorsed = endorsed

    async def __call__(
        self, db: Database, evidence: bytes, supplied: Mapping[str, bytes], now: datetime
    ) -> dict[str, bytes]:
        parsed = read_evidence(self.tee, evidence, supplied)
        given = {**parsed.collateral, **supplied}
        if parsed.collateral and self.endorsed is not None:
            return await self.endorsed(db, parsed.hardware, given, now)
        return await self.inner(db, parsed.hardware, given, now)
