"""The clevis pin ``keybroker``: seal a secret to a key the broker releases only to an
attested guest, and unseal it by attesting again (docs/boot.md).

clevis finds a pin as the programs ``clevis-encrypt-<pin>`` and ``clevis-decrypt-<pin>`` on
PATH. ``clevis-encrypt-keybroker CONFIG < PLAINTEXT > JWE`` attests, has the key released,
and writes a compact JWE (RFC 7516) whose protected header carries the configuration under
``clevis.keybroker`` (with ``clevis.pin`` = ``keybroker``, which ``clevis decrypt`` reads to
pick the pin). ``clevis-decrypt-keybroker < JWE > PLAINTEXT`` reads the configuration back,
attests, has the key released, and decrypts. ``sss`` composes with it as with any pin.

The JWE is ``alg`` ``dir`` with ``enc`` ``A256GCM`` (RFC 7518 §4.5, §5.3): the content key is
derived from the released key with HKDF-SHA256 (RFC 5869, info :data:`CEK_INFO`), so a key of
any length seals, and the JWE key is not the released bytes themselves, which other uses of
the same broker key may hold. The protected header, authenticated as the AAD, records what
decrypting must trust again: the broker's signing key (so only that broker's envelope is
opened, whatever terminates TLS), the CA certificates or SPKI pins of its TLS, and the key
version sealed under.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from keybroker_guest.cli import connect
from keybroker_guest.encoding import b64url, from_b64url
from keybroker_guest.errors import Denied, ExitStatus, GuestError, Untrusted, UsageError
from keybroker_guest.evidence import TEES, default_kit, source_for
from keybroker_guest.flow import BrokerKeyPin, fetch
from keybroker_guest.jws import BrokerKey
from keybroker_guest.protocol import Released
from keybroker_guest.transport import BrokerUrl, TlsTrust, Transport, parse_pin

PIN = "keybroker"
ALG, ENC = "dir", "A256GCM"
CEK_INFO = b"keybroker clevis pin A256GCM content key"
IV_BYTES = 12  # RFC 7518 §5.3: a 96-bit IV
TAG_BYTES = 16
DEFAULT_WAIT_SECONDS = 60.0
MAX_JWE_BYTES = 1 << 20

ENCRYPT_SUMMARY = "Encrypts using a key released by a keybroker to an attested guest"
DECRYPT_SUMMARY = "Decrypts using a key released by a keybroker to an attested guest"

#: Configuration members, and the types each may have.
_MEMBERS: dict[str, tuple[type, ...]] = {
    "url": (str,),
    "key": (str,),
    "tee": (str,),
    "ca": (str,),
    "pin-sha256": (str, list),
    "broker-key-sha256": (str,),
    "wait": (int, float),
    "simulate": (bool,),
    "state-dir": (str,),
    "kit": (str,),
}


@dataclass(frozen=True)
class PinConfig:
    """A validated configuration: what ``clevis encrypt keybroker CONFIG`` is given, and (with
    ``broker_key`` and ``version``) what the JWE header records for decrypting."""

    url: BrokerUrl
    key: str
    tee: str
    ca_pem: str | None = None
    pins: tuple[str, ...] = ()
    broker_key_sha256: str | None = None
    wait: float = DEFAULT_WAIT_SECONDS
    simulate: bool = False
    state_dir: str | None = None
    kit: str | None = None

    @classmethod
    def parse(cls, document: Mapping[str, Any], *, ca_files: bool) -> PinConfig:
        """``UsageError`` for an unknown member, a wrong type or a missing ``url``, ``key`` or
        ``tee``. With ``ca_files`` (encrypting) ``ca`` may name a PEM file, which is read;
        in a JWE header it is the PEM text itself."""
        for name, value in document.items():
            kinds = _MEMBERS.get(name)
            if kinds is None:
                raise UsageError(f"config member {name!r} is not one of {', '.join(_MEMBERS)}")
            if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
                raise UsageError(f"config member {name!r} has the wrong type")
        for name in ("url", "key", "tee"):
            if name not in document:
                raise UsageError(f"config lacks {name!r}")
        if document["tee"] not in TEES:
            raise UsageError(f"config tee {document['tee']!r} is not one of {', '.join(TEES)}")
        pins = document.get("pin-sha256", [])
        pins = [pins] if isinstance(pins, str) else pins
        if not all(isinstance(pin, str) for pin in pins):
            raise UsageError("config pin-sha256 is a string or a list of strings")
        for pin in pins:
            parse_pin(pin)
        wait = float(document.get("wait", DEFAULT_WAIT_SECONDS))
        if not 0 <= wait <= 3600:
            raise UsageError("config wait must be within 0..3600 seconds")
        ca = document.get("ca")
        return cls(
            url=BrokerUrl.parse(document["url"]),
            key=document["key"],
            tee=document["tee"],
            ca_pem=_ca_pem(ca) if ca is not None and ca_files else ca,
            pins=tuple(pins),
            broker_key_sha256=document.get("broker-key-sha256"),
            wait=wait,
            simulate=document.get("simulate", False),
            state_dir=document.get("state-dir"),
            kit=document.get("kit"),
        )

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"url": str(self.url), "key": self.key, "tee": self.tee}
        optional: dict[str, Any] = {
            "ca": self.ca_pem,
            "pin-sha256": list(self.pins) or None,
            "broker-key-sha256": self.broker_key_sha256,
            "simulate": self.simulate or None,
            "state-dir": self.state_dir,
            "kit": self.kit,
        }
        document.update({name: value for name, value in optional.items() if value is not None})
        if self.wait != DEFAULT_WAIT_SECONDS:
            document["wait"] = self.wait
        return document

    @property
    def trust(self) -> TlsTrust:
        return TlsTrust(self.ca_pem, tuple(parse_pin(pin) for pin in self.pins))

    def released(
        self, broker_key: BrokerKeyPin, connect: Callable[[PinConfig], Transport]
    ) -> tuple[BrokerKey, Released]:
        """Attest and have the key released: (the broker key that signed it, the release)."""
        if self.url.scheme == "http" and (self.ca_pem is not None or self.pins):
            raise UsageError("ca and pin-sha256 judge TLS: they need an https url")
        transport = connect(self)
        signer = broker_key.resolve(transport, self.url.authenticated)
        kit = None
        if self.simulate:  # the layout `make run` and keybroker-guest --simulate use
            state = Path(self.state_dir or ".keybroker")
            kit = Path(self.kit) if self.kit else default_kit(self.tee, state)
        source = source_for(self.tee, self.simulate, kit)
        pinned = BrokerKeyPin(known=signer)
        return signer, fetch(transport, source, self.key, pinned, authenticated=True)


def _ca_pem(value: str) -> str:
    """The PEM text of ``value``: PEM itself, or the file it names."""
    if value.lstrip().startswith("-----BEGIN"):
        text = value
    else:
        try:
            text = Path(value).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read the CA file {value}: {exc}") from None
    TlsTrust(text).context()  # UsageError unless it holds certificates
    return text


def content_key(secret: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=None, info=CEK_INFO).derive(secret)


def seal(plaintext: bytes, config: PinConfig, broker_key: BrokerKey, released: Released) -> str:
    """The compact JWE of ``plaintext`` under the key ``released``, its header recording
    ``config``, the broker's signing key and the key's version."""
    settings = {**config.to_json(), "broker-key": broker_key.jwk, "version": released.version}
    header = {"alg": ALG, "enc": ENC, "clevis": {"pin": PIN, PIN: settings}}
    protected = b64url(json.dumps(header, separators=(",", ":"), sort_keys=True).encode())
    iv = os.urandom(IV_BYTES)
    sealed = AESGCM(content_key(released.secret)).encrypt(iv, plaintext, protected.encode())
    ciphertext, tag = sealed[:-TAG_BYTES], sealed[-TAG_BYTES:]
    return ".".join((protected, "", b64url(iv), b64url(ciphertext), b64url(tag)))


@dataclass(frozen=True)
class Sealed:
    """A compact JWE this pin wrote, read but not yet decrypted."""

    protected: str
    config: PinConfig
    broker_key: BrokerKey
    version: int
    iv: bytes
    ciphertext: bytes
    tag: bytes

    @classmethod
    def parse(cls, compact: str) -> Sealed:
        parts = compact.strip().split(".")
        if len(parts) != 5 or parts[1]:
            raise UsageError("input is not a compact JWE with alg dir")
        try:
            header = json.loads(from_b64url(parts[0], "JWE header"))
            iv, ciphertext, tag = (from_b64url(p, "JWE segment") for p in parts[2:])
        except ValueError as exc:
            raise UsageError(f"input is not a JWE: {exc}") from None
        if not isinstance(header, dict) or not isinstance(header.get("clevis"), dict):
            raise UsageError("the JWE header has no clevis member")
        clevis = header["clevis"]
        if clevis.get("pin") != PIN:
            raise UsageError(f"the JWE is for the pin {str(clevis.get('pin'))[:32]!r}")
        settings = clevis.get(PIN)
        if header.get("alg") != ALG or header.get("enc") != ENC or not isinstance(settings, dict):
            raise UsageError(f"the JWE is not one of the {PIN} pin (alg {ALG}, enc {ENC})")
        settings = dict(settings)
        jwk, version = settings.pop("broker-key", None), settings.pop("version", None)
        if not isinstance(jwk, dict) or not isinstance(version, int) or isinstance(version, bool):
            raise UsageError("the JWE header lacks the broker key or the key version")
        if len(iv) != IV_BYTES or len(tag) != TAG_BYTES:
            raise UsageError("the JWE's IV or tag has the wrong length")
        config = PinConfig.parse(settings, ca_files=False)
        return cls(parts[0], config, BrokerKey.from_jwk(jwk), version, iv, ciphertext, tag)

    def open(self, released: Released) -> bytes:
        if released.version != self.version:
            raise Denied(
                f"the broker released version {released.version} of {released.key}, this was "
                f"sealed under version {self.version}: bind again (clevis luks regen)"
            )
        try:
            return AESGCM(content_key(released.secret)).decrypt(
                self.iv, self.ciphertext + self.tag, self.protected.encode()
            )
        except InvalidTag:
            raise Untrusted("the JWE does not decrypt with the released key") from None


def _connect(config: PinConfig) -> Transport:
    return connect(config.url, config.trust, config.wait, f"clevis-{PIN}")


def encrypt(
    config_text: str, plaintext: bytes, connect: Callable[[PinConfig], Transport] = _connect
) -> str:
    try:
        document = json.loads(config_text)
    except ValueError:
        raise UsageError("the config is not JSON") from None
    if not isinstance(document, dict):
        raise UsageError("the config is not a JSON object")
    config = PinConfig.parse(document, ca_files=True)
    signer, released = config.released(BrokerKeyPin(config.broker_key_sha256), connect)
    return seal(plaintext, config, signer, released)


def decrypt(compact: str, connect: Callable[[PinConfig], Transport] = _connect) -> bytes:
    sealed = Sealed.parse(compact)
    _, released = sealed.config.released(BrokerKeyPin(known=sealed.broker_key), connect)
    return sealed.open(released)


def _run(program: Callable[[], bytes], prog: str) -> int:
    try:
        output = program()
    except GuestError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return exc.exit_status
    sys.stdout.buffer.write(output)
    sys.stdout.flush()
    return ExitStatus.OK


def _read_stdin(what: str) -> bytes:
    if sys.stdin.isatty():
        raise UsageError(f"{what} is read from standard input, not a terminal")
    return sys.stdin.buffer.read(MAX_JWE_BYTES + 1)


def encrypt_main(argv: Sequence[str] | None = None) -> int:
    """``clevis-encrypt-keybroker CONFIG [-y] < PLAINTEXT > JWE``. ``-y`` (what ``clevis luks
    bind -y`` passes) is accepted: this pin never asks, its trust is in CONFIG."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--summary"]:
        print(ENCRYPT_SUMMARY)
        return ExitStatus.OK
    if args[1:] not in ([], ["-y"]) or not args:
        print(f"Usage: clevis encrypt {PIN} CONFIG [-y] < PLAINTEXT > JWE", file=sys.stderr)
        return ExitStatus.USAGE

    def program() -> bytes:
        plaintext = _read_stdin("the plaintext")
        if len(plaintext) > MAX_JWE_BYTES:
            raise UsageError(f"the plaintext is longer than {MAX_JWE_BYTES} bytes")
        return encrypt(args[0], plaintext).encode("ascii")

    return _run(program, f"clevis-encrypt-{PIN}")


def decrypt_main(argv: Sequence[str] | None = None) -> int:
    """``clevis-decrypt-keybroker < JWE > PLAINTEXT``; nothing on stdout unless it decrypts."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--summary"]:
        print(DECRYPT_SUMMARY)
        return ExitStatus.OK
    if args:
        print(f"Usage: clevis decrypt {PIN} < JWE > PLAINTEXT", file=sys.stderr)
        return ExitStatus.USAGE

    def program() -> bytes:
        data = _read_stdin("the JWE")
        if len(data) > MAX_JWE_BYTES:
            raise UsageError(f"the JWE is longer than {MAX_JWE_BYTES} bytes")
        try:
            return decrypt(data.decode("ascii"))
        except UnicodeDecodeError:
            raise UsageError("input is not a compact JWE") from None

    return _run(program, f"clevis-decrypt-{PIN}")
