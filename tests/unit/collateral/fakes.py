"""Test doubles for collateral: an in-memory store and a fake AMD KDS + Intel PCS.

``FakeVendor`` answers by path (and, where given, query parameters), counts every request,
and can be switched ``down`` (HTTP 503). Unit tests mount it as an ``httpx.MockTransport``;
the integration tests serve the same object over real HTTP (``tests/integration``).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from urllib.parse import quote

import httpx
from cryptography.hazmat.primitives.serialization import Encoding

from broker.collateral.amd_kds import spl_params
from broker.collateral.keys import ItemKey
from broker.collateral.store import CollateralItem
from broker.evidence.claims import Tee
from broker.simulate.intel import IntelKit
from broker.simulate.snp import SnpKit

ROOT_CRL_PATH = "/IntelSGXRootCA.der"


class MemoryStore:
    """The collateral repository in a dict (what PostgreSQL does in production)."""

    def __init__(self, items: Iterable[CollateralItem] = ()) -> None:
        self.items = {item.key: item for item in items}
        self.puts = 0

    async def get_many(self, keys: Sequence[ItemKey]) -> dict[ItemKey, CollateralItem]:
        return {key: self.items[key] for key in keys if key in self.items}

    async def get(self, key: ItemKey) -> CollateralItem | None:
        return self.items.get(key)

    async def put(self, items: Iterable[CollateralItem]) -> None:
        self.puts += 1
        for item in items:
            self.items[item.key] = replace(item, fetched_at=dt.datetime.now(dt.UTC))


@dataclass
class Route:
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] | None = None


@dataclass
class FakeVendor:
    routes: dict[str, list[Route]] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)
    down: bool = False

    def add(
        self,
        path: str,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, object] | None = None,
    ) -> None:
        wanted = None if params is None else {k: str(v) for k, v in params.items()}
        self.routes.setdefault(path, []).insert(0, Route(body, headers or {}, wanted))

    def respond(self, path: str, params: Mapping[str, str]) -> tuple[int, bytes, dict[str, str]]:
        self.requests[path] += 1
        if self.down:
            return 503, b"down for maintenance", {}
        for route in self.routes.get(path, []):
            if route.params is None or dict(params) == route.params:
                return 200, route.body, dict(route.headers)
        return 404, b"not found", {"Error-Code": "NotFound"}

    def handle(self, request: httpx.Request) -> httpx.Response:
        status, body, headers = self.respond(request.url.path, dict(request.url.params))
        return httpx.Response(status, content=body, headers=headers)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handle))

    def count(self, fragment: str) -> int:
        """Requests whose path contains ``fragment``."""
        return sum(n for path, n in self.requests.items() if fragment in path)

    # --- what the kits would have KDS and PCS serve ------------------------------------------

    def serve_snp(self, kit: SnpKit, *, crl: bytes | None = None) -> None:
        """KDS for ``kit``: its VCEK (by chip and TCB), cert chain and an ARK-signed CRL."""
        product = kit.product.value
        self.add(
            f"/vcek/v1/{product}/{kit.chip_id[: kit.product.hwid_size].hex()}",
            kit.vcek.public_bytes(Encoding.DER),
            params=spl_params(kit.product, kit.tcb),
        )
        self.add(f"/vcek/v1/{product}/cert_chain", kit.cert_chain())
        self.add(f"/vcek/v1/{product}/crl", crl or kit.crl([], issuer="ark"))

    def serve_intel(self, kit: IntelKit, now: dt.datetime, *, days: int = 30) -> None:
        """PCS for ``kit``'s platform: TCB Info and QE Identity (SGX, TDX), CRLs, chains."""
        chain = {"TCB-Info-Issuer-Chain": quote(kit.tcb_signing_chain().decode())}
        identity_chain = {"SGX-Enclave-Identity-Issuer-Chain": chain["TCB-Info-Issuer-Chain"]}
        next_update = now + dt.timedelta(days=days)
        for tee in (Tee.SGX, Tee.TDX):
            self.add(
                f"/{tee.value}/certification/v4/tcb",
                kit.tcb_info(tee, now=now, next_update=next_update),
                chain,
                {"fmspc": kit.platform.fmspc.hex()},
            )
            self.add(
                f"/{tee.value}/certification/v4/qe/identity",
                kit.qe_identity(tee, now=now, next_update=next_update),
                identity_chain,
            )
        ca_chain = b"".join(
            kit.certificates[name].public_bytes(Encoding.PEM) for name in ("platform_ca", "root")
        )
        self.add(
            "/sgx/certification/v4/pckcrl",
            kit.pck_crl(now=now, days=days),
            {"SGX-PCK-CRL-Issuer-Chain": quote(ca_chain.decode())},
            {"ca": "platform", "encoding": "der"},
        )
        self.add(ROOT_CRL_PATH, kit.root_crl(now=now))  # a year, as Intel's
