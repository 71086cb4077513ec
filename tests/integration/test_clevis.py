"""The clevis pin ``keybroker`` under Debian's own clevis (``clevis encrypt``/``decrypt``,
``sss``, ``clevis luks``), against a real broker over HTTPS with a simulated SNP guest.

clevis finds the pin's programs on PATH; they are the lean client's console scripts in this
venv's bin directory, as ``make venv`` installs them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jwcrypto import jwe, jwk
from keybroker_guest.clevis import content_key
from keybroker_guest.cli import main as guest_main

from broker.cli import demo
from broker.localstate.democa import demo_tls
from broker.localstate.postgres import LocalPostgres
from broker.localstate.softhsm import LocalSoftHsm
from tests.integration.conftest import create_database
from tests.integration.guest_support import (
    DENYING_POLICY,
    GuestBroker,
    add_version,
    audit_lines,
    broker_settings,
    guest_broker,
    rebind,
    seed,
)
from tests.integration.server import running_broker

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("clevis") is None or shutil.which("jose") is None,
        reason="Debian's clevis and jose are not installed (scripts/system-deps.sh installs them)",
    ),
]

BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
SECRET = b"correct horse battery staple\n"
TO_DENY, TO_ROTATE = "boot-key", "rotated-key"


@pytest.fixture(scope="module")
def broker(
    tmp_path_factory: pytest.TempPathFactory, cluster: LocalPostgres, softhsm: LocalSoftHsm
) -> Iterator[GuestBroker]:
    state = tmp_path_factory.mktemp("clevis")
    settings = broker_settings(state, asyncio.run(create_database(cluster)), softhsm)
    asyncio.run(seed(settings, allowed=[TO_DENY, TO_ROTATE], denied=[]))
    with guest_broker(settings) as running:
        yield running


def config(broker: GuestBroker, **changes: Any) -> str:
    document = {
        "url": broker.base,
        "key": demo.DEMO_KEY,
        "tee": "snp",
        "simulate": True,
        "state-dir": str(broker.settings.state_dir),
        "ca": str(broker.tls.ca_file),
        **changes,
    }
    return json.dumps({name: value for name, value in document.items() if value is not None})


def clevis(*args: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["clevis", *args], input=stdin, capture_output=True, env=ENV, check=False, timeout=120
    )


def encrypt(cfg: str, plaintext: bytes = SECRET, pin: str = "keybroker") -> bytes:
    done = clevis("encrypt", pin, cfg, stdin=plaintext)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def header(compact: bytes) -> dict[str, Any]:
    segment = compact.split(b".")[0]
    document: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + b"=" * 4))
    return document


def test_encrypt_then_decrypt_round_trips_over_https(broker: GuestBroker) -> None:
    sealed = encrypt(config(broker))
    assert sealed.count(b".") == 4
    settings = header(sealed)["clevis"]["keybroker"]
    assert header(sealed)["clevis"]["pin"] == "keybroker"
    assert (header(sealed)["alg"], header(sealed)["enc"]) == ("dir", "A256GCM")
    assert settings["broker-key"] == broker.signing_key.jwk
    assert settings["version"] == 1
    assert settings["ca"] == broker.tls.ca_file.read_text()  # the CA itself, not its path
    done = clevis("decrypt", stdin=sealed)
    assert (done.returncode, done.stdout) == (0, SECRET), done.stderr.decode()


def test_the_jwe_is_standard_and_its_key_derives_from_the_released_key(
    broker: GuestBroker, tmp_path: Path
) -> None:
    sealed = encrypt(config(broker))
    released = tmp_path / "released"
    fetched = guest_main(
        [
            *("fetch", "--url", broker.base, "--ca", str(broker.tls.ca_file), "--key"),
            *(demo.DEMO_KEY, "--tee", "snp", "--simulate", "--state-dir"),
            *(str(broker.settings.state_dir), "--out", str(released)),
        ]
    )
    assert fetched == 0
    key = content_key(released.read_bytes())
    # jwcrypto, an independent JOSE implementation
    token = jwe.JWE()
    token.deserialize(sealed.decode(), key=jwk.JWK(kty="oct", k=jwk.base64url_encode(key)))
    assert token.payload == SECRET
    # and José, the C library clevis itself is built on
    key_file = tmp_path / "cek.jwk"
    key_file.write_text(json.dumps({"kty": "oct", "k": jwk.base64url_encode(key)}))
    done = subprocess.run(
        ["jose", "jwe", "dec", "-i-", "-k", str(key_file)],
        input=sealed,
        capture_output=True,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, SECRET), done.stderr


def test_a_pinned_tls_key_round_trips_and_a_wrong_pin_is_refused(
    broker: GuestBroker, tmp_path: Path
) -> None:
    pinned = config(broker, ca=None, **{"pin-sha256": broker.tls.pin_sha256})
    sealed = encrypt(pinned)
    assert clevis("decrypt", stdin=sealed).stdout == SECRET
    wrong = base64.b64encode(bytes(32)).decode()
    wrong_pin = config(broker, ca=None, **{"pin-sha256": wrong})
    done = clevis("encrypt", "keybroker", wrong_pin, stdin=SECRET)
    assert (done.returncode, done.stdout) == (6, b"")
    assert done.stderr.decode() == (
        f"clevis-encrypt-keybroker: the broker's TLS key (pin-sha256 {broker.tls.pin_sha256}) "
        "is not pinned\n"
    )
    other_ca = demo_tls(tmp_path).ca_file
    done = clevis("encrypt", "keybroker", config(broker, ca=str(other_ca)), stdin=SECRET)
    assert (done.returncode, done.stdout) == (6, b"")
    assert b"does not verify: unable to get local issuer certificate" in done.stderr


def test_a_jwe_whose_header_was_altered_does_not_decrypt(broker: GuestBroker) -> None:
    sealed = encrypt(config(broker, **{"pin-sha256": broker.tls.pin_sha256}))
    document = header(sealed)
    # Pointed at a TLS key the broker does not have: refused before anything is sent.
    document["clevis"]["keybroker"]["pin-sha256"] = [base64.b64encode(bytes(32)).decode()]
    forged = base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=")
    altered = b".".join([forged, *sealed.split(b".")[1:]])
    done = clevis("decrypt", stdin=altered)
    assert (done.returncode, done.stdout) == (6, b"")
    # Altered in what is not checked before the release: the header is the AAD, the tag fails.
    document = header(sealed)
    document["clevis"]["keybroker"]["wait"] = 5
    forged = base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=")
    done = clevis("decrypt", stdin=b".".join([forged, *sealed.split(b".")[1:]]))
    assert (done.returncode, done.stdout, done.stderr) == (
        6,
        b"",
        b"clevis-decrypt-keybroker: the JWE does not decrypt with the released key\n",
    )


def test_a_denied_release_fails_the_decrypt_with_nothing_written(broker: GuestBroker) -> None:
    sealed = encrypt(config(broker, key=TO_DENY))
    asyncio.run(rebind(broker.settings, TO_DENY, DENYING_POLICY))
    done = clevis("decrypt", stdin=sealed)
    assert (done.returncode, done.stdout) == (4, b"")
    err = done.stderr.decode()
    assert err.startswith(f"clevis-decrypt-keybroker: /v1/keys/{TO_DENY}/release: 403 "), err
    (line, *reasons) = asyncio.run(audit_lines(broker.settings, 1))[0].splitlines()
    assert f"release deny  {TO_DENY}" in line
    assert f"policy={DENYING_POLICY}@v1" in line
    assert any("measurement" in reason for reason in reasons), reasons


def test_a_new_key_version_asks_for_a_new_binding(broker: GuestBroker) -> None:
    sealed = encrypt(config(broker, key=TO_ROTATE))
    asyncio.run(add_version(broker.settings, TO_ROTATE))
    done = clevis("decrypt", stdin=sealed)
    assert (done.returncode, done.stdout) == (4, b"")
    assert done.stderr.decode() == (
        f"clevis-decrypt-keybroker: the broker released version 2 of {TO_ROTATE}, this was "
        "sealed under version 1: bind again (clevis luks regen)\n"
    )
    assert clevis("decrypt", stdin=encrypt(config(broker, key=TO_ROTATE))).stdout == SECRET


def test_sss_unlocks_with_one_of_two_brokers_down(broker: GuestBroker) -> None:
    with running_broker(broker.settings) as second:  # a replica on another port
        down = config(broker, url=second.replace("127.0.0.1", "localhost"), wait=1)
        sss = {"t": 1, "pins": {"keybroker": [json.loads(config(broker)), json.loads(down)]}}
        sealed = encrypt(json.dumps(sss), pin="sss")
    # The replica is gone: alone, its share fails as unreachable (exit 3) ...
    shares = header(sealed)["clevis"]["sss"]["jwe"]
    assert len(shares) == 2
    done = clevis("decrypt", stdin=shares[1].encode())
    assert (done.returncode, done.stdout) == (3, b"")
    assert b"(gave up after" in done.stderr
    # ... and the threshold of one is met by the broker that is up.
    done = clevis("decrypt", stdin=sealed)
    assert (done.returncode, done.stdout) == (0, SECRET), done.stderr.decode()


def has_device_mapper() -> bool:
    try:
        return "device-mapper" in Path("/proc/misc").read_text()
    except OSError:
        return False


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[str]:
    """A LUKS2 volume in a file on a loop device, its passphrase ``old passphrase``."""
    if shutil.which("cryptsetup") is None or shutil.which("losetup") is None:
        pytest.skip("cryptsetup or losetup is not installed")
    image = tmp_path / "volume.img"
    with image.open("wb") as handle:
        handle.truncate(32 << 20)
    attached = subprocess.run(
        ["losetup", "--find", "--show", str(image)], capture_output=True, text=True, check=False
    )
    if attached.returncode != 0:
        pytest.skip(f"this machine allows no loop device: {attached.stderr.strip()}")
    device = attached.stdout.strip()
    try:
        subprocess.run(
            [
                *("cryptsetup", "luksFormat", "--type", "luks2", "--batch-mode"),
                *("--key-file", "-", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"),
                device,
            ],
            input=b"old passphrase",
            check=True,
            capture_output=True,
        )
        yield device
    finally:
        subprocess.run(["losetup", "--detach", device], check=False)


def bind(broker: GuestBroker, loop_device: str) -> None:
    """``clevis luks bind`` slot 1 of ``loop_device`` to the demo key."""
    cfg = config(broker)
    bound = subprocess.run(
        [*("clevis", "luks", "bind", "-y", "-k", "-", "-d", loop_device), "keybroker", cfg],
        input=b"old passphrase",
        capture_output=True,
        env=ENV,
        check=False,
        timeout=120,
    )
    assert bound.returncode == 0, bound.stderr.decode()
    listed = subprocess.run(
        ["clevis", "luks", "list", "-d", loop_device], capture_output=True, env=ENV, check=True
    )
    # clevis 19 describes only the pins it ships (tang, tpm2, sss) and names the others so.
    assert listed.stdout == b"1: unknown pin 'keybroker'\n"


def test_a_luks2_volume_is_bound_and_its_key_recovered(
    broker: GuestBroker, loop_device: str
) -> None:
    bind(broker, loop_device)
    # What `clevis luks unlock` and the boot-time unlockers do before handing the key to
    # cryptsetup: decrypt the slot's JWE, here by attesting to the broker.
    passphrase = subprocess.run(
        ["clevis", "luks", "pass", "-d", loop_device, "-s", "1"],
        capture_output=True,
        env=ENV,
        check=False,
        timeout=120,
    )
    assert passphrase.returncode == 0, passphrase.stderr.decode()
    opened = subprocess.run(
        [
            *("cryptsetup", "open", "--test-passphrase", "--key-slot", "1"),
            "--key-file=-",
            loop_device,
        ],
        input=passphrase.stdout,
        capture_output=True,
        check=False,
    )
    assert opened.returncode == 0, opened.stderr.decode()


def test_clevis_luks_unlock_opens_the_bound_volume(broker: GuestBroker, loop_device: str) -> None:
    if not has_device_mapper():
        pytest.skip(
            "`clevis luks unlock` maps the volume with device-mapper, which this kernel does "
            "not offer (no device-mapper in /proc/misc); the binding and the key's recovery "
            "are tested without it"
        )
    bind(broker, loop_device)
    name = f"kb-{os.getpid()}"
    unlocked = subprocess.run(
        ["clevis", "luks", "unlock", "-d", loop_device, "-n", name],
        capture_output=True,
        env=ENV,
        check=False,
        timeout=120,
    )
    assert unlocked.returncode == 0, unlocked.stderr.decode()
    subprocess.run(["cryptsetup", "close", name], check=True)
