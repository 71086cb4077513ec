"""Admin identity from TLS client certificates (PostgreSQL, SoftHSM, a real broker serving
HTTPS on loopback): a certificate the CA issued whose subject admin_client_roles_file lists
is that role, without a bearer token; any other certificate is nobody; guests connect
without one (tls_client_optional); with admin_client_certificate_only, tokens are refused."""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from broker.localstate.democa import issue, make_ca, private_pem
from broker.localstate.softhsm import LocalSoftHsm
from broker.roles import Role
from tests.integration.release_support import Deployment, running_deployment

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Pki:
    directory: Path
    ca_file: Path
    server: tuple[Path, Path]

    def client(self, name: str) -> tuple[str, str]:
        return str(self.directory / f"{name}.pem"), str(self.directory / f"{name}.key")


def _write(directory: Path, name: str, key: object, certificate: x509.Certificate) -> None:
    (directory / f"{name}.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / f"{name}.key").write_bytes(private_pem(key))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca_key, ca = make_ca("keybroker test admin CA")
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    loopback = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    _write(directory, "server", *issue(ca_key, ca, "127.0.0.1", loopback))
    for name in ("alice", "bob", "mallory"):
        _write(directory, name, *issue(ca_key, ca, name))
    other_key, other = make_ca("another CA")
    _write(directory, "stranger", *issue(other_key, other, "alice"))
    (directory / "roles.toml").write_text(
        '[[client]]\nsubject = "CN=alice"\nrole = "key-custodian"\n\n'
        '[[client]]\nsubject = "CN=bob"\nrole = "auditor"\n'
    )
    return Pki(
        directory,
        directory / "ca.pem",
        (directory / "server.pem", directory / "server.key"),
    )


def _tls(pki: Pki, **more: object) -> dict[str, object]:
    return {
        "tls_cert_file": pki.server[0],
        "tls_key_file": pki.server[1],
        "tls_client_ca_file": pki.ca_file,
        "tls_client_optional": True,
        "admin_client_roles_file": pki.directory / "roles.toml",
        **more,
    }


@pytest.fixture(scope="module")
async def deployment(
    pki: Pki, softhsm: LocalSoftHsm, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Deployment]:
    directory = tmp_path_factory.mktemp("mtls")
    async with running_deployment(directory, softhsm, (), {}, **_tls(pki)) as running:
        yield running


@pytest.fixture(scope="module")
async def strict(
    pki: Pki, softhsm: LocalSoftHsm, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Deployment]:
    directory = tmp_path_factory.mktemp("mtls-only")
    settings = _tls(pki, admin_client_certificate_only=True)
    async with running_deployment(directory, softhsm, (), {}, **settings) as running:
        yield running


@contextmanager
def _client(
    deployment: Deployment, pki: Pki, who: str | None, token: str | None = None
) -> Iterator[httpx.Client]:
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    if who is not None:
        context.load_cert_chain(*pki.client(who))
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=deployment.base, verify=context, headers=headers) as client:
        yield client


def test_a_listed_certificate_is_its_role_without_a_token(deployment: Deployment, pki: Pki) -> None:
    assert deployment.base.startswith("https://")
    with _client(deployment, pki, "alice") as alice:
        who = alice.get("/v1/admin/whoami")
        created = alice.post("/v1/admin/keys", json={"name": "by-cert", "generate_length": 16})
    assert who.status_code == 200, who.text
    assert who.json() == {
        "actor": "cert:CN=alice",
        "role": "key-custodian",
        "token_id": None,
        "expires_at": None,
    }
    assert created.status_code == 201, created.text
    assert created.json()["created_by"] == "cert:CN=alice"


def test_the_role_a_certificate_stands_for_is_enforced(deployment: Deployment, pki: Pki) -> None:
    with _client(deployment, pki, "bob") as bob:
        refused = bob.post("/v1/admin/keys", json={"name": "by-bob", "generate_length": 16})
        listed = bob.get("/v1/admin/keys")
    assert refused.status_code == 403
    assert refused.json()["type"].endswith("/forbidden")
    assert listed.status_code == 200


def test_an_unlisted_certificate_is_nobody(deployment: Deployment, pki: Pki) -> None:
    with _client(deployment, pki, "mallory") as mallory:
        anonymous = mallory.get("/v1/admin/whoami")
    assert anonymous.status_code == 401
    assert anonymous.json()["detail"] == "Authorization: Bearer <admin token> is required"
    token = deployment.tokens[Role.AUDITOR]
    with _client(deployment, pki, "mallory", token) as with_token:
        who = with_token.get("/v1/admin/whoami").json()
    assert who["actor"].startswith("token:")
    assert who["role"] == "auditor"


def test_guests_connect_without_a_certificate(deployment: Deployment, pki: Pki) -> None:
    with _client(deployment, pki, None) as guest:
        assert guest.get("/healthz").status_code == 200
        assert guest.post("/v1/challenge", json={"tee": "snp"}).status_code == 201
        assert guest.get("/v1/admin/whoami").status_code == 401


def test_a_certificate_of_another_ca_ends_the_handshake(deployment: Deployment, pki: Pki) -> None:
    with pytest.raises(httpx.HTTPError), _client(deployment, pki, "stranger") as stranger:
        stranger.get("/healthz")


def test_certificate_only_refuses_every_bearer_token(strict: Deployment, pki: Pki) -> None:
    token = strict.tokens[Role.ADMIN]
    with _client(strict, pki, None, token) as bearer:
        refused = bearer.get("/v1/admin/whoami")
    assert refused.status_code == 401
    assert refused.json()["detail"] == (
        "a client certificate listed in admin_client_roles_file is required "
        "(admin_client_certificate_only); this connection has no client certificate"
    )
    with _client(strict, pki, "mallory", token) as unlisted:
        detail = unlisted.get("/v1/admin/whoami").json()["detail"]
    assert detail.endswith("this connection has certificate CN=mallory")
    with _client(strict, pki, "alice") as alice:
        assert alice.get("/v1/admin/whoami").json()["actor"] == "cert:CN=alice"
