"""Request bodies and what the endpoints read from them (``broker/api/body.py``, the guest
endpoints of ``broker/api/guest.py`` on the lean path of ``broker/api/lean.py``, the admin
API's policy publication in ``broker/api/admin.py``), up to the call into the release or
admin service, which is replaced by one that parses what the real one would parse first
(the nonce, the JCS binding of the tee key; the policy document).

The first byte chooses the endpoint: 0 challenge, 1 attest, 2 release, 3 admin policy
publication. For a release the rest is ``name \\n authorization \\n body``; otherwise it is
the body.
"""

from __future__ import annotations

import json
from collections.abc import Coroutine, Iterator
from types import SimpleNamespace
from typing import Any

import yaml
from starlette.datastructures import State

from broker.api import admin, guest
from broker.api.lean import LeanRequest
from broker.policy.loader import load_policy_text
from broker.release import binding, nonces
from broker.release.service import AttestRequest
from broker.settings import Settings
from fuzz.engine import ROOT, Harness, Target


class _Release:
    """The release service's entry points, parsing what the real ones parse first."""

    async def challenge(self, tee: Any) -> dict[str, Any]:
        return {}

    async def attest(self, request: AttestRequest) -> dict[str, Any]:
        nonces.decode(request.nonce_text)
        binding.expected_report_data(request.nonce_text, request.tee_jwk, "sha384")
        return {}

    async def release(self, token: str, name: str, jwk: Any, request_id: str | None) -> Any:
        return {}


class _Admin:
    async def publish_policy_json(self, who: object, text: str) -> dict[str, Any]:
        load_policy_text(text, source="<request>", is_json=True)  # as AdminService does
        return {}


class _Limiter:
    def check(self, host: str) -> None:
        return None


class _AdminRequest(LeanRequest):
    """What the admin endpoint reads of Starlette's request: the same, and ``app.state``."""

    __slots__ = ("app",)


def _request(body: bytes, path: dict[str, str], authorization: bytes) -> _AdminRequest:
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {
        "type": "http",
        "headers": [(b"content-type", b"application/json"), (b"authorization", authorization)],
        "client": ("192.0.2.1", 40000),
        "state": {"request_id": "fuzz"},
    }
    return _AdminRequest(scope, receive, path)


def _run(coroutine: Coroutine[Any, Any, Any]) -> None:
    """Run a coroutine that never waits (nothing here does I/O)."""
    try:
        coroutine.send(None)
    except StopIteration:
        return
    coroutine.close()
    raise RuntimeError("an endpoint waited on something")


def setup() -> Target:
    settings = Settings()
    state = State()
    state.release, state.rate_limiter, state.settings = _Release(), _Limiter(), settings
    admin_request = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(settings=settings)))

    def target(data: bytes) -> None:
        if not data:
            return
        kind, rest = data[0] % 4, data[1:]
        if kind == 0:
            _run(guest.challenge(_request(rest, {}, b""), state))
        elif kind == 1:
            _run(guest.attest(_request(rest, {}, b""), state))
        elif kind == 2:
            name, _, rest = rest.partition(b"\n")
            authorization, _, body = rest.partition(b"\n")
            path = guest.ROUTES[2].match(f"/v1/keys/{name.decode('utf-8', 'replace')}/release")
            if path is not None:  # else a 404 before any endpoint runs
                _run(guest.release(_request(body, path, authorization), state))
        else:
            request = _request(rest, {}, b"")
            request.app = admin_request.app
            _run(admin.publish_policy(request, _Admin(), None))  # type: ignore[arg-type]

    return target


def seeds() -> Iterator[tuple[str, bytes]]:
    yield "challenge", b'\x00{"tee": "snp"}'
    jwk = b'{"kty": "RSA", "e": "AQAB", "n": "' + b"w" * 511 + b'1", "alg": "RSA-OAEP-256"}'
    nonce = b"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
    attest = b'{"tee": "snp", "evidence": "AAAA", "nonce": "' + nonce + b'", "tee_pubkey": ' + jwk
    yield "attest", b"\x01" + attest + b', "collateral": {"vcek": "MIIB", "product": "TWlsYW4"}}'
    yield "release", b'\x02disk-key\nBearer a.b.c\n{"tee_pubkey": ' + jwk + b"}"
    policy = yaml.safe_load((ROOT / "policies" / "insecure-demo-simulated-snp.yaml").read_text())
    yield "publish", b"\x03" + json.dumps({"document": policy}).encode()


HARNESS = Harness("request_body", setup, seeds, __doc__ or "", max_len=8192)
