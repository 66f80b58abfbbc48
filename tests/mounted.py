"""One loopback server per test session whose app each test swaps in: uvicorn starts once (a
start and stop cost a test about 0.3 s), while every test still gets a fresh sandbox or
receiver with nothing left over from the one before."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from starlette.types import ASGIApp, Receive, Scope, Send

from daemon.dev.local_server import serve

NOBODY_HERE = 503


class Mount:
    """An ASGI app that hands each request to the app mounted now (the one the request found
    when it arrived), and answers 503 while no test has one mounted."""

    def __init__(self) -> None:
        self.app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self.app
        if app is not None:
            await app(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": NOBODY_HERE, "headers": []})
        await send({"type": "http.response.body", "body": b"no test has an app mounted"})

    @contextlib.contextmanager
    def mounted(self, app: ASGIApp) -> Iterator[None]:
        """Serve `app` for the block; one at a time, so two tests never share a server."""
        if self.app is not None:
            raise RuntimeError("another app is mounted on this server")
        self.app = app
        try:
            yield
        finally:
            self.app = None


@contextlib.contextmanager
def shared_server() -> Iterator[tuple[Mount, str]]:
    """A `Mount` served on loopback, and its base URL."""
    mount = Mount()
    with serve(mount) as server:
        yield mount, server.base_url
