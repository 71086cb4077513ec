"""The SEV-SNP launch measurement of a firmware (and kernel), by sev-snp-measure.

The launch digest is what the AMD-SP hashes while the VMM adds the guest's initial pages and
VMSAs (SNP ABI specification, chapter "Launch Digest": PAGE_INFO chaining under
SNP_LAUNCH_UPDATE). Which pages are measured depends on the OVMF build's SEV metadata, the
VMSAs on the vCPU count, the vCPU type's CPUID signature, the guest features (SEV_FEATURES)
and the VMM; with a direct kernel boot, the firmware's SNP_KERNEL_HASHES page holds the
SHA-256 of the kernel, initrd and command line. keybroker does not re-implement any of this:
it calls the library of virtee's ``sev-snp-measure``, whose tests hold it to launches on real
hardware, and records the library's version in the entry's provenance.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from sevsnpmeasure import guest, vcpu_types
from sevsnpmeasure.sev_mode import SevMode
from sevsnpmeasure.vmm_types import VMMType

from broker.policy.provenance import ParameterValue, Tool
from broker.reference.computed import (
    KEYBROKER,
    ArtifactInvalid,
    Computed,
    provenance,
    read_artifact,
)

#: The vCPU types sev-snp-measure knows (QEMU's CPU model names), each with its signature.
VCPU_TYPES: tuple[str, ...] = tuple(vcpu_types.CPU_SIGS)
VMM_TYPES: tuple[str, ...] = tuple(VMMType.__members__)
#: sev-snp-measure's own default: SEV_FEATURES bit 0, SNPActive.
DEFAULT_GUEST_FEATURES = 0x1
PAGE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class SnpLaunch:
    ovmf: Path
    vcpus: int
    vcpu_type: str
    kernel: Path | None = None
    initrd: Path | None = None
    append: str | None = None
    guest_features: int = DEFAULT_GUEST_FEATURES
    vmm_type: str = "QEMU"

    def parameters(self) -> list[tuple[str, ParameterValue]]:
        pairs: list[tuple[str, ParameterValue]] = [
            ("mode", "snp"),
            ("vcpus", self.vcpus),
            ("vcpu_type", self.vcpu_type),
            ("guest_features", f"{self.guest_features:#x}"),
            ("vmm_type", self.vmm_type),
        ]
        if self.append is not None:
            pairs.append(("append", self.append))
        return pairs


def compute_snp(launch: SnpLaunch, *, source: str | None = None) -> Computed:
    """The 48-byte launch measurement of ``launch``, with its provenance."""
    if launch.vcpus < 1:
        raise ArtifactInvalid(f"--vcpus must be at least 1, found {launch.vcpus}")
    if launch.vcpu_type not in vcpu_types.CPU_SIGS:
        raise ArtifactInvalid(f"unknown vCPU type '{launch.vcpu_type}'")
    if launch.vmm_type not in VMMType.__members__:
        raise ArtifactInvalid(f"unknown VMM type '{launch.vmm_type}'")
    if launch.kernel is None and (launch.initrd is not None or launch.append is not None):
        raise ArtifactInvalid("--initrd and --append measure a direct kernel boot: give --kernel")
    inputs = [launch.ovmf, launch.kernel, launch.initrd]
    artifacts = [(path, read_artifact(path)) for path in inputs if path is not None]
    firmware = len(artifacts[0][1])
    if firmware == 0 or firmware % PAGE_SIZE:
        # The AMD-SP measures whole pages; sev-snp-measure only asserts this.
        raise ArtifactInvalid(
            f"{launch.ovmf}: {firmware} bytes is not a whole number of 4 KiB pages: "
            "not an OVMF firmware volume"
        )
    try:
        digest = guest.calc_launch_digest(
            SevMode.SEV_SNP,
            launch.vcpus,
            vcpu_types.CPU_SIGS[launch.vcpu_type],
            str(launch.ovmf),
            None if launch.kernel is None else str(launch.kernel),
            None if launch.initrd is None else str(launch.initrd),
            launch.append,
            launch.guest_features,
            "",
            VMMType[launch.vmm_type],
        )
    except (RuntimeError, ValueError, KeyError, OSError, AssertionError) as exc:
        # sev-snp-measure reports a firmware without SEV metadata, a footer table it cannot
        # walk or a kernel the firmware cannot measure as one of these (its own consistency
        # checks are asserts).
        raise ArtifactInvalid(f"{launch.ovmf}: sev-snp-measure refused it: {exc}") from None
    tool = Tool("sev-snp-measure", version("sev-snp-measure"), via=KEYBROKER)
    return Computed(
        "snp",
        {"measurement": digest.hex()},
        provenance(artifacts, tool, launch.parameters(), source),
    )
