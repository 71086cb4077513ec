"""The collateral names (and CLI flags) the TDX and SGX verifiers read (and the tdx-vtpm one).

File names are those Intel's PCS/PCCS tooling and the vectors in ``tests/vectors`` use, so
``keybroker evidence verify --collateral DIR`` reads a vector folder or a simulator kit as is.
"""

from __future__ import annotations

from broker.evidence.registry import CollateralOption

DCAP_COLLATERAL_OPTIONS: tuple[CollateralOption, ...] = (
    CollateralOption(
        "tcb_info",
        "--tcb-info",
        "signed TCB Info JSON for the PCK's FMSPC (PCS /tcb)",
        filenames=("tcbInfo.json", "tcb_info.json"),
    ),
    CollateralOption(
        "qe_identity",
        "--qe-identity",
        "signed QE Identity JSON (PCS /qe/identity)",
        filenames=("qeIdentity.json", "qe_identity.json"),
    ),
    CollateralOption(
        "pck_crl",
        "--pck-crl",
        "CRL of the PCK's CA (PCS /pckcrl), DER or PEM",
        filenames=(
            "pck_crl.der",
            "pck_platform_crl.der",
            "pck_processor_crl.der",
            "pck_crl.pem",
        ),
    ),
    CollateralOption(
        "root_crl",
        "--root-crl",
        "Intel SGX Root CA CRL, DER or PEM",
        filenames=("root_crl.der", "root_ca_crl.der", "root_crl.pem"),
    ),
    CollateralOption(
        "tcb_signing_chain",
        "--tcb-signing-chain",
        "PEM chain whose first certificate signed TCB Info and QE Identity "
        "(default: the pinned Intel TCB Signing certificates)",
        filenames=(
            "tcb_signing_chain.pem",
            "tcb_info_issuer_chain.pem",
            "tcb_issuer_chain.pem",
        ),
    ),
    CollateralOption(
        "pck_chain",
        "--pck-chain",
        "PEM PCK chain (leaf, CA[, root]) completing or replacing the quote's certification data",
        filenames=("pck_chain.pem",),
    ),
)

#: Shared with the vTPM tees, whose event log is the TPM's (the same TCG format).
EVENT_LOG_OPTION = CollateralOption(
    "event_log",
    "--event-log",
    "event log: for tdx the CCEL area, replayed against RTMR0-3; for the vTPM tees the TPM's "
    "TCG log (binary_bios_measurements), replayed against the quoted PCRs",
    filenames=("event_log.bin", "ccel_data.dat", "CCEL_data", "binary_bios_measurements"),
)
