"""Instant mode's ingress: where Pipedrive's webhooks arrive, on `[instant] listen`.

A call says only *that* a feed changed; the feed's poll reads *what* changed, and the slow
reconciliation poll stays the truth, so a lost, late, duplicated or forged call can never lose
or invent an event. The answer never waits for downstream work: check basic auth, read at
most `MAX_BODY_BYTES`, hand the nudge on (`on_nudge` for accounts this replica holds, the
relay through the database for the others), answer 200. Pipedrive bans a webhook after 10
failed first attempts, so nothing downstream can make it answer an error:

| call                                                      | answer | counted      |
|-----------------------------------------------------------|--------|--------------|
| wrong or missing credentials, unknown account             | 401    | unauthorized |
| not JSON, or no `meta.entity`/`meta.action`               | 400    | malformed    |
| an object no subscription watches, but payloads name      | 200    | refreshed    |
| (a person, an organization, a user, a stage)              |        |              |
| any other object no subscription of the account watches   | 200    | ignored      |
| an event id seen already (Pipedrive's retry)              | 200    | duplicate    |
| over `MAX_BODY_BYTES`: unread, every feed of it is nudged | 200    | oversize     |
| anything else                                             | 200    | accepted     |

The account is the path's last segment, URL-unquoted (the registration appends it quoted to
`public_url`), whatever comes before it: a proxy may strip or keep `public_url`'s path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from urllib.parse import unquote

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from daemon import clock as clock_module
from daemon.config import Config
from daemon.errors import IngressListenError
from daemon.instant import counts, credentials, nudges, registration, relay
from daemon.instant.nudges import Nudge
from daemon.serving import connections, http

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
# Past the limit the rest is read and dropped, so the answer reaches a client still sending;
# past this much the connection is closed instead.
MAX_DISCARD_BYTES = 8 * 1024 * 1024
# A burst of Pipedrive's calls queues in the kernel, not refused; a connection must send its
# whole request within 5 s (also the keep-alive), and past 256 the longest idle one goes.
LIMITS = connections.Limits(max_connections=256, request_timeout_s=5.0, backlog=256)
FINAL_FLUSH_S = 2.0  # at shutdown, how long the last relay and counts may take
UNAUTHORIZED_HEADERS = {"www-authenticate": 'Basic realm="pipedrive-triggers"'}

OnNudge = Callable[[Nudge], None]
Holds = Callable[[str], bool]


def watched_feeds(config: Config) -> dict[str, frozenset[str]]:
    """Per account in instant mode, the object types its subscriptions watch."""
    wanted = {a.name for a in config.accounts if registration.wanted(config, a)}
    feeds: dict[str, set[str]] = {name: set() for name in wanted}
    for subscription in config.subscriptions:
        if subscription.account in feeds:
            feeds[subscription.account].add(subscription.definition.object.name)
    return {account: frozenset(types) for account, types in feeds.items()}


def account_of(raw_path: bytes) -> str:
    """The account a request's path names: its last segment, unquoted (a trailing slash
    ignored)."""
    path = raw_path.decode("latin-1").rstrip("/")
    return unquote(path.rpartition("/")[2], errors="strict")


class Ingress:
    """The app's state: credentials, event ids seen, counts, and where nudges go."""

    def __init__(
        self,
        config: Config,
        engine: AsyncEngine,
        on_nudge: OnNudge,
        holds: Holds,
        clock: clock_module.Clock = clock_module.SYSTEM,
    ) -> None:
        self._engine = engine
        self._on_nudge = on_nudge
        self._holds = holds
        self._clock = clock
        self.credentials = credentials.Credentials(engine, clock)
        self.seen = nudges.Seen()
        self.counts = counts.NudgeCounts()
        self.tallies = counts.Tallies()
        self.outbound = relay.Outbound(engine, clock)
        self.address: tuple[str, int] | None = None  # as bound, once serving
        self.reconfigure(config)

    def reconfigure(self, config: Config) -> None:
        """A reload: which accounts take part and which object types they watch."""
        self._watched: Mapping[str, frozenset[str]] = watched_feeds(config)

    @property
    def accounts(self) -> list[str]:
        """The accounts in instant mode (whose relayed nudges this replica may drain)."""
        return list(self._watched)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self.receive, methods=["POST"])])

    def _hand_on(self, nudge: Nudge) -> None:
        if not self._holds(nudge.account):
            self.outbound.add(nudge)
            return
        try:
            self._on_nudge(nudge)
        except Exception:  # a bug downstream: still 200, or Pipedrive bans the webhook
            account = nudge.account
            logger.exception(
                "instant mode: handing on a nudge for %s/%s failed", account, nudge.object_type,
                extra={"action": "instant.nudge_failed", "account": account},
            )  # fmt: skip

    def _answer(self, outcome: str, status: int = 200) -> Response:
        self.counts.add(outcome)
        if status == 401:
            return PlainTextResponse("unauthorized\n", 401, UNAUTHORIZED_HEADERS)
        return PlainTextResponse(f"{outcome}\n", status)

    async def receive(self, request: Request) -> Response:
        try:
            account = account_of(request.scope.get("raw_path") or request.url.path.encode())
        except UnicodeDecodeError:
            return self._answer(counts.UNAUTHORIZED, 401)  # no account has such a name
        header = request.headers.get("authorization")
        if not await self.credentials.check(account, header):
            return self._answer(counts.UNAUTHORIZED, 401)
        self.tallies.add(account, self._clock.now())
        try:
            body = await _read_body(request)
        except ClientDisconnect:  # gone before it finished sending: nothing to answer
            return Response(status_code=400)
        watched = self._watched.get(account, frozenset())
        if body is None:
            # Too big to read: say every feed of the account changed (a read costs little).
            for object_type in sorted(watched):
                self._hand_on(Nudge(account, object_type, timestamp=self._clock.now()))
            return self._answer(counts.OVERSIZE)
        try:
            meta = nudges.parse(body)
        except nudges.Malformed as error:
            self.counts.add(counts.MALFORMED)
            return PlainTextResponse(f"{error}\n", 400)
        if meta.object_type in watched:
            object_type, outcome = meta.object_type, counts.ACCEPTED
        elif meta.looked_up is not None and watched:  # an account that builds payloads
            object_type, outcome = meta.looked_up, counts.REFRESHED
        else:
            return self._answer(counts.IGNORED)
        if meta.meta_id is not None and not self.seen.first_time(account, meta.meta_id):
            return self._answer(counts.DUPLICATE)
        self._hand_on(meta.nudge(account, object_type))
        return self._answer(outcome)


async def _read_body(request: Request) -> bytes | None:
    """The body, or None when it is over `MAX_BODY_BYTES` (the rest read and dropped, up to
    `MAX_DISCARD_BYTES`, so the client still gets the answer)."""
    length = request.headers.get("content-length", "")
    over = length.isdigit() and int(length) > MAX_BODY_BYTES
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_DISCARD_BYTES:
            break
        if size > MAX_BODY_BYTES:
            over = True
            chunks.clear()
        elif not over:
            chunks.append(chunk)
    return None if over else b"".join(chunks)


@contextlib.asynccontextmanager
async def serving(
    config: Config,
    engine: AsyncEngine,
    on_nudge: OnNudge,
    holds: Holds,
    clock: clock_module.Clock = clock_module.SYSTEM,
) -> AsyncIterator[Ingress | None]:
    """Serve the ingress on `[instant] listen` for the duration of the block (nothing when
    `[instant]` is not set), with its background work: relaying nudges for accounts held
    elsewhere, draining the ones relayed to this replica's accounts into `on_nudge`, and
    counting. Yields the state, for reloads (`reconfigure`) and `/metrics` (`counts`)."""
    if config.instant is None:
        yield None
        return
    try:
        sock = http.bind(config.instant.address, LIMITS.backlog)
    except OSError as error:
        raise IngressListenError(
            f"instant.listen: cannot listen on {config.instant.listen} ({error.strerror})"
        ) from None
    try:
        state = Ingress(config, engine, on_nudge, holds, clock)
        state.address = (config.instant.address[0], int(sock.getsockname()[1]))
        await state.credentials.load()
    except BaseException:
        sock.close()
        raise
    background = [
        asyncio.create_task(state.outbound.run(), name="instant-relay"),
        asyncio.create_task(
            relay.drain_loop(engine, lambda: state.accounts, holds, on_nudge, clock),
            name="instant-drain",
        ),
        asyncio.create_task(state.tallies.run(engine, clock), name="instant-counts"),
    ]
    try:
        async with http.serving(state.app(), sock, "instant", LIMITS):
            logger.info(
                "instant mode: ingress listening on http://%s:%d", *state.address,
                extra={"action": "instant.listening"},
            )  # fmt: skip
            yield state
    finally:
        await clock_module.cancel(background)
        # What was taken but not written yet: the relay's rows and the counts.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FINAL_FLUSH_S):
                await state.outbound.write()
                await state.tallies.flush(engine, clock.now())
        await state.credentials.aclose()
