from __future__ import annotations

from pathlib import Path

from broker.privatefiles import write_private, write_private_bytes


def test_an_existing_readable_file_is_made_private_before_the_secret_lands(tmp_path: Path) -> None:
    target = tmp_path / "secret.bin"
    target.write_bytes(b"old")
    target.chmod(0o644)
    write_private_bytes(target, b"new secret")
    assert target.read_bytes() == b"new secret"
    assert target.stat().st_mode & 0o777 == 0o600


def test_text_goes_through_the_same_path(tmp_path: Path) -> None:
    target = tmp_path / "pin"
    write_private(target, "1234\n")
    assert (target.read_text(), target.stat().st_mode & 0o777) == ("1234\n", 0o600)
