"""Loading a PKCS#11 module once per process, initialised for multi-threaded use.

python-pkcs11 initialises a module with ``C_Initialize(NULL)``. PKCS#11 v2.40 §5.4 says that
with a NULL argument the application will not access the library from several threads, and
SoftHSM 2.6.1 takes that at its word: it disables its own locking, and two threads using two
sessions then corrupt its state. Right after python-pkcs11 loads the module we therefore
finalise it and initialise it again with ``CKF_OS_LOCKING_OK`` through ctypes. ``dlopen``
returns the same handle for the same path, so both views share one library instance; no
session exists yet, so nothing python-pkcs11 holds is invalidated.
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path
from typing import Any

import pkcs11

from hsm.errors import ConfigurationError, HsmUnavailable

# PKCS#11 v2.40 §3.6 CK_C_INITIALIZE_ARGS.flags
_CKF_OS_LOCKING_OK = 0x00000002
_CKR_OK = 0


class _InitializeArgs(ctypes.Structure):
    _fields_ = (
        ("CreateMutex", ctypes.c_void_p),
        ("DestroyMutex", ctypes.c_void_p),
        ("LockMutex", ctypes.c_void_p),
        ("UnlockMutex", ctypes.c_void_p),
        ("flags", ctypes.c_ulong),
        ("pReserved", ctypes.c_void_p),
    )


# python-pkcs11 exposes ``lib`` as a factory function, so its instances are typed as Any.
Pkcs11Library = Any

_loaded: dict[str, Pkcs11Library] = {}
_lock = threading.Lock()


def load_module(path: str) -> Pkcs11Library:
    """The process-wide ``pkcs11.lib`` for ``path``, initialised with OS locking."""
    resolved = str(Path(path).resolve())
    with _lock:
        lib = _loaded.get(resolved)
        if lib is not None:
            return lib
        if not Path(resolved).exists():
            raise ConfigurationError(f"PKCS#11 module {path} does not exist")
        try:
            lib = pkcs11.lib(resolved)
        except pkcs11.PKCS11Error as exc:
            raise HsmUnavailable(f"PKCS#11 module {path} failed to load: {exc!r}") from None
        _reinitialise_with_os_locking(resolved)
        _loaded[resolved] = lib
        return lib


def _reinitialise_with_os_locking(path: str) -> None:
    native = ctypes.CDLL(path)
    finalize_rv = native.C_Finalize(None)
    if finalize_rv != _CKR_OK:
        raise HsmUnavailable(f"C_Finalize returned {finalize_rv:#x}")
    args = _InitializeArgs(None, None, None, None, _CKF_OS_LOCKING_OK, None)
    init_rv = native.C_Initialize(ctypes.byref(args))
    if init_rv != _CKR_OK:
        raise HsmUnavailable(f"C_Initialize(CKF_OS_LOCKING_OK) returned {init_rv:#x}")


def find_token(lib: Pkcs11Library, label: str) -> pkcs11.Token:
    try:
        token: pkcs11.Token = lib.get_token(token_label=label)
        return token
    except pkcs11.NoSuchToken:
        raise HsmUnavailable(f"no PKCS#11 token labelled '{label}'") from None
    except pkcs11.MultipleTokensReturned:
        raise ConfigurationError(f"several PKCS#11 tokens are labelled '{label}'") from None
    except pkcs11.PKCS11Error as exc:
        raise HsmUnavailable(f"cannot list PKCS#11 tokens: {exc!r}") from None
