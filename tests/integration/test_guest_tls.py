"""The lean guest client against a real broker over HTTPS (PostgreSQL, SoftHSM, uvicorn's TLS
on a loopback port): the broker authenticated by a CA file or an SPKI pin, and the release
envelope's signature checked against the broker key it pinned, so that whatever terminates
TLS cannot substitute an envelope."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from keybroker_guest.cli import main as guest_main
from keybroker_guest.errors import ExitStatus
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from broker import jose
from broker.cli import demo
from broker.localstate.democa import demo_tls, issue, make_ca, private_pem
from broker.localstate.postgres import LocalPostgres
from broker.localstate.softhsm import LocalSoftHsm
from tests.integration.conftest import create_database
from tests.integration.guest_support import GuestBroker, broker_settings, guest_broker, seed
from tests.integration.server import running_broker, serving
from tests.unit.guest.fake_broker import sign_digest

pytestmark = pytest.mark.integration

DENIED = "denied-key"


@pytest.fixture(scope="module")
def broker(
    tmp_path_factory: pytest.TempPathFactory, cluster: LocalPostgres, softhsm: LocalSoftHsm
) -> Iterator[GuestBroker]:
    state = tmp_path_factory.mktemp("guest-tls")
    settings = broker_settings(state, asyncio.run(create_database(cluster)), softhsm)
    asyncio.run(seed(settings, allowed=[], denied=[DENIED]))
    with guest_broker(settings) as running:
        yield running


def fetch(broker: GuestBroker, *extra: str, url: str | None = None, key: str = "") -> int:
    return guest_main(
        [
            "fetch",
            "--url",
            url or broker.base,
            "--key",
            key or demo.DEMO_KEY,
            "--tee",
            "snp",
            "--simulate",
            "--state-dir",
            str(broker.settings.state_dir),
            "--wait",
            "0",
            *extra,
        ]
    )


def test_https_with_the_ca_releases_the_key(
    broker: GuestBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "key"
    assert fetch(broker, "--ca", str(broker.tls.ca_file), "--out", str(out)) == 0
    assert out.read_bytes().startswith(b"keybroker demo disk key ")
    assert capsys.readouterr().err.startswith("released disk-key version 1 (")


def test_https_with_the_pin_and_the_broker_key_pinned_releases_the_key(
    broker: GuestBroker, tmp_path: Path
) -> None:
    out = tmp_path / "key"
    pins = ("--pin-sha256", broker.tls.pin_sha256, "--out", str(out))
    assert fetch(broker, *pins, f"--broker-key-sha256={broker.signing_key.thumbprint}") == 0
    assert out.read_bytes().startswith(b"keybroker demo disk key ")


def test_a_wrong_pin_is_refused_before_anything_is_sent(
    broker: GuestBroker, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = base64.b64encode(bytes(32)).decode()
    assert fetch(broker, "--pin-sha256", wrong) == ExitStatus.UNTRUSTED == 6
    assert capsys.readouterr().err == (
        f"keybroker-guest: the broker's TLS key (pin-sha256 {broker.tls.pin_sha256}) "
        "is not pinned\n"
    )


def test_a_wrong_ca_is_refused(
    broker: GuestBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other_ca = demo_tls(tmp_path).ca_file
    assert fetch(broker, "--ca", str(other_ca)) == ExitStatus.UNTRUSTED
    assert capsys.readouterr().err == (
        "keybroker-guest: the broker's TLS certificate does not verify: "
        "unable to get local issuer certificate\n"
    )
    # Neither is a certificate the system's trust store never heard of.
    assert fetch(broker) == ExitStatus.UNTRUSTED
    assert "does not verify: unable to get local issuer certificate" in capsys.readouterr().err


def test_a_denied_release_exits_4_with_the_failed_rule(
    broker: GuestBroker, capsys: pytest.CaptureFixture[str]
) -> None:
    assert fetch(broker, "--ca", str(broker.tls.ca_file), key=DENIED) == ExitStatus.DENIED
    out, err = capsys.readouterr()
    assert "keybroker demo" not in out
    assert err.startswith(f"keybroker-guest: /v1/keys/{DENIED}/release: 403 ")
    assert "measurement" in err


def _terminator(upstream: str, ca: Path, *, own_jwks: bool, kid: str | None) -> Starlette:
    """A TLS terminator in front of the broker that signs release envelopes with its own key
    (naming ``kid``, else its own key's) and, with ``own_jwks``, serves its key as the
    broker's."""
    key = ec.generate_private_key(ec.SECP256R1())
    context = ssl.create_default_context(cafile=str(ca))

    async def forward(request: Request) -> Response:
        path = request.url.path
        headers = {
            name: value
            for name, value in request.headers.items()
            if name in ("authorization", "content-type")
        }
        async with httpx.AsyncClient(base_url=upstream, verify=context) as client:
            answer = await client.request(
                request.method, path, content=await request.body(), headers=headers
            )
        body = answer.content
        if path == "/v1/jwks" and own_jwks:
            body = json.dumps({"keys": [jose.ec_jwk(key.public_key())]}).encode()
        if path.endswith("/release") and answer.status_code == 200:
            document = answer.json()
            payload = json.loads(
                base64.urlsafe_b64decode(document["envelope"].split(".")[1] + "==")
            )
            signer = kid or jose.key_id(key.public_key())
            document["envelope"] = jose.sign_sync(
                payload, jose.TYP_RELEASE, signer, lambda d: sign_digest(key, d)
            )
            body = json.dumps(document).encode()
        return Response(body, answer.status_code, media_type="application/json")

    return Starlette(routes=[Route("/{path:path}", forward, methods=["GET", "POST"])])


def test_a_terminator_substituting_the_envelope_is_refused(
    broker: GuestBroker, capsys: pytest.CaptureFixture[str]
) -> None:
    tls = {"ssl_certfile": str(broker.tls.cert_file), "ssl_keyfile": str(broker.tls.key_file)}
    real = broker.signing_key.thumbprint
    ca = ("--ca", str(broker.tls.ca_file))
    # It signs with its own key, and says so: the envelope names another key than the pinned.
    app = _terminator(broker.base, broker.tls.ca_file, own_jwks=False, kid=None)
    with serving(app, **tls) as base:
        assert fetch(broker, *ca, url=base) == ExitStatus.UNTRUSTED
        err = capsys.readouterr().err
        assert err.startswith("keybroker-guest: envelope was signed by broker key ")
        assert err.endswith(f", not the pinned {real}\n")
    # It names the broker's key: the signature does not verify with it.
    app = _terminator(broker.base, broker.tls.ca_file, own_jwks=False, kid=real)
    with serving(app, **tls) as base:
        assert fetch(broker, *ca, url=base) == ExitStatus.UNTRUSTED
        assert capsys.readouterr().err == (
            "keybroker-guest: envelope signature does not verify with the pinned broker key\n"
        )
    # It also serves its own key as the broker's: a guest that pinned the broker's key at
    # bind time is refused before it sends any evidence.
    app = _terminator(broker.base, broker.tls.ca_file, own_jwks=True, kid=None)
    with serving(app, **tls) as base:
        assert fetch(broker, *ca, f"--broker-key-sha256={real}", url=base) == 6
        err = capsys.readouterr().err
        assert err.startswith("keybroker-guest: the broker signs with ")
        assert err.endswith(f", not the pinned key {real}\n")
        # Unpinned, that guest would take the terminator's word: why pinning matters.
        assert fetch(broker, *ca, url=base) == 0
        assert capsys.readouterr().err.startswith("released disk-key")


def _client_identity(folder: Path) -> tuple[Path, Path, Path]:
    """A client CA, and a client certificate and key it issued (PEM files)."""
    ca_key, ca = make_ca("guest client CA")
    key, certificate = issue(ca_key, ca, "guest")
    paths = folder / "client-ca.pem", folder / "client.pem", folder / "client.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(private_pem(key))
    return paths


def test_tls_client_ca_requires_a_client_certificate(broker: GuestBroker, tmp_path: Path) -> None:
    client_ca, cert, key = _client_identity(tmp_path)
    settings = broker.settings.with_overrides(tls_client_ca_file=client_ca)
    with running_broker(settings) as base:
        with_identity = ssl.create_default_context(cafile=str(broker.tls.ca_file))
        with_identity.load_cert_chain(cert, key)
        with httpx.Client(base_url=base, verify=with_identity) as client:
            assert client.get("/v1/jwks").status_code == 200
        anonymous = ssl.create_default_context(cafile=str(broker.tls.ca_file))
        with (
            httpx.Client(base_url=base, verify=anonymous) as client,
            pytest.raises(httpx.HTTPError) as caught,
        ):
            client.get("/v1/jwks")
        # TLS 1.3: the server checks the client's (absent) certificate after the handshake
        # and closes the connection before reading the request.
        assert isinstance(caught.value, httpx.RemoteProtocolError | httpx.ConnectError)
