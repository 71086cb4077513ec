"""hsm/jwe.py: the KBS answer opens in an independent JOSE library once the AAD is regenerated
the kbs-types way, and every tee key the reference client would not send is refused."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from jwcrypto import jwe as jwcrypto_jwe
from jwcrypto import jwk

from hsm import jwe
from hsm.errors import PublicKeyInvalid
from hsm.jwe import Recipient, concat_kdf, protected_header, recipient, seal
from tests.kbs_client.client import TeeKeyPair, open_jwe
from tests.kbs_client.wire import b64url, b64url_decode

SECRET = b"a 33-byte secret, not a multiple!"


@pytest.fixture(scope="module", params=["P-256", "P-521", "RSA-3072"])
def key(request: pytest.FixtureRequest) -> TeeKeyPair:
    return TeeKeyPair.generate(request.param)


def test_sealed_secret_opens_in_the_reference_clients_way(key: TeeKeyPair) -> None:
    envelope = seal(bytearray(SECRET), recipient(key.public))
    body = json.dumps(envelope.to_json()).encode()
    assert open_jwe(body, key.private) == SECRET
    document = json.loads(body)
    assert list(document) == ["protected", "encrypted_key", "iv", "ciphertext", "tag"]
    assert len(b64url_decode(document["iv"])) == 12
    assert len(b64url_decode(document["tag"])) == 16
    header = json.loads(b64url_decode(document["protected"]))
    assert list(header)[:2] == ["alg", "enc"]
    assert header["enc"] == "A256GCM"
    if key.public["kty"] == "EC":
        assert header["alg"] == "ECDH-ES+A256KW"
        assert list(header) == ["alg", "enc", "epk"]
        assert list(header["epk"]) == ["crv", "kty", "x", "y"]
        assert header["epk"]["crv"] == key.public["crv"]
        size = 32 if key.public["crv"] == "P-256" else 66
        assert len(b64url_decode(header["epk"]["x"])) == size
        assert len(b64url_decode(document["encrypted_key"])) == 40
    else:
        assert header == {"alg": "RSA-OAEP-256", "enc": "A256GCM"}
        assert len(b64url_decode(document["encrypted_key"])) == 384


def test_another_header_spelling_opens_in_jwcrypto_but_not_in_the_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = TeeKeyPair.generate("P-256")

    def enc_first(alg: str, enc: str, others: Any = None) -> str:
        text = json.dumps({"enc": enc, "alg": alg, **(others or {})}, separators=(",", ":"))
        return b64url(text.encode())

    monkeypatch.setattr(jwe, "protected_header", enc_first)
    body = json.dumps(seal(SECRET, recipient(key.public)).to_json())
    generic = jwcrypto_jwe.JWE()
    generic.deserialize(body, key=key.private)  # RFC 7516: the received string is the AAD
    assert generic.payload == SECRET
    with pytest.raises(jwcrypto_jwe.InvalidJWEData):
        open_jwe(body.encode(), key.private)  # kbs-types regenerates: alg first, GCM fails


def test_protected_header_sorts_nested_members() -> None:
    header = protected_header("a", "b", {"z": 1, "epk": {"y": "2", "crv": "c"}})
    assert b64url_decode(header) == b'{"alg":"a","enc":"b","epk":{"crv":"c","y":"2"},"z":1}'
    with pytest.raises(ValueError, match="alg and enc"):
        protected_header("a", "b", {"alg": "x"})


def test_concat_kdf_is_rfc_7518_with_empty_party_info() -> None:
    z = bytes(range(32))
    other = b"\x00\x00\x00\x0eECDH-ES+A256KW" + bytes(8) + b"\x00\x00\x01\x00"
    assert (
        concat_kdf(z, "ECDH-ES+A256KW") == hashlib.sha256(b"\x00\x00\x00\x01" + z + other).digest()
    )


def test_thumbprint_is_rfc_7638(key: TeeKeyPair) -> None:
    assert recipient(key.public).thumbprint() == key.private.thumbprint()


def test_envelope_says_where_the_secret_was() -> None:
    envelope = seal(SECRET, recipient(TeeKeyPair.generate().public))
    assert envelope.exposure() == {
        "plaintext_in_broker": True,
        "envelope": {"format": "jwe", "alg": "ECDH-ES+A256KW", "enc": "A256GCM"},
    }
    assert "ciphertext=<" in repr(envelope)
    assert b64url(envelope.ciphertext) not in repr(envelope)


def _ec(**changes: Any) -> dict[str, Any]:
    public = dict(TeeKeyPair.generate("P-256").public)
    public.update(changes)
    return {k: v for k, v in public.items() if v is not None}


def _rsa(bits: int = 3072, exponent: int = 65537, **changes: Any) -> dict[str, Any]:
    private = jwk.JWK.generate(kty="RSA", size=bits, public_exponent=exponent)
    exported = private.export_public(as_dict=True)
    public = {"kty": "RSA", "alg": "RSA-OAEP-256", "n": exported["n"], "e": exported["e"]}
    public.update(changes)
    return public


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: "a string", "tee-pubkey must be a JWK object of strings"),
        (lambda: {**_ec(), "x": 5}, "tee-pubkey must be a JWK object of strings"),
        (lambda: {"kty": "OKP", "crv": "X25519", "x": "AA"}, "kty 'OKP' is not EC or RSA"),
        (lambda: _ec(d="AAAA"), "must have exactly the members alg, crv, kty, x, y"),
        (lambda: _ec(alg=None), r"\(found crv, kty, x, y\)"),
        (lambda: _ec(alg="ECDH-ES"), "EC tee-pubkey alg 'ECDH-ES' is not ECDH-ES\\+A256KW"),
        (lambda: _ec(crv="P-384"), "crv 'P-384' is not P-256 or P-521"),
        (lambda: _ec(x=b64url(bytes(31))), "P-256 coordinates are 32 bytes each"),
        (lambda: _ec(x=b64url(bytes(32))), "tee-pubkey is not a point on P-256"),
        (lambda: _ec(x="AA=="), "tee-pubkey x must be unpadded base64url text"),
        (lambda: _rsa(alg="RSA1_5"), "RSA tee-pubkey alg 'RSA1_5' is not RSA-OAEP-256"),
        (lambda: _rsa(bits=2048), r"must be 3072 or 4096 bits with e = 65537 \(found 2048 bits"),
        (lambda: _rsa(exponent=3), r"\(found 3072 bits, e = 3\)"),
        (lambda: _rsa(e="AAEAAQ"), "minimal big-endian integers"),
    ],
)
def test_refused_tee_keys(make: Any, message: str) -> None:
    with pytest.raises(PublicKeyInvalid, match=message):
        recipient(make())


def test_recipient_repr_names_no_key_material() -> None:
    public = TeeKeyPair.generate().public
    found = recipient(public)
    assert isinstance(found, Recipient)
    assert public["x"] not in repr(found)
