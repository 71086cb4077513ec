"""The ``vtpm`` claims of a paravisor vTPM (``snp-vtpm``, ``tdx-vtpm``): who certified the
AK, and the runtime data the hardware report vouches for (:data:`CLAIMS`, in
docs/claims.md). The runtime data is the paravisor's JSON as it is; the members defined here
are those Azure's paravisor writes (a member it adds later reads as any claim does, and
``policy check`` warns that it is unknown)."""

from __future__ import annotations

from typing import Any

from broker.evidence.claims import (
    INDEX,
    ClaimDefinition,
    boolean_claim,
    list_claim,
    object_claim,
    string_claim,
    within,
)
from broker.evidence.tpm.verify import VerifiedTpm
from broker.evidence.vtpm.runtime import RuntimeData

CLAIMS: tuple[ClaimDefinition, ...] = within(
    object_claim("vtpm", "the paravisor's vTPM: its AK certificate and runtime data"),
    string_claim(
        "ak_root",
        "the root the AK certificate chained to (azure-vtpm-root-2023, google-ek-ak-root, "
        "google-tpm-ek-root-2018; insecure-test-... for test roots); null when none was given",
        nullable=True,
    ),
    *within(
        object_claim(
            "runtime_data",
            "the runtime data (JSON) whose hash the hardware report's REPORT_DATA carries",
        ),
        *within(
            list_claim("keys", None, "the paravisor's vTPM keys, as JWKs"),
            object_claim(INDEX, "one key: HCLAkPub (the AK) or HCLEkPub (the EK)"),
            string_claim(f"{INDEX}.kid", "HCLAkPub or HCLEkPub"),
            string_claim(f"{INDEX}.kty", "RSA"),
            string_claim(f"{INDEX}.n", "the RSA modulus (base64url)"),
            string_claim(f"{INDEX}.e", "the RSA public exponent (base64url)"),
            *within(
                list_claim(f"{INDEX}.key_ops", None, "what the key is for"),
                string_claim(INDEX, "sign or encrypt"),
            ),
        ),
        *within(
            object_claim("vm-configuration", "how the host configured the VM"),
            boolean_claim("secure-boot", "UEFI secure boot is on"),
            boolean_claim("tpm-enabled", "the vTPM is enabled"),
            boolean_claim("tpm-persisted", "the vTPM state persists across boots"),
            boolean_claim("console-enabled", "the serial console is enabled"),
            string_claim("vmUniqueId", "the VM's unique id (Azure's vmId)"),
            string_claim("root-cert-thumbprint", "thumbprint of the paravisor's root certificate"),
        ),
        string_claim(
            "user-data",
            "the 64 bytes the guest last wrote to NV index 0x01400002, in hex (zeros if none)",
        ),
    ),
)


def vtpm_fields(tpm: VerifiedTpm, runtime: RuntimeData) -> dict[str, Any]:
    return {
        "ak_root": None if tpm.ak_root is None else tpm.ak_root.name,
        "runtime_data": dict(runtime.document),
    }
