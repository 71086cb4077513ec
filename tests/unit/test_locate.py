"""Where the broker finds its database and token: the runtime uses what the settings name and
nothing else; the command line falls back to the local cluster and token of ``state_dir``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from broker.cli import locate
from broker.errors import ConfigurationError
from broker.redact import Secret
from broker.runtime import HsmLocation, Location, configured_location
from broker.settings import Settings

DSN = "postgresql://broker:hunter2@db.internal/keybroker"


@pytest.fixture
def pin_file(tmp_path: Path) -> Path:
    path = tmp_path / "user-pin"
    path.write_text("1234\n")
    return path


def test_the_runtime_uses_what_the_settings_name(pin_file: Path) -> None:
    settings = Settings(
        state_dir=pin_file.parent,
        database_url=Secret(DSN),
        token_label="hsm-a",
        user_pin_file=pin_file,
        pkcs11_module="/opt/hsm/lib.so",
    )
    expected = Location(Secret(DSN), HsmLocation("/opt/hsm/lib.so", "hsm-a", Secret("1234")))
    assert configured_location(settings) == expected
    assert locate.location(settings) == expected  # the command line, too


def test_the_runtime_looks_nowhere_else(tmp_path: Path, pin_file: Path) -> None:
    # Even with a local token and a local cluster under the state directory.
    (tmp_path / "softhsm").mkdir()
    (tmp_path / "softhsm" / "token-label").write_text("keybroker\n")
    (tmp_path / "postgres").mkdir()
    (tmp_path / "postgres" / "password").write_text("local\n")
    bare = Settings(state_dir=tmp_path)
    token = bare.with_overrides(token_label="hsm-a", user_pin_file=pin_file)
    for settings, message in (
        (bare, "no token_label set; set KEYBROKER_TOKEN_LABEL"),
        (bare.with_overrides(token_label="hsm-a"), "token_label is set but user_pin_file is not"),
        (token, "no database_url set; set KEYBROKER_DATABASE_URL"),
    ):
        with pytest.raises(ConfigurationError, match=f"^{message}$"):
            configured_location(settings)


def test_a_command_falls_back_to_the_local_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "environ", {})
    softhsm = tmp_path / "softhsm"
    softhsm.mkdir()
    (softhsm / "token-label").write_text("keybroker\n")
    (softhsm / "user-pin").write_text("5678\n")
    settings = Settings(state_dir=tmp_path, pkcs11_module="/opt/softhsm.so")
    assert locate.hsm_location(settings) == HsmLocation(
        "/opt/softhsm.so", "keybroker", Secret("5678")
    )
    # SoftHSM reads its configuration from there when the module loads.
    assert os.environ == {"SOFTHSM2_CONF": str(softhsm.resolve() / "softhsm2.conf")}


def test_a_command_without_local_state_says_what_to_run(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    with pytest.raises(ConfigurationError) as token:
        locate.location(settings)
    assert token.value.detail == (
        f"no token_label set and no local SoftHSM token under {tmp_path}; "
        "run `keybroker dev up` or set KEYBROKER_TOKEN_LABEL"
    )
    with pytest.raises(ConfigurationError) as database:
        locate.database_dsn(settings)
    assert database.value.detail == (
        f"no database_url set and no local cluster under {tmp_path}; "
        "run `keybroker dev up` or set KEYBROKER_DATABASE_URL"
    )
