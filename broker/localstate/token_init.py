"""Child process: initialise a PKCS#11 token if no token has the wanted label yet.

Reads ``{"module", "label", "user_pin", "so_pin"}`` as JSON on stdin. python-pkcs11 has no
``C_InitToken``, so that one call goes through ctypes (PKCS#11 v2.40 §5.6: C_InitToken takes
the slot, the SO PIN and a 32-byte blank-padded label); the user PIN is then set with
``C_InitPIN`` from an SO session. Exit 0 when the token exists afterwards.
"""

from __future__ import annotations

import ctypes
import json
import sys

import pkcs11
from pkcs11.constants import TokenFlag


def _init_token(module: str, slot_id: int, so_pin: bytes, label: str) -> None:
    native = ctypes.CDLL(module)
    native.C_InitToken.argtypes = [ctypes.c_ulong, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    padded = label.encode("utf-8").ljust(32, b" ")[:32]
    rv = native.C_InitToken(slot_id, so_pin, len(so_pin), padded)
    if rv != 0:
        raise SystemExit(f"C_InitToken returned {rv:#x}")


def main() -> int:
    request = json.loads(sys.stdin.read())
    module, label = request["module"], request["label"]
    lib = pkcs11.lib(module)
    for slot in lib.get_slots(token_present=True):
        token = slot.get_token()
        if token.label == label and token.flags & TokenFlag.TOKEN_INITIALIZED:
            return 0
    free = [
        slot
        for slot in lib.get_slots(token_present=True)
        if not slot.get_token().flags & TokenFlag.TOKEN_INITIALIZED
    ]
    if not free:
        print("no free slot to initialise a token in", file=sys.stderr)
        return 1
    _init_token(module, free[0].slot_id, request["so_pin"].encode(), label)
    token = lib.get_token(token_label=label)
    with token.open(so_pin=request["so_pin"], rw=True) as session:
        session.init_pin(request["user_pin"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
