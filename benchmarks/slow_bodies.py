"""Unfinished request bodies against a running broker: its memory, and whether guests still get
their keys.

``python -m benchmarks.slow_bodies --url http://127.0.0.1:PORT --pid PID [options]``

The attack: ``--connections`` connections, opened at ``--rate`` a second from
``--addresses`` loopback source addresses (127.0.0.2, 127.0.0.3, ...; all of 127/8 is
loopback on Linux, so one machine can play several clients), each sending
``POST /v1/attest`` with ``Content-Length: --content-length`` and all of its body but the last
``--withhold`` bytes, then waiting. Meanwhile a legitimate guest (the simulated SEV-SNP guest
of ``keybroker dev run --demo``, from 127.0.0.1) fetches ``--key`` again and again. The
broker's resident memory (``VmRSS`` of ``--pid`` and its child processes, from
``/proc``) is sampled every ``--sample`` seconds: before the attack, at its peak while the
connections are held for ``--hold`` seconds after the last one opened, and ``--settle``
seconds after the attacker has closed them all.

Run it against a demo broker (``keybroker dev run --demo --state-dir DIR --port PORT``);
``--state-dir`` is where its simulated guest kit is. The figures are one JSON document on
stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from broker.guest.client import GuestClient, GuestError
from broker.simulate.guests import SimulatedSnp

MiB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants (uvicorn workers), from /proc."""
    total = 0
    for process in (pid, *descendants(pid)):
        try:
            status = Path(f"/proc/{process}/status").read_text()
        except OSError:  # exited between the listing and the read
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found.extend((child, *descendants(child)))
    return found


@dataclass
class Attack:
    host: str
    port: int
    content_length: int
    withhold: int
    addresses: list[str]
    outcomes: Counter[str] = field(default_factory=Counter)
    open_now: int = 0
    open_peak: int = 0
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    def head(self) -> bytes:
        return (
            f"POST /v1/attest HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {self.content_length}\r\n\r\n"
        ).encode()

    async def connection(self, index: int, body: bytes) -> None:
        source = self.addresses[index % len(self.addresses)]
        try:
            reader, writer = await asyncio.open_connection(
                self.host, self.port, local_addr=(source, 0)
            )
        except OSError as exc:
            self.outcomes[f"connect failed: {exc.strerror or exc}"] += 1
            return
        self.writers.append(writer)
        self.open_now += 1
        self.open_peak = max(self.open_peak, self.open_now)
        try:
            writer.write(self.head())
            writer.write(body)
            await writer.drain()
            answer = await reader.read(64)  # the status line, if the broker answers at all
            if answer.startswith(b"HTTP/1.1 "):
                self.outcomes[f"answered {answer[9:12].decode()}"] += 1
            else:
                self.outcomes["closed without an answer"] += 1
        except (ConnectionError, OSError):
            self.outcomes["reset by the broker"] += 1
        except asyncio.CancelledError:
            self.outcomes["still open when the attacker left"] += 1
        finally:
            self.open_now -= 1
            writer.close()


def guest_loop(url: str, key: str, kit: Path, stop: Any, results: Any) -> None:
    """Fetch ``key`` as the simulated SNP guest until ``stop`` is set; in a process of its own,
    since making each flow's RSA key would stall the attacker's event loop."""
    released = 0
    failed: Counter[str] = Counter()
    slowest = 0.0

    async def run() -> None:
        nonlocal released, slowest
        source = SimulatedSnp(kit)
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            client = GuestClient(http)
            while not stop.is_set():
                started = time.monotonic()
                try:
                    await client.fetch(source, key, 3072)
                    released += 1
                except GuestError as exc:
                    failed[str(exc.status)] += 1
                except httpx.HTTPError as exc:
                    failed[type(exc).__name__] += 1
                slowest = max(slowest, time.monotonic() - started)
                results.put(("progress", released, dict(failed), slowest))
                await asyncio.sleep(0.2)

    asyncio.run(run())
    results.put(("done", released, dict(failed), slowest))


async def sample_rss(pid: int, every: float, into: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        into.append(rss_bytes(pid))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def latest(results: Any, last: tuple[Any, ...]) -> tuple[Any, ...]:
    """The guest's most recent report (released, failures, slowest flow)."""
    while not results.empty():
        last = results.get()
    return last


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    parsed = urlsplit(args.url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    addresses = [f"127.0.0.{2 + i}" for i in range(args.addresses)]
    attack = Attack(host, port, args.content_length, args.withhold, addresses)
    body = b"{" + b" " * (args.content_length - args.withhold - 1)

    baseline = rss_bytes(args.pid)
    progress(f"baseline RSS {baseline / MiB:.0f} MiB")
    context = multiprocessing.get_context("spawn")
    stop_guest, results = context.Event(), context.Queue()
    guest = context.Process(
        target=guest_loop,
        args=(args.url, args.key, args.state_dir / "demo" / "snp", stop_guest, results),
    )
    guest.start()
    stop_sampling = asyncio.Event()
    samples: list[int] = []
    sampler = asyncio.create_task(sample_rss(args.pid, args.sample, samples, stop_sampling))
    started = time.monotonic()
    tasks = []
    for index in range(args.connections):
        tasks.append(asyncio.create_task(attack.connection(index, body)))
        await asyncio.sleep(1 / args.rate)
        if index % 100 == 99:
            progress(f"{index + 1} opened, {attack.open_now} open, RSS {samples[-1] / MiB:.0f} MiB")
    opening_seconds = time.monotonic() - started
    await asyncio.sleep(args.hold)
    held_at_end = attack.open_now
    report: tuple[Any, ...] = latest(results, ("none", 0, {}, 0.0))
    during = {"released": report[1], "failed": report[2]}
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    progress(f"attacker left; settling {args.settle} s")
    await asyncio.sleep(args.settle)
    stop_sampling.set()
    await sampler
    after = rss_bytes(args.pid)
    stop_guest.set()
    await asyncio.to_thread(guest.join, 120)
    report = latest(results, report)
    peak = max(samples)
    return {
        "connections": args.connections,
        "rate_per_second": args.rate,
        "opening_seconds": round(opening_seconds, 1),
        "source_addresses": args.addresses,
        "content_length": args.content_length,
        "body_bytes_sent": args.content_length - args.withhold,
        "open_peak": attack.open_peak,
        "open_when_the_attacker_left": held_at_end,
        "outcomes": dict(attack.outcomes),
        "rss_mib": {
            "baseline": round(baseline / MiB, 1),
            "peak": round(peak / MiB, 1),
            "peak_increase": round((peak - baseline) / MiB, 1),
            "after": round(after / MiB, 1),
        },
        "guest_during_attack": during,
        "guest_total": {"released": report[1], "failed": report[2]},
        "guest_slowest_seconds": round(report[3], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the broker, e.g. http://127.0.0.1:18900")
    parser.add_argument("--pid", type=int, required=True, help="the broker's process id")
    parser.add_argument("--state-dir", type=Path, default=Path(".keybroker"))
    parser.add_argument("--key", default="disk-key")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=45.0, help="connections opened a second")
    parser.add_argument("--addresses", type=int, default=1, help="attacking source addresses")
    parser.add_argument("--content-length", type=int, default=1_048_000)
    parser.add_argument("--withhold", type=int, default=1, help="body bytes never sent")
    parser.add_argument("--hold", type=float, default=10.0, help="seconds held after the last")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds before 'after'")
    parser.add_argument("--sample", type=float, default=0.5, help="RSS sampling interval")
    args = parser.parse_args()
    if not 1 <= args.addresses <= 250:
        parser.error("--addresses must be within 1..250 (127.0.0.2 .. 127.0.0.251)")
    print(json.dumps(asyncio.run(measure(args)), indent=2))


if __name__ == "__main__":
    main()
