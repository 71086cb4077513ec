"""Metric children looked up once (broker/metrics.py)."""

from __future__ import annotations

from broker.metrics import Children, Metrics


def test_children_are_the_metrics_own_and_count_there() -> None:
    metrics = Metrics.create()
    releases = Children(metrics.releases)
    assert releases("allow") is releases("allow")
    assert releases("allow") is metrics.releases.labels("allow")
    releases("allow").inc()
    releases("allow").inc()
    releases("deny").inc()
    assert metrics.registry.get_sample_value("keybroker_releases_total", {"outcome": "allow"}) == 2
    assert metrics.registry.get_sample_value("keybroker_releases_total", {"outcome": "deny"}) == 1
