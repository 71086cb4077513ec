"""``keybroker reference compute`` to ``policy check`` and ``policy eval``: the entry that a
computation writes is shown with its provenance, and named when it matches."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from broker.cli import main
from broker.evidence.claims import Claims, Signer, SignerOrigin, Tee
from broker.policy.evaluate import evaluate
from broker.policy.loader import load_policy
from broker.release.policies import audit_summary

FIXTURES = Path(__file__).resolve().parents[2] / "vectors" / "artifacts" / "sev-snp-measure-ovmf"
DIGEST = "e1e1ca029dd7973ab9513295be68198472dcd4fc834bd9af" + (
    "9b63f6e8a1674dbf281a9278a4a2ebe0eed9f22adbcd0e2b"
)
COMPUTE = [
    "reference", "compute", "snp", "--ovmf", str(FIXTURES / "ovmf_AmdSev_suffix.bin"),
    "--vcpus", "1", "--vcpu-type", "EPYC-v4", "--guest-features", "0x21", "--label", "build 7",
    "--source", "git+https://example.test/firmware@0123abc",
]  # fmt: skip
POLICY = """format: keybroker-policy/1
name: computed
version: 1
references: [images.yaml]
admit:
  snp:
    signer: {origin: silicon-vendor}
    reference_values: [snp-images]
    minimum_tcb: {bootloader: 0, tee: 0, snp: 0, microcode: 0}
"""


def test_compute_prints_the_value_and_the_entry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(COMPUTE) == 0
    out = capsys.readouterr().out
    assert out.startswith(f'measurement: {DIGEST}\n\n- label: "build 7"\n')
    assert '      - name: "ovmf_AmdSev_suffix.bin"\n' in out
    assert '      name: "sev-snp-measure"\n      version: "0.0.13"\n' in out
    assert '    source: "git+https://example.test/firmware@0123abc"\n' in out


def test_a_written_entry_is_checked_shown_and_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refs = tmp_path / "images.yaml"
    assert main([*COMPUTE, "--output", str(refs)]) == 0
    assert capsys.readouterr().out == f"measurement: {DIGEST}\nwrote {refs} (set snp-images)\n"
    (tmp_path / "policy.yaml").write_text(POLICY)
    assert main(["policy", "check", str(refs), str(tmp_path / "policy.yaml")]) == 0
    lines = capsys.readouterr().out.splitlines()
    shown = (
        "  provenance snp-images[1] (build 7): computed by sev-snp-measure 0.0.13 (via keybroker "
        "0.1.0); from ovmf_AmdSev_suffix.bin (sha256:8f765dfabc127fc0…); with mode=snp, vcpus=1, "
        "vcpu_type=EPYC-v4, guest_features=0x21, vmm_type=QEMU; at "
    )
    assert lines[0] == f"{refs}: ok (reference file: snp-images)"
    assert lines[1].startswith(shown)
    assert lines[1].endswith("Z; source git+https://example.test/firmware@0123abc")
    assert lines[3].startswith(shown)

    policy = load_policy(tmp_path / "policy.yaml")
    claims = Claims(
        tee=Tee.SNP,
        signer=Signer("amd", SignerOrigin.SILICON_VENDOR, "amd-ark-milan", "vcek"),
        debug=False,
        fields={
            "measurement": DIGEST,
            "reported_tcb": {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115},
        },
    )
    decision = evaluate(policy, claims, datetime(2026, 1, 1, tzinfo=UTC))
    assert decision.allow
    (reference,) = [c for c in decision.explanation if c.kind == "reference_values"]
    assert reference.note == "snp-images: build 7"
    assert reference.to_json()["entry"] == {"set": "snp-images", "number": 1, "label": "build 7"}
    assert audit_summary(decision)["matched_references"] == [
        {"set": "snp-images", "number": 1, "label": "build 7"}
    ]


def test_an_entry_without_provenance_is_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refs = tmp_path / "bare.yaml"
    refs.write_text(
        "format: keybroker-references/1\nreference_values:\n  bare:\n    tee: snp\n    values:\n"
        f"      - label: pasted by hand\n        measurement: {DIGEST}\n"
    )
    assert main(["policy", "check", str(refs)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{refs}: 1 warning (reference file: bare)",
        f"  {refs}:6: warning[no-provenance] bare[1] (pasted by hand): nothing records where "
        "these values came from; add provenance (keybroker reference compute writes it)",
    ]


def test_output_never_overwrites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refs = tmp_path / "images.yaml"
    refs.write_text("kept")
    assert main([*COMPUTE, "--output", str(refs)]) == 2
    assert capsys.readouterr().err == f"keybroker: {refs} exists; choose another --output\n"
    assert refs.read_text() == "kept"


def test_bad_eif_magic_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    eif = tmp_path / "not.eif"
    eif.write_bytes(b"MZ" + bytes(600))
    assert main(["reference", "compute", "nitro", "--eif", str(eif)]) == 2
    assert capsys.readouterr().err == "keybroker: EIF magic is b'MZ\\x00\\x00', not b'.eif'\n"
