"""The collateral a vTPM tee reads besides its hardware report's: the parts of the TPM
evidence that a form may leave out (a raw HCL report has no quote)."""

from __future__ import annotations

from broker.evidence.dcap.options import EVENT_LOG_OPTION
from broker.evidence.registry import CollateralOption
from broker.evidence.tpm import AK_CERT_OPTION, AK_CHAIN_OPTION

TPM_QUOTE_OPTION = CollateralOption(
    "tpm_quote",
    "--tpm-quote",
    "the TPM quote of a raw HCL report: keybroker's tpm_quote JSON object or Trustee's",
    filenames=("tpm_quote.json", "tpm-quote-v1.json"),
)
TD_QUOTE_OPTION = CollateralOption(
    "td_quote", "--td-quote", "the TD quote of a raw HCL report (tdx-vtpm)"
)

VTPM_OPTIONS: tuple[CollateralOption, ...] = (
    TPM_QUOTE_OPTION,
    AK_CERT_OPTION,
    AK_CHAIN_OPTION,
    EVENT_LOG_OPTION,
)
