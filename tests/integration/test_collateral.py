"""The collateral store and its lookups against real PostgreSQL, a real broker over HTTP, and
a fake AMD KDS + Intel PCS served on loopback (``tests/unit/collateral/fakes.py``).

Guests here send no collateral: the broker finds it in the store (after ``keybroker
collateral import``) or fetches it from the fake vendors, which count every request. The
synthetic kits' roots are trusted through ``insecure_test_roots``.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from broker.cli import main
from broker.collateral.keys import ItemKey, qe_identity_key, tcb_info_key
from broker.collateral.store import CollateralItem
from broker.evidence.claims import Tee
from broker.evidence.snp.abi import TcbParts
from broker.evidence.snp.products import Product
from broker.guest.client import GuestClient, tee_jwk
from broker.localstate.postgres import LocalPostgres
from broker.localstate.softhsm import LocalSoftHsm
from broker.redact import Secret
from broker.release.binding import expected_report_data
from broker.settings import Settings
from broker.simulate.intel import IntelKit
from broker.simulate.snp import SnpKit
from broker.store.collateral import CollateralStore
from broker.store.database import Database
from broker.store.migrate import migrate
from broker.timeutil import utcnow
from tests.integration.conftest import create_database
from tests.integration.server import running_broker, serving
from tests.unit.collateral.fakes import ROOT_CRL_PATH, FakeVendor

pytestmark = pytest.mark.integration

DAY = dt.timedelta(days=1)


# --- the store -------------------------------------------------------------------------------


@pytest.fixture
async def fresh_db(cluster: LocalPostgres) -> AsyncIterator[Database]:
    database = await Database.connect(await create_database(cluster), 1, 2)
    async with database.connection() as conn:
        await migrate(conn)
    yield database
    await database.close()


async def test_store_round_trip_and_staleness(fresh_db: Database) -> None:
    store = CollateralStore(fresh_db)
    now = utcnow()
    vcek = CollateralItem(ItemKey("snp", "vcek", "Milan/ab?blSPL=1"), b"\x30\x00", None, "kds")
    tcb = CollateralItem(
        ItemKey("tdx", "tcb_info", "5a5a5a000000"), b'{"tcbInfo": 1}', now + DAY, "pcs"
    )
    missing = ItemKey("sgx", "root_crl", "root")
    assert await store.get(vcek.key) is None
    await store.put([vcek, tcb])

    got = await store.get(vcek.key)
    assert got is not None
    assert (got.body, got.next_update, got.source) == (b"\x30\x00", None, "kds")
    assert got.fetched_at is not None
    assert set(await store.get_many([vcek.key, tcb.key, missing])) == {vcek.key, tcb.key}
    assert await store.get_many([]) == {}

    # Fresh until nextUpdate, stale after it; a VCEK never goes stale.
    assert await store.get_fresh(tcb.key, now + DAY) is not None
    assert await store.get_fresh(tcb.key, now + DAY + dt.timedelta(seconds=1)) is None
    assert await store.get_fresh(vcek.key, now + 10_000 * DAY) is not None

    # A put replaces the document, its nextUpdate and its source.
    renewed = CollateralItem(tcb.key, b'{"tcbInfo": 2}', now + 30 * DAY, "pcs again")
    await store.put([renewed])
    got = await store.get_fresh(tcb.key, now + 2 * DAY)
    assert got is not None
    assert (got.body, got.next_update, got.source) == (
        renewed.body,
        renewed.next_update,
        "pcs again",
    )

    listed = await store.list()
    assert [entry.key for entry in listed] == [vcek.key, tcb.key]  # ordered by tee, kind, key
    summary = listed[1].summary(now + 31 * DAY)
    assert (summary["size"], summary["stale"], summary["source"]) == (14, True, "pcs again")


# --- a broker with fake vendors --------------------------------------------------------------


@dataclass
class Deployment:
    base: str
    db: Database
    dsn: str
    vendor: FakeVendor
    milan: SnpKit
    genoa: SnpKit
    intel: IntelKit
    folder: Path
    tee_key: rsa.RSAPrivateKey


def _vendor_app(vendor: FakeVendor) -> Starlette:
    async def answer(request: Request) -> Response:
        status, body, headers = vendor.respond(request.url.path, dict(request.query_params))
        return Response(body, status_code=status, headers=headers)

    return Starlette(routes=[Route("/{path:path}", answer)])


def _trust(folder: Path, name: str, pem: bytes) -> Path:
    path = folder / f"{name}.pem"
    path.write_bytes(pem)
    return path


@pytest.fixture(scope="module")
async def deployment(
    tmp_path_factory: pytest.TempPathFactory, cluster: LocalPostgres, softhsm: LocalSoftHsm
) -> AsyncIterator[Deployment]:
    folder = tmp_path_factory.mktemp("collateral")
    milan = SnpKit.generate(Product.MILAN, rsa_bits=2048)
    genoa = SnpKit.generate(Product.GENOA, rsa_bits=2048)
    intel = IntelKit.create(now=utcnow())
    vendor = FakeVendor()
    vendor.serve_snp(genoa)
    vendor.serve_intel(intel, utcnow())
    dsn = await create_database(cluster)
    with serving(_vendor_app(vendor)) as vendors:
        settings = Settings(
            state_dir=folder,
            database_url=Secret(dsn),
            token_label=softhsm.token_label,
            user_pin_file=softhsm.user_pin_file,
            insecure_test_roots=(
                _trust(folder, "milan", milan.ark.public_bytes(Encoding.PEM)),
                _trust(folder, "genoa", genoa.ark.public_bytes(Encoding.PEM)),
                _trust(folder, "intel", intel.certificates["root"].public_bytes(Encoding.PEM)),
            ),
            amd_kds_url=vendors,
            intel_pcs_url=vendors,
            intel_root_crl_url=vendors + ROOT_CRL_PATH,
            rate_limit_per_second=0,
            db_pool_min=1,
            db_pool_max=8,
            log_format="json",
            log_level="warning",
        )
        with running_broker(settings) as base:
            db = await Database.connect(dsn, 1, 4)
            key = rsa.generate_private_key(65537, 3072)
            yield Deployment(base, db, dsn, vendor, milan, genoa, intel, folder, key)
            await db.close()


async def _attest(deployment: Deployment, tee: str, make: Any) -> httpx.Response:
    """Challenge, then attest with evidence from ``make(report_data)`` and no collateral."""
    _, jwk = tee_jwk(deployment.tee_key)
    async with httpx.AsyncClient(base_url=deployment.base, timeout=30) as http:
        nonce = await GuestClient(http).challenge(tee)
        evidence = make(expected_report_data(nonce, jwk, "sha384"))
        return await http.post(
            "/v1/attest",
            json={
                "tee": tee,
                "evidence": base64.b64encode(evidence).decode(),
                "tee_pubkey": jwk,
                "nonce": nonce,
            },
        )


def _snp(kit: SnpKit, **overrides: Any) -> Any:
    return lambda report_data: kit.sign(kit.report(report_data=report_data, **overrides))


async def _last_audit(deployment: Deployment, kind: str) -> dict[str, Any]:
    async with deployment.db.connection() as conn:
        row = await conn.fetchrow(
            "SELECT decision, record FROM audit_log WHERE kind = $1 ORDER BY seq DESC LIMIT 1", kind
        )
    return {"decision": row["decision"], **json.loads(row["record"])}


@pytest.fixture
def cli_logging() -> Iterator[None]:
    """The CLI configures structlog onto the stderr of the moment (here pytest's capture,
    closed after the test): put the previous configuration back for the brokers that follow."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def _cli(deployment: Deployment, *args: str) -> int:
    config = deployment.folder / "keybroker.toml"
    config.write_text(
        f'database_url = "{deployment.dsn}"\nlog_format = "json"\nlog_level = "warning"\n'
    )
    return main(["collateral", *args, "--config", str(config)])


# --- SEV-SNP ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("cli_logging")
async def test_snp_vcek_imported_offline_is_found_without_asking_kds(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    kit = deployment.milan
    files = {
        "vcek.pem": kit.vcek.public_bytes(Encoding.PEM),
        "cert_chain.pem": kit.cert_chain(),
        "crl.der": kit.crl([], issuer="ark"),
    }
    for name, data in files.items():
        (deployment.folder / name).write_bytes(data)
    paths = [str(deployment.folder / name) for name in files]
    capsys.readouterr()
    # The CLI runs its own event loop: give it a thread of its own.
    assert await asyncio.to_thread(_cli, deployment, "import", *paths, "--tee", "snp") == 0
    printed = capsys.readouterr().out
    assert printed.count("imported snp ") == 3
    record = await _last_audit(deployment, "admin")
    assert record["action"] == "collateral.import"
    assert record["actor"].startswith("cli:")
    assert sorted(item["kind"] for item in record["items"]) == ["cert_chain", "crl", "vcek"]

    assert await asyncio.to_thread(_cli, deployment, "list") == 0
    assert "snp  crl               fresh next_update=2049-12-31" in capsys.readouterr().out
    assert await asyncio.to_thread(_cli, deployment, "list", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert {(entry["kind"], entry["lookup_key"]) for entry in listed} >= {
        ("cert_chain", "Milan/vcek"),
        ("crl", "Milan"),
    }

    answer = await _attest(deployment, "snp", _snp(kit))
    assert answer.status_code == 200, answer.text
    assert answer.json()["claims"]["signer"]["root"] == "insecure-test-milan"
    assert deployment.vendor.count("/Milan") == 0


@pytest.mark.usefixtures("cli_logging")
def test_import_refuses_everything_when_one_file_is_not_collateral(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    good = deployment.folder / "good.pem"
    good.write_bytes(deployment.genoa.cert_chain())
    bad = deployment.folder / "report.bin"
    bad.write_bytes(b"\x02" * 1184)
    assert _cli(deployment, "import", str(good), str(bad)) == 1
    err = capsys.readouterr().err
    assert f"{bad}: not collateral" in err
    assert "nothing imported" in err
    assert _cli(deployment, "import", str(good), "--kind", "vcek") == 1
    assert "is a cert_chain (snp), not a vcek" in capsys.readouterr().err
    assert _cli(deployment, "import", str(deployment.folder / "missing.der")) == 2


async def test_snp_vcek_fetched_once_from_kds_then_served_from_the_store(
    deployment: Deployment,
) -> None:
    kit = deployment.genoa
    vcek_path = f"/vcek/v1/Genoa/{kit.chip_id.hex()}"
    for _ in range(2):
        answer = await _attest(deployment, "snp", _snp(kit))
        assert answer.status_code == 200, answer.text
    assert deployment.vendor.requests[vcek_path] == 1
    assert deployment.vendor.requests["/vcek/v1/Genoa/cert_chain"] == 1
    assert deployment.vendor.requests["/vcek/v1/Genoa/crl"] == 1
    stored = await CollateralStore(deployment.db).list()
    vcek = next(
        entry for entry in stored if entry.key.kind == "vcek" and "Genoa" in entry.key.lookup_key
    )
    assert vcek.source.endswith(vcek_path)
    assert vcek.next_update is None


async def test_kds_down_is_503_collateral_unavailable_and_nothing_is_released(
    deployment: Deployment,
) -> None:
    kit = deployment.milan  # a TCB whose VCEK is not stored: the broker must ask KDS
    newer = TcbParts(bootloader=4, tee=0, snp=24, microcode=213)
    key, _ = kit.issue_vcek(tcb=newer)
    deployment.vendor.down = True
    try:
        answer = await _attest(
            deployment, "snp", lambda rd: kit.sign(kit.report(report_data=rd, tcb=newer), key)
        )
    finally:
        deployment.vendor.down = False
    assert answer.status_code == 503
    problem = answer.json()
    assert problem["evidence_error"] == "collateral-unavailable"
    assert "HTTP 503" in problem["detail"]
    assert problem["type"].endswith("/collateral-unavailable")
    assert problem["deprecated_type"].endswith("/collateral_unavailable")  # until 0.3.0
    assert set(problem) == {
        "type",
        "deprecated_type",
        "title",
        "status",
        "detail",
        "evidence_error",
        "request_id",
    }
    record = await _last_audit(deployment, "attest")
    # Could not be judged: audited as an error (not a policy denial), with the reason.
    assert record["decision"] == "error"
    assert record["error"]["type"] == "collateral-unavailable"


# --- TDX and SGX -----------------------------------------------------------------------------


async def test_sgx_collateral_fetched_once_from_pcs(deployment: Deployment) -> None:
    before = dict(deployment.vendor.requests)
    for _ in range(2):
        answer = await _attest(deployment, "sgx", deployment.intel.sgx_quote)
        assert answer.status_code == 200, answer.text
    fetched = {
        path: count - before.get(path, 0) for path, count in deployment.vendor.requests.items()
    }
    assert fetched["/sgx/certification/v4/tcb"] == 1
    assert fetched["/sgx/certification/v4/qe/identity"] == 1
    assert fetched["/sgx/certification/v4/pckcrl"] <= 1  # shared with TDX: maybe there first
    assert fetched[ROOT_CRL_PATH] <= 1
    assert answer.json()["claims"]["signer"]["root"] == "insecure-test-intel"


async def test_tdx_collateral_past_next_update_is_refreshed(deployment: Deployment) -> None:
    intel, now = deployment.intel, utcnow()
    store = CollateralStore(deployment.db)
    key = tcb_info_key(Tee.TDX, intel.platform.fmspc)
    expired = now - DAY
    await store.put(
        [
            CollateralItem(
                key,
                intel.tcb_info(Tee.TDX, now=now - 31 * DAY, next_update=expired),
                expired,
                "an old import",
            ),
            CollateralItem(
                qe_identity_key(Tee.TDX), intel.qe_identity(Tee.TDX, now=now), now + DAY, "import"
            ),
        ]
    )
    before = dict(deployment.vendor.requests)
    answer = await _attest(deployment, "tdx", intel.tdx_quote)
    assert answer.status_code == 200, answer.text
    requests = deployment.vendor.requests
    assert requests["/tdx/certification/v4/tcb"] - before.get("/tdx/certification/v4/tcb", 0) == 1
    assert requests["/tdx/certification/v4/qe/identity"] == before.get(
        "/tdx/certification/v4/qe/identity", 0
    )  # fresh in the store: not asked
    refreshed = await store.get(key)
    assert refreshed is not None
    assert refreshed.next_update is not None
    assert refreshed.next_update > now
    assert refreshed.source.endswith("/tdx/certification/v4/tcb")
