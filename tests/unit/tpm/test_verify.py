"""The ``tpm`` tee end to end: both real GCE attestations verify as their manifest says, in
go-tpm-tools' protobuf and in keybroker's bundle; a flipped quote, PCR or log byte, a wrong
or expired AK certificate, a log that does not replay: each refused with its exact error."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from broker.errors import (
    CertificateExpired,
    ChainInvalid,
    EventLogMismatch,
    MalformedEvidence,
    PcrMismatch,
    SignatureInvalid,
    UnsupportedEvidence,
)
from broker.evidence.claims import Claims, SignerOrigin, Tee
from broker.evidence.registry import verifier_for
from broker.evidence.tpm import protobuf
from broker.evidence.tpm.abi import Alg
from broker.evidence.tpm.eventlog import parse_tcg_event_log
from broker.evidence.tpm.evidence import parse_tpm_evidence
from broker.evidence.tpm.verify import check_replay
from broker.simulate.tpm import (
    DEMO_BOOT,
    AkAuthority,
    SoftwareAk,
    event_log,
    grub_cmdline_event,
    zero_pcrs,
)
from broker.simulate.vtpm import tpm_quote_json

from .vectors import (
    AT,
    FIRMWARE_VERSION,
    GCE,
    NO_NONCE,
    NONCE9009,
    SHA1_PCR0,
    SHA256_PCRS,
    SHA384_PCR0,
    ak_cert,
    quote,
)
from .vectors import event_log as gce_log


def _verify(evidence: bytes, collateral: dict[str, bytes] | None = None, **kw: Any) -> Claims:
    return verifier_for(Tee.TPM).verify(evidence, collateral or {}, now=AT, **kw)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _bundle(**members: Any) -> bytes:
    return json.dumps(members).encode()


def _gce_bundle(**override: Any) -> dict[str, Any]:
    members: dict[str, Any] = {
        "tpm_quote": tpm_quote_json(quote("sha256")),
        "ak_cert": _b64(ak_cert()),
        "event_log": _b64(gce_log()),
    }
    members.update(override)
    return members


@pytest.mark.parametrize(("path", "extra"), [(NONCE9009, "9009"), (NO_NONCE, "")])
def test_the_gce_attestations_verify_as_the_manifest_says(path: Any, extra: str) -> None:
    claims = _verify(path.read_bytes())
    assert claims.tee is Tee.TPM
    assert claims.signer.to_json() == {
        "vendor": "google",
        "origin": SignerOrigin.INFRASTRUCTURE_PROVIDER.value,
        "root": "google-tpm-ek-root-2018",
        "key": "ak",
        "product": None,
    }
    assert claims.debug is False
    tpm = claims.plain_fields()["tpm"]
    assert tpm["extra_data"] == extra
    assert tpm["firmware_version"] == f"{FIRMWARE_VERSION:016x}"
    assert {int(i): tpm["pcrs"]["sha256"][i] for i in map(str, SHA256_PCRS)} == SHA256_PCRS
    assert tpm["pcrs"]["sha1"]["0"] == SHA1_PCR0
    assert tpm["pcrs"]["sha384"]["0"] == SHA384_PCR0
    assert len(tpm["event_log"]) == 44
    assert tpm["boot"]["secure_boot"] is True
    assert tpm["reset_count"] == 10
    assert claims.lookup("tpm.boot.kernel_cmdline").startswith("/syslinux/vmlinuz.A ")


def test_the_bundle_of_the_derived_files_verifies_alike() -> None:
    claims = _verify(_bundle(**_gce_bundle()))
    tpm = claims.plain_fields()["tpm"]
    assert tpm["pcrs"]["sha1"] is None
    assert tpm["pcrs"]["sha384"] is None
    assert tpm["extra_data"] == "9009"
    assert tpm["boot"]["efi_apps"][0].startswith("dba8d69f")


def test_the_protobuf_carries_what_its_derived_files_hold() -> None:
    parsed = parse_tpm_evidence(NONCE9009.read_bytes())
    assert [q.message for q in parsed.quotes] == [
        quote(b).message for b in ("sha1", "sha256", "sha384")
    ]
    assert parsed.ak_cert == ak_cert()
    assert parsed.event_log == gce_log()
    assert parsed.ak_public is not None
    assert parsed.ak_public.to_bytes() == (GCE / "ak_pub.tpmt").read_bytes()


def test_a_flipped_quote_byte_fails() -> None:
    bad = quote("sha256")
    members = tpm_quote_json(bad)
    message = bytearray(bad.message)
    message[-40] ^= 1  # inside pcrDigest
    members["message"] = _b64(bytes(message))
    with pytest.raises(SignatureInvalid, match="TPM quote: TPMT_SIGNATURE RSASSA/sha256"):
        _verify(_bundle(**_gce_bundle(tpm_quote=members)))


def test_a_flipped_pcr_byte_fails() -> None:
    members = tpm_quote_json(quote("sha256"))
    value = bytearray.fromhex(members["pcrs"]["sha256"]["14"])
    value[0] ^= 1
    members["pcrs"]["sha256"]["14"] = value.hex()
    with pytest.raises(PcrMismatch, match=r"TPMS_QUOTE_INFO.pcrDigest 048937cb"):
        _verify(_bundle(**_gce_bundle(tpm_quote=members)))


def test_an_event_log_that_does_not_replay_fails() -> None:
    log = bytearray(gce_log())
    # The last event (PCR5): data 40, its size 4, SHA-384 2 + 48, then its SHA-256 digest.
    log[-100] ^= 1
    with pytest.raises(EventLogMismatch) as refused:
        _verify(_bundle(**_gce_bundle(event_log=_b64(bytes(log)))))
    assert refused.value.detail.startswith("event log replays sha256 PCR5 (4 events) to ")


def test_an_event_log_without_the_events_of_a_boot_pcr_fails() -> None:
    log, _ = event_log([grub_cmdline_event("console=ttyS0")])  # PCR8 only
    with pytest.raises(EventLogMismatch) as refused:
        check_replay_of(log)
    assert refused.value.detail.startswith(
        "event log extends sha256 PCR0 in no event, but the quote's PCR0 is 0f35c214"
    )


def check_replay_of(log: bytes) -> None:
    check_replay(parse_tcg_event_log(log), {Alg.SHA256: quote("sha256").pcrs[Alg.SHA256]})


def test_a_log_extending_an_unquoted_pcr_fails() -> None:
    log, values = event_log(DEMO_BOOT)
    quoted = {Alg.SHA256: {pcr: values[Alg.SHA256][pcr] for pcr in range(8)}}
    with pytest.raises(EventLogMismatch) as refused:
        check_replay(parse_tcg_event_log(log), quoted)
    assert refused.value.detail == (
        "event log extends PCR8, which the quote does not select in the sha256 bank: its "
        "events cannot be checked"
    )


def test_pcrs_above_9_are_not_compared() -> None:
    log, values = event_log([*DEMO_BOOT, (14, 0x0D, b"MokList", None)])
    quoted = {Alg.SHA256: dict(values[Alg.SHA256]) | {14: b"\x99" * 32}}  # the OS extended it
    check_replay(parse_tcg_event_log(log), quoted)


def test_a_log_without_a_sha256_bank_is_unsupported() -> None:
    log, _ = event_log(DEMO_BOOT, banks=(Alg.SHA1,))
    with pytest.raises(UnsupportedEvidence, match="Spec ID event lists no sha256 bank"):
        check_replay(parse_tcg_event_log(log), {Alg.SHA256: zero_pcrs()})


def test_an_ak_certificate_of_another_key_fails() -> None:
    authority = AkAuthority.generate()
    other = authority.certify(SoftwareAk.generate().public_key())
    der = other.public_bytes(Encoding.DER)
    with pytest.raises(SignatureInvalid, match="does not verify with the AK"):
        _verify(_bundle(**_gce_bundle(ak_cert=_b64(der))), extra_roots=[authority.root()])


def test_the_ak_public_area_must_be_the_certified_key() -> None:
    data = bytearray(NONCE9009.read_bytes())
    fields = protobuf.fields(bytes(data), "test")
    other = SoftwareAk.generate().public().to_bytes()
    changed = [
        (1, 2, other) if number == 1 else (number, wire, value) for number, wire, value in fields
    ]
    with pytest.raises(ChainInvalid, match=r"ak_pub \(TPMT_PUBLIC\) is not the key of the AK"):
        _verify(protobuf.encode(changed))


def test_a_synthetic_vtpm_with_an_expired_ak_certificate_fails() -> None:
    ak = SoftwareAk.generate()
    authority = AkAuthority.generate()
    cert = authority.certify(ak.public_key(), not_after=datetime(2025, 6, 1, tzinfo=UTC))
    evidence = _bundle(
        tpm_quote=tpm_quote_json(ak.quote({Alg.SHA256: zero_pcrs()}, b"n")),
        ak_cert=_b64(cert.public_bytes(Encoding.DER)),
        ak_chain=[_b64(authority.chain_der())],
    )
    with pytest.raises(CertificateExpired, match="AK certificate '' expired at 2025-06-01"):
        _verify(evidence, extra_roots=[authority.root()])


def test_tee_tpm_needs_an_ak_certificate() -> None:
    with pytest.raises(MalformedEvidence) as refused:
        _verify(_bundle(tpm_quote=tpm_quote_json(quote("sha256"))))
    assert refused.value.detail == (
        "tee tpm needs the AK certificate (ak_cert): nothing else vouches for the AK"
    )


def test_the_ak_certificate_may_come_as_collateral_but_not_twice() -> None:
    evidence = _bundle(tpm_quote=tpm_quote_json(quote("sha256")))
    assert _verify(evidence, {"ak_cert": ak_cert()}).signer.root == "google-tpm-ek-root-2018"
    with pytest.raises(MalformedEvidence, match="ak_cert is given both in the evidence and"):
        _verify(_bundle(**_gce_bundle()), {"ak_cert": ak_cert()})


def test_a_quote_of_no_sha256_pcr_is_unsupported() -> None:
    evidence = _bundle(tpm_quote=tpm_quote_json(quote("sha1")), ak_cert=_b64(ak_cert()))
    with pytest.raises(UnsupportedEvidence) as refused:
        _verify(evidence)
    assert refused.value.detail == (
        "the TPM quote selects no PCR of the sha256 bank (only sha1); keybroker's claims are "
        "the sha256 values"
    )


_MALFORMED_BUNDLES = [
    (
        {"tpm_quote": {}, "extra": 1},
        "TPM bundle member 'extra' is not one keybroker reads (ak_cert, ak_chain, event_log, "
        "tpm_quote)",
    ),
    ({"tpm_quote": []}, "tpm_quote is not a JSON object"),
    ({"tpm_quote": {"message": "AA=="}}, "tpm_quote lacks the member 'signature'"),
    (
        {"tpm_quote": {"message": "A", "signature": "", "pcrs": {}}},
        "tpm_quote.message is not standard base64",
    ),
    (
        {"tpm_quote": {"message": "", "signature": "", "pcrs": {"md5": {}}}},
        "tpm_quote.pcrs bank 'md5' is not sha1, sha256, sha384 or sha512",
    ),
    (
        {"ak_chain": "x", "tpm_quote": tpm_quote_json(quote("sha256"))},
        "TPM bundle.ak_chain is not a list",
    ),
]


@pytest.mark.parametrize(("document", "detail"), _MALFORMED_BUNDLES)
def test_malformed_bundles(document: dict[str, Any], detail: str) -> None:
    with pytest.raises(MalformedEvidence) as refused:
        _verify(_bundle(**document))
    assert refused.value.detail == detail


def test_pcr_indexes_are_decimal_numbers() -> None:
    members = tpm_quote_json(quote("sha256"))
    members["pcrs"]["sha256"]["07"] = members["pcrs"]["sha256"].pop("7")
    with pytest.raises(MalformedEvidence, match=r"PCR index '07' is not a decimal number"):
        _verify(_bundle(**_gce_bundle(tpm_quote=members)))


def test_a_protobuf_that_does_not_parse_is_malformed() -> None:
    with pytest.raises(MalformedEvidence, match=r"attest\.Attestation: field 1 of 280 bytes"):
        _verify(NONCE9009.read_bytes()[:100])
