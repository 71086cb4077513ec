"""Memos outside the evidence verifiers decide as their uncached paths do (tests/unit/memos.py;
the list with each memo's key is in docs/architecture.md §9)."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from broker import jose, logs
from broker.collateral.intel_pcs import _pck_platforms, platform_of
from broker.collateral.keys import ItemKey
from broker.collateral.memo import ItemMemo, MemoizedRepository
from broker.collateral.store import CollateralItem
from broker.evidence.claims import Tee
from broker.evidence.dcap.abi import CERT_PCK_CHAIN, CertificationData, parse_quote
from broker.evidence.trust import _DigestMemo
from broker.policy.loader import load_policy_text
from broker.release.policies import PolicyCache, stored_form
from broker.simulate.intel import IntelKit
from tests.unit.collateral.fakes import MemoryStore
from tests.unit.memos import assert_memos_change_nothing, outcome

NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)


# --- release policies: compiled once per digest, served only for the document compiled ------


def _stored(require: int) -> tuple[str, str]:
    document = {
        "format": "keybroker-policy/1",
        "name": "memo-policy",
        "version": 1,
        "admit": {"snp": {"require": [{"claim": "vmpl", "equals": require, "reason": "r"}]}},
    }
    return stored_form(load_policy_text(json.dumps(document), source="x", is_json=True))


def test_a_document_edited_under_its_digest_is_refused_with_the_policy_cached() -> None:
    genuine, digest = _stored(0)
    edited, _ = _stored(1)  # another document presented under the genuine digest
    inputs = [("genuine", genuine, digest), ("edited", edited, digest)]
    cache = PolicyCache()

    def decide(given: tuple[str, str, str]) -> object:
        return outcome(lambda: cache.get(given[1], given[2]).to_json())

    decisions = assert_memos_change_nothing(
        inputs, decide, lambda given: given[0], clear=cache._compiled.clear
    )
    assert decisions["edited"] == (
        "refused",
        "StoredPolicyInvalid",
        "stored policy memo-policy v1 does not match its digest",
    )
    assert cache.cached(digest) is not None  # the genuine one stays compiled


# --- collateral items: from memory for at most MAX_AGE_SECONDS -------------------------------

KEY = ItemKey("sgx", "pck_crl", "platform")
OLD = CollateralItem(KEY, b"old crl", NOW + dt.timedelta(days=30), "import")
NEW = CollateralItem(KEY, b"crl revoking a PCK", NOW + dt.timedelta(days=30), "import")


async def test_a_fixed_store_reads_the_same_through_the_memo() -> None:
    stale = CollateralItem(KEY, b"stale", NOW - dt.timedelta(seconds=1), "import")
    for item in (OLD, stale):
        store, memo = MemoryStore([item]), ItemMemo()
        for now in (NOW, NOW + dt.timedelta(days=40)):
            direct = await store.get_many([KEY])
            through = await MemoizedRepository(store, memo, now).get_many([KEY])
            again = await MemoizedRepository(store, memo, now).get_many([KEY])
            assert direct == through == again


async def test_a_replaced_document_decides_within_the_memo_age() -> None:
    """An operator imports a CRL revoking a PCK before the old one's nextUpdate: a process
    that remembered the old one serves it for less than MAX_AGE_SECONDS, then the new one."""
    clock = [0.0]
    store, memo = MemoryStore([OLD]), ItemMemo(max_age_seconds=10.0, clock=lambda: clock[0])
    assert (await MemoizedRepository(store, memo, NOW).get_many([KEY]))[KEY] is OLD
    store.items[KEY] = NEW
    clock[0] = 9.9
    assert (await MemoizedRepository(store, memo, NOW).get_many([KEY]))[KEY] is OLD
    clock[0] = 10.0
    assert (await MemoizedRepository(store, memo, NOW).get_many([KEY]))[KEY] is NEW


# --- the platform a quote names, by its certification data -----------------------------------


def test_a_quote_without_a_pck_certificate_names_no_platform_cached_or_not() -> None:
    kit = IntelKit.create(now=NOW)
    quote = parse_quote(kit.sgx_quote())

    def with_data(data: bytes) -> bytes:
        certification = CertificationData(CERT_PCK_CHAIN, data)
        return kit.sign_quote(
            quote.header, quote.body, tee=Tee.SGX, certification_data=certification
        )

    quotes = {"blank": with_data(b"\n"), "nul": with_data(b"\x00"), "chain": kit.sgx_quote()}
    decisions = assert_memos_change_nothing(
        list(quotes),
        lambda name: outcome(lambda: platform_of(quotes[name])),
        str,
        clear=_pck_platforms.clear,
    )
    assert decisions["blank"] == (
        "refused",
        "CollateralUnavailable",
        "quote certification data holds no PCK certificate",
    )
    assert decisions["chain"][0] == "decided"


# --- digests of certificates, by the identity of objects the memo holds ----------------------


def _certificate(name: str) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def test_certificate_digests_stay_right_past_the_memo_bound() -> None:
    """Entries hold their objects, so an id is not reused while remembered; objects made
    after others were evicted (and freed, their ids free for reuse) get their own digest."""
    memo = _DigestMemo(capacity=2)
    for index in range(8):
        certificate = _certificate(f"c{index}")  # the previous ones may be freed by now
        for _ in range(2):
            assert memo.digest(certificate) == certificate.fingerprint(hashes.SHA256())


# --- JWS: the broker key's thumbprint and header segments -------------------------------------


def test_key_ids_and_headers_follow_the_key_and_kind_asked() -> None:
    keys = [ec.generate_private_key(ec.SECP256R1()).public_key() for _ in range(2)]
    cases = [(key, typ) for key in keys for typ in (jose.TYP_ATTESTATION_RESULT, jose.TYP_RELEASE)]

    def decide(case: tuple[ec.EllipticCurvePublicKey, str]) -> object:
        key, typ = case
        return (jose._cached_key_id(key), jose.signing_input({}, typ, jose.key_id(key)))

    def clear() -> None:
        jose._last_key_id = None
        jose._header_segment.clear()

    def name(case: tuple[ec.EllipticCurvePublicKey, str]) -> str:
        return f"{keys.index(case[0])} {case[1]}"

    decisions = assert_memos_change_nothing(cases, decide, name, clear)
    assert len({decision[1] for decision in decisions.values()}) == 4


# --- the log redaction's memory of which field names hold secrets -----------------------------


def test_redaction_of_a_field_does_not_depend_on_what_was_logged_before() -> None:
    names = ["token", "Token", "db_password", "tokens", "request_id", "x" * 300]

    def redacted(name: str) -> object:
        return logs.redact_secrets(None, "", {name: "v"})

    decisions = assert_memos_change_nothing(names, redacted, str, clear=logs._names_secret.clear)
    assert decisions["Token"] == {"Token": "***"}
    assert decisions["tokens"] == {"tokens": "v"}


@pytest.mark.parametrize("capacity", [0, 1])
def test_a_full_redaction_memory_still_redacts(
    monkeypatch: pytest.MonkeyPatch, capacity: int
) -> None:
    monkeypatch.setattr(logs, "_MAX_REMEMBERED_KEYS", capacity)
    monkeypatch.setattr(logs, "_names_secret", {})
    for _ in range(2):
        assert logs.redact_secrets(None, "", {"x": 1, "pin": "1234"}) == {"x": 1, "pin": "***"}


# --- the list in docs/architecture.md §9 names every memo ------------------------------------

_REPOSITORY = Path(__file__).resolve().parents[2]
_MEMO = re.compile(r"\bLru\(|\bMemoized\(|\bmemoized\(|\bMemo\(")
_NOT_MEMOS = ("broker/lru.py", "broker/evidence/dcap/cache.py", "broker/bench/")


def test_every_memo_is_listed_in_the_architecture_decisions() -> None:
    """A module holding a memo is named in §9 as `<last parts of its path>` or followed by
    a dot and the memo's name (``dcap/verify._chains``, ``trust.LinkCache``)."""
    decisions = (_REPOSITORY / "docs/architecture.md").read_text().split("## 9.")[1]
    unlisted = []
    for path in sorted((*_REPOSITORY.glob("broker/**/*.py"), *_REPOSITORY.glob("hsm/**/*.py"))):
        relative = path.relative_to(_REPOSITORY).as_posix()
        if relative.startswith(_NOT_MEMOS) or not _MEMO.search(path.read_text()):
            continue
        parts = relative.removesuffix(".py").removesuffix("/__init__").split("/")
        parts = parts[1:] if parts[0] == "broker" else parts
        names = ["/".join(parts[index:]) for index in range(len(parts))]
        if not any(f"`{name}`" in decisions or f"`{name}." in decisions for name in names):
            unlisted.append(relative)
    assert unlisted == []
