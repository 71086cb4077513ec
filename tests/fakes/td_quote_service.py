"""A stand-in for Azure's TD quote service (``POST /acc/tdquote``), served over real HTTP on
loopback: it reads the TDREPORT the guest posts (``{"report": <base64url>}``) and answers the
synthetic Intel kit's TD quote over the same REPORTDATA (``{"quote": <base64url>}``), as the
host turns a TD's report into a quote. Every request body is kept for the tests to inspect;
``status`` and ``answer`` replace the answer when set.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from broker.evidence.vtpm.hcl import TD_REPORT_DATA_OFFSET
from broker.simulate.intel import IntelKit

PATH = "/acc/tdquote"


@dataclass
class TdQuoteService:
    kit: IntelKit | None = None
    status: int = 200
    answer: bytes | None = None
    """Sent as it is instead of the quote."""
    padded: bool = False
    """Answer padded base64url (Constellation's encoder) rather than unpadded (Microsoft's)."""
    requests: list[Any] = field(default_factory=list)

    def respond(self, body: bytes) -> tuple[int, bytes]:
        document = json.loads(body)
        self.requests.append(document)
        if self.answer is not None or self.status != 200 or self.kit is None:
            return self.status, self.answer or b"{}"
        text = document["report"]
        report = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        report_data = report[TD_REPORT_DATA_OFFSET : TD_REPORT_DATA_OFFSET + 64]
        quote = base64.urlsafe_b64encode(self.kit.tdx_quote(report_data)).decode()
        return 200, json.dumps({"quote": quote if self.padded else quote.rstrip("=")}).encode()


@contextmanager
def serving(service: TdQuoteService) -> Iterator[str]:
    """The URL of ``service`` on a loopback port until the block exits."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path != PATH or self.headers.get("Content-Type") != "application/json":
                status, answer = 404, b""
            else:
                status, answer = service.respond(body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{PATH}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
