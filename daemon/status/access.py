"""Who may use the admin listener: with `[admin] token_file`, whoever sends the bearer token;
without one (loopback only), whoever names the listener itself in `Host`.

The `Host` check is what stops DNS rebinding: a web page on `attacker.test` whose name is
re-pointed at 127.0.0.1 reaches the listener from the browser, same-origin to itself, but its
requests say `Host: attacker.test:9465`. A browser never adds the bearer token by itself, so
with a token the check is not needed, and a reverse proxy in front may send its own `Host`.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pydantic import SecretStr
from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

UNAUTHENTICATED_PATHS = frozenset({"/healthz"})
LOOPBACK_NAMES = ("localhost", "127.0.0.1")
DEFAULT_HTTP_PORT = 80


def allowed_hosts(listen_host: str, port: int) -> tuple[str, ...]:
    """The `Host` values that name a listener on `listen_host:port` (as `[admin] listen`
    gives the host, IPv6 without brackets): that address, `localhost` and `127.0.0.1`, each
    with the port (bare too on port 80, where browsers leave the port out)."""
    names = [f"[{listen_host}]" if ":" in listen_host else listen_host.lower()]
    names += [name for name in LOOPBACK_NAMES if name not in names]
    hosts = [f"{name}:{port}" for name in names]
    if port == DEFAULT_HTTP_PORT:
        hosts += names
    return tuple(hosts)


@dataclass(frozen=True)
class Access:
    """The running rule: a bearer token, or (without one) the `Host` values allowed."""

    token: SecretStr | None
    hosts: tuple[str, ...]

    def refusal(self, path: str, headers: Headers) -> Response | None:
        """Why this request may not go on, as the answer to send, or None."""
        if self.token is not None:
            if path in UNAUTHENTICATED_PATHS:
                return None
            expected = f"Bearer {self.token.get_secret_value()}".encode()
            given = headers.get("authorization", "").encode("latin-1")
            if hmac.compare_digest(given, expected):
                return None
            return PlainTextResponse(
                "a bearer token is required\n",
                status_code=401,
                headers={"www-authenticate": 'Bearer realm="pipedrive-triggers"'},
            )
        host = headers.get("host")
        if host is not None and host.lower() in self.hosts:
            return None
        named = f"Host {host!r}" if host is not None else "a request without a Host header"
        return PlainTextResponse(
            f"refused: {named} does not name this listener; use one of {_listed(self.hosts)} "
            "(a web page elsewhere must not reach it by re-pointing its own name here)\n",
            status_code=403,
            headers={"x-content-type-options": "nosniff"},
        )


def _listed(hosts: Iterable[str]) -> str:
    return ", ".join(f"http://{host}/" for host in hosts)


class Guard:
    """ASGI middleware: every HTTP request passes the rule `current()` gives, read per request
    so that a reload's new token applies from the next one."""

    def __init__(self, app: ASGIApp, current: Callable[[], Access]) -> None:
        self._app = app
        self._current = current

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self._current().refusal(scope["path"], Headers(scope=scope))
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self._app(scope, receive, send)
