"""The admin listener: `/healthz`, `/readyz`, `/metrics` and the admin page, one Starlette app
served by uvicorn on the daemon's own event loop.

Off loopback every request but `/healthz` needs `Authorization: Bearer <token>` (the config
refuses to listen there without `[admin] token_file`). The replay form is a POST carrying a
per-process CSRF token, and a browser's `Origin`, when sent, must be this listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from urllib.parse import parse_qs, urlsplit

import uvicorn
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from daemon import clock as clock_module
from daemon import metrics as metrics_module
from daemon.config import Config
from daemon.errors import AdminListenError
from daemon.pipedrive import account_usage
from daemon.polling.poller import Feed
from daemon.status import admin_page, dashboard, page_actions

logger = logging.getLogger(__name__)

STUCK_AFTER_INTERVALS = 3  # /readyz fails once a feed has failed this many intervals
DATABASE_CHECK_TIMEOUT_S = 2.0
MAX_FORM_BYTES = 4096
SHUTDOWN_TIMEOUT_S = 5.0
UNAUTHENTICATED_PATHS = frozenset({"/healthz"})


def metrics_for(config: Config) -> metrics_module.Metrics:
    """Counting costs nothing much, but only a daemon that serves `/metrics` needs it."""
    if config.admin.listen is None:
        return metrics_module.NONE
    return metrics_module.PrometheusMetrics()


def stuck_feeds(
    feeds: Sequence[Feed], failing_for: Callable[[str, str], float | None]
) -> list[str]:
    """Readiness reasons: the subscriptions of feeds failing for more than
    `STUCK_AFTER_INTERVALS` poll intervals."""
    reasons: list[str] = []
    for feed in feeds:
        seconds = failing_for(feed.account, feed.object.name)
        if seconds is not None and seconds > STUCK_AFTER_INTERVALS * feed.interval_s:
            reasons.extend(
                f"subscription {name!r}: polls failing for {seconds:.0f}s, more than "
                f"{STUCK_AFTER_INTERVALS} poll intervals of {feed.interval_s:g}s"
                for name in feed.names
            )
    return reasons


class BearerAuth:
    """Every path but `/healthz` needs the token, compared in constant time."""

    def __init__(self, app: ASGIApp, token: SecretStr) -> None:
        self._app = app
        self._expected = f"Bearer {token.get_secret_value()}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in UNAUTHENTICATED_PATHS:
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self._expected):
                response = PlainTextResponse(
                    "a bearer token is required\n",
                    status_code=401,
                    headers={"www-authenticate": 'Bearer realm="pipedrive-triggers"'},
                )
                await response(scope, receive, send)
                return
        await self._app(scope, receive, send)


class Admin:
    """The app's state: what it reads and the one thing it changes."""

    def __init__(
        self,
        config: Config,
        engine: AsyncEngine,
        metrics: metrics_module.PrometheusMetrics,
        feeds: Sequence[Feed],
        scheduler_running: Callable[[], bool],
        *,
        usages: Mapping[str, account_usage.Usage] | None = None,
        clock: clock_module.Clock = clock_module.SYSTEM,
    ) -> None:
        self._engine = engine
        self._usages = usages  # the running daemon's, live: what it has not recorded yet
        self._metrics = metrics
        self._scheduler_running = scheduler_running
        self._clock = clock.now
        self.reconfigure(config, feeds)
        self.csrf_token = secrets.token_urlsafe(32)

    def reconfigure(self, config: Config, feeds: Sequence[Feed]) -> None:
        """A reload: the page and readiness follow the new subscriptions and feeds."""
        self._feeds = list(feeds)
        self._configured = {
            s.name: admin_page.SubscriptionInfo(s.trigger, s.account) for s in config.subscriptions
        }
        self._accounts = [account.name for account in config.accounts]

    def app(self, token: SecretStr | None = None) -> ASGIApp:
        app = Starlette(
            routes=[
                Route("/healthz", self.healthz),
                Route("/readyz", self.readyz),
                Route("/metrics", self.metrics),
                Route("/", self.page),
                Route("/replay", self.replay, methods=["POST"]),
            ]
        )
        return app if token is None else BearerAuth(app, token)

    async def healthz(self, request: Request) -> Response:
        # Answering at all proves the event loop turns: the app runs on the daemon's loop.
        return PlainTextResponse("ok\n")

    async def _database_problem(self) -> str | None:
        try:
            await asyncio.wait_for(dashboard.ping(self._engine), DATABASE_CHECK_TIMEOUT_S)
        except TimeoutError:
            return f"database: no answer within {DATABASE_CHECK_TIMEOUT_S:g}s"
        except Exception as error:
            # The driver's message may name hosts and users: the class says enough here.
            return f"database: cannot be queried ({type(error).__name__})"
        return None

    async def readyz(self, request: Request) -> Response:
        reasons = []
        if (problem := await self._database_problem()) is not None:
            reasons.append(problem)
        if not self._scheduler_running():
            reasons.append("scheduler: not running")
        reasons.extend(stuck_feeds(self._feeds, self._metrics.failing_for))
        if reasons:
            return PlainTextResponse("\n".join(["not ready", *reasons]) + "\n", status_code=503)
        return PlainTextResponse("ready\n")

    async def metrics(self, request: Request) -> Response:
        try:
            gauges = [row.gauges for row in await self._subscriptions(count_delivered=False)]
        except Exception:
            logger.warning(
                "/metrics: cannot read the outbox gauges", exc_info=True,
                extra={"action": "admin.gauges_failed"},
            )  # fmt: skip
            gauges = None
        body, content_type = metrics_module.exposition(
            self._metrics, gauges, self._clock(), request.headers.get("accept")
        )
        return Response(body, headers={"content-type": content_type})

    async def _subscriptions(self, *, count_delivered: bool) -> list[dashboard.SubscriptionRow]:
        return await dashboard.subscriptions(
            self._engine, self._configured, count_delivered=count_delivered
        )

    async def page(self, request: Request) -> Response:
        replayed = request.query_params.get("replayed", "")
        flash = None
        if replayed.isdigit():
            noun = "dead letter" if replayed == "1" else "dead letters"
            flash = f"{replayed} {noun} queued for delivery again."
        headers = {"cache-control": "no-store", "x-frame-options": "DENY"}
        try:
            subscriptions = await self._subscriptions(count_delivered=True)
            recent = await dashboard.recent(self._engine)
            accounts = await account_usage.counts_today(
                self._engine, self._accounts, self._clock(), self._usages
            )
        except Exception as error:
            logger.warning(
                "admin page: cannot read the database", exc_info=True,
                extra={"action": "admin.page_failed"},
            )  # fmt: skip
            body = admin_page.unavailable(f"the database cannot be read ({type(error).__name__})")
            return HTMLResponse(body, status_code=503, headers=headers)
        page = admin_page.Page(
            now=self._clock(),
            subscriptions=subscriptions,
            configured=self._configured,
            accounts=accounts,
            recent=recent,
            csrf_token=self.csrf_token,
            flash=flash,
        )
        return HTMLResponse(admin_page.render(page), headers=headers)

    async def replay(self, request: Request) -> Response:
        origin = request.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
            return PlainTextResponse("cross-origin request refused\n", status_code=403)
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return PlainTextResponse("form too large\n", status_code=413)
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        if not hmac.compare_digest(
            form.get(admin_page.CSRF_FIELD, "").encode(), self.csrf_token.encode()
        ):
            return PlainTextResponse("missing or stale form token: reload the page\n", 403)
        subscription = form.get("subscription") or None
        letter = form.get("id")
        if letter is not None and not letter.isdigit():
            return PlainTextResponse("id: must be a dead letter's number\n", status_code=400)
        if subscription is None and letter is None:
            return PlainTextResponse("give a subscription or an id\n", status_code=400)
        moved = await page_actions.replay(
            self._engine,
            ids=[int(letter)] if letter is not None else None,
            subscription=subscription,
            now=self._clock(),
        )
        logger.info(
            "admin page: %d dead letters queued again", moved,
            extra={"action": "admin.replayed", "subscription": subscription},
        )  # fmt: skip
        # Relative, so the page also works behind a proxy that serves it under a prefix.
        return RedirectResponse(f"./?replayed={moved}", status_code=303)


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the daemon owns SIGTERM, SIGINT and SIGHUP."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serving(
    config: Config,
    engine: AsyncEngine,
    metrics: metrics_module.Metrics,
    feeds: Sequence[Feed],
    scheduler_running: Callable[[], bool],
    usages: Mapping[str, account_usage.Usage] | None = None,
    clock: clock_module.Clock = clock_module.SYSTEM,
) -> AsyncIterator[Admin | None]:
    """Serve the admin app on `[admin] listen` for the duration of the block (nothing when
    it is not set); yields the app's state, for reloads."""
    address = config.admin.address
    if address is None or not isinstance(metrics, metrics_module.PrometheusMetrics):
        yield None
        return
    host, port = address
    state = Admin(config, engine, metrics, feeds, scheduler_running, usages=usages, clock=clock)
    app = state.app(config.admin.token())
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise AdminListenError(
            f"admin.listen: cannot listen on {config.admin.listen} ({error.strerror})"
        ) from None
    server = _Server(
        uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            loop="asyncio",
            log_level="warning",
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]), name="admin")
    logger.info(
        "admin: listening on http://%s:%d", host, sock.getsockname()[1],
        extra={"action": "admin.listening"},
    )  # fmt: skip
    try:
        yield state
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(task, SHUTDOWN_TIMEOUT_S)
        finally:
            sock.close()
