"""One loopback-or-public HTTP server in the daemon's event loop: its socket bound before it
starts (a taken port is one clear error, with nothing to cancel), uvicorn without its signal
handlers, bounded connections, and a stop that waits a few seconds at most."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Iterator

import uvicorn
from starlette.types import ASGIApp

from daemon.serving import connections

logger = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 5.0


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the daemon owns SIGTERM, SIGINT and SIGHUP."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(address: tuple[str, int], backlog: int) -> socket.socket:
    """A listening socket on `address`; OSError when it cannot be had (the port is taken)."""
    host, port = address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(backlog)  # connections queue from now on, before uvicorn starts
    except OSError:
        sock.close()
        raise
    return sock


@contextlib.asynccontextmanager
async def serving(
    app: ASGIApp, sock: socket.socket, name: str, limits: connections.Limits
) -> AsyncIterator[None]:
    """Serve `app` on the bound `sock` for the duration of the block; the socket is closed
    on the way out. `name` names the server in its log lines ("admin", "instant")."""
    server = _Server(
        uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            loop="asyncio",
            log_level="warning",
            **limits.uvicorn_options(),
        )
    )
    try:
        with connections.AcceptFailures(sock, server=name).installed(asyncio.get_running_loop()):
            task = asyncio.create_task(server.serve(sockets=[sock]), name=name)
            try:
                yield
            finally:
                server.should_exit = True
                await asyncio.wait_for(task, SHUTDOWN_TIMEOUT_S)
    finally:
        sock.close()
