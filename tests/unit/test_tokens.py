"""Attestation-result tokens: reading, and the issued-token memo that skips re-verification."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    decode_dss_signature,
    encode_dss_signature,
)

from broker import jose
from broker.errors import TokenInvalid, TokenUnverified
from broker.evidence.claims import Claims, Signer, SignerOrigin, Tee
from broker.release import tokens
from hsm.pubkey import RsaPublicKey, from_jwk

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
BROKER_KEY = ec.generate_private_key(ec.SECP256R1())
PUBLIC = BROKER_KEY.public_key()
TEE_KEY = rsa.generate_private_key(65537, 3072).public_key().public_numbers()
JWK = RsaPublicKey(TEE_KEY.n, TEE_KEY.e).jwk()
CLAIMS = Claims(
    tee=Tee.SNP,
    signer=Signer("amd", SignerOrigin.SILICON_VENDOR, "amd-ark-milan", "vcek", "Milan"),
    debug=False,
    fields={"measurement": "ab" * 48, "reported_tcb": {"snp": 5}},
    report_data=b"\x01" * 64,
)


def _sign_digest(digest: bytes) -> bytes:
    r, s = decode_dss_signature(BROKER_KEY.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256()))))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _issue() -> tuple[str, tokens.AttestationResult]:
    payload = tokens.payload(CLAIMS, dict(JWK), "cd" * 32, NOW, 300)
    kid = jose.key_id(PUBLIC)
    token = jose.sign_sync(payload, jose.TYP_ATTESTATION_RESULT, kid, _sign_digest)
    return token, tokens.result_of(payload, CLAIMS, from_jwk(JWK), NOW)


def test_memo_returns_what_read_returns() -> None:
    token, issued = _issue()
    memo = tokens.IssuedTokens(PUBLIC)
    memo.remember(token, issued)
    read = tokens.read(token, PUBLIC, NOW)
    assert memo.read(token, PUBLIC, NOW) == read == issued


def test_memo_still_checks_the_validity_period() -> None:
    token, issued = _issue()
    memo = tokens.IssuedTokens(PUBLIC)
    memo.remember(token, issued)
    with pytest.raises(TokenInvalid, match="expired"):
        memo.read(token, PUBLIC, NOW + timedelta(seconds=331))
    with pytest.raises(TokenInvalid, match="not valid yet"):
        memo.read(token, PUBLIC, NOW - timedelta(seconds=31))


def test_unknown_or_altered_tokens_are_verified() -> None:
    token, issued = _issue()
    memo = tokens.IssuedTokens(PUBLIC, capacity=1)
    memo.remember(token, issued)
    header, payload, signature = token.split(".")
    forged = f"{header}.{payload}A.{signature}"
    with pytest.raises(TokenInvalid):
        memo.read(forged, PUBLIC, NOW)
    other, other_issued = _issue()
    memo.remember(other, other_issued)  # evicts the first (capacity 1)
    assert memo.read(token, PUBLIC, NOW) == issued  # verified, not memo
    with pytest.raises(TokenInvalid, match="another broker key"):
        memo.read(token, ec.generate_private_key(ec.SECP256R1()).public_key(), NOW)


def test_the_memo_serves_only_the_identical_token() -> None:
    # Entries are found by the signature's text: another token ending in the same signature
    # (here, the same payload with another header) must still be verified, and fail.
    token, issued = _issue()
    memo = tokens.IssuedTokens(PUBLIC)
    memo.remember(token, issued)
    _header, payload, signature = token.split(".")
    other_header = base64.urlsafe_b64encode(b'{"alg":"ES256","typ":"kb-ar+jwt"}').rstrip(b"=")
    lookalike = f"{other_header.decode()}.{payload}.{signature}"
    assert lookalike[-tokens.IssuedTokens.KEY_CHARS :] == token[-tokens.IssuedTokens.KEY_CHARS :]
    with pytest.raises(TokenInvalid, match="another broker key"):
        memo.read(lookalike, PUBLIC, NOW)
    assert memo.read(token, PUBLIC, NOW) is issued


def _signed(payload: dict[str, object], typ: str = jose.TYP_ATTESTATION_RESULT) -> str:
    kid = jose.key_id(PUBLIC)
    return jose.sign_sync(payload, typ, kid, _sign_digest)


def test_a_release_envelope_is_not_a_token() -> None:
    payload = tokens.payload(CLAIMS, dict(JWK), "cd" * 32, NOW, 300)
    envelope = _signed(payload, jose.TYP_RELEASE)
    with pytest.raises(TokenInvalid, match="typ kb-ar\\+jwt"):
        tokens.read(envelope, PUBLIC, NOW)


def test_another_brokers_key_is_refused() -> None:
    token, _ = _issue()
    with pytest.raises(TokenInvalid, match="signed by another broker key"):
        tokens.read(token, ec.generate_private_key(ec.SECP256R1()).public_key(), NOW)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"iss": "someone-else"}, "issuer is not keybroker"),
        ({"iat": None}, "lacks iat/exp"),
        ({"exp": "tomorrow"}, "lacks iat/exp"),
        ({"cnf": {}}, "payload is incomplete"),
        ({"claims": {"tee": "snp"}}, "payload is incomplete"),
        # Found by the fuzz campaign: OverflowError and AttributeError before.
        ({"iat": -(10**20)}, "iat/exp are not instants in order"),
        ({"exp": 10**30}, "iat/exp are not instants in order"),
        ({"iat": int(NOW.timestamp()) + 10, "exp": int(NOW.timestamp())}, "not instants in order"),
        ({"claims": []}, "payload is incomplete"),
        ({"claims": "snp"}, "payload is incomplete"),
    ],
)
def test_signed_but_incomplete_payloads_are_refused(
    change: dict[str, object], message: str
) -> None:
    payload = {**tokens.payload(CLAIMS, dict(JWK), "cd" * 32, NOW, 300), **change}
    with pytest.raises(TokenInvalid, match=message):
        tokens.read(_signed(payload), PUBLIC, NOW)


def _segment(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


_TWO_ALGS = _segment(b'{"alg":"none","alg":"ES256","typ":"kb-ar+jwt"}')


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("a.b", "not a compact JWS"),
        ("é.b.c", "not a compact JWS"),
        (f"{_segment(b'{not json')}.e30.AAAA", "header is not JSON"),
        (f"{_segment(bytes([0xFF, 0xFE]))}.e30.AAAA", "header is not JSON"),
        (f"{_segment(b'[' * 100_000)}.e30.AAAA", "header is not JSON"),
        (f"{_segment(b'{}')}.e30.AAAA", "alg ES256 and typ"),
        (f"{_TWO_ALGS}.e30.AAAA", "token header names member 'alg' twice"),
    ],
)
def test_crafted_tokens_are_refused_not_crashing(token: str, message: str) -> None:
    with pytest.raises(TokenInvalid, match=message):
        tokens.read(token, PUBLIC, NOW)


def test_a_tampered_payload_fails_the_signature() -> None:
    token, _ = _issue()
    header, _payload, signature = token.split(".")
    forged = _segment(b'{"iss":"keybroker"}')
    with pytest.raises(TokenInvalid, match="signature does not verify"):
        tokens.read(f"{header}.{forged}.{signature}", PUBLIC, NOW)


_B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# For each last character, another that decodes to the same final byte (low bits flipped).
_SAME_BYTES = {c: _B64URL_ALPHABET[_B64URL_ALPHABET.index(c) ^ 1] for c in _B64URL_ALPHABET}


@pytest.mark.parametrize(
    ("respell", "message"),
    [
        (lambda h, p, s: (h, p, s + "="), "token signature is not base64url"),
        (lambda h, p, s: (h, p, s[:10] + "\n" + s[10:]), "token signature is not base64url"),
        (lambda h, p, s: (h + "=", p, s), "token header is not base64url"),
        (lambda h, p, s: (h, p, s[:5] + "+" + s[6:]), "token signature is not base64url"),
        # 64 bytes are 86 characters: the last one carries 2 bits the decoder ignores.
        (lambda h, p, s: (h, p, s[:-1] + _SAME_BYTES[s[-1]]), "token signature is not base64url"),
        # The payload's text is signed as sent: another spelling fails the signature.
        (lambda h, p, s: (h, p + "=", s), "token signature does not verify"),
    ],
)
def test_a_token_has_one_spelling(respell: Any, message: str) -> None:
    """Padding, whitespace or characters outside base64url are refused (RFC 7515 §2), even
    in the one segment the signature does not cover: the signature itself."""
    token, _ = _issue()
    tokens.read(token, PUBLIC, NOW)  # as issued, it reads
    respelled = ".".join(respell(*token.split(".")))
    with pytest.raises(TokenInvalid, match=message):
        tokens.read(respelled, PUBLIC, NOW)


# --- one signature per token: low S, scalars within 1..n-1 ------------------------------------

N = jose.P256_ORDER


def _with_scalars(token: str, r: int, s: int) -> str:
    header, payload, _ = token.split(".")
    return f"{header}.{payload}.{_segment(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _scalars(token: str) -> tuple[int, int]:
    raw = base64.urlsafe_b64decode(token.split(".")[2] + "==")
    return int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")


def test_the_high_s_twin_of_a_token_is_refused() -> None:
    token, issued = _issue()
    r, s = _scalars(token)
    assert s <= N // 2  # written low
    twin = _with_scalars(token, r, N - s)
    # The twin is a valid ECDSA signature of the same input: only the low-S rule refuses it.
    der = encode_dss_signature(r, N - s)
    digest = hashlib.sha256(token.rsplit(".", 1)[0].encode()).digest()
    PUBLIC.verify(der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    memo = tokens.IssuedTokens(PUBLIC)
    memo.remember(token, issued)
    for read in (tokens.read, memo.read):
        with pytest.raises(TokenInvalid) as refused:
            read(twin, PUBLIC, NOW)
        assert refused.value.detail == (
            "token signature s is above n/2 (only low-S signatures are valid)"
        )


@pytest.mark.parametrize(
    ("scalars", "message"),
    [
        (lambda r, s: (0, s), "token signature r is not within 1..n-1"),
        (lambda r, s: (N, s), "token signature r is not within 1..n-1"),
        (lambda r, s: (2**256 - 1, s), "token signature r is not within 1..n-1"),
        (lambda r, s: (r, 0), "token signature s is not within 1..n-1"),
        (lambda r, s: (r, N), "token signature s is not within 1..n-1"),
        (lambda r, s: (r, 2**256 - 1), "token signature s is not within 1..n-1"),
        (lambda r, s: (r, N // 2 + 1), "token signature s is above n/2"),
    ],
)
def test_signatures_outside_the_group_are_refused(scalars: Any, message: str) -> None:
    token, _ = _issue()
    r, s = scalars(*_scalars(token))
    with pytest.raises(TokenInvalid) as refused:
        tokens.read(_with_scalars(token, r, s), PUBLIC, NOW)
    assert refused.value.detail.startswith(message)


@pytest.mark.parametrize("length", [63, 65, 96])
def test_a_signature_of_another_length_is_refused(length: int) -> None:
    token, _ = _issue()
    header, payload, _ = token.split(".")
    with pytest.raises(TokenInvalid, match="token signature is not 64 bytes"):
        tokens.read(f"{header}.{payload}.{_segment(bytes(length))}", PUBLIC, NOW)


def _high_s_signer(digest: bytes) -> bytes:
    """An HSM that always answers with the high-S member of the pair (CKM_ECDSA may)."""
    r, s = decode_dss_signature(BROKER_KEY.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256()))))
    return r.to_bytes(32, "big") + max(s, N - s).to_bytes(32, "big")


def test_tokens_signed_with_high_s_are_written_low_and_verify() -> None:
    payload = tokens.payload(CLAIMS, dict(JWK), "cd" * 32, NOW, 300)
    kid = jose.key_id(PUBLIC)
    for _ in range(8):
        token = jose.sign_sync(payload, jose.TYP_ATTESTATION_RESULT, kid, _high_s_signer)
        assert _scalars(token)[1] <= N // 2
        assert tokens.read(token, PUBLIC, NOW).claims == CLAIMS


def test_a_payload_naming_a_member_twice_is_refused_though_signed() -> None:
    # The broker never writes one (it signs orjson's sorted output); should one be signed
    # all the same, it is refused rather than read with the last value winning.
    kid = jose.key_id(PUBLIC)
    header = _segment(f'{{"alg":"ES256","kid":"{kid}","typ":"kb-ar+jwt"}}'.encode())
    payload = _segment(b'{"iss":"keybroker","iss":"other"}')
    signing_input = f"{header}.{payload}".encode()
    signature = _sign_digest(hashlib.sha256(signing_input).digest())
    token = jose.compact(signing_input, signature)
    with pytest.raises(TokenInvalid) as refused:
        tokens.read(token, PUBLIC, NOW)
    assert refused.value.detail == "token payload names member 'iss' twice"


def test_the_memo_answers_only_for_the_key_it_was_made_with() -> None:
    """A remembered token read under another key decides as read() does: refused."""
    token, issued = _issue()
    memo = tokens.IssuedTokens(PUBLIC)
    memo.remember(token, issued)
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(TokenInvalid) as uncached:
        tokens.read(token, other, NOW)
    with pytest.raises(TokenInvalid) as cached:
        memo.read(token, other, NOW)
    assert cached.value.detail == uncached.value.detail == "token was signed by another broker key"


def _refusal(token: str, key: ec.EllipticCurvePublicKey, now: datetime = NOW) -> str:
    """The reason of a refusal before the signature verified; "recognised" after it."""
    try:
        tokens.read(token, key, now)
    except TokenUnverified as exc:
        return exc.reason
    except TokenInvalid:
        return "recognised"
    return "accepted"


def test_refusals_before_the_signature_verifies_are_unrecognised_with_their_reason() -> None:
    """These are audited in aggregate (broker/release/unauthenticated.py); a token the
    broker signed is audited alone however it is refused."""
    ours = PUBLIC
    token, _ = _issue()
    header, payload, signature = token.split(".")
    envelope = _signed(tokens.payload(CLAIMS, dict(JWK), "cd" * 32, NOW, 300), jose.TYP_RELEASE)
    other_broker = ec.generate_private_key(ec.SECP256R1()).public_key()
    assert _refusal("a.b.c", ours) == "token-malformed"
    assert _refusal("a.b", ours) == "token-malformed"
    assert _refusal(f"{header}.{payload}.{signature}=", ours) == "token-malformed"
    assert _refusal(envelope, ours) == "token-malformed"
    assert _refusal(token, other_broker) == "token-key"
    assert _refusal(f"{header}.{_segment(b'{}')}.{signature}", ours) == "token-signature"
    assert _refusal(f"{header}.{payload}.{_segment(bytes(64))}", ours) == "token-signature"
    r, s = _scalars(token)
    assert _refusal(_with_scalars(token, r, N - s), ours) == "token-signature"  # high-S twin
    # Signed by this broker: recognised, then refused.
    assert _refusal(token, ours, NOW + timedelta(hours=1)) == "recognised"
    assert _refusal(_signed({"iss": "someone-else"}), ours) == "recognised"
    assert _refusal(token, ours) == "accepted"
