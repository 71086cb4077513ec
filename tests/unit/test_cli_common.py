"""The helpers every command group shares (broker/cli/common.py): unreadable input files are
usage errors (exit 2) wherever they are named, JSON output, and the acting user."""

from __future__ import annotations

import getpass
from pathlib import Path

import pytest

from broker.cli import UsageError, main
from broker.cli.common import cli_actor, print_json, read_input

MISSING = "/nonexistent/keybroker-input"


def test_read_input(tmp_path: Path) -> None:
    path = tmp_path / "in.bin"
    path.write_bytes(b"\x00\x01")
    assert read_input(path) == b"\x00\x01"
    with pytest.raises(UsageError) as caught:
        read_input(Path(MISSING))
    assert str(caught.value) == f"cannot read {MISSING}: No such file or directory"
    with pytest.raises(UsageError) as caught:
        read_input(tmp_path)
    assert str(caught.value) == f"cannot read {tmp_path}: Is a directory"


@pytest.mark.parametrize(
    "argv",
    [
        ["collateral", "import", MISSING],
        ["evidence", "verify", "--tee", "snp", MISSING],
        ["policy", "eval", "policies/default.yaml", "--claims", MISSING],
    ],
)
def test_an_unreadable_file_exits_2_in_every_group(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert capsys.readouterr() == (
        "",
        f"keybroker: cannot read {MISSING}: No such file or directory\n",
    )


def test_print_json(capsys: pytest.CaptureFixture[str]) -> None:
    print_json({"b": [1, {"d": None, "c": True}], "a": "é"})
    assert capsys.readouterr().out == (
        '{\n  "a": "\\u00e9",\n  "b": [\n    1,\n    {\n      "c": true,\n      "d": null\n'
        "    }\n  ]\n}\n"
    )


def test_cli_actor() -> None:
    assert cli_actor() == f"cli:{getpass.getuser()}"


def test_keys_create_reads_its_secret_file_before_opening_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # No database or token exists under this state directory: reaching them would fail
    # with exit 1 and another message; a usage error must come first.
    monkeypatch.setenv("KEYBROKER_STATE_DIR", str(tmp_path))
    missing = tmp_path / "absent.bin"
    assert main(["keys", "create", "k", "--secret-file", str(missing)]) == 2
    assert f"cannot read {missing}" in capsys.readouterr().err
    assert main(["keys", "rotate", "k"]) == 2
    both = "give exactly one of --secret-file FILE, --wrapped FILE and --generate LENGTH"
    assert both in capsys.readouterr().err
    assert main(["keys", "create", "k", "--wrapped", str(missing)]) == 2
    assert "--wrapped needs --wrapping-key ID and --length BYTES" in capsys.readouterr().err
    assert main(["keys", "create", "k", "--generate", "8", "--length", "8"]) == 2
    assert "--wrapping-key and --length go with --wrapped FILE" in capsys.readouterr().err
    wrapped = ["--wrapped", str(missing), "--wrapping-key", "0" * 16, "--length", "8"]
    assert main(["keys", "create", "k", *wrapped]) == 2
    assert f"cannot read {missing}" in capsys.readouterr().err
