from __future__ import annotations

import base64
import re
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from hsm.errors import PublicKeyInvalid
from hsm.pubkey import (
    RsaPublicKey,
    b64url,
    b64url_decode,
    decode_unpadded_b64url,
    from_jwk,
    from_spki_der,
    jwk_thumbprint,
)


@pytest.fixture(scope="module")
def rsa3072() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 3072)


def _spki(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_jwk_and_spki_agree(rsa3072: rsa.RSAPrivateKey) -> None:
    from_der = from_spki_der(_spki(rsa3072))
    from_json = from_jwk(from_der.jwk())
    assert from_der == from_json
    assert from_json.bits == 3072
    assert from_der.spki_der() == _spki(rsa3072)


def test_thumbprint_matches_rfc7638_example() -> None:
    # RFC 7638 §3.1: the example key's thumbprint.
    jwk = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSo"
        "c_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0"
        "_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhA"
        "I4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
    }
    n = int.from_bytes(base64.urlsafe_b64decode(jwk["n"] + "=="), "big")
    assert RsaPublicKey(n, 65537).thumbprint() == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda j: {**j, "kty": "EC"}, "kty 'EC' != 'RSA'"),
        (lambda j: {**j, "d": "AQAB"}, "unexpected members: \\['d'\\]"),
        (lambda j: {**j, "n": j["n"] + "="}, "unpadded base64url"),
        (lambda j: {**j, "n": "!!!"}, "not base64url"),
        (lambda j: {**j, "e": "Aw"}, "public exponent 3 != 65537"),
        (lambda j: {**j, "n": "AA" + j["n"]}, "minimal big-endian"),
        (lambda j: {k: v for k, v in j.items() if k != "n"}, "unpadded base64url"),
        (lambda j: {**j, "kid": 1.5}, "JWK kid must be a string"),
        (lambda j: {**j, "alg": ["RS256"]}, "JWK alg must be a string"),
    ],
)
def test_bad_jwks_are_refused(rsa3072: rsa.RSAPrivateKey, mutate: object, message: str) -> None:
    jwk = from_spki_der(_spki(rsa3072)).jwk()
    with pytest.raises(PublicKeyInvalid, match=message):
        from_jwk(mutate(jwk))  # type: ignore[operator]


def test_small_rsa_and_non_rsa_keys_are_refused() -> None:
    with pytest.raises(PublicKeyInvalid, match="2048 bits"):
        from_spki_der(_spki(rsa.generate_private_key(65537, 2048)))
    with pytest.raises(PublicKeyInvalid, match="not RSA"):
        from_spki_der(_spki(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(PublicKeyInvalid, match="not DER"):
        from_spki_der(b"\x30\x03\x02\x01\x00")


def test_b64url_has_no_padding() -> None:
    assert b64url(b"\xff\xfe") == "__4"


@given(st.binary(max_size=600))
def test_b64url_is_unpadded_urlsafe_base64(data: bytes) -> None:
    assert b64url(data) == base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@settings(max_examples=50)
@given(st.integers(2**3071, 2**4096 - 1), st.integers(1, 2**64))
def test_thumbprint_is_the_rfc7638_hash_of_the_jwk(modulus: int, exponent: int) -> None:
    # The direct form against the generic one: JSON of the required members, sorted, compact.
    key = RsaPublicKey(modulus | 1, exponent)
    assert key.thumbprint() == jwk_thumbprint(key.jwk())
    assert key.thumbprint() == key.thumbprint()  # the memo


def test_the_thumbprint_memo_is_not_part_of_the_value(rsa3072: rsa.RSAPrivateKey) -> None:
    numbers = rsa3072.public_key().public_numbers()
    named, fresh = RsaPublicKey(numbers.n, numbers.e), RsaPublicKey(numbers.n, numbers.e)
    named.thumbprint()
    assert named == fresh
    assert hash(named) == hash(fresh)
    assert repr(named) == repr(fresh)


def _reference_b64url_decode(text: str) -> bytes:
    """RFC 7515 §2 base64url, decoded with the standard library and no shortcuts."""
    if not text or "=" in text:
        raise PublicKeyInvalid("must be unpadded base64url text")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", text) or len(text) % 4 == 1:
        raise PublicKeyInvalid("is not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _decoded(decode: Callable[[str], bytes], text: str) -> object:
    try:
        return decode(text)
    except PublicKeyInvalid as exc:
        return str(exc).rsplit(" ", 3)[-3:]  # the reason, without the member's name


@given(
    st.binary(max_size=70).map(b64url)
    | st.text(alphabet="AQB_-+/=\n é", max_size=12)
    | st.binary(min_size=1, max_size=70).map(lambda raw: f"{b64url(raw)}\n")
)
def test_b64url_decode_is_the_reference(text: str) -> None:
    assert _decoded(lambda t: b64url_decode(t, "x"), text) == _decoded(
        _reference_b64url_decode, text
    )


@pytest.mark.parametrize("bits", [3072, 4096])
def test_a_final_newline_is_not_base64url(bits: int) -> None:
    # Once let through by "$" (which matches before a final newline) into the decoder, which
    # then raised binascii.Error: an internal error instead of a refused key.
    jwk = RsaPublicKey(
        rsa.generate_private_key(65537, bits).public_key().public_numbers().n, 65537
    ).jwk()
    for member in ("n", "e"):
        with pytest.raises(PublicKeyInvalid, match=f"JWK {member} is not base64url"):
            from_jwk({**jwk, member: jwk[member] + "\n"})


@given(st.text(alphabet="AQB_-+/=\n !é", max_size=16) | st.binary(max_size=70).map(b64url))
def test_decode_unpadded_b64url_is_urlsafe_b64decode(text: str) -> None:
    def outcome(decode: Callable[[str], bytes]) -> object:
        try:
            return decode(text)
        except ValueError:  # binascii.Error included
            return "refused"

    reference = outcome(lambda t: base64.urlsafe_b64decode(t + "=" * (-len(t) % 4)))
    assert outcome(decode_unpadded_b64url) == reference
