"""The synthetic Nitro PKI: its profile, and saving/loading it (writes under tmp_path)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from broker.errors import ConfigurationError
from broker.evidence.nitro.abi import parse_signed_document
from broker.evidence.nitro.verify import verify
from broker.simulate.nitro import LEAF_LIFETIME, FakeNitroAuthority
from tests.unit.nitro.vectors import PRODUCTION_PCRS, SYNTHETIC_AT


def test_profile_matches_aws(authority: FakeNitroAuthority) -> None:
    data = authority.sign_document(pcrs=PRODUCTION_PCRS, timestamp=SYNTHETIC_AT, tagged=True)
    signed = parse_signed_document(data)
    assert signed.envelope.tagged
    assert signed.document.digest == "SHA384"
    assert signed.document.cabundle == authority.cabundle
    assert signed.document.to_bytes() == signed.envelope.payload
    for cert in (authority.root, authority.intermediate):
        key = cert.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        assert key.curve.name == "secp384r1"
    assert authority.trusted_root().name == "insecure-test-nitro-sim"
    assert authority.trusted_root().insecure


def test_each_document_gets_a_fresh_three_hour_leaf(authority: FakeNitroAuthority) -> None:
    first, leaf_a = authority.build(pcrs=PRODUCTION_PCRS, timestamp=SYNTHETIC_AT)
    second, leaf_b = authority.build(pcrs=PRODUCTION_PCRS, timestamp=SYNTHETIC_AT)
    assert first.certificate != second.certificate
    cert = leaf_a.certificate
    assert cert.not_valid_before_utc <= SYNTHETIC_AT
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == LEAF_LIFETIME
    assert leaf_b.certificate.issuer == authority.intermediate.subject


def test_naive_timestamp_is_refused(authority: FakeNitroAuthority) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        authority.build(pcrs=PRODUCTION_PCRS, timestamp=SYNTHETIC_AT.replace(tzinfo=None))


def test_save_and_load(authority: FakeNitroAuthority, tmp_path: Path) -> None:
    directory = tmp_path / "nitro-sim"
    authority.save(directory)
    for name in ("root-key.pem", "intermediate-key.pem"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600
    loaded = FakeNitroAuthority.load(directory)
    assert loaded.root == authority.root
    assert loaded.intermediate == authority.intermediate
    data = loaded.sign_document(pcrs=PRODUCTION_PCRS, timestamp=SYNTHETIC_AT)
    claims = verify(data, {}, now=SYNTHETIC_AT, extra_roots=[authority.trusted_root()])
    assert claims.signer.root == "insecure-test-nitro-sim"


def test_save_tightens_an_existing_key_file(authority: FakeNitroAuthority, tmp_path: Path) -> None:
    key_file = tmp_path / "root-key.pem"
    key_file.write_bytes(b"old")
    key_file.chmod(0o644)
    authority.save(tmp_path)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_load_refuses_readable_keys(authority: FakeNitroAuthority, tmp_path: Path) -> None:
    authority.save(tmp_path)
    (tmp_path / "root-key.pem").chmod(0o644)
    with pytest.raises(ConfigurationError, match="readable by others"):
        FakeNitroAuthority.load(tmp_path)


def test_load_refuses_mixed_authorities(authority: FakeNitroAuthority, tmp_path: Path) -> None:
    mine, other = tmp_path / "a", tmp_path / "b"
    authority.save(mine)
    FakeNitroAuthority.generate().save(other)
    (mine / "intermediate.pem").write_bytes((other / "intermediate.pem").read_bytes())
    with pytest.raises(ConfigurationError, match="intermediate key does not match"):
        FakeNitroAuthority.load(mine)
    (mine / "intermediate-key.pem").write_bytes((other / "intermediate-key.pem").read_bytes())
    with pytest.raises(ConfigurationError, match="intermediate is not issued by root"):
        FakeNitroAuthority.load(mine)


def test_load_reports_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"root\.pem: not a readable PEM certificate"):
        FakeNitroAuthority.load(tmp_path)
