"""Challenge nonces that carry their expiry and a MAC (``broker/release/nonces.py``): the
layout, the round trip, and a refusal with its exact error for every check."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.errors import (
    InternalError,
    NonceExpired,
    NonceUnknown,
    NonceUnrecognised,
    Unrecognised,
)
from broker.redact import SecretBytes
from broker.release import nonces
from broker.release.nonces import LABEL, MAX_CLOCK_SKEW, NONCE_BYTES, VERSION, Nonces
from tests.unit.mutation import flips

KEY = SecretBytes(bytes(range(32)))
TTL = 300
NOW = datetime(2026, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC)


@pytest.fixture
def authority() -> Nonces:
    return Nonces(KEY, TTL)


def _with_mac(signed: bytes, tee: str, key: SecretBytes = KEY) -> bytes:
    """A nonce with a correct MAC over whatever ``signed`` says: what only the key holder
    can make, so a test can prove a check other than the MAC's."""
    mac = hmac.digest(key.reveal(), LABEL + signed + tee.encode(), hashlib.sha256)[:16]
    return signed + mac


def _signed(expiry: int, version: int = VERSION, random: bytes = bytes(11)) -> bytes:
    return bytes([version]) + expiry.to_bytes(4, "big") + random


# --- issue -----------------------------------------------------------------------------------


def test_layout_version_expiry_random_mac(authority: Nonces) -> None:
    nonce, expires_at = authority.issue("snp", NOW)
    assert len(nonce) == NONCE_BYTES == 32
    assert nonce[0] == VERSION == 1
    expiry = int.from_bytes(nonce[1:5], "big")
    # Whole seconds, rounded down: a nonce never lives longer than the lifetime.
    assert expiry == int(NOW.timestamp()) + TTL
    assert expires_at == datetime.fromtimestamp(expiry, UTC)
    assert NOW + timedelta(seconds=TTL - 1) < expires_at <= NOW + timedelta(seconds=TTL)
    assert nonce == _with_mac(nonce[:16], "snp")


def test_round_trip(authority: Nonces) -> None:
    nonce, expires_at = authority.issue("tdx", NOW)
    assert authority.check(nonce, "tdx", NOW) == expires_at
    # Live until the instant before its expiry, by the checker's clock.
    assert authority.check(nonce, "tdx", expires_at - timedelta(microseconds=1)) == expires_at


def test_nonces_differ(authority: Nonces) -> None:
    issued = {authority.issue("snp", NOW)[0] for _ in range(200)}
    assert len(issued) == 200


def test_the_base64_form_decodes_to_the_nonce(authority: Nonces) -> None:
    nonce, _ = authority.issue("snp", NOW)
    assert nonces.decode(base64.b64encode(nonce).decode()) == nonce


def test_an_expiry_beyond_32_bits_is_not_issued(authority: Nonces) -> None:
    with pytest.raises(InternalError, match="does not fit 32 bits"):
        authority.issue("snp", datetime(2106, 2, 7, 6, 28, 16, tzinfo=UTC))


# --- refusals --------------------------------------------------------------------------------


def test_every_single_bit_flip_is_refused(authority: Nonces) -> None:
    nonce, _ = authority.issue("snp", NOW)
    for position, xor, flipped in flips(nonce, (0x01, 0x10, 0x80)):
        with pytest.raises(NonceUnknown) as caught:
            authority.check(flipped, "snp", NOW)
        if position == 0:
            assert (
                caught.value.detail
                == f"nonce version {1 ^ xor} != 1: not a nonce this broker issues"
            )
        else:
            assert caught.value.detail.startswith(
                "nonce was not issued by this broker for tee 'snp'"
            ), (position, xor)


@pytest.mark.parametrize(
    ("position", "field"),
    [
        (16, "MAC, first byte"),
        (31, "MAC, last byte"),
        (1, "expiry"),
        (4, "expiry"),
        (5, "random"),
        (15, "random"),
    ],
)
def test_a_flipped_byte_fails_the_mac(authority: Nonces, position: int, field: str) -> None:
    nonce, _ = authority.issue("snp", NOW)
    flipped = bytearray(nonce)
    flipped[position] ^= 0xFF
    with pytest.raises(NonceUnknown, match="its MAC does not verify"):
        authority.check(bytes(flipped), "snp", NOW)


def test_a_later_expiry_written_in_fails_the_mac(authority: Nonces) -> None:
    """Extending a nonce's life is a change of the MAC'd bytes like any other."""
    nonce, _ = authority.issue("snp", NOW)
    later = nonce[:1] + (int.from_bytes(nonce[1:5], "big") + 60).to_bytes(4, "big") + nonce[5:]
    with pytest.raises(NonceUnknown, match="its MAC does not verify"):
        authority.check(later, "snp", NOW + timedelta(seconds=TTL + 30))


@pytest.mark.parametrize("version", [0, 2, 255])
def test_another_version_is_refused_before_its_mac(authority: Nonces, version: int) -> None:
    # Even with a MAC that verifies: the version chooses the format and the key.
    nonce = _with_mac(_signed(int(NOW.timestamp()) + 60, version=version), "snp")
    with pytest.raises(NonceUnknown) as caught:
        authority.check(nonce, "snp", NOW)
    assert caught.value.detail == f"nonce version {version} != 1: not a nonce this broker issues"


@pytest.mark.parametrize("length", [0, 16, 31, 33, 64])
def test_wrong_length_is_refused(authority: Nonces, length: int) -> None:
    with pytest.raises(NonceUnknown) as caught:
        authority.check(bytes([VERSION]) * length, "snp", NOW)
    assert caught.value.detail == f"nonce is {length} bytes, not 32"


def test_a_nonce_for_another_tee_is_refused(authority: Nonces) -> None:
    nonce, _ = authority.issue("nitro", NOW)
    with pytest.raises(NonceUnknown) as caught:
        authority.check(nonce, "snp", NOW)
    assert caught.value.detail == (
        "nonce was not issued by this broker for tee 'snp' (its MAC does not verify: issued "
        "for another tee, by another broker, or altered)"
    )
    assert authority.check(nonce, "nitro", NOW)  # for its own tee it is fine


def test_a_nonce_under_another_key_is_refused(authority: Nonces) -> None:
    stranger = Nonces(SecretBytes(bytes(32)), TTL)
    nonce, _ = stranger.issue("snp", NOW)
    with pytest.raises(NonceUnknown, match="not issued by this broker for tee 'snp'"):
        authority.check(nonce, "snp", NOW)


def test_expired_is_refused_with_its_expiry(authority: Nonces) -> None:
    nonce, expires_at = authority.issue("snp", NOW)
    for later in (expires_at, expires_at + timedelta(days=400)):
        with pytest.raises(NonceExpired) as caught:
            authority.check(nonce, "snp", later)
        assert caught.value.detail == f"nonce expired at {expires_at.isoformat()}"
    assert expires_at.isoformat() == "2026-03-01T12:05:00+00:00"


def test_an_expiry_too_far_ahead_is_refused(authority: Nonces) -> None:
    # Issued by a clock running ahead of this one by more than the allowed skew (or by a
    # broker with a longer lifetime): no replica with a sane clock could have issued it.
    ahead = MAX_CLOCK_SKEW + timedelta(seconds=2)
    nonce, expires_at = authority.issue("snp", NOW + ahead)
    with pytest.raises(NonceUnknown) as caught:
        authority.check(nonce, "snp", NOW)
    assert caught.value.detail.startswith(f"nonce expiry {expires_at.isoformat()} is after ")
    assert "challenge_ttl_seconds 300 + clock skew 10 s" in caught.value.detail


def test_an_expiry_ahead_within_the_skew_is_accepted(authority: Nonces) -> None:
    nonce, expires_at = authority.issue("snp", NOW + MAX_CLOCK_SKEW)
    assert authority.check(nonce, "snp", NOW) == expires_at


def test_a_longer_lifetime_elsewhere_is_refused() -> None:
    """A replica configured with a longer lifetime issues nonces this one cannot have."""
    longer, shorter = Nonces(KEY, 3600), Nonces(KEY, TTL)
    nonce, _ = longer.issue("snp", NOW)
    assert longer.check(nonce, "snp", NOW)
    with pytest.raises(NonceUnknown, match="is after"):
        shorter.check(nonce, "snp", NOW)


# --- the wire form ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("not base64!", "nonce is not standard base64"),
        ("AAAA AAAA", "nonce is not standard base64"),
        ("-_-_", "nonce is not standard base64"),  # base64url is not the wire form
        (base64.b64encode(b"short").decode(), "nonce is 5 bytes, not 32"),
        (base64.b64encode(bytes(33)).decode(), "nonce is 33 bytes, not 32"),
        ("", "nonce is 0 bytes, not 32"),
    ],
)
def test_malformed_text_is_refused(text: str, detail: str) -> None:
    with pytest.raises(NonceUnknown) as caught:
        nonces.decode(text)
    assert caught.value.detail == detail


@given(st.text(max_size=80))
def test_any_text_decodes_or_is_nonce_unknown(text: str) -> None:
    with contextlib.suppress(NonceUnknown):
        assert len(nonces.decode(text)) == 32


@given(st.binary(min_size=0, max_size=40), st.sampled_from(["snp", "tdx", "sgx", "nitro"]))
def test_any_bytes_are_refused_as_unknown(data: bytes, tee: str) -> None:
    with pytest.raises(NonceUnknown):
        Nonces(KEY, TTL).check(data, tee, NOW)


# --- no key in sight -------------------------------------------------------------------------


def test_the_key_never_prints(authority: Nonces) -> None:
    assert repr(authority) == "Nonces(key=***, ttl=300 s)"
    assert repr(KEY) == str(KEY) == "SecretBytes('***')"
    assert KEY.reveal().hex() not in repr(authority)
    assert SecretBytes(bytes(range(32))) == KEY
    assert SecretBytes(bytes(32)) != KEY


def test_only_refusals_up_to_the_mac_are_unrecognised(authority: Nonces) -> None:
    """Up to a MAC that verifies, nothing says the broker issued the nonce: audited in
    aggregate. From there on, the nonce is the broker's: audited alone."""
    nonce, expires_at = authority.issue("snp", NOW)
    altered = nonce[:31] + bytes([nonce[31] ^ 1])
    too_far, _ = authority.issue("snp", NOW + MAX_CLOCK_SKEW + timedelta(seconds=2))
    unrecognised = {
        "text": lambda: nonces.decode("not base64!"),
        "length": lambda: nonces.decode(base64.b64encode(bytes(31)).decode()),
        "version": lambda: authority.check(bytes(32), "snp", NOW),
        "mac": lambda: authority.check(altered, "snp", NOW),
        "tee": lambda: authority.check(nonce, "tdx", NOW),
    }
    reasons = {}
    for name, refuse in unrecognised.items():
        with pytest.raises(NonceUnrecognised) as caught:
            refuse()
        reasons[name] = caught.value.reason
    assert reasons == {
        "text": "nonce-malformed",
        "length": "nonce-malformed",
        "version": "nonce-malformed",
        "mac": "nonce-mac",
        "tee": "nonce-mac",
    }
    for refuse in (
        lambda: authority.check(nonce, "snp", expires_at),  # expired
        lambda: authority.check(too_far, "snp", NOW),  # issued beyond this broker's lifetime
    ):
        with pytest.raises((NonceExpired, NonceUnknown)) as recognised:
            refuse()
        assert not isinstance(recognised.value, Unrecognised)
