"""The HTTP server: uvicorn's httptools protocol with the limits it lacks.

uvicorn on httptools keeps every header it is sent (no size or count limit) and waits for
a request's headers and body as long as the client likes. This subclass adds, per connection:

* ``max_header_bytes`` / ``max_headers``: the request line plus headers, and their number;
  past either, 431 and the connection is closed. Bytes are counted as they arrive: a head
  still unfinished after ``max_header_bytes`` is refused there (10 MB of headers is never
  buffered); a head that ends within a large read is measured exactly;
* ``header_timeout``: from a request's first byte (or from the connection, for the first
  request) to its last header; then 408 and close (slow-loris);
* ``body_timeout``: from the last header to the last body byte, so a Content-Length larger
  than the body does not hold the connection; then 408 (or a plain close once a response
  has started);
* ``max_connections``: a connection past it is answered 503 (Retry-After) and closed;
* idle keep-alive connections close after uvicorn's ``timeout_keep_alive``.

Timers are armed only for what a read leaves incomplete, so a request that arrives in one
read (the usual case) costs no timer at all (measured: ~1 us per request over plain uvicorn).

A refusal is written with ``Connection: close``; the socket is then half-closed and what
the client still sends is read and dropped for a moment (at most ``_LINGER_SECONDS`` and
``_LINGER_BYTES``), so the client reads the status instead of a reset.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from dataclasses import dataclass
from typing import Any, Callable

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

log = logging.getLogger(__name__)

_LINGER_SECONDS = 1.0
_LINGER_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int = 16 * 1024
    max_headers: int = 100
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    max_connections: int = 1000
    on_refusal: Callable[[str], None] | None = None  # metrics: called with "431", "408_header", ...


class _Refused(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        self.status, self.reason, self.message = status, reason, message


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """See the module docstring. ``limits`` is set on a subclass by :func:`protocol_class`."""

    limits: Limits = Limits()

    # -- connection ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._timer: asyncio.TimerHandle | None = None
        self._in_head = True
        self._head_seen = 0  # bytes received while waiting for this request's headers
        self._refused = False
        self._discarded = 0
        if len(self.connections) > self.limits.max_connections:
            self._refuse(
                _Refused(
                    503,
                    "503_connections",
                    f"more than {self.limits.max_connections} connections (setting WOJAK_SIDECAR_MAX_CONNECTIONS): retry later",
                )
            )
            return
        self._timer = self.loop.call_later(self.limits.header_timeout, self._header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        super().connection_lost(exc)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- bytes in -----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._refused:  # lingering after a refusal: read and drop
            self._discarded += len(data)
            if self._discarded > _LINGER_BYTES:
                self.transport.abort()
            return
        self._unset_keepalive_if_required()
        if self._in_head:
            self._head_seen += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # no WebSockets here (ws="none"): served as plain HTTP
            self.logger.info("ignored an Upgrade request header")
            return
        except httptools.HttpParserError as exc:
            refusal = exc.__context__
            if isinstance(refusal, _Refused):
                self._refuse(refusal)
            else:
                self.logger.info("invalid HTTP request: %s", exc)
                self.send_400_response("Invalid HTTP request received.")
            return
        # Timers only for what is still incomplete after this chunk: a request that arrives
        # whole (the usual case) never arms one.
        if self._in_head:
            if self._head_seen:
                if self._head_seen > self.limits.max_header_bytes:
                    self._refuse(self._too_large())  # no end of headers yet: refuse before buffering more
                elif self._timer is None:
                    self._timer = self.loop.call_later(self.limits.header_timeout, self._header_timeout)
        elif self._timer is None and not self.transport.is_closing():
            self._timer = self.loop.call_later(self.limits.body_timeout, self._body_timeout)

    def _too_large(self) -> _Refused:
        return _Refused(
            431,
            "431",
            f"request line and headers exceed {self.limits.max_header_bytes} bytes or"
            f" {self.limits.max_headers} headers (settings WOJAK_SIDECAR_MAX_HEADER_BYTES,"
            " _MAX_HEADERS)",
        )

    # -- parser callbacks ---------------------------------------------------------------

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_timer()
        if len(self.headers) > self.limits.max_headers:
            raise self._too_large()
        if self._head_seen > self.limits.max_header_bytes:  # this chunk was large: count exactly
            size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
            if size > self.limits.max_header_bytes:
                raise self._too_large()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._cancel_timer()
        self._in_head = True
        self._head_seen = 0
        super().on_message_complete()

    # -- timers and refusals ------------------------------------------------------------

    def _header_timeout(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # a pipelined request's headers are late while the previous one is answered
            self.cycle.keep_alive = False
            return
        self._refuse(
            _Refused(
                408,
                "408_header",
                f"the request headers did not arrive within {self.limits.header_timeout:g} s"
                " (setting WOJAK_SIDECAR_HEADER_TIMEOUT)",
            )
        )

    def _body_timeout(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        message = f"the request body did not arrive within {self.limits.body_timeout:g} s (setting WOJAK_SIDECAR_BODY_TIMEOUT)"
        if cycle is not None and cycle.response_started:
            if self.limits.on_refusal is not None:
                self.limits.on_refusal("408_body")
            self.transport.close()  # the answer is out (or going out): just stop reading
            return
        self._refuse(_Refused(408, "408_body", message))

    def _refuse(self, refusal: _Refused) -> None:
        """Answer ``refusal`` with Connection: close, half-close, then drop what still arrives."""
        self._refused = True
        self._cancel_timer()
        self._unset_keepalive_if_required()
        if self.limits.on_refusal is not None:
            self.limits.on_refusal(refusal.reason)
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the application's own answer (if any) goes nowhere now
            cycle.message_event.set()
        body = orjson.dumps({"detail": refusal.message})
        head = [
            STATUS_LINE[refusal.status],
            b"content-type: application/json\r\n",
            b"content-length: ",
            str(len(body)).encode(),
            b"\r\n",
            b"connection: close\r\n",
        ]
        if refusal.status == 503:
            head.append(b"retry-after: 1\r\n")
        self.transport.write(b"".join(head) + b"\r\n" + body)
        self.flow.resume_reading()
        try:
            self.transport.write_eof()
        except (NotImplementedError, RuntimeError, OSError):
            self.transport.close()
            return
        self.loop.call_later(_LINGER_SECONDS, self._linger_done)

    def _linger_done(self) -> None:
        if not self.transport.is_closing():
            self.transport.abort()


def protocol_class(limits: Limits) -> type[LimitedHttpToolsProtocol]:
    return type("WojakHttpToolsProtocol", (LimitedHttpToolsProtocol,), {"limits": limits})


def raise_open_files_limit(connections: int) -> None:
    """Make room for ``connections`` sockets plus the process's own files, if the hard limit allows."""
    want = connections + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        except (ValueError, OSError):
            new = soft
        if new < want:
            log.warning("open files limited to %d: fewer than WOJAK_SIDECAR_MAX_CONNECTIONS (%d) + 256", new, connections)


def uvicorn_server(app: Any, *, host: str, port: int, limits: Limits, keepalive_timeout: float) -> Any:
    import uvicorn

    raise_open_files_limit(limits.max_connections)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        http=protocol_class(limits),
        loop="none",
        lifespan="on",
        ws="none",
        timeout_graceful_shutdown=25,
        timeout_keep_alive=keepalive_timeout,  # type: ignore[arg-type]  # seconds; a float works
        # ASGI handlers (tasks) are bounded by the connections and the engine client's window.
        limit_concurrency=None,
        backlog=2048,
    )
    return uvicorn.Server(config)
