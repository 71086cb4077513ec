"""``keybroker-guest initramfs-files`` lists every file the client loads: what the dracut
module and the initramfs-tools hook copy into a boot image (docs/boot.md)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from keybroker_guest import initramfs

PROGRAM = """
import json, sys
from keybroker_guest.clevis import decrypt_main, encrypt_main
from keybroker_guest.cli import main
status = main(["fetch", "--url", "https://127.0.0.1:%d", "--key", "k", "--tee", "snp",
               "--wait", "0", "--pin-sha256", "A" * 43 + "="])
loaded = [getattr(m, "__file__", None) for m in list(sys.modules.values())]
print(json.dumps([status, sys.executable, [f for f in loaded if f]]))
"""


def test_every_file_the_client_loads_is_listed() -> None:
    listed = set(initramfs.files())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = subprocess.run(
        [sys.executable, "-I", "-c", PROGRAM % port],
        capture_output=True,
        text=True,
        check=True,
    )
    status, executable, loaded = json.loads(result.stdout)
    assert status == 3  # it ran all the way to the network
    assert executable in listed
    assert os.path.realpath(executable) in listed
    missing = [f for f in loaded if str(Path(f).resolve()) not in listed and f not in listed]
    # Start-up hooks that .pth files of other distributions in this venv import (setuptools'
    # distutils shim, this checkout's editable finders): the boot image carries no .pth file
    # but the client's own, so none of them runs there.
    hooks = ("__editable__", "_distutils_hack")
    assert [f for f in missing if not any(hook in f for hook in hooks)] == []


def test_the_scripts_and_packages_are_listed_and_tests_are_not() -> None:
    listed = initramfs.files()
    names = {Path(path).name for path in listed}
    assert {"clevis-decrypt-keybroker", "clevis-encrypt-keybroker", "keybroker-guest"} <= names
    assert any(path.endswith("/cryptography/hazmat/primitives/ciphers/aead.py") for path in listed)
    assert any("_cffi_backend" in Path(path).name for path in listed)
    assert not any("/test/" in path or "/idlelib/" in path for path in listed)
    assert len(listed) == len(set(listed))


BOOT = Path(initramfs.__file__).parent / "boot"


def test_the_boot_hooks_parse_and_ask_the_client_for_their_files() -> None:
    hooks = {
        "dracut/60clevis-pin-keybroker/module-setup.sh": "bash",
        "initramfs-tools/hooks/clevis-keybroker": "sh",
        "initramfs-tools/scripts/local-top/clevis-keybroker": "sh",
    }
    assert sorted(str(p.relative_to(BOOT)) for p in BOOT.rglob("*") if p.is_file()) == sorted(hooks)
    for name, shell in hooks.items():
        path = BOOT / name
        assert os.access(path, os.X_OK), name
        subprocess.run([shell, "-n", str(path)], check=True)
    for name in list(hooks)[:2]:
        assert "keybroker-guest initramfs-files" in (BOOT / name).read_text()
