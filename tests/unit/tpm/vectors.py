"""The GCE vTPM vectors (tests/vectors/tpm/go-tpm-tools-gce-cos85) and what their manifest
says of them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from broker.evidence.tpm.abi import HASH_SIZES, Alg, parse_signature
from broker.evidence.tpm.quote import Quote

GCE = Path(__file__).parents[2] / "vectors" / "tpm" / "go-tpm-tools-gce-cos85"
NONCE9009 = GCE / "gce-cos-85-nonce9009.pb"
NO_NONCE = GCE / "gce-cos-85-no-nonce.pb"
#: Any instant: every certificate is valid until 2051 or later (the manifest).
AT = datetime(2026, 1, 1, tzinfo=UTC)

BANKS = {"sha1": Alg.SHA1, "sha256": Alg.SHA256, "sha384": Alg.SHA384}
#: The manifest's expected values.
FIRMWARE_VERSION = 0x2016051100162800
SHA256_PCRS = {
    0: "0f35c214608d93c7a6e68ae7359b4a8be5a0e99eea9107ece427c4dea4e439cf",
    4: "d690bdac2aa8b73a1d718cb91990df07d0747b07ea57b3b2d0f0d511f0d90491",
    7: "3365d7fa2b024c852913c06e04ffbfa6ea5289f743bbf1a76f7ffdf21ed84793",
    8: "9e9b6511ae6ad443aae4c7bf998ffffbcd271c874f1efab9d692f129eb6e6c18",
    9: "e01c8cf808763422c5ede2cdb34595b92bd7d06b8bbd6014b54d2e95b14b0963",
}
SHA1_PCR0 = "c032c3b51dbb6f96b047421512fd4b4dfde496f3"
SHA384_PCR0 = (
    "46ce251b0b5b3da7917c5eb7a72e6e88f8f830445b149937921b095c1fd628db"
    "691963861c1153aba9c7097ff1c747f9"
)
AK_CERT_SHA256 = "7dbdf36e4e897ed258936b59926e0b0f453641c0450992700961075bbdf5f55c"


def pcrs(bank: str) -> dict[int, bytes]:
    """The 24 PCR values of ``bank`` (nonce9009.pcrs_<bank>.bin)."""
    data = (GCE / f"nonce9009.pcrs_{bank}.bin").read_bytes()
    size = HASH_SIZES[BANKS[bank]]
    return {index: data[size * index : size * (index + 1)] for index in range(24)}


def quote(bank: str) -> Quote:
    """The nonce9009 quote over ``bank``, from its derived files."""
    return Quote(
        (GCE / f"nonce9009.quote_{bank}.attest").read_bytes(),
        parse_signature((GCE / f"nonce9009.quote_{bank}.sig").read_bytes()),
        {BANKS[bank]: pcrs(bank)},
    )


def ak_cert() -> bytes:
    return (GCE / "ak_cert.der").read_bytes()


def event_log() -> bytes:
    return (GCE / "event_log.bin").read_bytes()
