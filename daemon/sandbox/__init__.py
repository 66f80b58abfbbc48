"""A faithful fake of Pipedrive's REST API for tests and demos (nobody can reach the real one).

sandbox = Sandbox(token="t0k3n", seed=None)
with local_server.serve(sandbox.app) as server:
    ...  # httpx against server.base_url + "/api/v2/deals"
    assert sandbox.calls_to("GET", "/api/v2/deals") == 1
"""

from __future__ import annotations

import contextlib
import copy
import socket
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from daemon.sandbox import app as routes
from daemon.sandbox import bodies, calls, clock, errors, faults, gateway, rate_limit, state
from daemon.sandbox import seed as seeding

__all__ = ["DEFAULT_TOKEN", "Sandbox", "run_standalone"]

DEFAULT_TOKEN = "5a1db0x00000000000000000000000000000demo"


@contextlib.contextmanager
def _refusals_as_value_errors() -> Iterator[None]:
    """Helpers are Python calls: a rule the API would answer 400 to is a ValueError here."""
    try:
        yield
    except errors.ApiError as exc:
        raise ValueError(exc.body["error"]) from exc


class Sandbox:
    """The fake account, its ASGI app (`.app`) and the test controls around it."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        seed: int | None = None,
        limits: rate_limit.Limits | None = None,
        now: Callable[[], datetime] = clock.utc_now,
    ) -> None:
        self._token = token
        self.store = state.Store(now)
        if seed is None:
            seeding.seed_minimum(self.store, "Sandbox Owner", "owner@sandbox.example")
        else:
            seeding.seed_demo(self.store, seed)
        self.faults = faults.Faults()
        self.limiter = rate_limit.RateLimiter(limits)
        self._log = calls.CallLog()
        self.routes = routes.build_routes(self.store)
        self.app: ASGIApp = gateway.Gateway(
            routes.build_app(self.routes),
            self.routes,
            lambda: self._token,
            self.limiter,
            self.faults,
            self._log,
        )

    # -- auth, limits, call log ---------------------------------------------------------------

    @property
    def token(self) -> str:
        return self._token

    @token.setter
    def token(self, value: str) -> None:
        """Switch the valid token: the old one then gets 401, like a revoked token."""
        self._token = value

    def set_limits(
        self,
        burst: int = rate_limit.GROWTH_BURST_PER_WINDOW,
        window_s: float = rate_limit.BURST_WINDOW_S,
        daily_tokens: int = rate_limit.DEFAULT_DAILY_TOKENS,
    ) -> None:
        """New limits, with every token's window and daily spend reset."""
        self.limiter.reset(rate_limit.Limits(burst, window_s, daily_tokens))

    @property
    def calls(self) -> list[calls.Call]:
        return self._log.snapshot()

    def calls_to(self, method: str, path: str) -> int:
        return self._log.count(method, path)

    def clear_calls(self) -> None:
        self._log.clear()

    # -- data helpers (Python, not HTTP) -----------------------------------------------------

    def add_deal(self, title: str, **fields: Any) -> dict[str, Any]:
        """A deal as if added in the UI; `add_time`/`update_time` may be given (backdating)."""
        checked, add_time, update_time = state.helper_fields(
            {"title": title, **fields}, bodies.DEAL_FIELDS
        )
        with _refusals_as_value_errors():
            deal = self.store.create_deal(checked, "ManuallyCreated", add_time, update_time)
        return self.deal(deal["id"])

    def update_deal(self, deal_id: int, **fields: Any) -> dict[str, Any]:
        checked, _, _ = state.helper_fields(fields, bodies.DEAL_FIELDS)
        with _refusals_as_value_errors():
            self.store.update_deal(deal_id, checked)
        return self.deal(deal_id)

    def archive_deal(self, deal_id: int) -> dict[str, Any]:
        self.store.archive_deal(deal_id)
        return self.deal(deal_id)

    def delete_deal(self, deal_id: int, at: datetime | None = None) -> dict[str, Any]:
        """Soft delete at `at` (default now); listed with status=deleted for 30 days."""
        self.store.delete_deal(deal_id, at)
        return self.deal(deal_id)

    def add_activity(self, **fields: Any) -> dict[str, Any]:
        checked, add_time, update_time = state.helper_fields(fields, bodies.ACTIVITY_FIELDS)
        with _refusals_as_value_errors():
            activity = self.store.create_activity(checked, add_time, update_time)
        return self._copy(self.store.activities, activity["id"])

    def add_person(self, name: str, **fields: Any) -> dict[str, Any]:
        person = self.store.add_person(name, **fields)
        return self._copy(self.store.persons, person["id"])

    def add_organization(self, name: str, **fields: Any) -> dict[str, Any]:
        org = self.store.add_organization(name, **fields)
        return self._copy(self.store.organizations, org["id"])

    def add_user(self, name: str, email: str) -> dict[str, Any]:
        user = self.store.add_user(name, email)
        return self._copy(self.store.users, user["id"])

    def add_pipeline(self, name: str, stage_names: list[str]) -> dict[str, Any]:
        pipeline = self.store.add_pipeline(name, stage_names)
        return self._copy(self.store.pipelines, pipeline["id"])

    # -- snapshots -------------------------------------------------------------------------------

    def _copy(self, table: dict[int, dict[str, Any]], record_id: int) -> dict[str, Any]:
        with self.store.lock:
            return copy.deepcopy(table[record_id])

    def _all(self, table: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
        with self.store.lock:
            return [copy.deepcopy(table[key]) for key in sorted(table)]

    def deal(self, deal_id: int) -> dict[str, Any]:
        return self._copy(self.store.deals, deal_id)

    @property
    def me(self) -> dict[str, Any]:
        """The token owner's user record."""
        return self._copy(self.store.users, self.store.me_id)

    @property
    def deals(self) -> list[dict[str, Any]]:
        return self._all(self.store.deals)

    @property
    def activities(self) -> list[dict[str, Any]]:
        return self._all(self.store.activities)

    @property
    def users(self) -> list[dict[str, Any]]:
        return self._all(self.store.users)

    @property
    def persons(self) -> list[dict[str, Any]]:
        return self._all(self.store.persons)

    @property
    def organizations(self) -> list[dict[str, Any]]:
        return self._all(self.store.organizations)

    @property
    def pipelines(self) -> list[dict[str, Any]]:
        return self._all(self.store.pipelines)

    @property
    def stages(self) -> list[dict[str, Any]]:
        return self._all(self.store.stages)


def run_standalone(port: int, seed: int) -> None:
    """Serve a seeded sandbox on 127.0.0.1:`port` (0 = any free port) until Ctrl-C."""
    sandbox = Sandbox(token=DEFAULT_TOKEN, seed=seed)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    host, bound = sock.getsockname()[:2]
    print(f"Pipedrive sandbox: http://{host}:{bound}  (v2: /api/v2, v1: /v1)")
    print(f"API token: {sandbox.token}")
    print(f"Seed {seed}: {seeding.describe(sandbox.store)}")
    print("Ctrl-C to stop.", flush=True)
    config = uvicorn.Config(sandbox.app, log_level="warning", lifespan="off")
    started = time.monotonic()
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the Ctrl-C it handled; stopping is the expected outcome
    finally:
        sock.close()
    print(f"Sandbox stopped after {time.monotonic() - started:.0f} s.")
