"""Damaged DCAP collateral and certificates: every flip of a signed byte is refused with our
errors, never a bare pyca/cryptography exception.

Deterministic sweeps flip every byte (XOR 0x01 and 0x10) of the real Root CA and PCK CRLs,
the real TCB Signing certificate, and the kit's PCK and PCK CA certificates given as
``pck_chain``; hypothesis adds a few multi-byte edits of each. A flip is accepted only when
the object still has its signed bytes and signature (``same_signed_content``).
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable, Mapping

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.errors import ChainInvalid, CollateralInvalid, EvidenceError
from broker.evidence.claims import Claims, Tee
from broker.evidence.dcap.abi import CertificationData, parse_quote
from broker.evidence.dcap.verify import clear_caches, verify_quote
from broker.evidence.registry import verifier_for
from broker.evidence.trust import load_certificates
from broker.simulate.intel import IntelKit
from tests.unit.mutation import IGNORE_NAME_WARNINGS, flips, same_signed_content

from .vectors import DEBUG_TD_QUOTE, JUNE_2023, spr_collateral

pytestmark = IGNORE_NAME_WARNINGS

KIT_NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
_QUOTE = DEBUG_TD_QUOTE.read_bytes()
_COLLATERAL = spr_collateral()
#: The TCB Signing certificate alone, as DER (``tcb_signing_chain`` takes one DER certificate).
_TCB_SIGNING = load_certificates(_COLLATERAL["tcb_signing_chain"])[0].public_bytes(Encoding.DER)
_KIT = IntelKit.create(now=KIT_NOW)
_KIT_COLLATERAL = _KIT.collateral(Tee.SGX, now=KIT_NOW)


def _quote_without_certificates() -> bytes:
    # Certification data type 3 (encrypted PPID): the PCK chain comes from pck_chain alone.
    quote = parse_quote(_KIT.sgx_quote())
    data = CertificationData(3, bytes(384 + 2 + 2))
    return _KIT.sign_quote(quote.header, quote.body, tee=Tee.SGX, certification_data=data)


_KIT_QUOTE = _quote_without_certificates()


@pytest.fixture(autouse=True)
def _fresh_caches() -> None:
    clear_caches()


def _real(name: str, data: bytes) -> None:
    verify_quote(_QUOTE, {**_COLLATERAL, name: data}, now=JUNE_2023, tee=Tee.TDX)


def _pem(der: bytes) -> bytes:
    return (
        b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der) + b"-----END CERTIFICATE-----\n"
    )


def _kit_der(name: str) -> bytes:
    return _KIT.certificates[name].public_bytes(Encoding.DER)


def _with_pck_chain(replaced: Mapping[str, bytes]) -> Claims:
    """Verify the kit's quote with a pck_chain (PCK, CA, root) whose DER ``replaced`` names."""
    chain = b"".join(
        _pem(replaced.get(name, _kit_der(name))) for name in ("pck", "platform_ca", "root")
    )
    return verifier_for("sgx").verify(
        _KIT_QUOTE,
        {**_KIT_COLLATERAL, "pck_chain": chain},
        now=KIT_NOW,
        extra_roots=_KIT.extra_roots(),
    )


def test_the_unmutated_inputs_verify() -> None:
    _real("tcb_signing_chain", _TCB_SIGNING)
    assert _with_pck_chain({}).lookup("tcb_status") == "UpToDate"


def _sweep(
    original: bytes, run: Callable[[bytes], object], errors: tuple[type[EvidenceError], ...]
) -> None:
    accepted = []
    for position, _, flipped in flips(original):
        if same_signed_content(original, flipped):
            run(flipped)  # only the signature's unused-bits count changed: still the original
            accepted.append(position)
            continue
        with pytest.raises(errors):
            run(flipped)
    assert len(accepted) <= 1, accepted  # at most the one unused-bits byte


@pytest.mark.parametrize("name", ["root_crl", "pck_crl"])
def test_every_crl_byte_flip_is_collateral_invalid(name: str) -> None:
    # Parse failures, a changed issuer and a broken signature are all badly signed collateral.
    _sweep(_COLLATERAL[name], lambda data: _real(name, data), (CollateralInvalid,))


def test_every_tcb_signing_certificate_byte_flip_is_refused() -> None:
    # collateral-invalid when it no longer parses, chain-invalid when its link to the root
    # (or its name) no longer holds.
    _sweep(
        _TCB_SIGNING,
        lambda data: _real("tcb_signing_chain", data),
        (CollateralInvalid, ChainInvalid),
    )


@pytest.mark.parametrize("name", ["pck", "platform_ca"])
def test_every_pck_chain_byte_flip_is_refused(name: str) -> None:
    # The copy of the root in pck_chain is not swept: a root is trusted by its pinned bytes,
    # so its copy is parsed but never used.
    _sweep(
        _kit_der(name),
        lambda data: _with_pck_chain({name: data}),
        (CollateralInvalid, ChainInvalid),
    )


_EDITS = st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), min_size=1, max_size=4)


def _edited(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    mutable = bytearray(data)
    for position, value in edits:
        mutable[position % len(mutable)] = value
    return bytes(mutable)


def _accepted_only_if_unchanged(original: bytes, mutated: bytes, run: Callable[[], object]) -> None:
    if same_signed_content(original, mutated):
        run()
        return
    with pytest.raises(EvidenceError):
        run()


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(["root_crl", "pck_crl", "tcb_signing_chain"]),
    edits=_EDITS,
    terminator=st.sampled_from([b"", b"\x00", b"\x00\x00"]),
)
def test_edited_real_collateral_gives_only_our_errors(
    name: str, edits: list[tuple[int, int]], terminator: bytes
) -> None:
    original = _TCB_SIGNING if name == "tcb_signing_chain" else _COLLATERAL[name]
    mutated = _edited(original, edits)
    _accepted_only_if_unchanged(original, mutated, lambda: _real(name, mutated + terminator))


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(["pck", "platform_ca"]), edits=_EDITS)
def test_edited_pck_chain_gives_only_our_errors(name: str, edits: list[tuple[int, int]]) -> None:
    original = _kit_der(name)
    mutated = _edited(original, edits)
    _accepted_only_if_unchanged(original, mutated, lambda: _with_pck_chain({name: mutated}))
