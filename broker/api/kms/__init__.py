"""The KMS-compatible endpoint (AWS KMS JSON 1.1 protocol) in front of the orchestrator.

Enclave applications and every AWS SDK call ``POST /`` (or the configured ``kms_path``) with
``X-Amz-Target: TrentService.<Operation>``, signed with AWS Signature Version 4 by an access
key an admin issued (docs/kms.md). This adapter owns the wire format (``wire.py``) and the
error shapes (``problems.py``); the signature check, the verification of a ``Recipient``'s
attestation document, the policy, the HSM and the audit record are
``broker/release/kms.py``'s and the release orchestrator's.
"""

from __future__ import annotations

from starlette.routing import Route

from broker.api.kms.endpoints import serve


def routes(path: str) -> list[Route]:
    return [Route(path, serve, methods=["POST"])]
