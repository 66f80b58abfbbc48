"""Deletions polling cannot see, end to end: a real daemon process in instant mode, the
sandbox's real delete webhooks. A person (an activity, a lead) the daemon stored and then deleted in
Pipedrive reaches the consumer once as `person.deleted` (`activity.deleted`) with the state
last stored, however often the webhook comes; a forged delete costs at most one GET and fires
nothing; without instant mode, check-config refuses these triggers."""

from __future__ import annotations

import base64
import contextlib
import json
import signal
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import jsonschema

from daemon.dev.local_server import serve
from daemon.dev.receiver import WebhookReceiver
from daemon.dev.sandbox import Sandbox
from daemon.dev.sandbox.webhooks.policy import Timings
from daemon.triggers import webhook_schema
from tests import processes
from tests.acceptance.test_cli import cli, start_daemon
from tests.acceptance.test_instant import _free_port, until
from tests.conftest import API_TOKEN, SIGNING_SECRET
from tests.waiting import HANG_S

TRIGGERS = (
    "person.deleted",
    "organization.deleted",
    "activity.deleted",
    "note.deleted",
    "lead.deleted",
)


def _subscriptions(receiver: WebhookReceiver) -> str:
    return "".join(
        f'[[subscriptions]]\nname = "{name.replace(".", "-")}"\naccount = "main"\n'
        f'trigger = "{name}"\n'
        f'callback_url = "{receiver.base_url}/hooks/{name}"\n'  # type: ignore[attr-defined]
        f'secret = "{SIGNING_SECRET}"\npoll_interval = "2m"\nallow_private_targets = true\n\n'
        for name in TRIGGERS
    )


@contextlib.contextmanager
def daemon(
    tmp_path: Path, receiver: WebhookReceiver
) -> Iterator[tuple[Sandbox, processes.Child, Path, int]]:
    timings = replace(Timings().scaled(0.001), timeout_s=10.0)
    with Sandbox(token=API_TOKEN, webhook_timings=timings) as sandbox, serve(sandbox.app) as api:
        port = _free_port()
        config = tmp_path / "config.toml"
        config.write_text(
            f'[database]\nurl = "sqlite:///{tmp_path / "d.db"}"\n\n'
            f'[instant]\nlisten = "127.0.0.1:{port}"\n'
            f'public_url = "http://127.0.0.1:{port}/pipedrive"\nreconcile_interval = "10m"\n\n'
            f'[[accounts]]\nname = "main"\napi_token = "{API_TOKEN}"\n'
            f'base_url = "{api.base_url}"\n\n' + _subscriptions(receiver)
        )
        log = tmp_path / "daemon.log"
        child = start_daemon(config, log)
        try:
            until(lambda: any(w["is_active"] for w in sandbox.webhooks), HANG_S, "no webhook")
            until(lambda: sandbox.calls_to("GET", "/api/v2/persons") >= 1, HANG_S, "no listing")
            yield sandbox, child, log, port
        finally:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
                child.wait(timeout=HANG_S)


def stored(tmp_path: Path, object_type: str, item_id: int, holding: str = "") -> bool:
    """Whether the daemon keeps a state of the item (a read after its nudge stored it),
    one whose snapshot holds `holding`."""
    with contextlib.closing(sqlite3.connect(tmp_path / "d.db", timeout=5)) as db:
        row = db.execute(
            "SELECT snapshot FROM item_states WHERE object_type = ? AND item_id = ?",
            (object_type, str(item_id)),
        ).fetchone()
    return row is not None and holding in row[0]


def bodies(receiver: WebhookReceiver, kind: str) -> list[dict[str, Any]]:
    return [b for d in list(receiver.received) if (b := d.json())["type"] == kind]


def forge_delete(sandbox: Sandbox, port: int, entity: str, entity_id: int) -> httpx.Response:
    """A delete posted straight to the ingress with the webhook's real credentials."""
    [hook] = [w for w in sandbox.webhooks if w["is_active"]]
    secret = f"{hook['http_auth_user']}:{hook['http_auth_password']}".encode()
    body = {
        "meta": {
            "action": "delete",
            "entity": entity,
            "entity_id": str(entity_id),
            "id": str(uuid.uuid4()),
            "version": "2.0",
        },
        "data": None,
        "previous": {"id": entity_id, "name": "forged"},
    }
    return httpx.post(
        f"http://127.0.0.1:{port}/pipedrive/main",
        content=json.dumps(body),
        headers={"authorization": "Basic " + base64.b64encode(secret).decode()},
    )


def test_a_deleted_person_and_activity_reach_the_consumer_once_with_the_stored_state(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    with daemon(tmp_path, receiver) as (sandbox, _, log, port):
        ada = sandbox.add_person("Ada Lovelace", email="ada@example.com")
        bob = sandbox.add_person("Bob Babbage")
        call = sandbox.add_activity(subject="Call Ada", person_id=ada["id"])
        for kind, ident in (("persons", ada["id"]), ("persons", bob["id"])):
            until(lambda k=kind, i=ident: stored(tmp_path, k, i), HANG_S, f"{kind} {ident}")
        until(lambda: stored(tmp_path, "activities", call["id"]), HANG_S, "activity not stored")
        lead = sandbox.add_lead("Ada's lead", person_id=ada["id"])
        until(lambda: stored(tmp_path, "leads", lead["id"]), HANG_S, "lead not stored")
        sandbox.update_person(ada["id"], name="Ada King")  # the state last stored: this one
        until(lambda: stored(tmp_path, "persons", ada["id"], "Ada King"), HANG_S, "not read")

        # Pipedrive sends the delete twice (the same meta.id), as it may.
        sandbox.webhooks_faults.add(duplicate=True)
        # Reads so far (a nudge's read by id, a payload's lookup): the confirmations add one.
        asked = {
            path: sandbox.calls_to("GET", path)
            for path in (f"/api/v2/persons/{ada['id']}", f"/api/v2/activities/{call['id']}")
        }
        sandbox.delete_person(ada["id"])
        until(lambda: bodies(receiver, "person.deleted"), HANG_S, "person.deleted not delivered")
        sandbox.delete_activity(call["id"])
        until(lambda: bodies(receiver, "activity.deleted"), HANG_S, "activity.deleted missing")
        sandbox.delete_lead(lead["id"])  # v1: its GET answers 404 once it is gone
        until(lambda: bodies(receiver, "lead.deleted"), HANG_S, "lead.deleted missing")

        # A late copy under a new event id, and a forged delete of an id never seen: no call
        # for either (the tombstone; nothing stored), nothing fired.
        assert forge_delete(sandbox, port, "person", ada["id"]).status_code == 200
        assert forge_delete(sandbox, port, "person", 987654).status_code == 200
        # A forged delete of a person that exists: one GET, nothing fired.
        bob_asked = sandbox.calls_to("GET", f"/api/v2/persons/{bob['id']}")
        assert forge_delete(sandbox, port, "person", bob["id"]).status_code == 200
        until(
            lambda: sandbox.calls_to("GET", f"/api/v2/persons/{bob['id']}") == bob_asked + 1,
            HANG_S,
            "the existing person was not asked about",
        )
        until(lambda: "still exists" in log.read_text(), HANG_S, "the refutation not logged")
        time.sleep(1.0)

        [person] = bodies(receiver, "person.deleted")
        assert person["data"]["id"] == ada["id"]
        assert person["data"]["name"] == "Ada King"  # stored, never the webhook's body
        assert person["data"]["emails"][0]["value"] == "ada@example.com"
        assert person["previous"] is None
        [activity] = bodies(receiver, "activity.deleted")
        assert activity["data"]["id"] == call["id"]
        assert activity["data"]["subject"] == "Call Ada"
        [gone] = bodies(receiver, "lead.deleted")
        assert (gone["data"]["id"], gone["data"]["title"]) == (lead["id"], "Ada's lead")
        assert sandbox.calls_to("GET", f"/v1/leads/{lead['id']}") == 1
        # One confirmation each; the person's second GET is the deleted activity's payload
        # asking for its person's name (gone: null), the delete having evicted it.
        for (path, before), more in zip(asked.items(), (2, 1), strict=True):
            assert sandbox.calls_to("GET", path) == before + more, path
        assert sandbox.calls_to("GET", "/api/v2/persons/987654") == 0
        for body in (person, activity, gone):
            jsonschema.validate(body, webhook_schema.webhook_schema(body["type"]))
        assert len(receiver.event_ids()) == 3
        sent = [
            d
            for d in sandbox.webhook_deliveries
            if (d.action, d.entity, d.entity_id) == ("delete", "person", str(ada["id"])) and d.ok
        ]
        assert len(sent) == 2  # the duplicate did arrive
        assert "Traceback" not in log.read_text()


def test_check_config_refuses_deletion_triggers_without_instant_mode(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "d.db"}"\n\n'
        f'[[accounts]]\nname = "main"\napi_token = "{API_TOKEN}"\n\n' + _subscriptions(receiver)
    )
    result = cli("--config", str(config), "check-config")
    assert result.returncode != 0
    assert "'person.deleted' needs instant mode" in result.stderr + result.stdout
