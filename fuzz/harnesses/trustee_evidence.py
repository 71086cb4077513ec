"""Trustee's evidence JSON, as a Confidential Containers guest sends it in a KBS attestation
or an operator passes it to ``keybroker evidence verify`` (``broker/evidence/trustee.py``,
``snp/trustee.py``, ``dcap/trustee.py``): the JSON read, the TEE's form parsed, an SNP report
rebuilt into its ABI bytes and parsed again, the certificate table turned into collateral.

The first byte chooses the TEE (0 SNP, 1 TDX, 2 SGX); the rest is the file's content.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

from broker.evidence.claims import Tee
from broker.evidence.trustee import read_file
from fuzz.engine import VECTORS, Harness, Target

TEES = (Tee.SNP, Tee.TDX, Tee.SGX)


def setup() -> Target:
    def target(data: bytes) -> None:
        if not data:
            return
        native = read_file(TEES[data[0] % len(TEES)], data[1:])
        if native is not None:
            len(native.evidence)  # the translation ran to its end

    return target


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def seeds() -> Iterator[tuple[str, bytes]]:
    yield "snp-genoa", b"\x00" + (VECTORS / "kbs" / "evidence" / "snp-genoa.json").read_bytes()
    gcp = VECTORS / "tdx" / "go-tdx-guest-gcp-ccel"
    log = (gcp / "ccel_data.dat").read_bytes()[:4096]  # the first events: the rest is fill
    tdx = {"cc_eventlog": _b64(log), "quote": _b64((gcp / "cos-113-tdx-quote.dat").read_bytes())}
    yield "tdx-gcp", b"\x01" + json.dumps(tdx).encode()
    occlum = (VECTORS / "sgx" / "trustee-occlum-v3" / "occlum_quote.dat").read_bytes()
    yield "sgx-occlum", b"\x02" + json.dumps({"quote": _b64(occlum)}).encode()


HARNESS = Harness("trustee_evidence", setup, seeds, __doc__ or "", max_len=32768)
