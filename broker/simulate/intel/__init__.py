"""A synthetic Intel DCAP kit: fake Intel root, PCK chain, TCB Signing key, QE and quotes,
split by what each part fakes: ``pki.py`` (the CAs, the PCK certificate with its SGX
extension, the CRLs), ``collateral.py`` (TCB Info and QE Identity, signed as Intel's PCS
signs them) and ``quotes.py`` (the QE report, SGX and TDX quotes, a TD event log);
``kit.py`` joins them in :class:`IntelKit`.

The root is trusted only when passed as ``extra_roots`` (``insecure-test-intel-sim``).
"""

from __future__ import annotations

from broker.simulate.intel.collateral import IdentityLevel, Level, ModuleIdentity
from broker.simulate.intel.kit import IntelKit
from broker.simulate.intel.pki import SIM_ROOT_LABEL, Platform, sgx_extension_der
from broker.simulate.intel.quotes import event_log

__all__ = [
    "SIM_ROOT_LABEL",
    "IdentityLevel",
    "IntelKit",
    "Level",
    "ModuleIdentity",
    "Platform",
    "event_log",
    "sgx_extension_der",
]
