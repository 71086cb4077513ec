"""``keybroker evidence verify --tee nitro``: the JSON contract and exit codes."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from broker.cli import main
from broker.simulate.nitro import FakeNitroAuthority
from tests.unit.nitro.vectors import (
    DEBUG,
    EVERVAULT,
    PRODUCTION,
    PRODUCTION_PCRS,
    SYNTHETIC_AT,
    RealDocument,
)


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    status = main(["evidence", "verify", "--tee", "nitro", *args])
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) == 1, out
    result: dict[str, Any] = json.loads(lines[0])
    assert list(result)[:5] == ["verified", "tee", "signer", "claims", "error"]
    return status, result


def _path(real: RealDocument) -> str:
    return str(EVERVAULT / real.name)


def test_real_document_verifies(capsys: pytest.CaptureFixture[str]) -> None:
    status, result = _run(capsys, _path(PRODUCTION), "--at", "2022-10-13T08:58:20Z")
    assert status == 0
    assert result["verified"] is True
    assert result["tee"] == "nitro"
    assert result["error"] is None
    assert result["signer"] == {
        "vendor": "aws",
        "origin": "infrastructure-provider",
        "root": "aws-nitro-enclaves-root-g1",
        "key": "nitro",
        "product": None,
    }
    claims = result["claims"]
    assert claims["debug"] is False
    assert claims["module_id"] == PRODUCTION.module_id
    assert claims["digest"] == "SHA384"
    assert claims["timestamp"] == 1665651482136
    assert claims["pcrs"]["0"] == PRODUCTION.pcrs[0]
    assert claims["public_key"] is None
    assert len(claims["nonce"]) == 512
    assert "tee" not in claims
    assert "signer" not in claims


def test_debug_document_with_unix_seconds(capsys: pytest.CaptureFixture[str]) -> None:
    status, result = _run(capsys, _path(DEBUG), "--at", "1665582700")
    assert status == 0
    assert result["claims"]["debug"] is True
    assert result["claims"]["user_data"] == b"hello, world!".hex()


def test_expired_document(capsys: pytest.CaptureFixture[str]) -> None:
    late = (PRODUCTION.leaf_not_after + timedelta(hours=1)).isoformat()
    status, result = _run(capsys, _path(PRODUCTION), "--at", late)
    assert status == 1
    assert result["verified"] is False
    assert result["signer"] is None
    assert result["claims"] is None
    assert result["error"]["type"] == "certificate-expired"
    assert "expired at 2022-10-13T11:58:02+00:00" in result["error"]["detail"]


@pytest.mark.parametrize("name", ["nitro.pem", "ga-attestation-doc-2023-09-18.b64"])
def test_files_that_are_not_documents(capsys: pytest.CaptureFixture[str], name: str) -> None:
    status, result = _run(capsys, str(EVERVAULT / name), "--at", "2022-10-13T08:58:20Z")
    assert status == 1
    assert result["error"]["type"] == "malformed"


def test_synthetic_document_needs_the_insecure_test_root(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    authority = FakeNitroAuthority.generate()
    document = tmp_path / "doc.cose"
    document.write_bytes(authority.sign_document(pcrs=PRODUCTION_PCRS, timestamp=SYNTHETIC_AT))
    root = tmp_path / "root.pem"
    root.write_bytes(authority.root.public_bytes(serialization.Encoding.PEM))
    at = SYNTHETIC_AT.isoformat()

    status, result = _run(capsys, str(document), "--at", at)
    assert status == 1
    assert result["error"]["type"] == "chain-invalid"

    status, result = _run(capsys, str(document), "--at", at, "--insecure-test-root", str(root))
    assert status == 0
    assert result["signer"]["root"] == "insecure-test-cli-0"


@pytest.mark.parametrize(
    "args",
    [
        ["/nonexistent/doc.cose", "--at", "2022-10-13T08:58:20Z"],
        [str(EVERVAULT / PRODUCTION.name), "--at", "2022-10-13T08:58:20"],
        [str(EVERVAULT / PRODUCTION.name), "--at", "yesterday"],
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    assert main(["evidence", "verify", "--tee", "nitro", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("keybroker: ")
