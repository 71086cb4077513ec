"""The synthetic Intel DCAP kit: its PKI, the collateral it signs and the quotes it signs."""

from __future__ import annotations

from broker.simulate.intel.collateral import IntelCollateral
from broker.simulate.intel.quotes import IntelQuotes


class IntelKit(IntelQuotes, IntelCollateral):
    """A fake Intel hierarchy that drives every branch of ``broker.evidence.dcap``:
    ``IntelKit.create(now=...)``, then quotes (:meth:`sgx_quote`, :meth:`tdx_quote`) and
    their collateral (:meth:`collateral`) at that instant."""
