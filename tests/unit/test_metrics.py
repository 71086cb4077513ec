"""Metrics (broker/metrics.py): children looked up once, timings labelled by outcome, the
collateral store's families, the HSM pool observer, and one exposition summed over worker
processes (prometheus-client's multiprocess mode, as ``keybroker serve --workers N`` runs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from broker.errors import PolicyDenied, Unavailable
from broker.metrics import (
    MULTIPROCESS_ENV,
    Children,
    HsmPoolMetrics,
    Metrics,
    collateral_exposition,
    exposition,
    timed_outcome,
)


def test_children_are_the_metrics_own_and_count_there() -> None:
    metrics = Metrics.create()
    decisions = Children(metrics.decisions)
    allowed = ("release", "disk-key", "snp", "allow", "")
    assert decisions(*allowed) is decisions(*allowed)
    assert decisions(*allowed) is metrics.decisions.labels(*allowed)
    decisions(*allowed).inc()
    decisions(*allowed).inc()
    decisions("release", "disk-key", "snp", "deny", "policy-denied").inc()
    sample = metrics.registry.get_sample_value
    labels = ("kind", "key", "tee", "outcome", "reason")
    assert sample("keybroker_decisions_total", dict(zip(labels, allowed, strict=True))) == 2
    denied = ("release", "disk-key", "snp", "deny", "policy-denied")
    assert sample("keybroker_decisions_total", dict(zip(labels, denied, strict=True))) == 1


def test_timed_outcome_labels_success_refusal_and_failure() -> None:
    metrics = Metrics.create()
    children = Children(metrics.evidence_seconds)
    with timed_outcome(children, "snp"):
        pass
    with pytest.raises(PolicyDenied), timed_outcome(children, "snp"):
        raise PolicyDenied("no", [])
    with pytest.raises(Unavailable), timed_outcome(children, "snp"):
        raise Unavailable("down")
    with pytest.raises(RuntimeError), timed_outcome(children, "snp"):
        raise RuntimeError("bug")
    count = "keybroker_evidence_verification_seconds_count"
    for outcome, expected in (("ok", 1), ("deny", 1), ("error", 2)):
        value = metrics.registry.get_sample_value(count, {"tee": "snp", "outcome": outcome})
        assert value == expected, outcome


def test_collateral_store_families() -> None:
    text = collateral_exposition([("snp", "vcek", 3, 1), ("tdx", "tcb_info", 0, 2)]).decode()
    assert "# TYPE keybroker_collateral_items gauge" in text
    assert 'keybroker_collateral_items{kind="vcek",state="fresh",tee="snp"} 3.0' in text
    assert 'keybroker_collateral_items{kind="vcek",state="stale",tee="snp"} 1.0' in text
    assert 'keybroker_collateral_items{kind="tcb_info",state="stale",tee="tdx"} 2.0' in text


def test_the_hsm_pool_observer_sets_size_open_busy_and_waits() -> None:
    metrics = Metrics.create()
    observer = HsmPoolMetrics(metrics, threads=4)
    observer.opened(3)
    observer.busy(1)
    observer.busy(1)
    observer.busy(-1)
    observer.waited(0.002)
    sample = metrics.registry.get_sample_value
    assert sample("keybroker_hsm_sessions", {"state": "size"}) == 4
    assert sample("keybroker_hsm_sessions", {"state": "open"}) == 3
    assert sample("keybroker_hsm_sessions", {"state": "busy"}) == 1
    assert sample("keybroker_hsm_session_wait_seconds_count", {}) == 1


#: A worker: counts one allowed release of disk-key, sets its pool's size, and stops cleanly
#: when told to (its live gauges then leave the sums).
WORKER = """
import sys
from broker.metrics import Children, HsmPoolMetrics, Metrics, process_stopped
metrics = Metrics.create()
Children(metrics.decisions)("release", "disk-key", "snp", "allow", "").inc()
HsmPoolMetrics(metrics, threads=4)
if sys.argv[1] == "stop":
    process_stopped()
"""


def _worker(directory: Path, how: str) -> None:
    subprocess.run(
        [sys.executable, "-c", WORKER, how],
        env={MULTIPROCESS_ENV: str(directory), "PATH": "/usr/bin:/bin"},
        cwd=Path(__file__).resolve().parents[2],
        check=True,
    )


def test_the_exposition_sums_every_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _worker(tmp_path, "stay")
    _worker(tmp_path, "stay")
    _worker(tmp_path, "stop")
    monkeypatch.setenv(MULTIPROCESS_ENV, str(tmp_path))
    # This process counted nothing: the numbers are the three workers'.
    text = exposition(Metrics.create()).decode()
    released = (
        'keybroker_decisions_total{key="disk-key",kind="release",outcome="allow",'
        'reason="",tee="snp"} 3.0'
    )
    assert released in text
    # Two workers still hold pools of four threads; the third one stopped.
    assert 'keybroker_hsm_sessions{state="size"} 8.0' in text


def test_without_workers_the_exposition_is_the_process_registry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(MULTIPROCESS_ENV, raising=False)
    metrics = Metrics.create()
    Children(metrics.decisions)("attest", "", "tdx", "deny", "tcb-mismatch").inc()
    text = exposition(metrics).decode()
    assert 'reason="tcb-mismatch",tee="tdx"} 1.0' in text
