"""``keybroker guest evidence --tee nitro --simulate``: a simulated Nitro attestation document
that binds the given public key (a KMS ``Recipient``, docs/kms.md), verified by the broker's
own Nitro verifier; every bad argument exits 2 with its reason and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from broker.cli import main
from broker.evidence.claims import Claims, Tee
from broker.evidence.registry import verifier_for
from broker.evidence.trust import TrustedRoot
from broker.simulate.guests import DEMO_PCRS
from broker.simulate.nitro import FakeNitroAuthority
from broker.timeutil import utcnow

KEY = rsa.generate_private_key(65537, 2048).public_key()
SPKI = KEY.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TrustedRoot]:
    """A state directory with the demo's layout: the authority under demo/nitro."""
    folder = tmp_path_factory.mktemp("state")
    authority = FakeNitroAuthority.generate()
    authority.save(folder / "demo" / "nitro")
    (folder / "enclave.pub.pem").write_bytes(
        KEY.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    return folder, authority.trusted_root()


def evidence(state_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        "guest", "evidence", "--tee", "nitro", "--public-key", str(state_dir / "enclave.pub.pem"),
        "--out", str(out), "--state-dir", str(state_dir), *extra,
    ]  # fmt: skip


def verified(document: bytes, root: TrustedRoot) -> Claims:
    return verifier_for(Tee.NITRO).verify(document, {}, now=utcnow(), extra_roots=(root,))


def test_the_document_binds_the_public_key(
    state: tuple[Path, TrustedRoot], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, root = state
    out = tmp_path / "enclave.doc"
    assert main(evidence(folder, out, "--simulate")) == 0
    claims = verified(out.read_bytes(), root)
    assert bytes.fromhex(claims.fields["public_key"]) == SPKI
    assert claims.fields["nonce"] is None
    assert claims.debug is False
    pcrs = claims.lookup("pcrs")
    assert [pcrs[str(index)] for index in range(3)] == [DEMO_PCRS[i].hex() for i in range(3)]
    assert "simulated production-mode Nitro attestation document" in capsys.readouterr().err


def test_debug_makes_a_debug_mode_document(state: tuple[Path, TrustedRoot], tmp_path: Path) -> None:
    folder, root = state
    out = tmp_path / "debug.doc"
    assert main(evidence(folder, out, "--simulate", "--debug")) == 0
    claims = verified(out.read_bytes(), root)
    assert claims.debug is True
    assert bytes.fromhex(claims.fields["public_key"]) == SPKI


def test_a_kit_elsewhere_is_named_with_kit(state: tuple[Path, TrustedRoot], tmp_path: Path) -> None:
    folder, root = state
    out = tmp_path / "kit.doc"
    argv = evidence(folder, out, "--simulate", "--kit", str(folder / "demo" / "nitro"))
    argv[argv.index("--state-dir") + 1] = str(tmp_path)  # holds no kit
    assert main(argv) == 0
    verified(out.read_bytes(), root)


def test_without_simulate_it_refuses(
    state: tuple[Path, TrustedRoot], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _ = state
    out = tmp_path / "none.doc"
    assert main(evidence(folder, out)) == 2
    assert capsys.readouterr().err == (
        "keybroker: --tee nitro needs --simulate: a real enclave's document comes from its "
        "Nitro Secure Module (/dev/nsm), which the enclave application asks itself\n"
    )
    assert not out.exists()


@pytest.mark.parametrize("content", [b"not pem", b"", "ec-private"])
def test_a_file_without_a_pem_public_key_is_refused(
    state: tuple[Path, TrustedRoot],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: bytes | str,
) -> None:
    folder, _ = state
    bad = tmp_path / "bad.pem"
    if content == "ec-private":  # a private key is not what the document binds
        private = ec.generate_private_key(ec.SECP256R1())
        content = private.private_bytes(
            Encoding.PEM,
            PrivateFormat.PKCS8,
            NoEncryption(),
        )
    assert isinstance(content, bytes)
    bad.write_bytes(content)
    out = tmp_path / "bad.doc"
    argv = evidence(folder, out, "--simulate")
    argv[argv.index("--public-key") + 1] = str(bad)
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"keybroker: --public-key {bad} holds no PEM public key (make one with "
        "`openssl pkey -in key.pem -pubout`)\n"
    )
    assert not out.exists()


def test_a_missing_public_key_file_is_refused(
    state: tuple[Path, TrustedRoot], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _ = state
    argv = evidence(folder, tmp_path / "x.doc", "--simulate")
    argv[argv.index("--public-key") + 1] = str(tmp_path / "absent.pem")
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"keybroker: cannot read --public-key {tmp_path / 'absent.pem'}: No such file or "
        "directory\n"
    )


def test_a_missing_kit_is_refused(
    state: tuple[Path, TrustedRoot], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _ = state
    argv = evidence(folder, tmp_path / "x.doc", "--simulate")
    argv[argv.index("--state-dir") + 1] = str(tmp_path)
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"keybroker: simulation kit {tmp_path / 'demo' / 'nitro'} does not exist (make run "
        "creates the nitro kit; pass --kit DIR for an authority saved with "
        "broker.simulate.nitro)\n"
    )
