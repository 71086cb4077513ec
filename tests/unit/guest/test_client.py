"""The guest's own checks on what the broker answers: a refusal is a GuestError carrying the
problem, and an envelope whose signature or payload is not the broker's is never opened."""

from __future__ import annotations

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from keybroker_guest.evidence import BindingInput

from broker import jose
from broker.guest.client import GuestClient, GuestError

from .fake_broker import FakeBroker, Spoil, alter_payload, flip_signature

GUEST_KEY = rsa.generate_private_key(65537, 3072)


class StubSource:
    """Evidence the fake broker accepts without looking at it."""

    tee = "snp"

    def produce(self, binding: BindingInput) -> tuple[bytes, dict[str, bytes]]:
        return b"evidence", {}


async def fetch(broker: FakeBroker, flow: str = "one-request") -> bytes:
    async with httpx.AsyncClient(base_url="http://broker.test", transport=broker.transport()) as h:
        client = GuestClient(h)
        released = await client.fetch(StubSource(), "disk-key", private_key=GUEST_KEY, flow=flow)
    return released.secret


@pytest.mark.parametrize(
    ("flow", "paths"),
    [
        ("one-request", ["/v1/challenge", "/v1/keys/disk-key/release", "/v1/jwks"]),
        ("token", ["/v1/challenge", "/v1/attest", "/v1/keys/disk-key/release", "/v1/jwks"]),
    ],
)
async def test_a_genuine_envelope_opens_to_the_secret(flow: str, paths: list[str]) -> None:
    broker = FakeBroker()
    assert await fetch(broker, flow) == b"the disk key"
    assert broker.paths == paths


async def test_a_flow_other_than_the_two_is_refused_before_any_request() -> None:
    broker = FakeBroker()
    with pytest.raises(ValueError, match=r"^flow must be one-request or token, not 'both'$"):
        await fetch(broker, "both")
    assert broker.paths == []


@pytest.mark.parametrize(
    ("spoil", "why"),
    [
        (flip_signature, "envelope signature does not verify with the pinned broker key"),
        (alter_payload, "envelope signature does not verify with the pinned broker key"),
    ],
)
async def test_an_envelope_that_does_not_verify_is_refused(spoil: Spoil, why: str) -> None:
    broker = FakeBroker(spoil=spoil)
    with pytest.raises(GuestError) as caught:
        await fetch(broker)
    assert str(caught.value) == why
    assert (caught.value.status, caught.value.problem) == (None, None)


async def test_an_envelope_signed_by_another_key_is_refused() -> None:
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    broker = FakeBroker(jwks_key=other)
    with pytest.raises(GuestError) as caught:
        await fetch(broker)
    assert str(caught.value) == (
        f"envelope was signed by broker key {broker.thumbprint}, "
        f"not the pinned {jose.key_id(other)}"
    )


async def test_a_signed_envelope_that_does_not_open_is_a_guest_error() -> None:
    with pytest.raises(GuestError) as caught:
        await fetch(FakeBroker(stated_length=40))
    assert str(caught.value) == ("envelope secret does not match its stated length")


@pytest.mark.parametrize(
    ("path", "status", "detail"),
    [
        ("/v1/challenge", 429, "too many challenges"),
        ("/v1/attest", 403, "evidence refused: signature-invalid"),
        ("/v1/keys/disk-key/release", 403, "policy denied: debug == false, found true"),
    ],
)
@pytest.mark.parametrize("flow", ["one-request", "token"])
async def test_a_refusal_is_a_guest_error_with_the_problem(
    path: str, status: int, detail: str, flow: str
) -> None:
    if path == "/v1/attest" and flow == "one-request":
        path = "/v1/keys/disk-key/release"  # the evidence is refused at the release
    broker = FakeBroker(refuse={path: (status, detail)})
    with pytest.raises(GuestError) as caught:
        await fetch(broker, flow)
    assert str(caught.value) == f"{path}: {status} {detail}"
    assert caught.value.status == status
    assert caught.value.problem["detail"] == detail
    assert broker.paths[-1] == path


@pytest.mark.parametrize(
    ("path", "reply", "message"),
    [
        ("/v1/challenge", httpx.Response(200, text="<html>proxy</html>"), "answer is not JSON"),
        ("/v1/challenge", httpx.Response(200, json=["nonce"]), "answer is not a JSON object"),
        ("/v1/challenge", httpx.Response(201, json={}), "lacks the string member 'nonce'"),
        ("/v1/attest", httpx.Response(200, json={"token": 7}), "lacks the string member 'token'"),
        ("/v1/keys/disk-key/release", httpx.Response(200, json={}), "member 'envelope'"),
    ],
)
async def test_answers_of_the_wrong_shape_are_guest_errors(
    path: str, reply: httpx.Response, message: str
) -> None:
    broker = FakeBroker()

    def handle(request: httpx.Request) -> httpx.Response:
        return reply if request.url.path == path else broker.handle(request)

    async with httpx.AsyncClient(
        base_url="http://broker.test", transport=httpx.MockTransport(handle)
    ) as http:
        with pytest.raises(GuestError, match=message):
            await GuestClient(http).fetch(
                StubSource(), "disk-key", private_key=GUEST_KEY, flow="token"
            )
