"""``python -m fuzz.run [--execs N] [--seconds S] [NAME...]``: the fuzz campaign (``make fuzz``).

Each harness runs in its own atheris process, one after the other, until it has executed
``--execs`` inputs (default 10^6) or spent ``--seconds``. The corpus it grows is kept under
``fuzz/work/NAME/corpus`` (not committed) and seeded from ``fuzz/corpus/NAME`` and
``fuzz/regressions/NAME``. For each harness the campaign records:

* executions, and the coverage reached as libFuzzer counts it: ``cov`` (instrumented edges
  covered) and ``ft`` (features: edges with hit-count buckets);
* findings: every site where a non-broker exception surfaced (type, file, line), with the
  first input that reached it, in ``fuzz/work/NAME/findings``;
* slow inputs: those slower than 100 ms under instrumentation are timed again without it,
  in a fresh process, and recorded as findings when they still take over 100 ms.

The table it prints is what ``docs/reliability.md`` records; the whole result is written to
``fuzz/work/results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fuzz.engine import CORPUS, FUZZ, REGRESSIONS, ROOT, SLOW_SECONDS, judge, load, names

WORK = FUZZ / "work"
_STATS = re.compile(r"cov: (\d+) ft: (\d+)")
_DONE = re.compile(r"stat::number_of_executed_units: (\d+)")


def run_one(name: str, execs: int, seconds: int) -> dict[str, Any]:
    work = WORK / name
    corpus, findings = work / "corpus", work / "findings"
    corpus.mkdir(parents=True, exist_ok=True)
    if findings.exists():
        for old in findings.iterdir():
            old.unlink()
    command = [
        sys.executable,
        "-m",
        "fuzz",
        name,
        f"-runs={execs}",
        f"-max_total_time={seconds}",
        "-timeout=10",
        "-rss_limit_mb=4096",
        "-print_final_stats=1",
        f"-artifact_prefix={work}/",
        str(corpus),
        str(CORPUS / name),
    ]
    if (REGRESSIONS / name).is_dir():
        command.append(str(REGRESSIONS / name))
    environment = {**os.environ, "FUZZ_FINDINGS": str(findings), "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    log = work / "fuzz.log"
    with log.open("wb") as out:
        status = subprocess.run(
            command, stdout=out, stderr=subprocess.STDOUT, env=environment, check=False
        )
    elapsed = time.monotonic() - started
    text = log.read_text(errors="replace")
    coverage = _STATS.findall(text)
    done = _DONE.findall(text)
    summary_path = findings / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    executions = int(done[-1]) if done else int(summary.get("executions", 0))
    slow = _retime(name, [findings / entry["input"] for entry in summary.get("slow", [])])
    return {
        "harness": name,
        "exit_status": status.returncode,
        "executions": executions,
        "seconds": round(elapsed),
        "exec_per_second": round(executions / elapsed) if elapsed else 0,
        "cov": int(coverage[-1][0]) if coverage else None,
        "ft": int(coverage[-1][1]) if coverage else None,
        "corpus": len(list(corpus.iterdir())),
        "sites": summary.get("sites", []),
        "slow_candidates": len(summary.get("slow", [])),
        "slow": slow,
        "slowest_instrumented_ms": summary.get("slowest_ms"),
    }


def _retime(name: str, paths: list[Path]) -> list[dict[str, Any]]:
    """Time ``paths`` again without instrumentation (in a fresh process: the campaign's
    modules are instrumented); those still slower than 100 ms are findings."""
    if not paths:
        return []
    command = [sys.executable, "-m", "fuzz.run", "--retime", name, *map(str, paths)]
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    output = subprocess.run(command, capture_output=True, text=True, env=environment, check=True)
    timed: list[dict[str, Any]] = json.loads(output.stdout)
    return [entry for entry in timed if entry["seconds"] > SLOW_SECONDS]


def retime(name: str, paths: list[str]) -> list[dict[str, Any]]:
    harness = load(name)
    target = harness.setup()
    timed = []
    for path in paths:
        data = Path(path).read_bytes()
        judge(harness, target, data)  # warm: the first call pays for caches and imports
        best = min(judge(harness, target, data).seconds for _ in range(3))
        timed.append({"input": Path(path).name, "bytes": len(data), "seconds": round(best, 4)})
    return timed


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| harness | executions | exec/s | cov | ft | exception sites | slow > 100 ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        sites = [s for s in result["sites"] if not s["tolerated"]]
        tolerated = len(result["sites"]) - len(sites)
        site_text = str(len(sites)) + (f" (+{tolerated} known)" if tolerated else "")
        lines.append(
            f"| {result['harness']} | {result['executions']:,} | {result['exec_per_second']:,} "
            f"| {result['cov']} | {result['ft']} | {site_text} | {len(result['slow'])} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__)
    parser.add_argument("--execs", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=3600)
    parser.add_argument("--retime", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("names", nargs="*")
    args = parser.parse_args(argv)
    if args.retime:
        print(json.dumps(retime(args.names[0], args.names[1:])))
        return 0
    chosen = args.names or names()
    unknown = sorted(set(chosen) - set(names()))
    if unknown:
        parser.error(f"unknown harness {', '.join(unknown)}; known: {', '.join(names())}")
    results = []
    for name in chosen:
        print(f"fuzzing {name} ({args.execs:,} executions or {args.seconds} s)", flush=True)
        result = run_one(name, args.execs, args.seconds)
        results.append(result)
        for site in result["sites"]:
            known = " (known)" if site["tolerated"] else ""
            print(f"  {site['count']:>7} x {site['site']}{known}: {site['message'][:100]}")
        for slow in result["slow"]:
            print(
                f"  slow: {slow['input']} ({slow['bytes']} bytes) {slow['seconds'] * 1000:.0f} ms"
            )
        WORK.mkdir(exist_ok=True)
        (WORK / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    failed = any([s for s in r["sites"] if not s["tolerated"]] or r["slow"] for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
