"""Child process: a token left with duplicates, as replicas racing on a fresh token left it.

``python -m tests.integration.doubled_token double STATE_DIR`` initialises a SoftHSM token
under ``STATE_DIR`` (SoftHSM reads its configuration once per process, so a second token
takes a second process), provisions it, then makes a second first KEK, signing key pair and
nonce key under the same labels, wraps a secret under the second KEK the token lists and
prints ``{"blob": hex}``. ``... check STATE_DIR BLOB_HEX`` makes the token ready as a broker
does (which refuses duplicates) and prints ``{"unwraps": true}`` once the blob unwraps under
``keybroker-kek-v1``; it exits 1 with the refusal or the failure.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

from broker.localstate.softhsm import LocalSoftHsm
from hsm.custody import Custody
from hsm.errors import HsmError
from hsm.noncekey import NONCE_KEY_LABEL
from hsm.provision import _generate_signing_key, generate_kek, kek_label, provision


def _open(state_dir: str, *, up: bool) -> Custody:
    token = LocalSoftHsm(Path(state_dir))
    if up:
        token.up()
    os.environ.update(token.environment())
    return Custody.open(token.module_path, token.token_label, token.user_pin, threads=0)


def double(state_dir: str) -> int:
    custody = _open(state_dir, up=True)
    try:
        secret = secrets.token_bytes(32)

        def make(session: pkcs11.Session) -> bytes:
            provision(session)
            generate_kek(session, 1)
            _generate_signing_key(session)
            session.generate_key(
                KeyType.GENERIC_SECRET,
                256,
                label=NONCE_KEY_LABEL,
                store=True,
                mechanism=Mechanism.GENERIC_SECRET_KEY_GEN,
                template={Attribute.SIGN: True, Attribute.SENSITIVE: True},
            )
            keks = list(
                session.get_objects(
                    {
                        Attribute.CLASS: ObjectClass.SECRET_KEY,
                        Attribute.LABEL: kek_label(1),
                        Attribute.TOKEN: True,
                    }
                )
            )
            value = session.create_object(
                {
                    Attribute.CLASS: ObjectClass.SECRET_KEY,
                    Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
                    Attribute.TOKEN: False,
                    Attribute.EXTRACTABLE: True,
                    Attribute.SENSITIVE: False,
                    Attribute.VALUE: secret,
                }
            )
            blob: bytes = keks[1].wrap_key(value, mechanism=Mechanism.AES_KEY_WRAP_PAD)
            value.destroy()
            return blob

        blob = custody.pool.run_sync(make)
    finally:
        custody.close()
    print(json.dumps({"blob": blob.hex()}))
    return 0


def check(state_dir: str, blob_hex: str) -> int:
    custody = _open(state_dir, up=False)
    try:
        custody.ensure_ready()
        wrapped = bytes.fromhex(blob_hex)

        def unwrap(session: pkcs11.Session) -> None:
            # AES-KWP's integrity check (RFC 5649 §3) passes only under the KEK that wrapped it.
            kek = custody._kek(session, kek_label(1))
            value = kek.unwrap_key(
                ObjectClass.SECRET_KEY,
                KeyType.GENERIC_SECRET,
                wrapped,
                mechanism=Mechanism.AES_KEY_WRAP_PAD,
                template={Attribute.TOKEN: False, Attribute.SENSITIVE: True},
            )
            value.destroy()

        custody.pool.run_sync(unwrap)
    except (HsmError, pkcs11.exceptions.PKCS11Error) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    finally:
        custody.close()
    print(json.dumps({"unwraps": True}))
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "double":
        raise SystemExit(double(sys.argv[2]))
    raise SystemExit(check(sys.argv[2], sys.argv[3]))
