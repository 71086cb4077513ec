"""SGX claims on the real vectors at their manifest instants (docs/claims.md, "Intel SGX")."""

from __future__ import annotations

import hashlib

import pytest

from broker.errors import CollateralUnavailable
from broker.evidence.claims import Tee
from broker.evidence.registry import verifier_for
from tests.unit.dcap.vectors import (
    COLLATERAL_LESS_NOW,
    OCCLUM_QUOTE,
    SIGNAL_2022_DIR,
    SIGNAL_2022_NOW,
    SIGNAL_2022_QUOTE,
    SIGNAL_2023_DIR,
    SIGNAL_2023_NOW,
    SIGNAL_2023_QUOTE,
    signal_collateral,
)

SGX_FIELDS = {
    "quote_version",
    "mr_enclave",
    "mr_signer",
    "isv_prod_id",
    "isv_svn",
    "config_svn",
    "config_id",
    "attributes",
    "report_data",
    "fmspc",
    "ppid",
    "pce_svn",
    "cpu_svn",
    "tcb_status",
    "advisory_ids",
    "tcb_date",
    "tcb_evaluation_data_number",
}


def test_verifier_is_registered_without_event_log() -> None:
    verifier = verifier_for("sgx")
    assert verifier.tee is Tee.SGX
    assert "event_log" not in verifier.collateral_names


def test_signal_2023_claims() -> None:
    claims = verifier_for("sgx").verify(
        SIGNAL_2023_QUOTE.read_bytes(), signal_collateral(SIGNAL_2023_DIR), now=SIGNAL_2023_NOW
    )
    document = claims.document()
    assert set(document) == {"tee", "signer", "debug", *SGX_FIELDS}
    assert claims.debug is False
    assert document["signer"]["vendor"] == "intel"
    assert document["mr_enclave"] == (
        "337ac97ce088a132daeb1308ea3159f807de4a827e875b2c90ce21bf4751196f"
    )
    assert document["mr_signer"] == (
        "54f930a34e8995edab0f96f31d73679dd151389053b065b6ee49fa55fe8c5ac6"
    )
    assert (document["isv_prod_id"], document["isv_svn"]) == (1, 1)
    assert document["attributes"]["debug"] is False
    assert document["attributes"]["mode64bit"] is True
    assert document["tcb_status"] == "SWHardeningNeeded"
    assert document["advisory_ids"] == ["INTEL-SA-00615", "INTEL-SA-00657"]
    assert document["tcb_evaluation_data_number"] == 14
    assert document["fmspc"] == "00606a000000"
    assert document["pce_svn"] == 13
    # REPORTDATA[0:32] = SHA-256 of Open Enclave's custom claims (manifest).
    assert document["report_data"].startswith(
        "08a913dde0c8dbf820715403c6ac461509cfb8a8bc504b4c57a5fc85badc59b0"
    )
    evidence = (SIGNAL_2023_DIR / "dcap.evidence").read_bytes()
    assert hashlib.sha256(evidence[4734:]).hexdigest() == document["report_data"][:64]


def test_signal_2022_claims_up_to_date() -> None:
    claims = verifier_for("sgx").verify(
        SIGNAL_2022_QUOTE.read_bytes(), signal_collateral(SIGNAL_2022_DIR), now=SIGNAL_2022_NOW
    )
    assert claims.lookup("tcb_status") == "UpToDate"
    assert claims.lookup("mr_enclave") == (
        "e5eaa62da3514e8b37ccabddb87e52e7f319ccf5120a13f9e1b42b87ec9dd3dd"
    )
    assert claims.lookup("advisory_ids") == ()
    assert claims.lookup("report_data").startswith("9f697dfbc19f67f93871549bf3180f8b")


def test_debug_enclave_without_collateral() -> None:
    with pytest.raises(CollateralUnavailable):
        verifier_for("sgx").verify(OCCLUM_QUOTE.read_bytes(), {}, now=COLLATERAL_LESS_NOW)


def test_occlum_debug_enclave_authenticates_and_decodes_debug() -> None:
    # No collateral ships with this vector: its signatures and chain verify, and its
    # ATTRIBUTES decode to a debug enclave (INIT | DEBUG | MODE64BIT).
    from broker.evidence.dcap.verify import authenticate_quote
    from broker.evidence.sgx.claims import enclave_attributes

    authenticated = authenticate_quote(
        OCCLUM_QUOTE.read_bytes(), {}, now=COLLATERAL_LESS_NOW, tee=Tee.SGX
    )
    attributes = enclave_attributes(authenticated.quote.body.attributes)  # type: ignore[union-attr]
    assert attributes["debug"] is True
    assert attributes["init"] is True
    assert attributes["raw"] == "0700000000000000e700000000000000"
