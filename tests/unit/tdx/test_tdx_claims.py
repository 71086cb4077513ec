"""TDX claims on the real vectors at their manifest instants (docs/claims.md, "Intel TDX")."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from broker.errors import CollateralUnavailable, EventLogMismatch
from broker.evidence.claims import SignerOrigin, Tee
from broker.evidence.registry import verifier_for
from tests.unit.dcap.vectors import (
    COLLATERAL_LESS_NOW,
    DEBUG_TD_DIR,
    DEBUG_TD_QUOTE,
    GCP_DIR,
    GCP_QUOTE,
    JUNE_2023,
    spr_collateral,
)

TDX_FIELDS = {
    "quote_version",
    "tee_tcb_svn",
    "mr_seam",
    "mr_signer_seam",
    "seam_attributes",
    "td_attributes",
    "xfam",
    "mr_td",
    "mr_config_id",
    "mr_owner",
    "mr_owner_config",
    "rtmr",
    "report_data",
    "mr_service_td",
    "fmspc",
    "ppid",
    "pce_svn",
    "cpu_svn",
    "tcb_status",
    "advisory_ids",
    "tcb_date",
    "tcb_evaluation_data_number",
    "event_log",
}


def test_verifier_is_registered() -> None:
    verifier = verifier_for("tdx")
    assert verifier.tee is Tee.TDX
    assert verifier.collateral_names == {
        "tcb_info",
        "qe_identity",
        "pck_crl",
        "root_crl",
        "tcb_signing_chain",
        "pck_chain",
        "event_log",
    }


def test_debug_td_claims() -> None:
    claims = verifier_for("tdx").verify(
        DEBUG_TD_QUOTE.read_bytes(), spr_collateral(), now=JUNE_2023
    )
    assert claims.tee is Tee.TDX
    assert claims.signer.to_json() == {
        "vendor": "intel",
        "origin": SignerOrigin.SILICON_VENDOR.value,
        "root": "intel-sgx-root-ca",
        "key": "pck",
        "product": None,
    }
    assert claims.debug is True
    document = claims.document()
    assert set(document) == {"tee", "signer", "debug", *TDX_FIELDS}
    assert document["td_attributes"]["debug"] is True
    assert document["td_attributes"]["sept_ve_disable"] is True
    assert document["td_attributes"]["pks"] is False
    assert document["td_attributes"]["raw"] == "0100001000000000"
    assert document["quote_version"] == 4
    assert document["tee_tcb_svn"] == "03000500000000000000000000000000"
    assert document["mr_td"] == (
        "705ee9381b8633a9fbe532b52345e8433343d2868959f57889d84ca377c395b6"
        "89cac1599ccea1b7d420483a9ce5f031"
    )
    assert document["rtmr"][0].startswith("e940da7c2712d279")
    assert document["rtmr"][2] == "00" * 48
    assert document["xfam"] == "e742060000000000"
    assert document["mr_service_td"] is None
    assert document["fmspc"] == "50806f000000"
    assert document["pce_svn"] == 11
    assert document["cpu_svn"] == "05050d02030100030000000000000000"
    assert document["tcb_status"] == "UpToDate"
    assert document["advisory_ids"] == []
    assert document["tcb_date"] == "2023-02-15T00:00:00Z"
    assert document["tcb_evaluation_data_number"] == 15
    assert document["event_log"] is None
    assert claims.report_data is not None
    assert claims.report_data.hex() == document["report_data"]
    assert claims.lookup("rtmr.1").startswith("559cfcf4")
    assert claims.lookup("td_attributes.debug") is True
    assert claims.collateral_time == datetime(2023, 6, 8, 7, 24, 59, tzinfo=UTC)


def test_gcp_event_log_is_replayed_before_collateral_is_missed() -> None:
    collateral = {"event_log": (GCP_DIR / "ccel_data.dat").read_bytes()}
    with pytest.raises(CollateralUnavailable, match="event log replay to RTMR0-3 verified"):
        verifier_for("tdx").verify(GCP_QUOTE.read_bytes(), collateral, now=COLLATERAL_LESS_NOW)


def test_foreign_event_log_is_rejected() -> None:
    collateral = {**spr_collateral(), "event_log": (DEBUG_TD_DIR / "CCEL_data").read_bytes()}
    with pytest.raises(EventLogMismatch, match="RTMR0"):
        verifier_for("tdx").verify(DEBUG_TD_QUOTE.read_bytes(), collateral, now=JUNE_2023)
