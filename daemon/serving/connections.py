"""Bounds on the connections of the daemon's HTTP servers (the admin listener, instant mode's
ingress), so that clients which connect and send nothing cannot take the file descriptors the
daemon's deliveries and database need.

uvicorn's h11 protocol starts no timer before its first response, and `limit_concurrency`
only answers 503 once a request has arrived: a connection that sends nothing is held for
ever. Here a connection must deliver a whole request within `request_timeout_s` of
connecting (or of its previous response: that is the keep-alive timeout too), and past
`max_connections` the longest-idle connection is closed to make room for the new one (or the
new one, when none is idle). The backlog is small as well, since asyncio tries that many
accepts at each wake-up, and when the process is out of file descriptors it reports each
failed one with a traceback: `AcceptFailures` says it once per episode instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

logger = logging.getLogger(__name__)

DEFAULT_MAX_CONNECTIONS = 64  # Prometheus, a health check and a few browser tabs need far less
DEFAULT_REQUEST_TIMEOUT_S = 5.0  # from connecting (or the last response) to a whole request
DEFAULT_BACKLOG = 64  # connections the kernel queues before the listener accepts them
ACCEPT_QUIET_S = 10.0  # an episode of failed accepts ends after this long without one
ACCEPT_FAILED = "socket.accept() out of system resource"  # asyncio's report of EMFILE and co.


@dataclass(frozen=True)
class Limits:
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    backlog: int = DEFAULT_BACKLOG

    def uvicorn_options(self) -> dict[str, Any]:
        """What `uvicorn.Config` takes of these limits."""
        return {
            "http": protocol(self),
            "backlog": self.backlog,
            # uvicorn's own keep-alive timer; ours closes an idle connection at the same time.
            "timeout_keep_alive": max(1, math.ceil(self.request_timeout_s)),
        }


DEFAULT_LIMITS = Limits()


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request and a cap on connections."""

    limits: ClassVar[Limits] = DEFAULT_LIMITS

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._deadline: asyncio.TimerHandle | None = None
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_request()
        self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._await_request()  # the next request, or the keep-alive connection goes

    @property
    def idle(self) -> bool:
        """No request in progress: waiting for one, or for the rest of its head."""
        return self.cycle is None or self.cycle.response_complete

    def _await_request(self) -> None:
        self._stop_deadline()
        self.idle_since = self.loop.time()
        self._deadline = self.loop.call_later(self.limits.request_timeout_s, self._expire)

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        """The deadline passed: close unless the whole request is in and the app is at work
        (its answer re-arms the deadline for the next request)."""
        self._deadline = None
        if self.idle or self.cycle.more_body:
            self.transport.close()

    def _make_room(self) -> None:
        open_now = [
            c
            for c in self.connections
            if isinstance(c, BoundedH11Protocol) and not c.transport.is_closing()
        ]
        if len(open_now) <= self.limits.max_connections:
            return
        idle = [c for c in open_now if c is not self and c.idle]
        victim = min(idle, key=lambda c: c.idle_since) if idle else self
        victim.transport.close()


def protocol(limits: Limits) -> type[BoundedH11Protocol]:
    """The protocol class uvicorn instantiates per connection, bound to `limits`."""
    return type("AdminH11Protocol", (BoundedH11Protocol,), {"limits": limits})


class Episodes:
    """Failures grouped into episodes: runs with no more than `quiet_s` between two failures
    (pure: the caller gives the times)."""

    def __init__(self, quiet_s: float) -> None:
        self.quiet_s = quiet_s
        self.started: float | None = None
        self.last = 0.0
        self.count = 0

    def failed(self, now: float) -> bool:
        """Count a failure at `now`; True when it begins an episode."""
        begins = self.started is None or now - self.last > self.quiet_s
        if begins:
            self.started, self.count = now, 0
        self.last = now
        self.count += 1
        return begins

    def ended(self, now: float) -> bool:
        """Whether an episode was under way and has been quiet for `quiet_s` by `now`; it is
        then closed (the next failure begins a new one)."""
        if self.started is None or now - self.last <= self.quiet_s:
            return False
        self.started = None
        return True


class AcceptFailures:
    """The event loop's exception handler while the listener serves: asyncio's reports of
    accepts that failed on `sock` for want of resources (EMFILE: out of file descriptors)
    become one error line when an episode begins and one when it ends. Every other report
    goes on to the handler that was there before."""

    def __init__(
        self, sock: socket.socket, quiet_s: float = ACCEPT_QUIET_S, *, server: str = "admin"
    ) -> None:
        self._server = server  # which one, in its log lines and their actions
        self._fileno = sock.fileno()
        self._episodes = Episodes(quiet_s)
        self._previous: Any = None
        self._check: asyncio.TimerHandle | None = None

    @contextlib.contextmanager
    def installed(self, loop: asyncio.AbstractEventLoop) -> Iterator[None]:
        self._previous = loop.get_exception_handler()
        loop.set_exception_handler(self)
        try:
            yield
        finally:
            loop.set_exception_handler(self._previous)
            if self._check is not None:
                self._check.cancel()

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        sock = context.get("socket")
        if context.get("message") == ACCEPT_FAILED and sock is not None:
            with contextlib.suppress(OSError):
                if sock.fileno() == self._fileno:
                    self._failed(loop, context.get("exception"))
                    return
        if self._previous is not None:
            self._previous(loop, context)
        else:
            loop.default_exception_handler(context)

    def _failed(self, loop: asyncio.AbstractEventLoop, error: object) -> None:
        if not self._episodes.failed(loop.time()):
            return
        reason = error.strerror if isinstance(error, OSError) and error.strerror else "?"
        logger.error(
            "%s: cannot accept connections (%s): the process is short of file descriptors "
            "or memory, so deliveries and database connections may fail too; raise "
            "LimitNOFILE= if the daemon needs more (said once until accepts have worked for "
            "%gs)",
            self._server,
            reason,
            self._episodes.quiet_s,
            extra={"action": f"{self._server}.accept_failed"},
        )
        self._check = loop.call_later(self._episodes.quiet_s, self._check_ended, loop)

    def _check_ended(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        started = self._episodes.started
        if self._episodes.ended(now):
            assert started is not None
            logger.warning(
                "%s: no accept has failed for %gs (%d failed over %.0fs before that)",
                self._server,
                self._episodes.quiet_s,
                self._episodes.count,
                self._episodes.last - started,
                extra={
                    "action": f"{self._server}.accept_recovered",
                    "count": self._episodes.count,
                },
            )
            self._check = None
        else:
            wait = self._episodes.last + self._episodes.quiet_s - now
            self._check = loop.call_later(max(wait, 0.0) + 0.01, self._check_ended, loop)
