"""docs/grafana/keybroker.json asks only for metrics the broker exposes, by labels they have."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from broker.metrics import HsmPoolMetrics, Metrics, collateral_exposition, exposition

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "keybroker.json"
SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def _exposed() -> dict[str, set[str]]:
    """Every sample name a broker exposes, with its labels (one child of each metric)."""
    metrics = Metrics.create()
    HsmPoolMetrics(metrics, threads=1)
    for metric, labels in (
        (metrics.requests, 2),
        (metrics.latency, 1),
        (metrics.decisions, 5),
        (metrics.evidence_seconds, 2),
        (metrics.envelope_seconds, 1),
        (metrics.commit_seconds, 1),
        (metrics.collateral_lookups, 3),
        (metrics.unauthenticated, 2),
        (metrics.refused, 1),
    ):
        metric.labels(*["x"] * labels)
    metrics.policy_seconds.observe(0)
    metrics.unauthenticated_audit_failures.inc()
    text = exposition(metrics).decode() + collateral_exposition([("snp", "vcek", 1, 0)]).decode()
    return {
        sample.name: set(sample.labels) - {"le"}
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_every_query_names_an_exposed_metric_and_its_labels() -> None:
    exposed = _exposed()
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    assert len(queries) >= 15
    for query in queries:
        for name in re.findall(r"\bkeybroker_\w+", query):
            assert name in exposed, (name, query)
        for grouping in re.findall(r"by \(([^)]*)\)", query):
            labels = {label.strip() for label in grouping.split(",")} - {"le"}
            (name,) = set(re.findall(r"\bkeybroker_\w+", query))
            assert labels <= exposed[name], (labels, query)


def test_the_dashboard_covers_what_operations_md_lists() -> None:
    text = DASHBOARD.read_text()
    for name in (
        "keybroker_decisions_total",
        "keybroker_evidence_verification_seconds",
        "keybroker_policy_evaluation_seconds",
        "keybroker_hsm_envelope_seconds",
        "keybroker_db_commit_seconds",
        "keybroker_collateral_lookups_total",
        "keybroker_collateral_items",
        "keybroker_hsm_sessions",
        "keybroker_http_refused_total",
    ):
        assert name in text, name
