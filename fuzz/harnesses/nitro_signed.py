"""AWS Nitro past the signature: mutated payloads re-signed with the synthetic Nitro
authority (``broker/simulate/nitro.py``), so the content checks and the claims are reached
with a valid COSE signature and chain.

The rest after the first byte is CBOR. When it decodes to a map, its members replace those
of a valid document's payload (so the certificate and CA bundle stay valid unless the map
replaces them); otherwise it is the payload itself. The leaf key signs the result, which is
then verified and its claims built. The first byte chooses tagged (odd) or untagged COSE.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import cbor2

from broker.evidence.nitro import verify
from broker.simulate.nitro import FakeNitroAuthority, NitroLeaf, sign_cose
from fuzz.engine import Harness, Target

TIMESTAMP = datetime(2025, 3, 1, 12, tzinfo=UTC)
NOW = datetime(2025, 3, 1, 12, 0, 5, tzinfo=UTC)
PCRS = {index: bytes([index]) * 48 for index in range(16)}
_STATE: tuple[FakeNitroAuthority, NitroLeaf, dict[Any, Any]] | None = None


def state() -> tuple[FakeNitroAuthority, NitroLeaf, dict[Any, Any]]:
    global _STATE  # noqa: PLW0603 - one authority per process
    if _STATE is None:
        authority = FakeNitroAuthority.generate()
        document, leaf = authority.build(
            pcrs=PCRS, timestamp=TIMESTAMP, nonce=bytes(32), user_data=b"fuzz"
        )
        _STATE = authority, leaf, cbor2.loads(document.to_bytes())
    return _STATE


def payload(data: bytes, base: dict[Any, Any]) -> bytes:
    try:
        overlay = cbor2.loads(data)
    except Exception:
        return data
    if not isinstance(overlay, dict):
        return data
    try:
        encoded: bytes = cbor2.dumps({**base, **overlay})
    except Exception:
        return data
    return encoded


def setup() -> Target:
    authority, leaf, base = state()
    roots = [authority.trusted_root()]

    def target(data: bytes) -> None:
        if not data:
            return
        signed = sign_cose(payload(data[1:], base), leaf.key, tagged=bool(data[0] & 1))
        verify(signed, {}, now=NOW, extra_roots=roots).document()

    return target


def seeds() -> Iterator[tuple[str, bytes]]:
    yield "empty-overlay", b"\x00" + cbor2.dumps({})
    yield "nonce", b"\x01" + cbor2.dumps({"nonce": bytes(64), "public_key": b"\x30\x00"})
    yield "pcrs", b"\x00" + cbor2.dumps({"pcrs": {0: bytes(48), 1: bytes(32)}, "digest": "SHA256"})


HARNESS = Harness("nitro_signed", setup, seeds, __doc__ or "", max_len=8192)
