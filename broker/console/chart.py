"""The activity chart: releases and refusals over time, laid out on the server as SVG
geometry (the template draws it; no script, no library).

Pure: :func:`layout` takes the counts and returns rectangles, ticks and labels in SVG user
units; :func:`totals` sums them by key and by reason for the tables beside the chart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from broker.timeutil import iso

WIDTH = 960
HEIGHT = 260
LEFT = 56
RIGHT = 16
TOP = 16
BOTTOM = 40
#: Stacking order, bottom up; each decision's colour is its CSS class (console.css).
DECISIONS = ("allow", "deny", "error")
#: At most this many labels under the time axis.
MAX_X_LABELS = 8


class Count(Protocol):
    """One row of :meth:`broker.admin.service.AdminService.release_activity`."""

    @property
    def bucket(self) -> datetime: ...
    @property
    def key_name(self) -> str: ...
    @property
    def decision(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def releases(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    decision: str
    title: str
    """The tooltip: bucket start, decision and count."""


@dataclass(frozen=True, slots=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    bars: tuple[Bar, ...]
    y_ticks: tuple[Tick, ...]
    x_ticks: tuple[Tick, ...]
    plot_left: int
    plot_right: int
    plot_top: int
    plot_bottom: int
    total: int


def bucket_starts(since: datetime, until: datetime, bucket: timedelta) -> list[datetime]:
    starts, at = [], since
    while at < until:
        starts.append(at)
        at += bucket
    return starts


def _nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5 times a power of ten that is at least ``value``."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if factor * step >= value:
                return factor * step
        step *= 10


def layout(counts: Iterable[Count], since: datetime, until: datetime, bucket: timedelta) -> Chart:
    """Stacked bars per bucket (allow, deny, error bottom up) over [``since``, ``until``)."""
    starts = bucket_starts(since, until, bucket)
    index = {start: i for i, start in enumerate(starts)}
    stacked: list[Counter[str]] = [Counter() for _ in starts]
    for row in counts:
        i = index.get(row.bucket)
        if i is not None:
            stacked[i][row.decision] += row.releases
    highest = max((sum(c.values()) for c in stacked), default=0)
    ceiling = _nice_ceiling(max(highest, 1))
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    slot = plot_width / max(len(starts), 1)
    bar_width = max(slot * 0.8, 1.0)
    bars: list[Bar] = []
    for i, (start, counter) in enumerate(zip(starts, stacked, strict=True)):
        base = float(HEIGHT - BOTTOM)
        for decision in DECISIONS:
            n = counter.get(decision, 0)
            if not n:
                continue
            height = plot_height * n / ceiling
            base -= height
            x = LEFT + i * slot + (slot - bar_width) / 2
            title = f"{iso(start, zulu=True, timespec='minutes')}: {n} {decision}"
            bars.append(
                Bar(
                    round(x, 2),
                    round(base, 2),
                    round(bar_width, 2),
                    round(height, 2),
                    decision,
                    title,
                )
            )
    # A middle line only where it falls on a whole number: 0, 5, 10 but 0, 5 (not 2).
    values = sorted({0, ceiling} | ({ceiling // 2} if ceiling % 2 == 0 else set()))
    y_ticks = tuple(
        Tick(round(HEIGHT - BOTTOM - plot_height * value / ceiling, 2), str(value))
        for value in values
    )
    every = max(1, -(-len(starts) // MAX_X_LABELS))
    x_ticks = tuple(
        Tick(round(LEFT + i * slot + slot / 2, 2), _label(start, bucket))
        for i, start in enumerate(starts)
        if i % every == 0
    )
    return Chart(
        WIDTH,
        HEIGHT,
        tuple(bars),
        y_ticks,
        x_ticks,
        LEFT,
        WIDTH - RIGHT,
        TOP,
        HEIGHT - BOTTOM,
        sum(sum(c.values()) for c in stacked),
    )


def _label(start: datetime, bucket: timedelta) -> str:
    """``12-07`` for day buckets, ``12-07 13:00`` for shorter ones (UTC)."""
    text = iso(start, zulu=True, timespec="minutes")  # 2026-12-07T13:00Z
    return text[5:10] if bucket >= timedelta(days=1) else text[5:16].replace("T", " ")


@dataclass(frozen=True, slots=True)
class Totals:
    by_key: list[tuple[str, dict[str, int]]]
    """Each key with its count per decision, by name."""
    by_reason: list[tuple[str, str, int]]
    """(key, reason, count) of every refusal, most first."""


def totals(counts: Sequence[Count]) -> Totals:
    keys: dict[str, Counter[str]] = {}
    reasons: Counter[tuple[str, str]] = Counter()
    for row in counts:
        keys.setdefault(row.key_name, Counter())[row.decision] += row.releases
        if row.decision != "allow":
            reasons[(row.key_name, row.reason or row.decision)] += row.releases
    by_key = [(name, {d: keys[name].get(d, 0) for d in DECISIONS}) for name in sorted(keys)]
    by_reason = [
        (key, reason, n) for (key, reason), n in sorted(reasons.items(), key=lambda i: -i[1])
    ]
    return Totals(by_key, by_reason)
