"""Every connection's limits, applied where uvicorn reads bytes, before any route runs.

uvicorn bounds neither the time a client may take to send a request nor what a worker holds
for requests not yet answered: a client that declares a large body and never finishes it keeps
its connection, and everything it sent, for as long as it likes. :class:`GuardedProtocol` is
the broker's HTTP protocol (``broker/api/coalesce.py``'s, so still one write per response)
with these added, for every route alike (guest, admin, and any added later):

* **head deadline**: a request line and headers must arrive within
  ``request_head_timeout_seconds`` of the connection opening (its first request) or of the
  request's first byte (later ones); else 408 and the connection closes. A connection that
  sent nothing is closed without an answer.
* **head size**: at most ``max_request_head_bytes``; else 431 and the connection closes
  (httptools would otherwise buffer a header of any length).
* **body deadline**: the whole body must arrive within ``request_body_timeout_seconds`` of the
  head; else 408 and the connection closes.
* **admission** (``broker/api/limits.py``): connections per worker (503), unanswered requests
  and request rate per client address (429), request bytes held per worker (503).

A request refused once its head is complete is answered by a small ASGI application in
place of the broker's, with the same RFC 7807 problem documents (``broker/api/problem.py``);
a deadline or byte limit reached while the application reads the body makes its next
``receive()`` raise the error, so the application answers it as any other (the request id,
access line and metrics included). Before any
request head is complete there is no application to answer: the protocol writes the problem
itself. Each of these answers closes the connection, and so does any answer given before the
request's body has arrived (nothing would read the rest), whose head then says
``Connection: close``.

Closing a socket that still has unread bytes makes the kernel reset the connection, and a
reset can destroy the answer before the client reads it. So a connection closed while its
request is still arriving closes by half (:class:`LingeringTransport`): the answer goes out
followed by a FIN, and what the client still sends is read and dropped until it closes too,
for at most :data:`LINGER_SECONDS`.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from broker.api.clientcert import SCOPE_KEY, subject_of
from broker.api.coalesce import CoalescingTransport, HttpProtocol
from broker.api.limits import STATE_KEY, Admission
from broker.api.problem import problem_parts
from broker.errors import KeybrokerError, Overloaded, RequestHeadTooLarge, RequestTimeout
from broker.logs import get_logger

log = get_logger("keybroker.http")

#: Longest a half-closed connection is read (and its bytes dropped) after its answer.
LINGER_SECONDS = 2.0


class LingeringTransport(CoalescingTransport):
    """A :class:`CoalescingTransport` whose ``close()``, while ``still_sending()`` says the
    client is sending its request, shuts down the sending side only, and closes for good when
    the client does (the protocol's ``eof_received``) or after :data:`LINGER_SECONDS`."""

    __slots__ = ("_lingering", "_still_sending")

    def __init__(
        self,
        transport: asyncio.Transport,
        loop: asyncio.AbstractEventLoop,
        still_sending: Callable[[], bool],
    ) -> None:
        super().__init__(transport, loop)
        self._still_sending = still_sending
        self._lingering = False

    def close(self) -> None:
        inner = self._transport
        if self._lingering or inner.is_closing():
            return
        if not (self._still_sending() and inner.can_write_eof()):
            super().close()
            return
        self._lingering = True
        self.write_eof()  # what is held goes first
        self._loop.call_later(LINGER_SECONDS, inner.close)

    def is_closing(self) -> bool:
        return self._lingering or self._transport.is_closing()


class GuardedProtocol(HttpProtocol):
    """uvicorn's httptools protocol (coalescing writes) with the broker's limits."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.admission: Admission | None = self.app_state.get(STATE_KEY)
        self.client_cert_name: str | None = None
        self.application: ASGIApp = self.app
        self.client_host = "unknown"
        self.counted = False
        self.beyond_connections = False
        self.reading: Request | None = None
        """The request the parser is in, from its first byte until its body is complete."""
        self.unfinished: list[Request] = []
        """Requests of this connection not yet answered."""
        self.held = 0
        """Bytes received and counted in the admission since the last answer."""
        self.head_bytes = 0
        self.timer: asyncio.TimerHandle | None = None

    # --- connection ------------------------------------------------------------------------

    def wrap(self, transport: asyncio.Transport) -> CoalescingTransport:
        return LingeringTransport(transport, self.loop, self.still_sending)

    def still_sending(self) -> bool:
        """Whether the client may still be sending the request the parser is in."""
        return self.reading is not None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.admission is None:  # an application without the broker's lifespan: fail closed
            log.error("no_admission", detail="the application did not hand over its limits")
            transport.close()
            return
        self.client_host = self.client[0] if self.client else "unknown"
        # A TLS connection's handshake is over when this is called: a client certificate it
        # presented was verified against tls_client_ca_file.
        ssl_object = transport.get_extra_info("ssl_object")
        self.client_cert_name = (
            None if ssl_object is None else subject_of(ssl_object.getpeercert(binary_form=True))
        )
        self.counted = True
        self.beyond_connections = not self.admission.connection_opened()
        self.arm(self.admission.settings.request_head_timeout_seconds, self.head_deadline)

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        for request in tuple(self.unfinished):
            request.close()
        if self.counted and self.admission is not None:
            self.admission.give_back_bytes(self.held)
            self.held = 0
            self.admission.connection_closed()
            self.counted = False
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        admission = self.admission
        if admission is None or self.transport.is_closing():
            return
        in_head = self.reading is None or not self.reading.head_done
        self.held += len(data)
        if not admission.take_bytes(len(data)):
            self.bytes_exhausted()
            return
        if in_head:
            self.head_bytes += len(data)
        super().data_received(data)
        request = self.reading
        if request is None or self.transport.is_closing():
            return
        # A deadline is armed only for a request still incomplete after a read: one that
        # arrives in one read, as nearly every request does, costs no timer.
        settings = admission.settings
        if not request.head_done:
            if self.head_bytes > settings.max_request_head_bytes:
                error = RequestHeadTooLarge(
                    f"request line and headers longer than {settings.max_request_head_bytes} bytes"
                )
                self.answer_and_close(admission.refuse("head_size", self.client_host, error))
            elif self.timer is None:
                self.arm(settings.request_head_timeout_seconds, self.head_deadline)
        elif request.admitted and not request.body_done and self.timer is None:
            self.arm(settings.request_body_timeout_seconds, self.body_deadline)

    def bytes_exhausted(self) -> None:
        if self.admission is None:
            raise RuntimeError("admission missing")
        error = Overloaded(
            "this worker holds its limit of request bytes for unanswered requests; retry later"
        )
        self.admission.refuse("bytes", self.client_host, error)
        request = self.reading
        if request is not None and request.head_done and request.admitted:
            self.fail(request, error)
        else:
            self.answer_and_close(error)

    # --- parser callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.admission is None:
            raise RuntimeError("admission missing")
        request = Request(self)
        self.admission.request_opened(self.client_host)
        self.reading = request
        self.unfinished.append(request)
        super().on_message_begin()
        if self.client_cert_name is not None:  # the ASGI TLS extension's name for it
            self.scope["extensions"] = {"tls": {SCOPE_KEY: self.client_cert_name}}

    def on_headers_complete(self) -> None:
        if self.admission is None:
            raise RuntimeError("admission missing")
        if self.reading is None:
            raise RuntimeError("reading missing")
        request = self.reading
        request.head_done = True
        self.head_bytes = 0
        if self.timer is not None:
            self.disarm()
        path = self.url.partition(b"?")[0]
        refusal = self.admission.admit(self.client_host, path, self.beyond_connections)
        if refusal is None:
            request.admitted = True
            super().on_headers_complete()
        else:
            request.failure = refusal
            self.app = Refusal(refusal)
            super().on_headers_complete()
            self.app = self.application
        cycle: Any = self.cycle
        request.cycle = cycle
        if refusal is None:
            # The application reads the body through the request, whose receive() raises the
            # error of a deadline or limit reached meanwhile. (Its task has not started yet:
            # it looks the method up when it does.)
            request.receive_next = cycle.receive
            cycle.receive = request.receive
        # Its answer may start before its body has all arrived (a refusal decided on the
        # head); the connection then closes after it (Request.answered), so that answer must
        # say so (RFC 9112 §9.6), or the client sends its next request on a dying connection.
        request.send_next = cycle.send
        cycle.send = request.send

    def on_response_complete(self) -> None:
        # Requests are answered in order: the oldest unanswered is the one just answered.
        if self.unfinished:
            self.unfinished[0].answered()
        super().on_response_complete()

    def on_message_complete(self) -> None:
        request = self.reading
        if request is not None:
            request.body_done = True
            self.reading = None
            if self.timer is not None:
                self.disarm()
        super().on_message_complete()

    # --- deadlines -------------------------------------------------------------------------

    def arm(self, seconds: float, callback: Any) -> None:
        self.disarm()
        self.timer = self.loop.call_later(seconds, callback)

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def head_deadline(self) -> None:
        self.timer = None
        if self.admission is None:
            raise RuntimeError("admission missing")
        if self.reading is None:  # not a byte of a request: nothing to answer
            if not self.transport.is_closing():
                self.transport.close()
            return
        seconds = self.admission.settings.request_head_timeout_seconds
        error = RequestTimeout(f"request head not received within {seconds} s")
        self.answer_and_close(self.admission.refuse("head_timeout", self.client_host, error))

    def body_deadline(self) -> None:
        self.timer = None
        if self.admission is None:
            raise RuntimeError("admission missing")
        request = self.reading
        if request is None or request.closed:
            return
        seconds = self.admission.settings.request_body_timeout_seconds
        error = RequestTimeout(f"request body not received within {seconds} s")
        self.fail(request, self.admission.refuse("body_timeout", self.client_host, error))

    # --- answers ---------------------------------------------------------------------------

    def fail(self, request: Request, error: KeybrokerError) -> None:
        """End ``request``, whose application is running: its next ``receive()`` raises
        ``error``, which it answers; then the connection closes."""
        request.failure = error
        if self.reading is request:
            self.disarm()
        self.flow.pause_reading()
        cycle = request.cycle
        if cycle is None or cycle.response_complete:
            self.transport.close()
            return
        cycle.keep_alive = False
        cycle.message_event.set()  # wakes a receive() waiting for more of the body

    def answer_and_close(self, error: KeybrokerError) -> None:
        """Answer ``error`` on a connection whose request has no application yet, and close."""
        self.disarm()
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            request_id = secrets.token_hex(8)
            status, body, media_type, headers = problem_parts(error, request_id)
            lines = [STATUS_LINE[status]]
            for name, value in (
                *self.server_state.default_headers,
                (b"content-type", media_type),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                (b"x-request-id", request_id.encode()),
                *headers,
            ):
                lines.extend((name, b": ", value, b"\r\n"))
            lines.extend((b"\r\n", body))
            self.transport.write(b"".join(lines))
        # else a response to an earlier, pipelined request is being written: just close
        self.transport.close()

    def request_closed(self, request: Request) -> None:
        self.unfinished.remove(request)
        held = 0
        if not self.unfinished:  # what was received since the last answer is answered
            held, self.held = self.held, 0
        if self.admission is not None:
            self.admission.request_closed(self.client_host, held)


class Request:
    """One request on a :class:`GuardedProtocol` connection, from its first byte until its
    answer is sent."""

    __slots__ = (
        "admitted",
        "body_done",
        "closed",
        "cycle",
        "failure",
        "head_done",
        "protocol",
        "receive_next",
        "send_next",
    )

    def __init__(self, protocol: GuardedProtocol) -> None:
        self.protocol = protocol
        self.head_done = False
        self.body_done = False
        self.admitted = False
        self.closed = False
        self.failure: KeybrokerError | None = None
        self.cycle: Any = None
        self.receive_next: Receive | None = None
        self.send_next: Send | None = None

    async def receive(self) -> Message:
        """The application's ``receive()``: uvicorn's, unless a deadline or a limit was
        reached, whose error it raises."""
        if self.receive_next is None:
            raise RuntimeError("receive_next missing")
        message = await self.receive_next()
        if self.failure is not None:
            raise self.failure
        return message

    async def send(self, message: Message) -> None:
        """The application's ``send()``: uvicorn's, after marking an answer that starts
        before the request's body has all arrived as the connection's last
        (``Connection: close``)."""
        if self.send_next is None:
            raise RuntimeError("send_next missing")
        if message["type"] == "http.response.start" and not self.body_done:
            self.cycle.keep_alive = False
        await self.send_next(message)

    def answered(self) -> None:
        """Its answer is sent: a connection whose request body is still arriving is not kept
        (nothing would read the rest of it)."""
        if not self.body_done:
            self.protocol.transport.close()
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.protocol.request_closed(self)
            # The cycle holds this request's receive(), and this request the cycle: part
            # them, so that both are freed now rather than by the garbage collector, whose
            # runs over every request's objects cost more than all of the rest of this.
            self.cycle = None


class Refusal:
    """The application that answers a request refused once its head was complete."""

    __slots__ = ("error",)

    def __init__(self, error: KeybrokerError) -> None:
        self.error = error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = secrets.token_hex(8)
        status, body, media_type, headers = problem_parts(self.error, request_id)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", media_type),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                    (b"x-request-id", request_id.encode()),
                    *headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
