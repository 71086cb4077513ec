"""Signed reference files: verified before their sets are read, on every load."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from broker.cli import main
from broker.errors import PolicyError
from broker.policy.loader import load_policy, load_policy_text
from broker.release.policies import stored_form

MEASUREMENT = "ab" * 48
REFERENCES = f"""format: keybroker-references/1
reference_values:
  images:
    tee: snp
    values:
      - label: build 7
        measurement: {MEASUREMENT}
        provenance:
          source: "git+https://example.test/images@0123abc"
"""

Key = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def sign(key: Key, data: bytes) -> str:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return base64.b64encode(key.sign(data)).decode()
    return base64.b64encode(key.sign(data, ec.ECDSA(hashes.SHA256()))).decode()


def public_pem(key: Key | rsa.RSAPrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def policy_text(pem: str, *, require: bool = True, inline: str = "") -> str:
    indented = "\n".join("        " + line for line in pem.strip().splitlines())
    return f"""format: keybroker-policy/1
name: signed-refs
version: 1
references: [refs.yaml]
reference_sets:
  require_signed: {"true" if require else "false"}
  signers:
    - name: platform-team
      public_key: |
{indented}
{inline}admit:
  snp:
    signer:
      origin: silicon-vendor
    reference_values: [images]
    minimum_tcb: {{bootloader: 0, tee: 0, snp: 0, microcode: 0}}
"""


def write(tmp_path: Path, key: Key, *, signer: Key | None = None, require: bool = True) -> Path:
    (tmp_path / "refs.yaml").write_text(REFERENCES)
    (tmp_path / "refs.yaml.sig").write_text(sign(signer or key, REFERENCES.encode()) + "\n")
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_text(public_pem(key), require=require))
    return policy


KEYS: list[Callable[[], Key]] = [
    lambda: ec.generate_private_key(ec.SECP256R1()),
    ed25519.Ed25519PrivateKey.generate,
]


def messages(exc: pytest.ExceptionInfo[PolicyError]) -> list[str]:
    return [problem["message"] for problem in exc.value.problems]


@pytest.mark.parametrize("make_key", KEYS, ids=["ecdsa-p256", "ed25519"])
def test_a_signed_set_loads_and_its_canonical_form_is_verified_again(
    tmp_path: Path, make_key: Callable[[], Key]
) -> None:
    policy = load_policy(write(tmp_path, make_key()))
    (signed,) = policy.signed_references
    assert (signed.file, signed.signer, signed.text) == ("refs.yaml", "platform-team", REFERENCES)
    assert policy.reference_set("images").signed_by == "platform-team"
    text, digest = stored_form(policy)
    assert "reference_values" not in json.loads(text)  # the set travels inside its signed file
    again = load_policy_text(text, source="<stored>", is_json=True)
    assert again.digest() == digest
    assert again.reference_set("images").entries == policy.reference_set("images").entries


def test_a_tampered_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, ec.generate_private_key(ec.SECP256R1()))
    (tmp_path / "refs.yaml").write_text(REFERENCES.replace("ab" * 48, "cd" * 48))
    with pytest.raises(PolicyError) as refused:
        load_policy(path)
    assert messages(refused)[:2] == [
        "refs.yaml: signature refused: the signature does not verify with any signer "
        "(platform-team)",
        "signature refused: the signature does not verify with any signer (platform-team)",
    ]


def test_a_signature_by_another_key_is_refused(tmp_path: Path) -> None:
    trusted, other = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(PolicyError) as refused:
        load_policy(write(tmp_path, trusted, signer=other))
    assert messages(refused)[0] == (
        "refs.yaml: signature refused: the signature does not verify with any signer "
        "(platform-team)"
    )


def test_a_bad_signature_is_refused_even_when_signatures_are_optional(tmp_path: Path) -> None:
    trusted = ec.generate_private_key(ec.SECP256R1())
    path = write(tmp_path, trusted, signer=ec.generate_private_key(ec.SECP256R1()), require=False)
    with pytest.raises(PolicyError):
        load_policy(path)


def test_a_signature_that_is_not_base64_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, ed25519.Ed25519PrivateKey.generate())
    (tmp_path / "refs.yaml.sig").write_text("not base64!")
    with pytest.raises(PolicyError) as refused:
        load_policy(path)
    assert messages(refused)[0] == "refs.yaml: signature refused: the signature is not base64 text"


def test_an_unsigned_file_is_refused_when_signatures_are_required(tmp_path: Path) -> None:
    path = write(tmp_path, ed25519.Ed25519PrivateKey.generate())
    (tmp_path / "refs.yaml.sig").unlink()
    with pytest.raises(PolicyError) as refused:
        load_policy(path)
    assert messages(refused)[0] == (
        "refs.yaml: not signed: no refs.yaml.sig beside it, and reference_sets.require_signed "
        "accepts only signed reference files"
    )


def test_an_unsigned_file_loads_when_signatures_are_optional(tmp_path: Path) -> None:
    path = write(tmp_path, ed25519.Ed25519PrivateKey.generate(), require=False)
    (tmp_path / "refs.yaml.sig").unlink()
    policy = load_policy(path)
    assert policy.reference_set("images").signed_by is None
    assert policy.signed_references == ()


def test_an_inline_set_is_refused_when_signatures_are_required(tmp_path: Path) -> None:
    inline = f"""reference_values:
  local:
    tee: snp
    values: [{{measurement: "{MEASUREMENT}"}}]
"""
    text = policy_text(public_pem(ed25519.Ed25519PrivateKey.generate()), inline=inline)
    text = text.replace("reference_values: [images]", "reference_values: [local]")
    text = text.replace("references: [refs.yaml]\n", "")
    with pytest.raises(PolicyError) as refused:
        load_policy_text(text)
    assert messages(refused) == [
        "reference set 'local' (<policy>) is not signed; reference_sets.require_signed accepts "
        "only sets from a reference file signed by one of: platform-team"
    ]


def test_tampered_text_in_a_stored_policy_is_refused(tmp_path: Path) -> None:
    text, _ = stored_form(load_policy(write(tmp_path, ec.generate_private_key(ec.SECP256R1()))))
    doc = json.loads(text)
    doc["signed_references"][0]["text"] = REFERENCES.replace("ab" * 48, "cd" * 48)
    with pytest.raises(PolicyError) as refused:
        load_policy_text(json.dumps(doc), source="<stored>", is_json=True)
    assert messages(refused)[0] == (
        "refs.yaml: signature refused: the signature does not verify with any signer "
        "(platform-team)"
    )


def test_carried_files_need_signers() -> None:
    doc = {
        "format": "keybroker-policy/1",
        "name": "p",
        "version": 1,
        "signed_references": [{"file": "refs.yaml", "text": REFERENCES, "signature": "AA=="}],
        "admit": {},
    }
    with pytest.raises(PolicyError) as refused:
        load_policy_text(json.dumps(doc), is_json=True)
    assert messages(refused) == ["signed references need reference_sets"]


def test_an_rsa_signer_key_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, ed25519.Ed25519PrivateKey.generate())
    rsa_pem = public_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    path.write_text(policy_text(rsa_pem))
    with pytest.raises(PolicyError) as refused:
        load_policy(path)
    assert messages(refused)[0] == (
        "signer 'platform-team': public key must be an ECDSA P-256 or Ed25519 key, "
        "found RSAPublicKey"
    )


@pytest.mark.parametrize("make_key", KEYS, ids=["ecdsa-p256", "ed25519"])
def test_reference_sign_writes_a_signature_the_policy_accepts(
    tmp_path: Path, make_key: Callable[[], Key], capsys: pytest.CaptureFixture[str]
) -> None:
    key = make_key()
    path = write(tmp_path, key)
    (tmp_path / "refs.yaml.sig").unlink()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    (tmp_path / "key.pem").write_bytes(pem)
    refs = str(tmp_path / "refs.yaml")
    assert main(["reference", "sign", refs, "--key", str(tmp_path / "key.pem")]) == 0
    assert capsys.readouterr().out == f"wrote {refs}.sig\n"
    assert load_policy(path).signed_references[0].signer == "platform-team"
    assert main(["policy", "check", str(path)]) == 0
    assert "  signed: refs.yaml by platform-team\n" in capsys.readouterr().out
