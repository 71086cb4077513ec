from __future__ import annotations

import json

import pytest

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
