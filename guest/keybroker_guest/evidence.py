"""Where a guest's evidence comes from: the hardware (configfs-tsm, a vTPM) or, in tests, a
simulation.

A source turns what the binding requires (the 64 bytes of REPORT_DATA; for a vTPM the digest
its quote carries; for Nitro the nonce and the tee key) into evidence plus any collateral the
broker may need. On a confidential VM that is an SEV-SNP report or a TDX quote from Linux
configfs-tsm, or a vTPM's bundle read and quoted through tpm2-tools
(:mod:`keybroker_guest.vtpm`). The simulated sources sign
with synthetic vendor kits, which live in the full keybroker package (``broker.simulate``,
trusted by a broker only through ``insecure_test_roots``); this client imports them only
when asked to simulate, so it runs without them everywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from keybroker_guest.configfs import TSM_REPORT_ROOT, ConfigfsError, TsmFilesystem, read_report
from keybroker_guest.errors import UsageError
from keybroker_guest.tdquote import IMDS_TD_QUOTE_URL
from keybroker_guest.vtpm import VTPM_TEES, VtpmGuest

#: Every tee the broker verifies.
TEES = ("snp", "tdx", "sgx", "nitro", *VTPM_TEES)
HARDWARE_TEES = {"snp": "sev_guest", "tdx": "tdx_guest"}  # tee -> configfs-tsm provider
#: The vTPMs a guest reads by itself: Azure's SNP paravisor and a GCE shielded VM. Behind
#: Azure's TDX paravisor the TD quote comes from the host's quoting service, not the vTPM.
HARDWARE_VTPM_TEES = ("snp-vtpm", "tdx-vtpm", "tpm")
#: The synthetic kit a simulated vTPM's platform is provisioned from, where it is not the
#: tee's own: the paravisor's hardware report is signed by the SNP or Intel kit.
KIT_OF = {"snp-vtpm": "snp", "tdx-vtpm": "tdx"}


@dataclass(frozen=True)
class BindingInput:
    """What the evidence must bind: REPORT_DATA for SNP/TDX/SGX; nonce and key for Nitro."""

    report_data: bytes
    nonce: bytes
    public_key_der: bytes
    digest: bytes = b""
    """The binding digest unpadded, which a vTPM quote carries as extraData (TPM2B_DATA
    holds at most one digest of the TPM's largest hash); empty: REPORT_DATA is used."""


class EvidenceSource(Protocol):
    tee: str

    def produce(self, binding: BindingInput) -> tuple[bytes, dict[str, bytes]]:
        """(evidence, collateral by name) binding ``binding``; ``EvidenceError`` if none."""
        ...


@dataclass
class HardwareTsm:
    """A real confidential guest: SEV-SNP report or TDX quote through configfs-tsm."""

    tee: str
    root: Path = TSM_REPORT_ROOT
    fs: TsmFilesystem | None = None
    """The file operations on configfs (None: the real ones); tests pass a stand-in."""

    def produce(self, binding: BindingInput) -> tuple[bytes, dict[str, bytes]]:
        outblob, _auxblob, provider = read_report(binding.report_data, self.root, self.fs)
        expected = HARDWARE_TEES.get(self.tee)
        if expected is not None and provider not in (expected, "unknown"):
            raise ConfigfsError(f"configfs-tsm provider is {provider}, not {expected}")
        return outblob, {}


def default_kit(tee: str, state_dir: Path) -> Path:
    """Where ``make run`` keeps the synthetic kit a simulated ``tee`` signs with."""
    return state_dir / "demo" / KIT_OF.get(tee, tee)


def source_for(
    tee: str,
    simulate: bool = False,
    kit: Path | None = None,
    td_quote_url: str = IMDS_TD_QUOTE_URL,
) -> EvidenceSource:
    """The evidence source for ``tee``: configfs-tsm or the vTPM (a TD's quote from the
    service at ``td_quote_url``), or with ``simulate`` the synthetic kit saved in ``kit``.
    ``UsageError`` for what cannot be served here."""
    if tee not in TEES:
        raise UsageError(f"tee {tee!r} is not one of {', '.join(TEES)}")
    if not simulate:
        if tee in HARDWARE_VTPM_TEES:
            return VtpmGuest(tee, td_quote_url=td_quote_url)
        if tee not in HARDWARE_TEES:
            raise UsageError(
                f"--tee {tee} needs --simulate (configfs-tsm serves snp, tdx; the vTPM serves "
                "snp-vtpm, tdx-vtpm, tpm)"
            )
        return HardwareTsm(tee)
    if kit is None or not kit.is_dir():
        raise UsageError(
            f"simulation kit {kit} does not exist (make run creates the snp kit; pass --kit "
            "DIR for a kit saved with broker.simulate)"
        )
    try:
        # The one import of the broker package: its synthetic vendors, for tests and demos.
        from broker.simulate.guests import simulated_source  # noqa: PLC0415
    except ImportError as exc:
        raise UsageError(
            "--simulate needs the full keybroker package, where the synthetic vendor kits "
            f"live (broker.simulate); this is the lean guest client alone ({exc})"
        ) from None
    return simulated_source(tee, kit)
