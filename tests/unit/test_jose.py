"""JWS serialisation against its straightforward reference (RFC 7515 §3.1, §5.1)."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker import jose
from broker.errors import TokenInvalid

payloads = st.dictionaries(
    st.text(max_size=8),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=4), children, max_size=3)
        ),
        max_leaves=10,
    ),
    max_size=6,
)


def _segment(value: object) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(text.encode("utf-8")).rstrip(b"=").decode("ascii")


@given(payloads, st.sampled_from([jose.TYP_ATTESTATION_RESULT, jose.TYP_RELEASE]), st.text())
def test_signing_input_is_header_dot_payload(
    payload: dict[str, object], typ: str, kid: str
) -> None:
    header = _segment({"alg": "ES256", "kid": kid, "typ": typ})
    expected = f"{header}.{_segment(payload)}".encode("ascii")
    assert jose.signing_input(payload, typ, kid) == expected


N = jose.P256_ORDER
scalars = st.integers(1, N - 1)


def _raw(r: int, s: int) -> bytes:
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


@given(st.binary(max_size=200), scalars, scalars)
def test_compact_appends_the_low_s_signature(data: bytes, r: int, s: int) -> None:
    text = base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
    low = _raw(r, min(s, N - s))  # (r, s) and (r, n - s) verify alike; the low one is written
    expected = f"{text}.{base64.urlsafe_b64encode(low).rstrip(b'=').decode('ascii')}"
    assert jose.compact(text.encode("ascii"), _raw(r, s)) == expected


@pytest.mark.parametrize(
    "signature", [bytes(63), bytes(65), _raw(0, 1), _raw(1, 0), _raw(N, 1), _raw(1, N)]
)
def test_a_malformed_hsm_signature_is_refused(signature: bytes) -> None:
    with pytest.raises(TokenInvalid, match="HSM returned a malformed ES256 signature"):
        jose.compact(b"a.b", signature)
