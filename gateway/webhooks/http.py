"""The deliveries' HTTP/1.1 client: one endpoint's keep-alive connections, one POST at a time each.

Responses are parsed by httptools (llhttp, Node's parser, which uvicorn uses too); what is
here is only what a webhook POST needs: a pool of idle connections, the request's bytes, the
answer's status and headers (its body is read and dropped), a total timeout per attempt.
Redirects are never followed (a 3xx is an answer), there are no proxies, cookies or
compression. https uses the ssl module's default context: the system's CAs, the host name
checked. aiohttp did this before at about six times the CPU per delivery (docs/http.md).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools


class HTTPError(Exception):
    """No usable answer: the connection was refused, reset or closed early, or the answer was
    not HTTP."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    #: header names in lower case
    headers: dict[str, str]


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; its answers are parsed as they arrive."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[Response] | None = None
        self.closed = False
        #: bytes of the current answer seen (a reused connection that closes before any was
        #: most likely closed by the server while idle: the request is sent again, once)
        self.answered = False
        self._headers: dict[str, str] = {}
        self._name = ""
        self._status = 0

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.answered = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(HTTPError(f"not an HTTP answer: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._status and self.waiter is not None and not self.waiter.done():
            # an answer whose end is the connection's end (no length given): it is complete
            self.waiter.set_result(Response(self._status, self._headers))
        why = f": {exc}" if exc else ""
        self._fail(HTTPError(f"connection closed before the answer{why}"))

    # -- httptools callbacks ---------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._headers, self._status = {}, 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._status = self.parser.get_status_code()

    def on_message_complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(Response(self._status, self._headers))
        if not self.parser.should_keep_alive():
            self.close()

    # -- ours ------------------------------------------------------------------------------
    def send(self, data: bytes) -> asyncio.Future[Response]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.answered = False
        self.transport.write(data)
        return self.waiter

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class Client:
    """POSTs to one URL over a pool of at most ``pool`` idle keep-alive connections."""

    def __init__(self, url: str, timeout: float, pool: int, user_agent: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http:// or https:// URL")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self.timeout = timeout
        self.pool = pool
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        netloc = parts.netloc.rsplit("@", 1)[-1]  # never send credentials in the Host header
        self._head = (f"POST {target} HTTP/1.1\r\nHost: {netloc}\r\nUser-Agent: {user_agent}\r\n").encode("latin-1")
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()

    async def post(self, body: bytes, headers: dict[str, str]) -> Response:
        """One attempt: the answer, or HTTPError, TimeoutError or OSError (ssl.SSLError too)."""
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        data = b"".join((self._head, head.encode("latin-1"), b"Content-Length: %d\r\n\r\n" % len(body), body))
        async with asyncio.timeout(self.timeout):
            while True:
                conn, reused = await self._connection()
                try:
                    response = await conn.send(data)
                except HTTPError:
                    conn.close()
                    self._open.discard(conn)
                    if reused and not conn.answered:
                        continue  # the server closed it while it was idle: a fresh one, once per idle one
                    raise
                except BaseException:  # a timeout or a cancel mid-answer: the connection is unusable
                    conn.close()
                    self._open.discard(conn)
                    raise
                if conn.closed or len(self._idle) >= self.pool:
                    conn.close()
                    self._open.discard(conn)
                else:
                    self._idle.append(conn)
                return response

    async def _connection(self) -> tuple[_Connection, bool]:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn, True
            self._open.discard(conn)
        _, conn = await asyncio.get_running_loop().create_connection(
            _Connection, self.host, self.port, ssl=self.ssl, server_hostname=self.host if self.ssl else None)
        self._open.add(conn)
        return conn, False

    async def close(self) -> None:
        for conn in list(self._open):
            conn.close()
        self._open.clear()
        self._idle.clear()
