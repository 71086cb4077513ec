"""Confidential VMs behind a paravisor's vTPM (Azure SEV-SNP and TDX CVMs): the hardware
report vouches for the paravisor's runtime data, which holds the vTPM's attestation key,
which signs the TPM quote that carries the PCRs and the nonce.

Layers: :mod:`.hcl` (the HCL report <-> bytes), :mod:`.runtime` (the runtime data),
:mod:`.evidence`, :mod:`.bundle` and :mod:`.trustee` (the forms evidence arrives in),
:mod:`.verify` (the composition with the SNP and TDX verifiers and
:mod:`broker.evidence.tpm`), :mod:`.claims`; the tees' registry entries are :mod:`.snp` and
:mod:`.tdx`. See docs/vtpm.md.
"""
