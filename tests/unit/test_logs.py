from __future__ import annotations

import json

import pytest
import structlog

from broker import logs


def test_secret_keys_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("json", "info")
    logs.get_logger("t").info(
        "login",
        user_pin="1234",
        database_url="postgresql://x:pw@h/d",
        token_label="keybroker",
        authorization="Bearer abc",
    )
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["user_pin"] == "***"
    assert line["database_url"] == "***"
    assert line["authorization"] == "***"
    assert line["token_label"] == "keybroker"


@pytest.mark.parametrize("client_request_id", [None, "guest-7"])
def test_the_access_line_in_json_is_the_line_structlog_would_write(
    capsys: pytest.CaptureFixture[str], client_request_id: str | None
) -> None:
    logs.configure("json", "info")
    ids = {"request_id": "r-1"}
    if client_request_id is not None:  # bound beside the broker's id (api/middleware.py)
        ids["client_request_id"] = client_request_id
    structlog.contextvars.bind_contextvars(**ids)
    try:
        logs.get_logger("keybroker.http").info(
            "request", method="POST", route="/v1/attest", status=200, ms=1.5
        )
        logs.access("POST", "/v1/attest", 200, 1.5, "r-1", client_request_id=client_request_id)
    finally:
        structlog.contextvars.clear_contextvars()
    through_structlog, direct = (
        json.loads(line) for line in capsys.readouterr().err.strip().splitlines()[-2:]
    )
    assert set(direct) == set(through_structlog)
    stamp = direct.pop("timestamp")
    assert stamp.endswith("Z")
    assert stamp[:4].isdigit()
    through_structlog.pop("timestamp")
    assert direct == through_structlog
    assert direct.get("client_request_id") == client_request_id


def test_no_access_line_above_info(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("json", "warning")
    logs.access("GET", "/healthz", 200, 0.1, "r-2")
    assert capsys.readouterr().err == ""


def test_the_console_format_gets_the_access_line_through_structlog(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure("console", "info")
    logs.access("GET", "/healthz", 200, 0.1, "r-3")
    line = capsys.readouterr().err
    assert "request" in line
    assert "/healthz" in line
    assert not line.lstrip().startswith("{")


def test_a_lone_surrogate_in_an_event_is_written_as_its_escape(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure("json", "info")
    logs.get_logger("t").info("unexpected_error", detail="unknown key '\ud844'", big=2**70)
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["detail"] == "unknown key '\ud844'"
    assert line["big"] == 2**70
