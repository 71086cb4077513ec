"""What every harness shares: the harness description, the verdict on one input, the record
of findings, and the atheris entry point.

A harness feeds attacker-controlled bytes to one parser of the broker. The contract it checks
is the broker's own (docs/reliability.md): bad input raises a subclass of
:class:`broker.errors.KeybrokerError`, which the API turns into a 4xx problem, and nothing
else. Any other exception is a finding, and so is an input that takes longer than
:data:`SLOW_SECONDS`.

Two ways to run a harness:

* under atheris (``python -m fuzz NAME``; the campaign is ``make fuzz``, ``python -m fuzz.run``):
  coverage-guided, with the broker's modules instrumented; findings are recorded by site
  (exception type and the innermost frame of the broker) and the campaign goes on, so one
  run finds every site, not the first;
* plainly (:func:`replay`), as the unit suite does with the committed corpus: any finding
  raises.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import random
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FUZZ = ROOT / "fuzz"
CORPUS = FUZZ / "corpus"
REGRESSIONS = FUZZ / "regressions"
VECTORS = ROOT / "tests" / "vectors"

#: An input slower than this (100 ms) is a finding: a parser an unauthenticated client
#: reaches must not let one request hold a worker.
SLOW_SECONDS = 0.1

Target = Callable[[bytes], object]


@dataclass(frozen=True)
class Harness:
    """One parser under fuzzing.

    ``setup`` imports what it needs and returns the target (imports happen there, so that
    atheris instruments the broker's modules as they load). ``seeds`` makes the seed inputs
    from the real vectors (``python -m fuzz.seeds`` writes them under ``fuzz/corpus``).
    ``tolerated`` lists, as (exception type name, ``path:function``), known findings that
    another change fixes; they are counted apart, never hidden.
    """

    name: str
    setup: Callable[[], Target]
    seeds: Callable[[], Iterable[tuple[str, bytes]]]
    description: str
    max_len: int = 1 << 16
    tolerated: tuple[tuple[str, str], ...] = field(default=())


class Finding(Exception):
    """An input broke the contract (raised by :func:`replay`)."""


@dataclass
class Verdict:
    site: str | None = None
    """``Type at path:line (function)`` of a non-broker exception, else None."""
    message: str = ""
    seconds: float = 0.0
    tolerated: bool = False


_errors: list[type[BaseException]] = []


def _broker_errors() -> type[BaseException]:
    """:class:`broker.errors.KeybrokerError`, imported on first use: under atheris the
    broker's modules must first be imported inside the instrumenting import hook."""
    if not _errors:
        from broker.errors import KeybrokerError

        _errors.append(KeybrokerError)
    return _errors[0]


def site_of(exc: BaseException) -> tuple[str, str]:
    """The exception's type and the innermost frame in the project (else the innermost)."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if f.filename.startswith(str(ROOT)) and "/.venv/" not in f.filename]
    frame = (ours or frames)[-1] if (ours or frames) else None
    if frame is None:
        return type(exc).__name__, "?"
    path = os.path.relpath(frame.filename, ROOT)
    return type(exc).__name__, f"{path}:{frame.lineno} ({frame.name})"


def judge(harness: Harness, target: Target, data: bytes) -> Verdict:
    """Run ``target`` on ``data``; what happened, by the contract."""
    errors = _broker_errors()
    verdict = Verdict()
    start = time.perf_counter()
    try:
        target(data)
    except errors:
        pass
    except Exception as exc:
        kind, where = site_of(exc)
        verdict.site, verdict.message = f"{kind} at {where}", str(exc)[:300]
        function = where.split(":")[0] + ":" + where.rsplit("(", 1)[-1].rstrip(")")
        verdict.tolerated = (kind, function) in harness.tolerated
    verdict.seconds = time.perf_counter() - start
    return verdict


def inputs(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))


def replay(harness: Harness, target: Target, paths: Iterable[Path]) -> int:
    """Run every input file through ``target``; raise :class:`Finding` on the first that
    raises a non-broker exception. Returns how many ran. (Slowness is not judged here:
    the suite measures nothing by the clock; ``make fuzz`` does.)"""
    count = 0
    for path in paths:
        verdict = judge(harness, target, path.read_bytes())
        if verdict.site is not None and not verdict.tolerated:
            raise Finding(f"{harness.name}: {path.name}: {verdict.site}: {verdict.message}")
        count += 1
    return count


def mutations(seeds: list[bytes], count: int, seed: int) -> Iterator[bytes]:
    """``count`` deterministic mutations of ``seeds`` (flips, interesting bytes, inserted,
    deleted and repeated runs, splices): the suite's bounded run, which needs no atheris."""
    rng = random.Random(seed)
    interesting = (0x00, 0x01, 0x7F, 0x80, 0xFF)
    for _ in range(count):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            where = rng.randrange(len(data) + 1)
            action = rng.randrange(6)
            if action == 0 and data:
                data[where % len(data)] ^= 1 << rng.randrange(8)
            elif action == 1 and data:
                data[where % len(data)] = rng.choice(interesting)
            elif action == 2:
                data[where:where] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            elif action == 3:
                del data[where : where + rng.randint(1, 64)]
            elif action == 4:
                chunk = data[where : where + rng.randint(1, 16)]
                data[where:where] = chunk * rng.randint(1, 64)
            else:
                other = rng.choice(seeds)
                cut = rng.randrange(len(other) + 1)
                data[where:] = other[cut:]
        yield bytes(data)


class Recorder:
    """Findings of one atheris run, kept on disk as they happen (libFuzzer ends the process
    without running Python's exit handlers)."""

    def __init__(self, harness: Harness, out: Path) -> None:
        self.harness = harness
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self.executions = 0
        self.sites: dict[str, dict[str, Any]] = {}
        self.slow: list[dict[str, Any]] = []
        self.slowest = 0.0
        self.started = time.monotonic()
        self._flushed = self.started

    def note(self, data: bytes, verdict: Verdict) -> None:
        self.executions += 1
        self.slowest = max(self.slowest, verdict.seconds)
        if verdict.site is not None:
            entry = self.sites.get(verdict.site)
            if entry is None:
                digest = hashlib.sha1(verdict.site.encode()).hexdigest()[:12]  # noqa: S324 - a name
                name = f"crash-{digest}"
                (self.out / name).write_bytes(data)
                entry = self.sites[verdict.site] = {
                    "site": verdict.site,
                    "message": verdict.message,
                    "input": name,
                    "count": 0,
                    "tolerated": verdict.tolerated,
                }
                print(f"FINDING {verdict.site}: {verdict.message[:120]}", file=sys.stderr)
                self.flush()
            entry["count"] += 1
        if verdict.seconds > SLOW_SECONDS and len(self.slow) < 50:
            digest = hashlib.sha1(data).hexdigest()[:12]  # noqa: S324 - a name
            name = f"slow-{digest}"
            (self.out / name).write_bytes(data)
            self.slow.append({"input": name, "seconds": round(verdict.seconds, 4)})
            print(f"SLOW {verdict.seconds * 1000:.0f} ms ({name})", file=sys.stderr)
            self.flush()
        if self.executions & 1023 == 0 and time.monotonic() - self._flushed > 5:
            self.flush()

    def flush(self) -> None:
        self._flushed = time.monotonic()
        summary = {
            "harness": self.harness.name,
            "executions": self.executions,
            "seconds": round(self._flushed - self.started, 1),
            "slowest_ms": round(self.slowest * 1000, 1),
            "sites": list(self.sites.values()),
            "slow": self.slow,
        }
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def load(name: str) -> Harness:
    """The harness ``fuzz/harnesses/NAME.py`` (its module attribute ``HARNESS``)."""
    module = importlib.import_module(f"fuzz.harnesses.{name}")
    harness: Harness = module.HARNESS
    return harness


def names() -> list[str]:
    return sorted(p.stem for p in (FUZZ / "harnesses").glob("[a-z]*.py"))


def fuzz_main(name: str, argv: list[str]) -> None:
    """Run harness ``name`` under atheris; ``argv`` are libFuzzer flags and corpus dirs.

    The harness module is imported inside atheris's import hook, so the broker modules it
    imports are instrumented for coverage. ``FUZZ_FINDINGS`` names the directory for
    findings (default ``fuzz/work/NAME/findings``)."""
    import atheris

    out = Path(os.environ.get("FUZZ_FINDINGS", FUZZ / "work" / name / "findings"))
    with atheris.instrument_imports(include=["broker", "hsm"]):
        harness = load(name)
        target = harness.setup()
    recorder = Recorder(harness, out)
    for path in inputs(CORPUS / harness.name):  # warm caches and lazy imports first
        judge(harness, target, path.read_bytes())

    def one_input(data: bytes) -> None:
        recorder.note(data, judge(harness, target, data))

    atheris.Setup([sys.argv[0], f"-max_len={harness.max_len}", *argv], one_input)
    recorder.flush()
    atheris.Fuzz()
