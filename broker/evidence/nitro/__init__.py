"""AWS Nitro Enclaves attestation documents (COSE_Sign1, ES384, rooted in AWS's own PKI).

``abi`` parses, ``verify`` checks chain and signature at an instant, ``claims`` normalises,
``binding`` checks the release-flow binding (nonce and tee public key). Nitro evidence takes no
collateral. See docs/nitro.md.
"""

from __future__ import annotations

from broker.evidence.claims import Tee
from broker.evidence.nitro.verify import verify
from broker.evidence.registry import TeeVerifier

VERIFIER = TeeVerifier(tee=Tee.NITRO, verify=verify)

__all__ = ["VERIFIER"]
