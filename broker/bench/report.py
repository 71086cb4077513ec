"""The benchmark's output: a table for people, then one JSON line for machines (last line)."""

from __future__ import annotations

import json
from typing import Any

from broker.bench.runner import (
    FLEET_REFERENCE,
    FLEET_RUN,
    SCALE_REFERENCE,
    SCALE_ROUNDS,
    SCALE_RUN,
    Report,
    RunResult,
)


def summary(report: Report) -> dict[str, Any]:
    """The last line: the pinned one-core run at the headline concurrency against the floor
    of its flow (``flow``); ``errors`` counts every run."""
    head = report.headline
    if head is None:
        raise ValueError("the report has no headline run")
    return {
        "scenario": report.scenario,
        "flow": report.flow,
        "releases_per_s": round(head.releases_per_s, 1),
        "p50_ms": round(head.p50_ms, 2),
        "p99_ms": round(head.p99_ms, 2),
        "floor_per_s": round(report.floor_per_s, 1),
        "ratio": round(head.releases_per_s / report.floor_per_s, 3),
        "cpu_ratio": round(cpu_ratio(head, report), 3),
        "errors": sum(run.errors for run in report.runs),
        "keys": head.spec.keys,
        "concurrency": head.spec.concurrency,
        "cpu_pinned": head.spec.pinned,
    }


def cpu_ratio(run: RunResult, report: Report) -> float:
    """Releases per second of the broker's CPU over the floor per second of its CPU: the
    ratio with the machine's other load taken out (on an idle machine, where the pinned
    broker saturates its core, about ``ratio``)."""
    if run.broker_cpu <= 0 or report.floor_per_cpu_s <= 0:
        return 0.0
    return run.releases_per_s / run.broker_cpu / report.floor_per_cpu_s


def table(report: Report) -> str:
    machine = report.machine
    lines = [
        f"keybroker bench: scenario {report.scenario}, {report.flow} flow; {machine['cpus']} x "
        f"{machine['cpu_model']}; Python {machine['python']}, cryptography "
        f"{machine['cryptography']}",
        "",
        f"floor (one core, no HTTP/JSON/database): {report.floor.per_s:8.0f} releases/s, "
        f"{report.floor.per_cpu_s:.0f} per CPU-second",
    ]
    for part, rate in report.floor.parts_per_s.items():
        lines.append(f"  {part:<14} {rate:8.0f} /s  ({1000 / rate:.3f} ms)")
    for threads, rate in report.envelope_per_s.items():
        lines.append(f"  HSM envelope, {threads} thread(s): {rate:8.0f} /s")
    lines += [
        "",
        f"{'run':<22}{'workers':>8}{'guests':>8}{'keys':>9}{'rel/s':>9}{'p50 ms':>9}"
        f"{'p99 ms':>9}{'max ms':>9}{'errors':>8}{'ratio':>7}"
        f"{'broker':>8}{'pg':>6}{'gen':>6}",
    ]
    lines += [_row(run, report.floor_per_s) for run in report.runs]
    lines.append("(broker, pg, gen: cores used on average; ratio: releases/s over the floor)")
    head = report.headline
    if head is not None and head.broker_cpu > 0:
        lines.append(
            f"per CPU-second: the headline {head.releases_per_s / head.broker_cpu:.0f} releases "
            f"against the floor's {report.floor_per_cpu_s:.0f}: cpu_ratio "
            f"{cpu_ratio(head, report):.2f}"
        )
    if report.floor_after is not None:
        lines.append(
            f"floor before the runs {report.floor.per_s:.0f}/s, after the pinned runs "
            f"{report.floor_after:.0f}/s: ratios use the mean, {report.floor_per_s:.0f}/s"
        )
    reference, scale = report.mean_rate(SCALE_REFERENCE), report.mean_rate(SCALE_RUN)
    scale_run = report.run_labelled(SCALE_RUN)
    if reference and scale is not None and scale_run is not None:
        lines.append(
            f"scale: {scale_run.spec.keys} keys and the preloaded audit log: {scale:.0f}/s "
            f"against {reference:.0f}/s with 1 key, {SCALE_ROUNDS} alternating rounds each "
            f"({scale / reference - 1:+.1%})"
        )
    lines += _comparisons(report)
    for run in report.runs:
        for sample in run.error_samples:
            lines.append(f"error in '{run.spec.label}' x{run.spec.concurrency}: {sample}")
    return "\n".join(lines)


def _comparisons(report: Report) -> list[str]:
    """The fleet against one platform, and N replicas against one, as ratios of the runs."""
    lines = []
    reference, fleet = report.mean_rate(FLEET_REFERENCE), report.mean_rate(FLEET_RUN)
    fleet_run = report.run_labelled(FLEET_RUN)
    if reference and fleet is not None and fleet_run is not None:
        lines.append(
            f"fleet: {fleet_run.spec.platforms} platforms {fleet:.0f}/s against {reference:.0f}/s"
            f" on one, {SCALE_ROUNDS} alternating rounds each ({fleet / reference - 1:+.1%})"
        )
    replicated = [run for run in report.runs if not run.spec.pinned and "repl." in run.spec.label]
    if len(replicated) == 2 and replicated[0].releases_per_s:
        one, many = replicated
        lines.append(
            f"replicas: {many.spec.replicas} brokers {many.releases_per_s:.0f}/s against "
            f"{one.releases_per_s:.0f}/s with one (x{many.releases_per_s / one.releases_per_s:.2f})"
        )
    return lines


def _row(run: RunResult, floor_per_s: float) -> str:
    spec = run.spec
    return (
        f"{spec.label:<22}{spec.workers:>8}{spec.concurrency:>8}{spec.keys:>9}"
        f"{run.releases_per_s:>9.0f}{run.p50_ms:>9.1f}{run.p99_ms:>9.1f}{run.max_ms:>9.1f}"
        f"{run.errors:>8}{run.releases_per_s / floor_per_s:>7.2f}"
        f"{run.broker_cpu:>8.2f}{run.postgres_cpu:>6.2f}{run.generator_cpu:>6.2f}"
    )


def json_line(report: Report) -> str:
    return json.dumps(summary(report), separators=(", ", ": "))
