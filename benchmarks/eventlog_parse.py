"""Time to read a TDX CCEL event log of 256 KiB, 512 KiB and 1 MiB of real events.

Run: ``python -m benchmarks.eventlog_parse [--sizes 256,512,1024] [--repeat N]``.

Each log is the Spec ID event of the GCP Confidential VM log in
``tests/vectors/tdx/go-tdx-guest-gcp-ccel`` (43 events in 18 KB of a 256 KiB area), then
that log's events repeated whole as often as they fit in the size, then 0xFF fill: what a
client holding one genuine quote may send as ``collateral.event_log`` within the default
1 MiB request limit. The replay would not match the quote's RTMRs, but the parser reads
the whole log first, which is the work measured. A log with more than
``eventlog.MAX_EVENTS`` entries is refused as malformed; the time until that refusal is
what such a request costs, and is reported as such; ``--unbounded`` lifts the bound to
show the parser's own cost per event. Figures: docs/tdx-sgx.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from broker.errors import MalformedEvidence
from broker.evidence.dcap import eventlog
from broker.evidence.dcap.eventlog import parse_event_log
from broker.evidence.dcap.reader import ByteReader

VECTOR = (
    Path(__file__).resolve().parent.parent / "tests/vectors/tdx/go-tdx-guest-gcp-ccel/ccel_data.dat"
)


def split_log(area: bytes) -> tuple[bytes, bytes]:
    """(the Spec ID entry, the events after it) of a CCEL area, without its fill."""
    log = area.rstrip(b"\xff").rstrip(b"\x00")
    header = ByteReader(log, "event log")
    header.take(8 + 20, "index, type and SHA-1 digest")  # TCG_PCClientPCREvent
    header.take(header.u32("data size"), "Spec ID event")
    return log[: header.pos], log[header.pos :]


def repeated_log(size: int, area: bytes) -> tuple[bytes, int]:
    """A ``size``-byte area of the vector's events repeated whole, and how many copies."""
    spec_id, events = split_log(area)
    copies = (size - len(spec_id)) // len(events)
    log = spec_id + events * copies
    return log + b"\xff" * (size - len(log)), copies


def measure(data: bytes, repeat: int) -> tuple[float, str]:
    """Best wall time of ``repeat`` parses, and what the parser made of the log."""
    best = float("inf")
    outcome = ""
    for _ in range(repeat):
        start = time.perf_counter()
        try:
            outcome = f"{len(parse_event_log(data).events)} events"
        except MalformedEvidence as exc:
            outcome = f"refused: {exc.detail}"
        best = min(best, time.perf_counter() - start)
    return best, outcome


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="256,512,1024", help="sizes in KiB, comma-separated")
    parser.add_argument("--repeat", type=int, default=5, help="parses per size (best is kept)")
    parser.add_argument(
        "--unbounded", action="store_true", help="read every event (no MAX_EVENTS refusal)"
    )
    args = parser.parse_args(argv)
    if args.unbounded:
        eventlog.MAX_EVENTS = sys.maxsize
    area = VECTOR.read_bytes()
    events_per_copy = len(parse_event_log(area).events)
    for kib in (int(size) for size in args.sizes.split(",")):
        data, copies = repeated_log(kib << 10, area)
        seconds, outcome = measure(data, args.repeat)
        print(
            f"{kib:5d} KiB: {copies} copies of {events_per_copy} events "
            f"({copies * events_per_copy} in all): {seconds * 1000:9.1f} ms, {outcome}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
