"""The Pipedrive REST API client: auth by header, per-account budget, retries, clear errors.

The token travels only in the `x-api-token` header, never in a URL: httpx puts URLs in log
lines and exception messages, headers it does not.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import httpx
from pydantic import SecretStr
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    stop_after_attempt,
    wait_exponential_jitter,
)

from daemon import clock as clock_module
from daemon import times
from daemon.errors import (
    PipedriveAuthError,
    PipedriveBadRequest,
    PipedriveError,
    PipedriveForbidden,
    PipedriveNotFound,
    PipedriveRateLimited,
    PipedriveUnavailable,
)
from daemon.pipedrive import account_usage, costs, rate_limit
from daemon.pipedrive.rate_limit import AccountRateLimiter

logger = logging.getLogger(__name__)

MAX_PAGE_SIZE = 500  # Pipedrive's `limit` maximum for list endpoints
# A call that waited longer than this for the account's rate limiter counts as a wait.
RATE_LIMIT_WAIT_S = 0.05
MAX_PAGES = 1000  # a listing longer than this is cut: a cursor that never ends costs bounded
DEFAULT_MAX_WAIT_IN_CALL_S = 120.0  # one poll cycle: a longer Retry-After fails the call
MAX_IDS_PER_CALL = 100  # Pipedrive's maximum for the `ids` filter
DEFAULT_API_TIMEOUT_S = 30.0
DEFAULT_RATE_LIMIT_WAIT_S = 2.0
HEADERS = {"accept": "application/json", "user-agent": "pipedrive-triggers"}
# The shared client's pool: every account's calls are already paced by its own rate limiter;
# the bound only keeps a flood of slow answers from opening sockets without end.
SHARED_LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=64)
IDEMPOTENT_METHODS = frozenset(
    {"GET", "HEAD"}
)  # Pipedrive's burst window, when it names no Retry-After

Item = dict[str, Any]


class TokenAuth(httpx.Auth):
    """Adds `x-api-token`, read when each request is sent so a rotated token file is picked up."""

    def __init__(self, token: Callable[[], SecretStr]) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        try:
            token = self._token()
        except (OSError, ValueError) as error:
            # The token file was rotated into something unusable (gone, or more than a line):
            # the call fails as refused credentials would, saying why, not with a traceback.
            reason = (
                f"{error.strerror} (got '{error.filename}')"
                if isinstance(error, OSError)
                else str(error)
            )
            raise PipedriveAuthError(f"the API token cannot be used: {reason}") from None
        request.headers["x-api-token"] = token.get_secret_value()
        yield request


@dataclass(frozen=True)
class RetryOptions:
    """How hard one call tries before its error reaches the caller."""

    attempts: int = 4
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0


DEFAULT_RETRY = RetryOptions()


class Page(list[Item]):
    """One page of a listing, with the time Pipedrive served it: its reply's `Date` header,
    None when absent or unreadable (the feed's watermark never passes it)."""

    def __init__(self, items: Iterable[Item], served_at: datetime | None = None) -> None:
        super().__init__(items)
        self.served_at = served_at


@dataclass(frozen=True)
class _Reply:
    body: dict[str, Any]
    served_at: datetime | None


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase or "no message"
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return response.reason_phrase or "no message"


def _raise_for(response: httpx.Response, where: str, now: datetime) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    message = f"{where}: Pipedrive answered {status}: {_error_message(response)}"
    path = response.request.url.path
    if status == 400:
        raise PipedriveBadRequest(message, status=status, path=path)
    if status == 401:
        raise PipedriveAuthError(
            f"{where}: Pipedrive refused the API token (401 {_error_message(response)}); "
            "check the account's api_token",
            status=status,
            path=path,
        )
    if status == 403:
        raise PipedriveForbidden(message, status=status, path=path)
    if status == 404:
        raise PipedriveNotFound(message, status=status, path=path)
    if status == 429:
        retry_after = times.parse_retry_after(response.headers.get("retry-after"), now)
        if retry_after is None:
            retry_after = rate_limit.reset_seconds(response.headers.get("x-ratelimit-reset"))
        raise PipedriveRateLimited(
            message, retry_after=retry_after or DEFAULT_RATE_LIMIT_WAIT_S, path=path
        )
    if status >= 500:
        raise PipedriveUnavailable(message, status=status, path=path)
    raise PipedriveError(message, status=status, path=path)


def _header_int(response: httpx.Response, name: str) -> int | None:
    value = response.headers.get(name, "").strip()
    return int(value) if value.isascii() and value.isdigit() else None


def _pause_after(
    response: httpx.Response, method: str, path: str, message: str, now: datetime
) -> rate_limit.Pause:
    """How long this 429 holds the account (see `rate_limit.pause_after_429`)."""
    return rate_limit.pause_after_429(
        retry_after=times.parse_retry_after(response.headers.get("retry-after"), now),
        window_reset=rate_limit.reset_seconds(response.headers.get("x-ratelimit-reset")),
        daily_remaining=_header_int(response, "x-daily-ratelimit-token-remaining"),
        message=message,
        call_cost=costs.path_cost(method, path),
        to_daily_reset=seconds_to_daily_reset(now),
    )


def _envelope(response: httpx.Response, where: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise PipedriveUnavailable(
            f"{where}: Pipedrive answered {response.status_code} with a body that is not JSON",
            status=response.status_code,
            path=response.request.url.path,
        ) from None
    if not isinstance(body, dict) or body.get("success") is not True or "data" not in body:
        raise PipedriveUnavailable(
            f"{where}: Pipedrive answered {response.status_code} with an unexpected body "
            f"(no success/data envelope)",
            status=response.status_code,
            path=response.request.url.path,
        )
    return body


def _items(body: Mapping[str, Any], where: str) -> list[Item]:
    # Items are checked one by one by their reader: one broken item must not fail the page.
    data = body["data"] if body["data"] is not None else []
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise PipedriveUnavailable(f"{where}: Pipedrive listed something other than objects")
    return data


def _next_start(body: Mapping[str, Any]) -> int | None:
    """v1 offset paging: `additional_data.pagination.next_start` while more items exist."""
    additional = body.get("additional_data")
    pagination = additional.get("pagination") if isinstance(additional, dict) else None
    if not isinstance(pagination, dict) or pagination.get("more_items_in_collection") is not True:
        return None
    start = pagination.get("next_start")
    return start if isinstance(start, int) and not isinstance(start, bool) else None


def seconds_to_daily_reset(now: datetime) -> float:
    """Pipedrive's daily budget resets at midnight (UTC for `x-daily-requests-left`)."""
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - now).total_seconds()


def _next_cursor(body: Mapping[str, Any]) -> str | None:
    additional = body.get("additional_data")
    cursor = additional.get("next_cursor") if isinstance(additional, dict) else None
    return cursor if isinstance(cursor, str) and cursor else None


class CallRecorder(Protocol):
    """Told of every answered call (`metrics.Metrics` is one): named here, so this layer does
    not import the metrics above it."""

    def api_call(self, account: str, method: str, path: str, status: str) -> None: ...


class _Unrecorded:
    def api_call(self, account: str, method: str, path: str, status: str) -> None:
        """Nothing records calls (tests, one-off CLI actions)."""


UNRECORDED: CallRecorder = _Unrecorded()


class PipedriveClient:
    """One account's view of the API. Every call spends from the account's rate limiter."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        account: str,
        limiter: AccountRateLimiter,
        api_root: str = "",
        token: Callable[[], SecretStr] | None = None,
        retry: RetryOptions = DEFAULT_RETRY,
        max_wait_in_call_s: float = DEFAULT_MAX_WAIT_IN_CALL_S,
        metrics: CallRecorder = UNRECORDED,
        usage: account_usage.Usage | None = None,
        clock: clock_module.Clock = clock_module.SYSTEM,
    ) -> None:
        self.account = account
        # On a shared client (`shared_http_client`), each request names its account's root
        # and token; on a one-account client (`http_client`), the client's own are used.
        self._api_root = api_root
        self._auth = TokenAuth(token) if token is not None else httpx.USE_CLIENT_DEFAULT
        self._clock = clock
        self._metrics = metrics
        self._usage = usage
        self._max_wait_in_call_s = max_wait_in_call_s
        self._http = http
        self._limiter = limiter
        self._retry = retry
        self._backoff = wait_exponential_jitter(
            multiplier=retry.backoff_s, max=retry.max_backoff_s, jitter=retry.backoff_s
        )
        self._company_id: int | None = None
        self._company_lock = asyncio.Lock()

    @staticmethod
    def http_client(
        base_url: str, token: Callable[[], SecretStr], timeout_s: float = DEFAULT_API_TIMEOUT_S
    ) -> httpx.AsyncClient:
        """A client for one account (tests, tools): its root and token are the client's."""
        return httpx.AsyncClient(
            base_url=base_url, auth=TokenAuth(token), timeout=timeout_s, headers=HEADERS
        )

    @staticmethod
    def shared_http_client(timeout_s: float = DEFAULT_API_TIMEOUT_S) -> httpx.AsyncClient:
        """One client for every account: one connection pool and one TLS context (certifi's
        store is about a megabyte each), not one per account. Each `PipedriveClient` on it
        passes `api_root` and `token`, so its requests carry its own root and token."""
        return httpx.AsyncClient(timeout=timeout_s, headers=HEADERS, limits=SHARED_LIMITS)

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, PipedriveRateLimited):
            return error.retry_after
        return float(self._backoff(state))

    async def _send_once(
        self, method: str, path: str, params: Mapping[str, Any] | None, body: Any
    ) -> _Reply:
        where = f"account {self.account!r}: {method} {path}"
        asked, after_429 = self._clock.monotonic(), self._limiter.paused
        try:
            # A pause longer than a poll cycle fails the call (and so the cycle) at once,
            # saying until when and why, instead of holding the feed for hours.
            await self._limiter.acquire(self._max_wait_in_call_s)
        except PipedriveRateLimited as paused:
            raise PipedriveRateLimited(
                f"{where}: {paused}", retry_after=paused.retry_after, path=path
            ) from None
        answered = "error"
        if self._usage is not None:
            # A wait for our own budget counts; one for a 429's pause was counted at the 429.
            if self._clock.monotonic() - asked > RATE_LIMIT_WAIT_S and not after_429:
                self._usage.waited()
        try:
            response = await self._http.request(
                method, self._api_root + path, params=params, json=body, auth=self._auth
            )
            answered = str(response.status_code)
        except httpx.TimeoutException:
            answered = "timeout"
            raise PipedriveUnavailable(f"{where}: Pipedrive did not answer in time") from None
        except httpx.TransportError as error:
            raise PipedriveUnavailable(
                f"{where}: cannot reach Pipedrive ({type(error).__name__})"
            ) from None
        except PipedriveAuthError as error:  # from TokenAuth: no request was sent
            raise PipedriveAuthError(f"{where}: {error}") from None
        finally:
            self._metrics.api_call(self.account, method, path, answered)
            if self._usage is not None:
                self._usage.call(method, path, answered)
        now = self._clock.now()
        self._heed_rate_headers(response, now)
        if response.status_code == 429:
            try:
                _raise_for(response, where, now)
            except PipedriveRateLimited as limited:
                pause = _pause_after(response, method, path, str(limited), now)
                until = self._limiter.pause(pause.seconds, pause.reason)
                if self._usage is not None:
                    self._usage.waited()
                raise PipedriveRateLimited(
                    f"{limited}; {rate_limit.describe_pause(until, pause.reason)}",
                    retry_after=pause.seconds,
                    path=limited.path,
                ) from None
        _raise_for(response, where, now)
        served_at = times.parse_http_date(response.headers.get("date"))
        return _Reply(_envelope(response, where), served_at)

    def _heed_rate_headers(self, response: httpx.Response, now: datetime) -> None:
        """Every answer's rate headers: Pipedrive's burst window paces the account's next
        call (see `rate_limit.burst_hold`), and its daily token budget, when it says it, is
        remembered for status and for stretching instant mode's reconciliation."""
        headers = response.headers
        self._limiter.hold(
            rate_limit.burst_hold(
                headers.get("x-ratelimit-remaining"), headers.get("x-ratelimit-reset")
            )
        )
        remaining = _header_int(response, "x-daily-ratelimit-token-remaining")
        if self._usage is not None and remaining is not None:
            limit = _header_int(response, "x-daily-ratelimit-token-limit")
            self._usage.daily_budget_seen(remaining, limit, now)

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> dict[str, Any]:
        """Send one request and return the body (see `_answer`)."""
        return (await self._answer(method, path, params=params, body=body)).body

    async def _answer(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> _Reply:
        """Send one request; 429 is retried, and so are 5xx, timeouts and garbage bodies for
        reads. A write is not repeated after those: it may have been applied, and a second
        POST would create a second deal."""
        retried: tuple[type[Exception], ...] = (PipedriveRateLimited,)
        if method.upper() in IDEMPOTENT_METHODS:
            retried += (PipedriveUnavailable,)

        def worth_retrying(state: RetryCallState) -> bool:
            error = state.outcome.exception() if state.outcome else None
            if isinstance(error, PipedriveRateLimited):
                return error.retry_after <= self._max_wait_in_call_s  # else the next cycle
            return isinstance(error, retried)

        retrying = AsyncRetrying(
            retry=worth_retrying,
            stop=stop_after_attempt(self._retry.attempts),
            wait=self._wait,
            sleep=self._clock.sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._send_once(method, path, params, body)
        raise AssertionError("unreachable: tenacity reraises the last error")

    async def pages(
        self, path: str, params: Mapping[str, Any], *, offset: bool = False
    ) -> AsyncIterator[Page]:
        """Each page of a listing, following v2 cursors (or v1 `start` offsets). A cursor or
        offset that comes back a second time, or more than `MAX_PAGES` pages, is an error:
        a listing that never ends must not spend the account's whole budget."""
        where = f"account {self.account!r}: GET {path}"
        seen: set[str | int] = set()
        following: str | int | None = None
        for _ in range(MAX_PAGES):
            page_params = dict(params)
            page_params.setdefault("limit", MAX_PAGE_SIZE)
            if following is not None:
                page_params["start" if offset else "cursor"] = following
            reply = await self._answer("GET", path, params=page_params)
            body = reply.body
            yield Page(_items(body, where), reply.served_at)
            following = _next_start(body) if offset else _next_cursor(body)
            if following is None:
                return
            if following in seen:
                raise PipedriveUnavailable(
                    f"{where}: Pipedrive repeated a page cursor ({len(seen) + 1} pages in); "
                    "the listing was stopped"
                )
            seen.add(following)
        raise PipedriveUnavailable(f"{where}: the listing did not end after {MAX_PAGES} pages")

    async def list_pages(self, path: str, params: Mapping[str, Any]) -> list[Item]:
        """Every item of a listing (lookups: short lists). A page made only of what the page
        before held means a cursor that is new each time but goes nowhere: stopped, as the
        poller stops its listings, before it spends the account's budget."""
        collected: list[Item] = []
        previous: set[tuple[Any, str]] = set()
        async for page in self.pages(path, params):
            versions = {
                (item.get("id"), json.dumps(item, sort_keys=True, default=str)) for item in page
            }
            previous = check_advances(versions, previous, f"account {self.account!r}: GET {path}")
            collected.extend(page)
        return collected

    # Lookups used to fill the connector's names (see daemon/pipedrive/lookups.py).

    async def list_users(self) -> list[Item]:
        body = await self.call("GET", "/v1/users")
        return _items(body, f"account {self.account!r}: GET /v1/users")

    async def list_stages(self) -> list[Item]:
        return await self.list_pages("/api/v2/stages", {})

    async def get_many(self, resource: str, ids: Sequence[int]) -> list[Item]:
        unique = sorted(set(ids))
        found: list[Item] = []
        for start in range(0, len(unique), MAX_IDS_PER_CALL):
            chunk = unique[start : start + MAX_IDS_PER_CALL]
            params: dict[str, Any] = {"ids": ",".join(map(str, chunk)), "limit": MAX_PAGE_SIZE}
            if resource == "deals":
                # Deleted deals still own activities; their titles are wanted too.
                params["status"] = "open,won,lost,deleted"
            # At most 100 ids fit one page of 500: whatever cursor comes back, one call.
            async for page in self.pages(f"/api/v2/{resource}", params):
                found.extend(page)
                break
        return found

    async def find(self, path: str, params: Mapping[str, Any] | None = None) -> Item | None:
        """One object by its path (`/api/v2/persons/7`), None when Pipedrive has none."""
        try:
            return await self.get(path, params)
        except PipedriveNotFound:
            return None

    async def company_id(self) -> int:
        """The Pipedrive company the token belongs to (`GET /v1/users/me`): part of every
        event id. Asked once per client, when the first event needs it, never per poll."""
        async with self._company_lock:
            if self._company_id is None:
                me = await self.get("/v1/users/me")
                company = me.get("company_id")
                if type(company) is not int:
                    raise PipedriveUnavailable(
                        f"account {self.account!r}: GET /v1/users/me: Pipedrive answered "
                        "without a company_id"
                    )
                self._company_id = company
            return self._company_id

    # Single objects, for the actions.

    async def get(self, path: str, params: Mapping[str, Any] | None = None) -> Item:
        body = await self.call("GET", path, params=params)
        return _object(body, f"account {self.account!r}: GET {path}")

    async def send(self, method: str, path: str, body: Mapping[str, Any]) -> Item:
        answer = await self.call(method, path, body=dict(body))
        return _object(answer, f"account {self.account!r}: {method} {path}")


def check_advances(
    versions: set[tuple[Any, str]], previous: set[tuple[Any, str]], where: str
) -> set[tuple[Any, str]]:
    """A page's (id, content) versions, all of which the previous page held, mean the listing
    goes round in circles (a broken cursor): stop it rather than spend the account's budget.
    Only one page is remembered, so a catch-up's memory stays bounded by a page. Returns
    `versions`, the next call's `previous`."""
    if versions and versions <= previous:
        raise PipedriveUnavailable(
            f"{where}: Pipedrive served the same page again; the listing was stopped"
        )
    return versions


def _object(body: Mapping[str, Any], where: str) -> Item:
    data = body["data"]
    if not isinstance(data, dict) or type(data.get("id")) is not int:
        raise PipedriveUnavailable(f"{where}: Pipedrive answered without an object with an id")
    return data
