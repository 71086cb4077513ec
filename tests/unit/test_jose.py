"""JWS serialisation against its straightforward reference (RFC 7515 §3.1, §5.1)."""

from __future__ import annotations

import base64
import json

from hypothesis import given
from hypothesis import strategies as st

from broker import jose

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


@given(st.binary(max_size=200), st.binary(min_size=64, max_size=64))
def test_compact_appends_the_signature(data: bytes, signature: bytes) -> None:
    text = base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
    expected = f"{text}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode('ascii')}"
    assert jose.compact(text.encode("ascii"), signature) == expected
