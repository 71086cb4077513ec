"""Child process: broker custody on a token of its own; prints what the tests compare.

``python -m tests.integration.other_token STATE_DIR TEE`` initialises a SoftHSM token under
``STATE_DIR`` (SoftHSM reads its configuration once per process, so a second token takes a
second process), makes it ready twice as two broker processes starting one after the other
would, and prints one JSON object: ``nonce``, a nonce for ``TEE`` issued under this token's
nonce key (standard base64), and ``nonce_keys``, how many nonce keys the token then holds.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

from broker.localstate.softhsm import LocalSoftHsm
from broker.release.nonces import Nonces
from broker.timeutil import utcnow
from hsm.custody import Custody
from hsm.noncekey import nonce_key_objects


def main(state_dir: str, tee: str) -> int:
    token = LocalSoftHsm(Path(state_dir))
    token.up()
    os.environ.update(token.environment())
    first = Custody.open(token.module_path, token.token_label, token.user_pin, threads=0)
    second = Custody.open(token.module_path, token.token_label, token.user_pin, threads=0)
    try:
        first.ensure_ready()
        second.ensure_ready()
        nonce, _ = Nonces(second.nonce_mac_key(), 300).issue(tee, utcnow())
        count = len(first.pool.run_sync(nonce_key_objects))
    finally:
        first.close()
        second.close()
    print(json.dumps({"nonce": base64.b64encode(nonce).decode(), "nonce_keys": count}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2]))
