"""Session copies of the broker's token keys (signing key, KEKs), one set per PKCS#11 session.

SoftHSM 2.6.1 keeps token objects in files that it apparently re-validates on every
access: any call naming a token object costs about 55 µs more than on a session object
(python-pkcs11 on one core: reading CKA_LABEL 73 against 16 µs; an ES256 ``C_Sign`` 66
against 49 µs; ``C_UnwrapKey`` with the destroy that follows 103 against 77 µs;
docs/architecture.md §9).
Each session therefore signs and unwraps with a copy that ``C_CopyObject`` makes **inside
the token** with CKA_TOKEN false: nothing is copied out of the HSM, the copy's value is as
unreadable as the original's, and it dies with the session that made it.

A copy cannot be less sensitive than its original (PKCS#11 Base Specification v2.40): the
copy's template may only change attributes that can ordinarily be modified, plus CKA_TOKEN
and CKA_PRIVATE (§4.1.3, §5.7 C_CopyObject); CKA_SENSITIVE may only go from false to true
and CKA_EXTRACTABLE only from true to false, anything else is CKR_ATTRIBUTE_READ_ONLY (§4.9
private key objects, §4.10 secret key objects). Our template names CKA_TOKEN only
(CKA_PRIVATE could change; SoftHSM refuses it), and :func:`check_copy` still compares
CKA_SENSITIVE, CKA_EXTRACTABLE and CKA_PRIVATE of every copy with its original before its
first use, and refuses (503) a token that weakened one.
A token that refuses to copy (CKA_COPYABLE false, §4.4: CKR_ACTION_PROHIBITED, or no
``C_CopyObject``) is used through the token object, as before.

A copy is used for at most ``max_age_seconds`` from when it was made; then it is destroyed
and the next use looks the token object up by label again and copies it afresh. That is
how a key destroyed on the token stops working: within ``max_age_seconds`` in every session
(an existence check on every use would cost what the copy saves). A rotated KEK has a new
label, hence its own copy. The session pool forgets a session's copies with the rest of its
memo when it closes the session (token errors, shutdown), and the token destroys them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pkcs11
from pkcs11 import Attribute

from hsm.errors import HsmUnavailable
from hsm.handles import AgedHandles
from hsm.sessions import UNAVAILABLE_ERRORS

KEY_COPY_MAX_AGE_SECONDS = 10.0

# CKA_TOKEN false makes the copy a session object. SoftHSM 2.6.1 refuses CKA_SENSITIVE and
# CKA_EXTRACTABLE in a copy's template even at the original's values (CKR_ATTRIBUTE_READ_ONLY),
# so they are checked on the copy instead of being restated here.
_COPY_TEMPLATE = {Attribute.TOKEN: False}
# What the copy must share with its original: its value stays as protected as the original's.
_KEPT_ATTRIBUTES = (Attribute.SENSITIVE, Attribute.EXTRACTABLE, Attribute.PRIVATE)


@dataclass(frozen=True, slots=True)
class KeyCopyLimits:
    """Whether sessions use copies of the token keys, and for how long one copy serves."""

    enabled: bool = True
    max_age_seconds: float = KEY_COPY_MAX_AGE_SECONDS
    clock: Callable[[], float] = time.monotonic
    """Seconds on a monotonic scale; injectable so tests age copies without waiting."""

    def __post_init__(self) -> None:
        if not self.max_age_seconds > 0:
            raise ValueError(f"key copy max age {self.max_age_seconds} s must be > 0")


def check_copy(label: str, original: Any, copy: Any) -> None:
    """Raise ``HsmUnavailable`` unless ``copy`` is a session object as protected as
    ``original`` (both python-pkcs11 objects, read with C_GetAttributeValue)."""
    if copy[Attribute.TOKEN] is not False:
        raise HsmUnavailable(f"copy of '{label}': CKA_TOKEN {copy[Attribute.TOKEN]} != False")
    for attribute in _KEPT_ATTRIBUTES:
        found, wanted = copy[attribute], original[attribute]
        if found != wanted:
            raise HsmUnavailable(
                f"copy of '{label}': CKA_{attribute.name} {found} != token object's {wanted}"
            )


class SessionKeys:
    """The handle one session uses for each token key, by label, made on first use.

    Not thread-safe, and need not be: like its session, it is used by one thread only.
    """

    def __init__(self, limits: KeyCopyLimits) -> None:
        self._limits = limits
        self._handles = AgedHandles(limits.max_age_seconds, limits.clock)

    def get(self, label: str, find: Callable[[], Any | None]) -> Any | None:
        """The handle to use for ``label``; ``find`` looks the token object up (None: absent,
        and nothing is kept)."""
        handle = self._handles.get(label)
        if handle is not None:
            return handle
        original = find()
        if original is None:
            return None
        handle, is_copy = self._copy(label, original) if self._limits.enabled else (original, False)
        self._handles.put(label, handle, owned=is_copy)
        return handle

    def expire(self) -> None:
        """Destroy every copy made ``max_age_seconds`` ago or more (and forget token handles
        as old), so that the next use finds the token object again."""
        self._handles.expire()

    def copies(self) -> int:
        """How many session copies this session holds."""
        return sum(1 for _ in self._handles.owned())

    @staticmethod
    def _copy(label: str, original: Any) -> tuple[Any, bool]:
        try:
            copy = original.copy(_COPY_TEMPLATE)
        except UNAVAILABLE_ERRORS:
            raise
        except pkcs11.PKCS11Error:
            return original, False  # the token will not copy this key: use it where it is
        try:
            check_copy(label, original, copy)
        except BaseException:
            copy.destroy()
            raise
        return copy, True
