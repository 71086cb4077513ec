"""The event-log micro-benchmark builds the logs it says and runs (benchmarks/eventlog_parse)."""

from __future__ import annotations

import pytest

from benchmarks import eventlog_parse
from broker.evidence.dcap.eventlog import parse_event_log


def test_repeated_logs_hold_whole_copies_of_the_real_events() -> None:
    area = eventlog_parse.VECTOR.read_bytes()
    data, copies = eventlog_parse.repeated_log(128 << 10, area)
    assert len(data) == 128 << 10
    assert copies == 7
    assert len(parse_event_log(data).events) == copies * len(parse_event_log(area).events)


def test_it_runs_and_reports_each_size(capsys: pytest.CaptureFixture[str]) -> None:
    assert eventlog_parse.main(["--sizes", "64,512", "--repeat", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("129 events")
    assert "refused: event log: more than 1024 events" in lines[1]
