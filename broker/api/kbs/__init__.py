"""Trustee's KBS protocol (RCAR 0.4.0) in front of the release orchestrator (docs/kbs.md).

Confidential Containers guests (guest-components' attestation agent and confidential data
hub, ``kbs-client``, ``trustee-attester``) fetch resources from a KBS with ``POST
/kbs/v0/auth``, ``POST /kbs/v0/attest`` and ``GET /kbs/v0/resource/<repository>/<type>/<tag>``.
This adapter owns the wire format (``wire.py``), the ``kbs-session-id`` cookie, and the error
shapes (``problems.py``); the nonce, the verification, the binding, the policy, the HSM and
the audit record are the orchestrator's (``broker/release/service.py``), as for the native
API. Nothing here verifies evidence, evaluates a policy or writes an audit record.
"""

from __future__ import annotations

from starlette.routing import Route

from broker.api.kbs.endpoints import attest, auth, resource, unknown

PREFIX = "/kbs/v0"
#: Every method, so that the catch-all answers an unknown plugin (404) or a method an
#: endpoint lacks (405) in the protocol's error shape rather than Starlette's.
_EVERY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

ROUTES = [
    Route(f"{PREFIX}/auth", auth, methods=["POST"]),
    Route(f"{PREFIX}/attest", attest, methods=["POST"]),
    Route(f"{PREFIX}/resource/{{path:path}}", resource, methods=["GET"]),
    Route(f"{PREFIX}/{{plugin:path}}", unknown, methods=_EVERY_METHOD),
]
