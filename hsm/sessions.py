"""One PKCS#11 session per worker thread, and the executor that keeps calls off the loop.

PKCS#11 v2.40 §5.6: a session must not be used by two threads at once, but the login state
belongs to the application, so one session logs in (and stays open for the pool's lifetime,
since closing the last session logs the application out) and every worker thread opens its
own, already authenticated, session on first use.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from typing import Protocol, TypeVar

import pkcs11

from hsm.errors import HsmUnavailable
from hsm.module import find_token, load_module
from hsm.redact import Secret

T = TypeVar("T")

# Errors that mean the token or the module is not usable right now (fail closed: 503), as
# opposed to errors caused by the caller's input.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    pkcs11.exceptions.DeviceError,
    pkcs11.exceptions.DeviceMemory,
    pkcs11.exceptions.DeviceRemoved,
    pkcs11.exceptions.TokenNotPresent,
    pkcs11.exceptions.TokenNotRecognised,
    pkcs11.exceptions.SessionClosed,
    pkcs11.exceptions.SessionHandleInvalid,
    pkcs11.exceptions.SessionCount,
    pkcs11.exceptions.UserNotLoggedIn,
    pkcs11.exceptions.HostMemory,
    pkcs11.exceptions.GeneralError,
    pkcs11.exceptions.FunctionFailed,
    # A handle this thread memoised no longer names its object (token re-initialised, HSM
    # restarted): a fresh session looks the objects up again.
    pkcs11.exceptions.KeyHandleInvalid,
    pkcs11.exceptions.ObjectHandleInvalid,
)


class PoolObserver(Protocol):
    """Told what the pool does, from its threads (the broker's metrics; must be
    thread-safe and quick)."""

    def waited(self, seconds: float) -> None:
        """A call waited this long for a free thread (and its session)."""

    def busy(self, delta: int) -> None:
        """A call started (+1) or ended (-1) on a session."""

    def opened(self, sessions: int) -> None:
        """The pool holds this many open sessions now."""


class _Unobserved:
    def waited(self, seconds: float) -> None:
        return None

    def busy(self, delta: int) -> None:
        return None

    def opened(self, sessions: int) -> None:
        return None


class SessionPool:
    """Authenticated sessions on one token, one per thread of a private executor."""

    observer: PoolObserver = _Unobserved()

    def __init__(self, module_path: str, token_label: str, user_pin: Secret, threads: int) -> None:
        self.module_path = module_path
        self.token_label = token_label
        self._pin = user_pin
        self._lib = load_module(module_path)
        self._token = find_token(self._lib, token_label)
        self._local = threading.local()
        self._sessions: list[pkcs11.Session] = []
        self._sessions_lock = threading.Lock()
        self._login_session = self._login()
        self._executor = (
            ThreadPoolExecutor(max_workers=threads, thread_name_prefix="pkcs11")
            if threads > 0
            else None
        )
        self.threads = threads

    def _login(self) -> pkcs11.Session:
        try:
            return self._token.open(user_pin=self._pin.reveal(), rw=True)
        except pkcs11.exceptions.UserAlreadyLoggedIn:
            # Another pool in this process logged the application in already.
            return self._token.open(rw=True)
        except pkcs11.exceptions.PinIncorrect:
            raise HsmUnavailable(
                f"login to token '{self.token_label}' refused: PIN incorrect"
            ) from None
        except pkcs11.PKCS11Error as exc:
            raise HsmUnavailable(
                f"cannot open a session on '{self.token_label}': {exc!r}"
            ) from None

    def observe(self, observer: PoolObserver) -> None:
        """Tell ``observer`` what the pool does from now on, starting with the sessions it
        holds already."""
        self.observer = observer
        with self._sessions_lock:
            observer.opened(len(self._sessions))

    def session(self) -> pkcs11.Session:
        """This thread's session, opened on first use."""
        session: pkcs11.Session | None = getattr(self._local, "session", None)
        if session is None:
            try:
                session = self._token.open(rw=True)
            except UNAVAILABLE_ERRORS as exc:
                raise HsmUnavailable(f"cannot open a PKCS#11 session: {exc!r}") from None
            self._local.session = session
            self._local.cache = {}
            with self._sessions_lock:
                self._sessions.append(session)
                self.observer.opened(len(self._sessions))
        return session

    def thread_cache(self) -> dict[str, object]:
        """Per-thread memo of objects kept through this thread's session (custody's copies of
        its KEKs and signing key, its secret cache); forgotten with the session."""
        self.session()
        cache: dict[str, object] = self._local.cache
        return cache

    def run_sync(self, fn: Callable[[pkcs11.Session], T]) -> T:
        """Run ``fn(session)`` on a pool thread and wait (for the CLI and tests)."""
        if self._executor is None:
            return self._call(fn)
        return self._executor.submit(self._call, fn).result()

    async def run(self, fn: Callable[[pkcs11.Session], T]) -> T:
        """Run ``fn(session)`` on a pool thread without blocking the event loop; with no
        threads, on the caller's thread (the token's work is then the loop's CPU work)."""
        if self._executor is None:
            return self._call(fn)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._queued, fn, time.perf_counter())

    def _queued(self, fn: Callable[[pkcs11.Session], T], submitted: float) -> T:
        self.observer.waited(time.perf_counter() - submitted)
        return self._call(fn)

    def _call(self, fn: Callable[[pkcs11.Session], T]) -> T:
        self.observer.busy(1)
        try:
            return fn(self.session())
        except UNAVAILABLE_ERRORS as exc:
            self._discard_session()
            if isinstance(exc, pkcs11.exceptions.UserNotLoggedIn):
                self._relogin()
            raise HsmUnavailable(f"PKCS#11 token unavailable: {type(exc).__name__}") from None
        except pkcs11.PKCS11Error as exc:
            # Anything else the module reports that custody did not map to a typed error is
            # the token's trouble, not the caller's: fail closed, as unavailable. The session
            # goes too: a call that failed half-way (say, a destroy) may have left objects
            # in it that nothing tracks any more; a fresh session starts clean.
            self._discard_session()
            raise HsmUnavailable(f"PKCS#11 call failed: {type(exc).__name__}") from None
        finally:
            self.observer.busy(-1)

    def _relogin(self) -> None:
        """The token forgot our login (it restarted): log in again for the next call."""
        with self._sessions_lock, suppress(HsmUnavailable, pkcs11.PKCS11Error):
            self._login_session = self._login()

    def _discard_session(self) -> None:
        """Close this thread's session (destroying any session objects left in it, cached
        unwrapped secrets and key copies included) and forget its memo; the next call opens a
        fresh one, which looks the token keys up and copies them again."""
        session: pkcs11.Session | None = getattr(self._local, "session", None)
        self._local.session = None
        self._local.cache = {}
        if session is None:
            return
        with self._sessions_lock:
            if session in self._sessions:
                self._sessions.remove(session)
            self.observer.opened(len(self._sessions))
        with suppress(pkcs11.PKCS11Error):
            session.close()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        with self._sessions_lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            with suppress(pkcs11.PKCS11Error):
                session.close()
        with suppress(pkcs11.PKCS11Error):
            self._login_session.close()
