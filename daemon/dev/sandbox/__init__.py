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
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from daemon.dev.sandbox import app as routes
from daemon.dev.sandbox import (
    bodies,
    calls,
    clock,
    contacts,
    custom_fields,
    errors,
    faults,
    gateway,
    rate_limit,
    state,
    v1_records,
)
from daemon.dev.sandbox import seed as seeding
from daemon.dev.sandbox.webhooks import faults as webhook_faults
from daemon.dev.sandbox.webhooks import policy as webhook_policy
from daemon.dev.sandbox.webhooks import registry as webhook_registry
from daemon.dev.sandbox.webhooks import routes as webhook_routes
from daemon.dev.sandbox.webhooks import sender as webhook_sender

__all__ = ["DEFAULT_TOKEN", "Sandbox", "run_standalone"]

DEFAULT_TOKEN = "5a1db0x00000000000000000000000000000demo"


@contextlib.contextmanager
def _refusals_as_value_errors() -> Iterator[None]:
    """Helpers are Python calls: a rule the API would answer 400 to is a ValueError here."""
    try:
        yield
    except errors.ApiError as exc:
        # v1 webhooks answer `errors` keyed by field, everything else one `error` text.
        raise ValueError(str(exc.body.get("error") or exc.body.get("errors"))) from exc


class Sandbox:
    """The fake account, its ASGI app (`.app`) and the test controls around it."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        seed: int | None = None,
        limits: rate_limit.Limits | None = None,
        now: Callable[[], datetime] = clock.utc_now,
        company_id: int | None = None,
        webhook_time_scale: float = 1.0,
        webhook_timings: webhook_policy.Timings | None = None,
    ) -> None:
        """`webhook_time_scale` multiplies Pipedrive's webhook delays (retries after 3/30/150 s,
        10 s timeout, 30 min ban, deletion after 3 days); `webhook_timings` sets each."""
        self._token = token
        self.clock = clock.SandboxClock(now)
        self.store = state.Store(self.clock)
        if company_id is not None:  # another Pipedrive account than the default sandbox's
            self.store.company_id = company_id
        if seed is None:
            seeding.seed_minimum(self.store, "Sandbox Owner", "owner@sandbox.example")
        else:
            seeding.seed_demo(self.store, seed)
        self.faults = faults.Faults()
        self.limiter = rate_limit.RateLimiter(limits)
        self._log = calls.CallLog()
        self.webhook_registry = webhook_registry.Registry(self.store)
        self.webhooks_faults = webhook_faults.DeliveryFaults()
        timings = webhook_timings or webhook_policy.Timings().scaled(webhook_time_scale)
        self.webhook_sender = webhook_sender.Sender(
            self.webhook_registry, timings, self.webhooks_faults
        )
        self.webhook_registry.listener = self.webhook_sender.on_change
        self.routes = routes.build_routes(self.store, webhook_routes.table(self.webhook_registry))
        self.app: ASGIApp = gateway.Gateway(
            routes.build_app(self.routes),
            self.routes,
            lambda: self._token,
            self.limiter,
            self.faults,
            self._log,
        )

    def close(self) -> None:
        """Stop the webhook sender's thread (if a webhook ever started it)."""
        self.webhook_sender.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

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

    # -- the sandbox clock ------------------------------------------------------------------

    @property
    def now(self) -> datetime:
        """The sandbox's current time (what update_time would be stamped with)."""
        return self.clock()

    def set_time(self, moment: datetime | str) -> datetime:
        """Freeze the sandbox clock at `moment` (aware datetime or RFC 3339): every write then
        gets this update_time until the clock moves, so two edits can share one second."""
        if isinstance(moment, str):
            parsed = clock.parse_timestamp(moment)
            if parsed is None:
                raise ValueError(f"not a timestamp: {moment!r}")
            moment = parsed
        self.clock.set(moment)
        return self.clock()

    def advance_time(self, seconds: float) -> datetime:
        """Move the (then frozen) sandbox clock forward; returns the new now."""
        return self.clock.advance(seconds)

    def release_time(self) -> None:
        """Back to the clock the sandbox was built with."""
        self.clock.release()

    def hide(self, kind: str, record_id: int | str, seconds: float) -> datetime:
        """Make a record visible late: neither listed nor served by id until its update_time +
        `seconds` on the sandbox clock (an out-of-order commit). kind: deal, activity, person,
        organization, note, lead. Returns the moment it becomes visible."""
        return self.store.hide(kind, record_id, seconds)

    def _late(self, kind: str, record_id: int | str, visible_after: float | None) -> None:
        if visible_after is not None:
            self.store.hide(kind, record_id, visible_after)

    # -- data helpers (Python, not HTTP) -----------------------------------------------------
    # Fields are checked as the API checks a body (a refusal is a ValueError); `add_time` and
    # `update_time` (datetime or timestamp string) backdate; `visible_after=N` hides the
    # written record for N seconds past its update_time (see `hide`).

    def add_deal(
        self, title: str, *, visible_after: float | None = None, **fields: Any
    ) -> dict[str, Any]:
        """A deal as if added in the UI; `add_time`/`update_time` may be given (backdating)."""
        checked, add_time, update_time = state.helper_fields(
            {"title": title, **fields}, bodies.DEAL_FIELDS
        )
        with _refusals_as_value_errors():
            deal = self.store.create_deal(checked, "ManuallyCreated", add_time, update_time)
        self._late("deal", deal["id"], visible_after)
        return self.deal(deal["id"])

    def update_deal(
        self, deal_id: int, *, visible_after: float | None = None, **fields: Any
    ) -> dict[str, Any]:
        """PATCH semantics (stage_change_time, won/lost/close times, reopen); `update_time`
        stands in for now."""
        checked, _, update_time = state.helper_fields(fields, bodies.DEAL_FIELDS)
        with _refusals_as_value_errors():
            self.store.update_deal(deal_id, checked, update_time)
        self._late("deal", deal_id, visible_after)
        return self.deal(deal_id)

    def archive_deal(self, deal_id: int) -> dict[str, Any]:
        self.store.archive_deal(deal_id)
        return self.deal(deal_id)

    def delete_deal(self, deal_id: int, at: datetime | None = None) -> dict[str, Any]:
        """Soft delete at `at` (default now); listed with status=deleted for 30 days."""
        with _refusals_as_value_errors():
            self.store.delete_deal(deal_id, at)
        return self.deal(deal_id)

    def add_activity(self, *, visible_after: float | None = None, **fields: Any) -> dict[str, Any]:
        checked, add_time, update_time = state.helper_fields(fields, bodies.ACTIVITY_FIELDS)
        with _refusals_as_value_errors():
            activity = self.store.create_activity(checked, add_time, update_time)
        self._late("activity", activity["id"], visible_after)
        return self.activity(activity["id"])

    def update_activity(
        self, activity_id: int, *, visible_after: float | None = None, **fields: Any
    ) -> dict[str, Any]:
        """PATCH semantics: `done=True` stamps marked_as_done_time, `done=False` clears it."""
        checked, _, update_time = state.helper_fields(fields, bodies.ACTIVITY_FIELDS)
        with _refusals_as_value_errors():
            self.store.update_activity(activity_id, checked, update_time)
        self._late("activity", activity_id, visible_after)
        return self.activity(activity_id)

    def delete_activity(self, activity_id: int, at: datetime | None = None) -> dict[str, Any]:
        """As `DELETE /api/v2/activities/{id}`: marked deleted (then 404 on GET, unlisted),
        a delete webhook sent; `at` (default now) is its update_time."""
        with _refusals_as_value_errors():
            self.store.delete_record("activity", activity_id, at)
        return self.activity(activity_id)

    def delete_person(self, person_id: int, at: datetime | None = None) -> dict[str, Any]:
        """As `DELETE /api/v2/persons/{id}` (see `delete_activity`)."""
        with _refusals_as_value_errors():
            self.store.delete_record("person", person_id, at)
        return self.person(person_id)

    def delete_organization(self, org_id: int, at: datetime | None = None) -> dict[str, Any]:
        """As `DELETE /api/v2/organizations/{id}` (see `delete_activity`)."""
        with _refusals_as_value_errors():
            self.store.delete_record("organization", org_id, at)
        return self.organization(org_id)

    def delete_note(self, note_id: int, at: datetime | None = None) -> dict[str, Any]:
        """As `DELETE /v1/notes/{id}`: `active_flag` false (then 404 on GET, unlisted), a
        delete webhook sent."""
        with _refusals_as_value_errors():
            self.store.delete_note(note_id, at)
        return self.note(note_id)

    def delete_lead(self, lead_id: str, at: datetime | None = None) -> dict[str, Any]:
        """As `DELETE /v1/leads/{id}`: gone (then 404 on GET, unlisted), a delete webhook
        sent; returns the lead as it was."""
        with _refusals_as_value_errors():
            return copy.deepcopy(self.store.delete_lead(lead_id, at))

    @staticmethod
    def _contact_shorthands(fields: dict[str, Any]) -> dict[str, Any]:
        """`email=`/`phone=` as one primary work entry, as the old helper took them."""
        for short, key in (("email", "emails"), ("phone", "phones")):
            value = fields.pop(short, None)
            if value is not None:
                fields[key] = [{"value": value, "primary": True, "label": "work"}]
        return fields

    def add_person(
        self, name: str, *, visible_after: float | None = None, **fields: Any
    ) -> dict[str, Any]:
        checked, add_time, update_time = state.helper_fields(
            self._contact_shorthands({"name": name, **fields}), bodies.PERSON_FIELDS
        )
        if add_time is not None:
            checked["add_time"] = add_time
        with _refusals_as_value_errors():
            person = contacts.create_person(self.store, checked, update_time)
        self._late("person", person["id"], visible_after)
        return self.person(person["id"])

    def update_person(
        self, person_id: int, *, visible_after: float | None = None, **fields: Any
    ) -> dict[str, Any]:
        checked, _, update_time = state.helper_fields(
            self._contact_shorthands(fields), bodies.PERSON_UPDATE_FIELDS
        )
        with _refusals_as_value_errors():
            contacts.update_person(self.store, person_id, checked, update_time)
        self._late("person", person_id, visible_after)
        return self.person(person_id)

    def add_organization(
        self, name: str, *, visible_after: float | None = None, **fields: Any
    ) -> dict[str, Any]:
        checked, add_time, update_time = state.helper_fields(
            {"name": name, **fields}, bodies.ORGANIZATION_FIELDS
        )
        if add_time is not None:
            checked["add_time"] = add_time
        with _refusals_as_value_errors():
            org = contacts.create_organization(self.store, checked, update_time)
        self._late("organization", org["id"], visible_after)
        return self.organization(org["id"])

    def update_organization(
        self, org_id: int, *, visible_after: float | None = None, **fields: Any
    ) -> dict[str, Any]:
        checked, _, update_time = state.helper_fields(fields, bodies.ORGANIZATION_UPDATE_FIELDS)
        with _refusals_as_value_errors():
            contacts.update_organization(self.store, org_id, checked, update_time)
        self._late("organization", org_id, visible_after)
        return self.organization(org_id)

    def add_note(
        self, content: str, *, visible_after: float | None = None, **fields: Any
    ) -> dict[str, Any]:
        """A v1 note; needs one of deal_id, person_id, org_id, lead_id (like the API)."""
        checked, add_time, update_time = state.helper_fields(
            {"content": content, **fields}, bodies.NOTE_FIELDS
        )
        if add_time is not None:
            checked["add_time"] = add_time
        with _refusals_as_value_errors():
            note = v1_records.add_note(self.store, checked, update_time)
        self._late("note", note["id"], visible_after)
        return self.note(note["id"])

    def add_lead(
        self, title: str, *, visible_after: float | None = None, **fields: Any
    ) -> dict[str, Any]:
        """A v1 lead (id: a UUID string); needs person_id or organization_id."""
        checked, add_time, update_time = state.helper_fields(
            {"title": title, **fields}, bodies.LEAD_FIELDS
        )
        with _refusals_as_value_errors():
            lead = v1_records.add_lead(
                self.store, checked, "ManuallyCreated", add_time, update_time
            )
        self._late("lead", lead["id"], visible_after)
        return self.lead(lead["id"])

    def define_field(
        self,
        entity: str,
        name: str,
        field_type: str,
        options: Sequence[str] = (),
        field_code: str | None = None,
    ) -> dict[str, Any]:
        """A custom field (entity: deal, person, organization, activity) with a 40-hex
        `field_code` (generated unless given); enum/set fields get option ids (the result's
        `options`). Values go in `custom_fields={code: value}` of the add/update helpers or the
        API bodies: numbers, {"value", "currency"} for monetary, an option id for enum, a list
        of option ids for set, strings for text types."""
        made = custom_fields.define(self.store, entity, name, field_type, options, field_code)
        return copy.deepcopy(made)

    def set_custom_field(
        self, entity: str, record_id: int, field_code: str, value: Any
    ) -> dict[str, Any]:
        """One custom field value on a deal/person/organization, as a PATCH would set it."""
        updates: dict[str, Callable[..., dict[str, Any]]] = {
            "deal": self.update_deal,
            "person": self.update_person,
            "organization": self.update_organization,
        }
        if entity not in updates:
            raise ValueError(f"{entity} records carry no custom fields")
        return updates[entity](record_id, custom_fields={field_code: value})

    def add_user(self, name: str, email: str) -> dict[str, Any]:
        user = self.store.add_user(name, email)
        return self._copy(self.store.users, user["id"])

    def add_pipeline(self, name: str, stage_names: list[str]) -> dict[str, Any]:
        pipeline = self.store.add_pipeline(name, stage_names)
        return self._copy(self.store.pipelines, pipeline["id"])

    # -- Pipedrive's webhooks ----------------------------------------------------------------

    def add_webhook(self, subscription_url: str, **body: Any) -> dict[str, Any]:
        """A webhook as `POST /v1/webhooks` makes it (defaults: `*.*`, a name); a body the API
        would refuse is a ValueError."""
        body = {"event_action": "*", "event_object": "*", "name": "sandbox webhook", **body}
        with _refusals_as_value_errors():
            return self.webhook_registry.add({"subscription_url": subscription_url, **body})

    @property
    def webhooks(self) -> list[dict[str, Any]]:
        """Every webhook ever added, removed ones too (`remove_time`, `remove_reason` set);
        `GET /v1/webhooks` lists only those not removed."""
        return self.webhook_registry.everything()

    @property
    def webhook_deliveries(self) -> list[webhook_sender.Delivery]:
        """Every delivery attempt so far, sent or dropped, in the order they happened."""
        return self.webhook_sender.deliveries

    @property
    def webhook_timings(self) -> webhook_policy.Timings:
        return self.webhook_sender.timings

    @webhook_timings.setter
    def webhook_timings(self, timings: webhook_policy.Timings) -> None:
        """New delays for attempts from now on (retries already waiting keep theirs)."""
        self.webhook_sender.timings = timings

    def deactivate_webhook(self, webhook_id: int) -> None:
        """Pipedrive turns the webhook off: still listed, `is_active` 0, nothing sent."""
        with _refusals_as_value_errors():
            self.webhook_registry.deactivate(webhook_id)

    def delete_webhook(self, webhook_id: int, reason: str = "deleted by Pipedrive") -> None:
        """Pipedrive removes the webhook: gone from the list, nothing more sent."""
        with _refusals_as_value_errors():
            self.webhook_registry.remove(webhook_id, reason)

    # -- snapshots -------------------------------------------------------------------------------

    def _copy(self, table: Mapping[int, dict[str, Any]], record_id: int) -> dict[str, Any]:
        with self.store.lock:
            return copy.deepcopy(table[record_id])

    def _all(self, table: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
        with self.store.lock:
            return [copy.deepcopy(table[key]) for key in sorted(table)]

    def deal(self, deal_id: int) -> dict[str, Any]:
        return self._copy(self.store.deals, deal_id)

    def activity(self, activity_id: int) -> dict[str, Any]:
        return self._copy(self.store.activities, activity_id)

    def person(self, person_id: int) -> dict[str, Any]:
        return self._copy(self.store.persons, person_id)

    def organization(self, org_id: int) -> dict[str, Any]:
        return self._copy(self.store.organizations, org_id)

    def note(self, note_id: int) -> dict[str, Any]:
        with self.store.lock:
            return copy.deepcopy(v1_records.render_note(self.store, self.store.notes[note_id]))

    def lead(self, lead_id: str) -> dict[str, Any]:
        with self.store.lock:
            return copy.deepcopy(self.store.leads[lead_id])

    def fields(self, entity: str) -> list[dict[str, Any]]:
        """Built-in and custom field definitions, as `GET /api/v2/{entity}Fields` lists them."""
        custom_fields.check_entity(entity)
        with self.store.lock:
            return copy.deepcopy(custom_fields.definitions(self.store, entity))

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

    @property
    def notes(self) -> list[dict[str, Any]]:
        with self.store.lock:
            ids = sorted(self.store.notes)
        return [self.note(note_id) for note_id in ids]

    @property
    def leads(self) -> list[dict[str, Any]]:
        with self.store.lock:
            return [copy.deepcopy(self.store.leads[key]) for key in sorted(self.store.leads)]


def run_standalone(port: int, seed: int) -> None:
    """Serve a seeded sandbox on 127.0.0.1:`port` (0 = any free port) until Ctrl-C."""
    sandbox = Sandbox(token=DEFAULT_TOKEN, seed=seed)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen()  # before the URL is printed: a client that reads it may connect at once
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
        sandbox.close()
    print(f"Sandbox stopped after {time.monotonic() - started:.0f} s.")
