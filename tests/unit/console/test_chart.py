"""The activity chart's geometry (broker/console/chart.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from broker.console.chart import BOTTOM, HEIGHT, TOP, layout, totals

SINCE = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Row:
    bucket: datetime
    key_name: str
    decision: str
    reason: str
    releases: int


def test_bars_stack_allow_under_deny_scaled_to_a_round_ceiling() -> None:
    rows = [
        Row(SINCE, "disk", "allow", "", 6),
        Row(SINCE, "disk", "deny", "policy-denied: $.admit.snp", 3),
        Row(SINCE + 2 * HOUR, "other", "error", "hsm-unavailable", 1),
    ]
    chart = layout(rows, SINCE, SINCE + 4 * HOUR, HOUR)
    assert chart.total == 10
    allow, deny, error = chart.bars
    assert (allow.decision, deny.decision, error.decision) == ("allow", "deny", "error")
    plot = HEIGHT - TOP - BOTTOM
    # 9 in the first bucket: the axis goes to 10, so 6 is 60% of the plot.
    assert allow.height == round(plot * 0.6, 2)
    assert allow.y + allow.height == HEIGHT - BOTTOM
    assert deny.y + deny.height == allow.y
    assert error.x > allow.x
    assert [tick.label for tick in chart.y_ticks] == ["0", "5", "10"]
    assert [tick.label for tick in chart.x_ticks] == [
        "12-07 00:00",
        "12-07 01:00",
        "12-07 02:00",
        "12-07 03:00",
    ]
    assert allow.title == "2026-12-07T00:00Z: 6 allow"


def test_an_empty_window_has_axes_and_no_bars() -> None:
    chart = layout([], SINCE, SINCE + 30 * timedelta(days=1), timedelta(days=1))
    assert chart.bars == ()
    assert chart.total == 0
    assert [tick.label for tick in chart.y_ticks] == ["0", "1"]
    assert len(chart.x_ticks) <= 8


def test_rows_outside_the_buckets_are_not_drawn() -> None:
    chart = layout([Row(SINCE - HOUR, "disk", "allow", "", 5)], SINCE, SINCE + HOUR, HOUR)
    assert chart.bars == ()


def test_totals_by_key_and_by_reason() -> None:
    rows = [
        Row(SINCE, "disk", "allow", "", 6),
        Row(SINCE + HOUR, "disk", "deny", "policy-denied: $.admit.snp", 3),
        Row(SINCE + HOUR, "boot", "deny", "key-disabled", 4),
        Row(SINCE + HOUR, "disk", "allow", "", 1),
    ]
    found = totals(rows)
    assert found.by_key == [
        ("boot", {"allow": 0, "deny": 4, "error": 0}),
        ("disk", {"allow": 7, "deny": 3, "error": 0}),
    ]
    assert found.by_reason == [
        ("boot", "key-disabled", 4),
        ("disk", "policy-denied: $.admit.snp", 3),
    ]
