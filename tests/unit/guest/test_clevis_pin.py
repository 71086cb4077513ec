"""The clevis pin's configuration and JWE without a network: the broker is a fake behind the
lean client's transport. Debian's clevis against a real broker is in
tests/integration/test_clevis.py."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from keybroker_guest.clevis import PinConfig, decrypt, encrypt
from keybroker_guest.errors import Untrusted, UsageError

from broker.simulate.nitro import FakeNitroAuthority

from .fake_broker import FakeBroker

SECRET = b"luks passphrase"


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("nitro") / "authority"
    FakeNitroAuthority.generate().save(folder)
    return folder


def cfg(kit: Path, **changes: Any) -> str:
    document = {"url": "http://127.0.0.1:18403", "key": "disk-key", "tee": "nitro"}
    document.update({"simulate": True, "kit": str(kit)})
    return json.dumps({**document, **changes})


def test_a_sealed_secret_opens_with_the_same_broker(kit: Path) -> None:
    broker = FakeBroker()
    sealed = encrypt(cfg(kit), SECRET, lambda config: broker.lean())
    head = json.loads(base64.urlsafe_b64decode(sealed.split(".")[0] + "=="))
    assert head["clevis"]["keybroker"]["broker-key"]["x"]
    assert "wait" not in head["clevis"]["keybroker"]  # defaults stay out of the header
    broker.paths.clear()
    assert decrypt(sealed, lambda config: broker.lean()) == SECRET
    assert "/v1/jwks" not in broker.paths  # the broker key recorded at bind time is used


def test_another_broker_signing_the_release_is_refused_at_decrypt(kit: Path) -> None:
    bound, impostor = FakeBroker(), FakeBroker()
    sealed = encrypt(cfg(kit), SECRET, lambda config: bound.lean())
    with pytest.raises(Untrusted) as caught:
        decrypt(sealed, lambda config: impostor.lean())
    assert str(caught.value) == (
        f"envelope was signed by broker key {impostor.thumbprint}, not the pinned "
        f"{bound.thumbprint}"
    )


def test_the_same_key_name_with_another_secret_does_not_decrypt(kit: Path) -> None:
    bound = FakeBroker()
    sealed = encrypt(cfg(kit), SECRET, lambda config: bound.lean())
    changed = FakeBroker(secret=b"another key", signing_key=bound.signing_key)
    with pytest.raises(Untrusted, match=r"^the JWE does not decrypt with the released key$"):
        decrypt(sealed, lambda config: changed.lean())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"pin_sha256": "x"}, "config member 'pin_sha256' is not one of url, key, tee, ca,"),
        ({"simulate": "yes"}, "config member 'simulate' has the wrong type"),
        ({"wait": True}, "config member 'wait' has the wrong type"),
        ({"wait": 7200}, "config wait must be within 0..3600 seconds"),
        ({"tee": "sev"}, "config tee 'sev' is not one of snp, tdx, sgx, nitro"),
        ({"pin-sha256": ["abc"]}, "pin-sha256 'abc' is not the standard base64"),
        ({"ca": "/nonexistent/ca.pem"}, "cannot read the CA file /nonexistent/ca.pem"),
        ({"pin-sha256": "A" * 43 + "="}, "ca and pin-sha256 judge TLS: they need an https url"),
    ],
)
def test_bad_configs_are_usage_errors_before_any_request(
    kit: Path, changes: dict[str, Any], message: str
) -> None:
    broker = FakeBroker()
    with pytest.raises(UsageError) as caught:
        encrypt(cfg(kit, **changes), SECRET, lambda config: broker.lean())
    assert str(caught.value).startswith(message)
    assert broker.paths == []


def test_a_config_lacking_the_key_is_refused() -> None:
    with pytest.raises(UsageError, match=r"^config lacks 'key'$"):
        PinConfig.parse({"url": "http://127.0.0.1", "tee": "snp"}, ca_files=True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not a jwe", "input is not a compact JWE with alg dir"),
        ("a.b.c.d.e", "input is not a compact JWE with alg dir"),
        ("e30..AAAA.AAAA.AAAA", "the JWE header has no clevis member"),
    ],
)
def test_what_is_not_this_pins_jwe_is_refused(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=f"^{message}$"):
        decrypt(text)


def test_a_jwe_of_another_pin_is_refused() -> None:
    head = {"alg": "dir", "enc": "A256GCM", "clevis": {"pin": "tang", "tang": {}}}
    segment = base64.urlsafe_b64encode(json.dumps(head).encode()).rstrip(b"=").decode()
    with pytest.raises(UsageError, match=r"^the JWE is for the pin 'tang'$"):
        decrypt(f"{segment}..AAAAAAAAAAAAAAAA.AAAA.AAAAAAAAAAAAAAAAAAAAAA")
