"""The admin listener: `/healthz`, `/readyz`, `/metrics` and the admin page, one Starlette app
served by uvicorn on the daemon's own event loop.

With `[admin] token_file` every request but `/healthz` needs `Authorization: Bearer <token>`
(the config refuses to listen off loopback without one); without it, every request must name
the listener in `Host`, against DNS rebinding (`access`). The replay form is a POST carrying a
per-process CSRF token, and a browser's `Origin`, when sent, must be this listener.
Connections are bounded in number and in time (`connections`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from urllib.parse import parse_qs, urlsplit

from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from daemon import clock as clock_module
from daemon import config as config_module
from daemon import metrics as metrics_module
from daemon.config import Config
from daemon.db import outbox_admin
from daemon.errors import AdminListenError
from daemon.pipedrive import account_usage
from daemon.polling.plan import Feed
from daemon.serving import connections, http
from daemon.status import access, admin_page, dashboard, page_actions

logger = logging.getLogger(__name__)

STUCK_AFTER_INTERVALS = 3  # /readyz fails once a feed has failed this many intervals
DATABASE_CHECK_TIMEOUT_S = 2.0
MAX_FORM_BYTES = 4096


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
        listening_on: tuple[str, int],
        usages: Mapping[str, account_usage.Usage] | None = None,
        clock: clock_module.Clock = clock_module.SYSTEM,
    ) -> None:
        self._engine = engine
        self._usages = usages  # the running daemon's, live: what it has not recorded yet
        self._metrics = metrics
        self._scheduler_running = scheduler_running
        self._clock = clock.now
        # The address as bound (port 0 is a real port by then); it stays until a restart.
        self.address = listening_on
        self.access = access.Access(config.admin.token(), access.allowed_hosts(*listening_on))
        # The database's gauges (outbox depth, oldest pending) come from one replica only,
        # the singleton's holder, so sums over replicas do not double; set by the daemon.
        self.exports_database_gauges: Callable[[], bool] = lambda: True
        self._follow(config, feeds)
        self.csrf_token = secrets.token_urlsafe(32)

    def _follow(self, config: Config, feeds: Sequence[Feed]) -> None:
        self._feeds = list(feeds)
        self._configured = {
            s.name: admin_page.SubscriptionInfo(s.trigger, s.account) for s in config.subscriptions
        }
        self._accounts = [account.name for account in config.accounts]
        self._endpoints = {s.name: s.endpoint for s in config.subscriptions}

    def reconfigure(self, config: Config, feeds: Sequence[Feed]) -> None:
        """A reload: the page and readiness follow the new subscriptions and feeds, and
        requests need the token `token_file` holds now (`listen` waits for a restart)."""
        self._follow(config, feeds)
        self._reread_token(config)

    def _reread_token(self, config: Config) -> None:
        try:
            token = config.admin.token()
        except (OSError, UnicodeDecodeError) as error:  # it could be read a moment ago
            reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
            logger.error(
                "reload: admin.token_file cannot be read (%s); the admin listener keeps the "
                "token it had", reason,
                extra={"action": "reload.admin_token_kept"},
            )  # fmt: skip
            return
        old = self.access.token
        host = self.address[0]
        if token is None and old is not None and not config_module.is_loopback(host):
            logger.warning(
                "reload: admin.token_file removed, but the admin listener is still on %s, not "
                "loopback: it keeps requiring the token it had until a restart",
                host,
                extra={"action": "reload.admin_token_kept"},
            )
            return
        if _same_token(old, token):
            return
        self.access = access.Access(token, self.access.hosts)
        change = "changed" if old and token else ("set" if token else "removed")
        logger.info(
            "reload: admin token %s; it applies from the next request", change,
            extra={"action": "reload.admin_token_changed"},
        )  # fmt: skip

    def app(self) -> ASGIApp:
        app = Starlette(
            routes=[
                Route("/healthz", self.healthz),
                Route("/readyz", self.readyz),
                Route("/metrics", self.metrics),
                Route("/", self.page),
                Route("/replay", self.replay, methods=["POST"]),
            ]
        )
        return access.Guard(app, lambda: self.access)

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
        gauges: list[metrics_module.SubscriptionGauges] | None = None
        try:
            if self.exports_database_gauges():
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
            self._engine,
            self._configured,
            count_delivered=count_delivered,
            endpoints=self._endpoints,
        )

    async def page(self, request: Request) -> Response:
        replayed = request.query_params.get("replayed", "")
        flash = None
        if replayed == "0" or outbox_admin.parse_id(replayed) is not None:
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
        try:
            body = await request.body()
        except ClientDisconnect:  # gone, or closed for sending it too slowly: nothing done
            return Response(status_code=400)
        if len(body) > MAX_FORM_BYTES:
            return PlainTextResponse("form too large\n", status_code=413)
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        if not hmac.compare_digest(
            form.get(admin_page.CSRF_FIELD, "").encode(), self.csrf_token.encode()
        ):
            return PlainTextResponse("missing or stale form token: reload the page\n", 403)
        subscription = form.get("subscription") or None
        letter = form.get("id")
        letter_id = outbox_admin.parse_id(letter) if letter is not None else None
        if letter is not None and letter_id is None:
            return PlainTextResponse(
                f"id: must be a dead letter's number, 1 to {outbox_admin.MAX_ID} in ASCII digits\n",
                status_code=400,
            )
        if subscription is None and letter_id is None:
            return PlainTextResponse("give a subscription or an id\n", status_code=400)
        moved = await page_actions.replay(
            self._engine,
            ids=[letter_id] if letter_id is not None else None,
            subscription=subscription,
            now=self._clock(),
        )
        logger.info(
            "admin page: %d dead letters queued again", moved,
            extra={"action": "admin.replayed", "subscription": subscription},
        )  # fmt: skip
        # Relative, so the page also works behind a proxy that serves it under a prefix.
        return RedirectResponse(f"./?replayed={moved}", status_code=303)


@contextlib.asynccontextmanager
async def serving(
    config: Config,
    engine: AsyncEngine,
    metrics: metrics_module.Metrics,
    feeds: Sequence[Feed],
    scheduler_running: Callable[[], bool],
    usages: Mapping[str, account_usage.Usage] | None = None,
    clock: clock_module.Clock = clock_module.SYSTEM,
    limits: connections.Limits = connections.DEFAULT_LIMITS,
) -> AsyncIterator[Admin | None]:
    """Serve the admin app on `[admin] listen` for the duration of the block (nothing when
    it is not set); yields the app's state, for reloads."""
    address = config.admin.address
    if address is None or not isinstance(metrics, metrics_module.PrometheusMetrics):
        yield None
        return
    host, _ = address
    try:
        sock = http.bind(address, limits.backlog)
    except OSError as error:
        raise AdminListenError(
            f"admin.listen: cannot listen on {config.admin.listen} ({error.strerror})"
        ) from None
    bound = (host, int(sock.getsockname()[1]))
    try:
        state = Admin(
            config, engine, metrics, feeds, scheduler_running,
            listening_on=bound, usages=usages, clock=clock,
        )  # fmt: skip
    except BaseException:
        sock.close()
        raise
    async with http.serving(state.app(), sock, "admin", limits):
        logger.info(
            "admin: listening on http://%s:%d", *bound,
            extra={"action": "admin.listening"},
        )  # fmt: skip
        yield state


def _same_token(one: SecretStr | None, other: SecretStr | None) -> bool:
    if one is None or other is None:
        return one is other
    return hmac.compare_digest(one.get_secret_value().encode(), other.get_secret_value().encode())
