"""``keybroker policy check`` and ``keybroker policy eval``: exit codes and output."""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from broker.cli import main
from broker.errors import SignatureInvalid
from broker.evidence.claims import Claims, Tee
from broker.evidence.registry import CollateralOption, TeeVerifier
from broker.evidence.trust import TrustedRoot
from broker.policy.lint import CODES, UNACKNOWLEDGEABLE

from .support import DATA, POLICIES, go_sev_guest_claims

PRODUCTION = str(POLICIES / "snp-production-disk-key.yaml")
INSECURE = str(POLICIES / "insecure-debug-example.yaml")
GO_SEV_GUEST = Path(__file__).resolve().parents[2] / "vectors" / "snp" / "go-sev-guest-milan-v2"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


# --- check ----------------------------------------------------------------------------------


BAD = DATA / "bad-policy.yaml"


@pytest.mark.parametrize(
    ("files", "status"),
    [
        (["default.yaml", "snp-production-disk-key.yaml", "tdx-production.yaml"], 0),
        (["sgx-enclave-data-key.yaml", "nitro-enclave.yaml", "reference/example-images.yaml"], 0),
        (["insecure-debug-example.yaml"], 1),
        (["snp-production-disk-key.yaml", "insecure-debug-example.yaml"], 1),
        (["insecure-debug-example.yaml", str(BAD)], 2),
        ([str(DATA / "absent.yaml")], 2),
    ],
)
def test_check_exit_status(
    capsys: pytest.CaptureFixture[str], files: list[str], status: int
) -> None:
    paths = [str(POLICIES / name) for name in files]  # absolute names stay as they are
    assert run(capsys, "policy", "check", *paths)[0] == status


def test_check_output(capsys: pytest.CaptureFixture[str]) -> None:
    bad = str(BAD)
    status, out, _ = run(
        capsys, "policy", "check", INSECURE, str(POLICIES / "nitro-enclave.yaml"), bad
    )
    assert status == 2
    lines = out.splitlines()
    assert lines[0].startswith(f"{INSECURE}: 1 warning (policy insecure-debug-example v1, sha256:")
    assert lines[1] == (
        f"  {INSECURE}:34: warning[debug-allowed] $.admit.snp.insecure_allow_debug: debug guests "
        "are admitted: their host can read their memory, so a released key is as exposed as the "
        "host"
    )
    assert lines[2] == (
        "  provenance go-sev-guest-test-vm[1] (go-sev-guest Milan test VM (launched with DEBUG)): "
        "source read from the report in tests/vectors/snp/go-sev-guest-milan-v2 "
        "(https://github.com/google/go-sev-guest at af1c107a648f47253da23a9de7a7c82ec073cfdb)"
    )
    assert lines[3].startswith(f"{POLICIES / 'nitro-enclave.yaml'}: ok (policy nitro-enclave v1")
    assert "acknowledged[infrastructure-signer] $.admit.nitro.signer" in lines[4]
    assert lines[5].startswith("  provenance nitro-example-enclaves[1] (Evervault production")
    assert lines[6] == f"{bad}: invalid, 2 errors"
    assert lines[7] == (
        f"  {bad}:7:7: error: $.admit.snp.minimum_tcb.bootlader: unknown key 'bootlader' "
        "(did you mean 'bootloader'?); allowed here: bootloader, fmc, microcode, snp, tee"
    )
    assert lines[8].startswith(f"  {bad}:8:27: error: $.admit.snp.insecure_allow_debug: ")


def test_help_documents_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    for action, text in (("check", "1 valid, but some file has warnings"), ("eval", "1 it denies")):
        with pytest.raises(SystemExit) as done:
            main(["policy", action, "--help"])
        assert done.value.code == 0
        assert text in " ".join(capsys.readouterr().out.split())


def test_check_help_names_every_warning_code(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["policy", "check", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    codes = text.split("Warning codes: ")[1].split(" (docs/policies.md)")[0]
    assert codes.split(", ") == list(CODES)
    unacknowledgeable = " and ".join(sorted(UNACKNOWLEDGEABLE))
    assert f"{unacknowledgeable} cannot be acknowledged." in text


# --- eval with --claims ---------------------------------------------------------------------

VERIFY_OUTPUT = str(DATA / "go-sev-guest-verify.json")


def eval_go_sev_guest(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    """The production policy on the go-sev-guest claims at 2023-01-01T00:00:00Z."""
    argv = ("policy", "eval", PRODUCTION, "--claims", VERIFY_OUTPUT, "--at", "1672531200")
    return run(capsys, *argv, *extra)


def test_eval_denies_and_explains(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = eval_go_sev_guest(capsys)
    assert status == 1
    assert "at        2023-01-01T00:00:00+00:00" in out
    assert "decision  DENY: 1 of 11 clauses failed" in out
    assert "evidence  snp, signed by amd (silicon-vendor, root amd-ark-milan, key vcek)" in out
    table = [line.split() for line in out.splitlines()]
    assert ["RESULT", "KIND", "CLAIM", "OP", "EXPECTED", "FOUND"] in table
    assert ["FAIL", "debug", "debug", "==", "false", "true"] in table
    assert ["PASS", "minimum_tcb", "reported_tcb.microcode", ">=", "68", "68"] in table
    assert "Denied because:\n  1. debug == false, found true (debug mode lets" in out
    assert "     rule: $.admit.snp\n" in out


def test_eval_allows(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "policy", "eval", INSECURE, "--claims", VERIFY_OUTPUT)
    assert status == 0
    assert "decision  ALLOW: every clause passed" in out
    assert "Denied because" not in out


def test_eval_says_it_does_not_count_release_limits(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    limited = tmp_path / "limited.yaml"
    limited.write_text(Path(INSECURE).read_text() + "limits: {max_releases: 1}\n")
    status, out, _ = run(capsys, "policy", "eval", str(limited), "--claims", VERIFY_OUTPUT)
    assert status == 0
    assert "limits: not evaluated here (they count the key's past releases)" in out
    status, out, _ = run(capsys, "policy", "eval", INSECURE, "--claims", VERIFY_OUTPUT)
    assert "limits:" not in out


def test_eval_json(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = eval_go_sev_guest(capsys, "--json")
    assert status == 1
    doc = json.loads(out)
    assert doc["allow"] is False
    assert doc["error"] is None
    assert doc["at"] == "2023-01-01T00:00:00+00:00"
    assert doc["policy"]["name"] == "snp-production-disk-key"
    assert len(doc["policy"]["sha256"]) == 64
    assert [f["claim"] for f in doc["failures"]] == ["debug"]


def test_eval_claims_json_form_carries_times(capsys: pytest.CaptureFixture[str]) -> None:
    nitro = str(POLICIES / "nitro-enclave.yaml")
    claims = str(DATA / "nitro-claims.json")
    fresh = run(capsys, "policy", "eval", nitro, "--claims", claims, "--at", "2022-10-13T08:58:20Z")
    assert fresh[0] == 0
    assert "(age 17s)" in fresh[1]
    stale = run(capsys, "policy", "eval", nitro, "--claims", claims, "--at", "2022-10-13T09:58:20Z")
    assert stale[0] == 1
    assert (
        "evidence_time age <= 5m, found 2022-10-13T08:58:02.136000+00:00 (age 1h 17s)" in stale[1]
    )


def test_eval_evidence_that_did_not_verify_is_a_denial(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(
        capsys, "policy", "eval", PRODUCTION, "--claims", str(DATA / "unverified.json")
    )
    assert status == 1
    assert "DENY: the evidence did not verify (signature-invalid)" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--claims", str(DATA / "bad-policy.yaml")], "not JSON"),
        (
            ["--claims", str(DATA / "json-policy.json")],
            "expected `keybroker evidence verify` output",
        ),
        (["--claims", str(DATA / "absent.json")], "cannot read"),
        (["--claims", VERIFY_OUTPUT, "--at", "yesterday"], "not an ISO 8601 instant"),
    ],
)
def test_eval_usage_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    status, _, err = run(capsys, "policy", "eval", PRODUCTION, *argv)
    assert status == 2
    assert message in err


def test_eval_invalid_policy(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(
        capsys, "policy", "eval", str(DATA / "bad-policy.yaml"), "--claims", VERIFY_OUTPUT
    )
    assert status == 2
    assert "bad-policy.yaml:7:7: error: $.admit.snp.minimum_tcb.bootlader" in err


def test_eval_needs_exactly_one_source(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["policy", "eval", PRODUCTION])
    assert done.value.code == 2
    assert capsys.readouterr().err.endswith(
        "keybroker policy eval: error: one of the arguments --claims --tee is required\n"
    )
    with pytest.raises(SystemExit) as done:
        main(["policy", "eval", PRODUCTION, "--claims", VERIFY_OUTPUT, "--tee", "snp", "x"])
    assert done.value.code == 2
    assert capsys.readouterr().err.endswith(
        "keybroker policy eval: error: argument --tee: not allowed with argument --claims\n"
    )


# --- policies publish: an invalid file exits 2 before the database or HSM is opened -----------


@pytest.mark.parametrize(
    ("path", "lines"),
    [
        (
            BAD,
            [
                f"keybroker: {BAD}:7:7: error: $.admit.snp.minimum_tcb.bootlader: unknown key "
                "'bootlader' (did you mean 'bootloader'?); allowed here: bootloader, fmc, "
                "microcode, snp, tee",
                f"keybroker: {BAD}:8:27: error: $.admit.snp.insecure_allow_debug: expected "
                "boolean (true admits guests and enclaves in debug mode, whose memory the host "
                'can read; never for production keys), found string "yes"; write true or '
                "false: yes, no, on and off are strings here",
            ],
        ),
        (
            DATA / "refs-images.yaml",
            [
                f"keybroker: {DATA / 'refs-images.yaml'}:1:9: error: $.format: "
                "is keybroker-references/1, not keybroker-policy/1"
            ],
        ),
        (
            DATA / "absent.yaml",
            [
                f"keybroker: {DATA / 'absent.yaml'}: error: $: "
                "cannot read: No such file or directory"
            ],
        ),
    ],
)
def test_publishing_an_invalid_policy_exits_2(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    path: Path,
    lines: list[str],
) -> None:
    # no database is configured: publish must stop before it would need one
    monkeypatch.setenv("KEYBROKER_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    status, out, err = run(capsys, "policies", "publish", str(path))
    assert (status, out) == (2, "")
    assert err.splitlines() == lines


# --- eval with --tee (through broker.evidence.registry.verifier_for) ------------------------


def fake_snp(monkeypatch: pytest.MonkeyPatch, verify: Any) -> None:
    module = types.ModuleType("broker.evidence.snp")
    module.VERIFIER = TeeVerifier(  # type: ignore[attr-defined]
        Tee.SNP, verify, (CollateralOption("vcek", "--vcek", "VCEK certificate (DER)"),)
    )
    monkeypatch.setitem(sys.modules, "broker.evidence.snp", module)


def test_eval_tee_verifies_with_collateral_flags(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    def verify(
        evidence: bytes,
        collateral: Mapping[str, bytes],
        *,
        now: datetime,
        extra_roots: Sequence[TrustedRoot] = (),
    ) -> Claims:
        seen.update(evidence=evidence, collateral=dict(collateral), now=now)
        return go_sev_guest_claims()

    fake_snp(monkeypatch, verify)
    report, vcek = GO_SEV_GUEST / "attestation.bin", GO_SEV_GUEST / "vcek.der"
    status, out, _ = run(
        capsys,
        "policy",
        "eval",
        INSECURE,
        "--tee",
        "snp",
        str(report),
        "--vcek",
        str(vcek),
        "--at",
        "2023-01-01T00:00:00Z",
    )
    assert status == 0
    assert seen == {
        "evidence": report.read_bytes(),
        "collateral": {"vcek": vcek.read_bytes()},
        "now": datetime(2023, 1, 1, tzinfo=UTC),
    }
    assert "ALLOW" in out


def test_eval_tee_evidence_error_is_a_denial(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def verify(evidence: bytes, collateral: Mapping[str, bytes], **_: Any) -> Claims:
        raise SignatureInvalid("report signature does not verify with the VCEK")

    fake_snp(monkeypatch, verify)
    report = str(GO_SEV_GUEST / "attestation.bin")
    status, out, _ = run(capsys, "policy", "eval", PRODUCTION, "--tee", "snp", report, "--json")
    assert status == 1
    doc = json.loads(out)
    assert (doc["allow"], doc["tee"], doc["explanation"]) == (False, "snp", [])
    assert doc["error"] == {
        "type": "signature-invalid",
        "detail": "report signature does not verify with the VCEK",
    }


def test_eval_tee_without_verifier_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "broker.evidence.snp", None)
    report = str(GO_SEV_GUEST / "attestation.bin")
    status, _, err = run(capsys, "policy", "eval", PRODUCTION, "--tee", "snp", report)
    assert (status, err) == (2, "keybroker: tee 'snp' is not supported yet\n")
    status, _, err = run(capsys, "policy", "eval", PRODUCTION, "--tee", "sev", report)
    assert status == 2
    assert "tee 'sev' is not one of snp, tdx, sgx, nitro" in err


# --- the verification helpers shared with `keybroker evidence verify` -----------------------


def test_evidence_verify_still_keeps_its_contract(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_snp(monkeypatch, lambda evidence, collateral, **_: go_sev_guest_claims())
    report, vcek = GO_SEV_GUEST / "attestation.bin", GO_SEV_GUEST / "vcek.der"
    argv = ["evidence", "verify", "--tee", "snp", str(report), "--vcek", str(vcek)]
    status, out, _ = run(capsys, *argv)
    assert status == 0
    doc = json.loads(out)
    assert list(doc) == ["verified", "tee", "signer", "claims", "error"]
    assert (doc["verified"], doc["tee"], doc["signer"]["vendor"]) == (True, "snp", "amd")
    assert doc["claims"]["measurement"] == go_sev_guest_claims().fields["measurement"]


def test_collateral_flag_of_another_tee_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_snp(monkeypatch, lambda evidence, collateral, **_: go_sev_guest_claims())
    tdx = types.ModuleType("broker.evidence.tdx")
    tdx.VERIFIER = TeeVerifier(Tee.TDX, lambda *a, **k: go_sev_guest_claims())  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "broker.evidence.tdx", tdx)
    report, vcek = str(GO_SEV_GUEST / "attestation.bin"), str(GO_SEV_GUEST / "vcek.der")
    for argv in (
        ["evidence", "verify", "--tee", "tdx", report, "--vcek", vcek],
        ["policy", "eval", PRODUCTION, "--tee", "tdx", report, "--vcek", vcek],
    ):
        status, _, err = run(capsys, *argv)
        assert (status, err) == (2, "keybroker: --vcek does not apply to --tee tdx\n")
