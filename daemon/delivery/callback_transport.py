"""The HTTP transport to consumers: httpx's API on aiohttp, each failure told as what it was.

httpx-aiohttp maps aiohttp's errors by walking a table in which `ClientConnectionError ->
ConnectTimeout` wins over its subclasses, so a refused connection, a DNS failure and a TLS
failure all come out as "timed out". Here every request goes through `AiohttpTransport` as
before, and whatever it raises is replaced by the right httpx error carrying our own message,
which never quotes the URL (it may carry the consumer's token).

It also guards targets: unless a request carries `ALLOW_PRIVATE_TARGETS`, the address actually
connected to must not be loopback, private or link-local (`targets`), checked after DNS
resolution, so a public name that resolves to 127.0.0.1 is refused too. Guarded and unguarded
requests use separate connection pools: a connection opened for one never serves the other.
"""

from __future__ import annotations

import errno
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from httpx_aiohttp import AiohttpTransport

from daemon.delivery import targets
from daemon.errors import TargetRefused

# Pass as a request's `extensions` to lift the guard for that request.
ALLOW_PRIVATE_TARGETS: dict[str, Any] = {targets.ALLOW_KEY: True}
MAX_CONNECTIONS = 100  # per pool, as httpx-aiohttp's default
KEEPALIVE_S = 5.0  # httpx's keep-alive expiry


class RefusedTarget(httpx.ConnectError):
    """The guard refused the target (see `targets`): not the consumer's failure, so it does
    not count towards pausing the subscription."""


class CallbackResolver(AbstractResolver):
    """The system resolver, with RFC 6761's `.invalid` answered at once, and, when guarded,
    the guarded addresses filtered out (refused when none is left)."""

    def __init__(self, *, guarded: bool) -> None:
        self._system = aiohttp.ThreadedResolver()
        self._guarded = guarded

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host.rstrip(".").lower().endswith(".invalid"):
            # RFC 6761 6.4: never resolves, so no DNS server is asked (and none can stall it).
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        results = await self._system.resolve(host, port, family)
        if not self._guarded:
            return results
        allowed = set(targets.check_resolved([result["host"] for result in results]))
        return [result for result in results if result["host"] in allowed]

    async def close(self) -> None:
        await self._system.close()


def _session_factory(*, guarded: bool, ssl_context: ssl.SSLContext) -> Callable[[], Any]:
    def create() -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            resolver=CallbackResolver(guarded=guarded),
            ssl=ssl_context,
            limit=MAX_CONNECTIONS,
            keepalive_timeout=KEEPALIVE_S,
        )
        # No cookie jar: a consumer's Set-Cookie is never sent back (each delivery stands alone).
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())

    return create


class CallbackTransport(httpx.AsyncBaseTransport):
    """Two `AiohttpTransport`s, guarded and unguarded, behind one error translation."""

    def __init__(self) -> None:
        ssl_context = httpx.create_ssl_context()
        self._guarded = AiohttpTransport(
            verify=ssl_context, client=_session_factory(guarded=True, ssl_context=ssl_context)
        )
        self._unguarded = AiohttpTransport(
            verify=ssl_context, client=_session_factory(guarded=False, ssl_context=ssl_context)
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        guarded = not request.extensions.get(targets.ALLOW_KEY, False)
        try:
            if guarded:
                targets.check_literal(request.url.host)  # aiohttp resolves no IP literal
            transport = self._guarded if guarded else self._unguarded
            response = await transport.handle_async_request(request)
        except Exception as failure:
            raise translate(failure, timeouts, request) from None
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _TranslatedStream(response.stream, timeouts, request)
        return response

    async def aclose(self) -> None:
        await self._guarded.aclose()
        await self._unguarded.aclose()


class _TranslatedStream(httpx.AsyncByteStream):
    """The reply body, with aiohttp's errors translated as the request's are."""

    def __init__(
        self, stream: httpx.AsyncByteStream, timeouts: dict[str, Any], request: httpx.Request
    ) -> None:
        self._stream = stream
        self._timeouts = timeouts
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        except Exception as failure:
            raise translate(failure, self._timeouts, self._request) from None

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        except Exception as failure:
            raise translate(failure, self._timeouts, self._request) from None


def _seconds(timeouts: dict[str, Any], which: str) -> str:
    value = timeouts.get(which)
    return f" within {value:g}s" if isinstance(value, int | float) else ""


def _strerror(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return type(error).__name__


def describe(failure: BaseException, timeouts: dict[str, Any]) -> tuple[type[httpx.HTTPError], str]:
    """The httpx error class and our message (no URL) for what aiohttp raised.

    The most specific aiohttp classes come first: they subclass the general ones."""
    error: BaseException = failure
    if isinstance(failure, httpx.HTTPError) and failure.__cause__ is not None:
        error = failure.__cause__  # httpx-aiohttp's mapping: judge by what aiohttp raised
    if isinstance(error, TargetRefused):
        return RefusedTarget, str(error)
    if isinstance(error, aiohttp.ClientConnectorDNSError):
        return httpx.ConnectError, f"callback host does not resolve ({_strerror(error.os_error)})"
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        cause = error.certificate_error
        reason = getattr(cause, "verify_message", None) or getattr(cause, "reason", None)
        return httpx.ConnectError, (
            f"TLS failure: callback's certificate is not trusted ({reason or 'unverified'})"
        )
    if isinstance(error, aiohttp.ClientSSLError):
        reason = getattr(error.os_error, "reason", None) or _strerror(error.os_error)
        return httpx.ConnectError, f"TLS failure: handshake with callback failed ({reason})"
    if isinstance(error, aiohttp.ClientConnectorError):
        if error.os_error.errno == errno.ECONNREFUSED:
            return httpx.ConnectError, "callback refused the connection (nothing listening?)"
        return httpx.ConnectError, f"cannot connect to callback ({_strerror(error.os_error)})"
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout, (
            f"callback did not accept the connection{_seconds(timeouts, 'connect')}"
        )
    if isinstance(error, aiohttp.ServerTimeoutError):
        return httpx.ReadTimeout, f"callback did not answer{_seconds(timeouts, 'read')}"
    if isinstance(error, TimeoutError):
        return httpx.TimeoutException, "callback timed out"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError, "callback closed the connection without answering"
    if isinstance(error, aiohttp.ClientPayloadError):
        return httpx.ReadError, "callback's reply was cut short"
    if isinstance(error, aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError, "callback sent something that is not an HTTP reply"
    if isinstance(error, aiohttp.ClientOSError):
        return httpx.NetworkError, f"connection to callback failed ({_strerror(error)})"
    if isinstance(error, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return httpx.UnsupportedProtocol, "callback URL is not a valid http or https URL"
    return httpx.TransportError, f"cannot reach callback ({type(error).__name__})"


def translate(
    failure: BaseException, timeouts: dict[str, Any], request: httpx.Request
) -> BaseException:
    """What to raise instead of `failure`: an httpx error with our message; anything else
    (a bug of ours) unchanged. TimeoutError is an OSError."""
    if not isinstance(failure, aiohttp.ClientError | httpx.HTTPError | TargetRefused | OSError):
        return failure
    kind, message = describe(failure, timeouts)
    if issubclass(kind, httpx.RequestError):
        return kind(message, request=request)
    return kind(message)
