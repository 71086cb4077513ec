"""The TD quote of an Azure TDX CVM's TDREPORT, from the host's quote service.

Behind Azure's paravisor a TD has no quoting enclave of its own: the HCL report (NV index
0x01400001) holds a TDREPORT (the first 1024 bytes of its hardware area, after the 32-byte
header), MACed for this platform only, and the host turns it into an Intel-signed TD quote.
The instance metadata address serves that exchange: ``POST
http://169.254.169.254/acc/tdquote`` with the JSON body ``{"report": <base64url of the
TDREPORT>}`` answers ``{"quote": <base64url of the TD quote>}``. That is how Microsoft's
``az-tdx-vtpm`` crate (``imds::get_td_quote``), Edgeless Constellation's Azure TDX issuer and
guest-components' az-tdx-vtpm attester obtain it; the report is sent unpadded, as Microsoft's
crate sends it, and the answer is read with or without padding.

Nothing the service says is trusted: the broker verifies the quote to Intel's root and that
its REPORTDATA is the HCL report's (docs/vtpm.md). ``http.client`` never uses a proxy, which
is right for a link-local address that answers only from the VM.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
from typing import Any
from urllib.parse import urlsplit

from keybroker_guest.errors import EvidenceError

#: Azure's instance metadata endpoint for TD quotes.
IMDS_TD_QUOTE_URL = "http://169.254.169.254/acc/tdquote"
#: The HCL report's header, then the hardware area whose first bytes are the TDREPORT.
HCL_HEADER_SIZE = 32
TD_REPORT_SIZE = 1024
#: A TD quote with its PCK certificate chain is a few KB; an answer beyond this is not one.
MAX_ANSWER_BYTES = 1 << 20
_TIMEOUT_SECONDS = 30.0
_URLSAFE = bytes.maketrans(b"-_", b"+/")


def td_report_of(hcl_report: bytes) -> bytes:
    """The TDREPORT an HCL report carries."""
    if len(hcl_report) < HCL_HEADER_SIZE + TD_REPORT_SIZE:
        raise EvidenceError(f"the HCL report is {len(hcl_report)} bytes: it holds no TDREPORT")
    return hcl_report[HCL_HEADER_SIZE : HCL_HEADER_SIZE + TD_REPORT_SIZE]


def fetch_td_quote(td_report: bytes, url: str = IMDS_TD_QUOTE_URL) -> bytes:
    """The TD quote of ``td_report`` from the service at ``url`` (``http://host[:port]/path``);
    ``EvidenceError`` when there is none."""
    if len(td_report) != TD_REPORT_SIZE:
        raise ValueError(f"a TDREPORT is {TD_REPORT_SIZE} bytes, not {len(td_report)}")
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None:
        raise EvidenceError(f"TD quote service {url} is not an http:// URL")
    body = json.dumps({"report": base64.urlsafe_b64encode(td_report).decode().rstrip("=")})
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=_TIMEOUT_SECONDS)
    try:
        connection.request(
            "POST", parts.path or "/", body, headers={"Content-Type": "application/json"}
        )
        answer = connection.getresponse()
        content = answer.read(MAX_ANSWER_BYTES + 1)
    except (OSError, http.client.HTTPException) as exc:
        raise EvidenceError(f"TD quote service {url}: {exc or type(exc).__name__}") from None
    finally:
        connection.close()
    if answer.status != 200:
        raise EvidenceError(f"TD quote service {url} answered {answer.status}")
    if len(content) > MAX_ANSWER_BYTES:
        raise EvidenceError(f"TD quote service {url} answered more than {MAX_ANSWER_BYTES} bytes")
    return _quote_of(content, url)


def _quote_of(content: bytes, url: str) -> bytes:
    try:
        document: Any = json.loads(content)
    except ValueError:
        document = None
    text = document.get("quote") if isinstance(document, dict) else None
    if not isinstance(text, str) or not text:
        raise EvidenceError(f'TD quote service {url} answered no {{"quote": <base64url>}}')
    try:
        unpadded = text.rstrip("=").encode("ascii")
        if b"+" in unpadded or b"/" in unpadded:
            raise ValueError("standard base64 letters in base64url")
        standard = unpadded.translate(_URLSAFE) + b"=" * (-len(unpadded) % 4)
        return binascii.a2b_base64(standard, strict_mode=True)
    except ValueError:  # binascii.Error and UnicodeEncodeError are ValueErrors
        raise EvidenceError(f"TD quote service {url}: the quote is not base64url") from None
