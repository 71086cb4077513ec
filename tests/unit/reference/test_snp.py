"""``reference compute snp``: sev-snp-measure's own known answers, and refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.reference.computed import ArtifactInvalid
from broker.reference.snp import SnpLaunch, compute_snp

FIXTURES = Path(__file__).resolve().parents[2] / "vectors" / "artifacts" / "sev-snp-measure-ovmf"
AMD_SEV = FIXTURES / "ovmf_AmdSev_suffix.bin"
OVMF_X64 = FIXTURES / "ovmf_OvmfX64_suffix.bin"
EMPTY = Path("/dev/null")
APPEND = "console=ttyS0 loglevel=7"

# The launch digests sev-snp-measure's tests assert for these inputs (MANIFEST.md).
KNOWN = [
    (AMD_SEV, 1, EMPTY, APPEND, 0x21, "803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb2"
     "8c653360fe4b3aba7e534442e7e1e17895dfe778d0228977"),
    (AMD_SEV, 1, EMPTY, APPEND, 0x1, "6d287813eb5222d770f75005c664e34c204f385ce832cc2c"
     "e7d0d6f354454362f390ef83a92046c042e706363b4b08fa"),
    (AMD_SEV, 1, None, None, 0x21, "e1e1ca029dd7973ab9513295be68198472dcd4fc834bd9af"
     "9b63f6e8a1674dbf281a9278a4a2ebe0eed9f22adbcd0e2b"),
    (AMD_SEV, 4, EMPTY, "", 0x21, "4953b1fb416fa874980e8442b3706d345926d5f38879134e"
     "00813c5d7abcbe78eafe7b422907be0b4698e2414a631942"),
    (OVMF_X64, 1, None, None, 0x21, "28797ae0afaba4005a81e629acebfb59e6687949d6be4400"
     "7cd5506823b0dd66f146aaae26ff291eed7b493d8a64c385"),
]  # fmt: skip


@pytest.mark.parametrize("known", KNOWN)
def test_launch_digest_is_sev_snp_measures(
    known: tuple[Path, int, Path | None, str | None, int, str],
) -> None:
    ovmf, vcpus, kernel, append, features, digest = known
    launch = SnpLaunch(ovmf, vcpus, "EPYC-v4", kernel, kernel, append, features)
    computed = compute_snp(launch, source="https://example.test/build/42")
    assert computed.values == {"measurement": digest}
    provenance = computed.provenance
    assert provenance.artifacts[0].name == ovmf.name
    assert (
        provenance.artifacts[0].sha256
        == {
            AMD_SEV: "8f765dfabc127fc0a938a0744a3103ec15864d7d794eb4c398aa976b6d6ab16c",
            OVMF_X64: "b4c021e085fb83ceffe6571a3d357b4a98773c83c474e47f76c876708fe316da",
        }[ovmf]
    )
    assert provenance.tool is not None
    assert (provenance.tool.name, provenance.tool.version) == ("sev-snp-measure", "0.0.13")
    assert ("vcpus", vcpus) in provenance.parameters
    assert ("guest_features", hex(features)) in provenance.parameters
    assert provenance.source == "https://example.test/build/42"


def test_a_kernel_needs_a_firmware_that_measures_it() -> None:
    with pytest.raises(ArtifactInvalid) as refused:
        compute_snp(SnpLaunch(OVMF_X64, 1, "EPYC-v4", EMPTY))
    assert refused.value.detail == (
        f"{OVMF_X64}: sev-snp-measure refused it: Kernel specified but OVMF metadata doesn't "
        "include SNP_KERNEL_HASHES section"
    )


def test_a_file_of_partial_pages_is_no_firmware(tmp_path: Path) -> None:
    not_ovmf = tmp_path / "notes.txt"
    not_ovmf.write_bytes(b"x" * 5000)
    with pytest.raises(ArtifactInvalid) as refused:
        compute_snp(SnpLaunch(not_ovmf, 1, "EPYC-v4"))
    assert refused.value.detail == (
        f"{not_ovmf}: 5000 bytes is not a whole number of 4 KiB pages: not an OVMF firmware volume"
    )


def test_a_firmware_without_sev_metadata_is_refused(tmp_path: Path) -> None:
    blank = tmp_path / "blank.fd"
    blank.write_bytes(bytes(4096))
    with pytest.raises(ArtifactInvalid) as refused:
        compute_snp(SnpLaunch(blank, 1, "EPYC-v4"))
    assert refused.value.detail == (
        f"{blank}: sev-snp-measure refused it: "
        "Can't find SEV_ES_RESET_BLOCK_GUID entry in OVMF table"
    )


def test_initrd_without_kernel_is_refused() -> None:
    with pytest.raises(ArtifactInvalid) as refused:
        compute_snp(SnpLaunch(AMD_SEV, 1, "EPYC-v4", initrd=EMPTY))
    assert (
        refused.value.detail == "--initrd and --append measure a direct kernel boot: give --kernel"
    )
