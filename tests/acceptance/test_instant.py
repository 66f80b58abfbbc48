"""Instant mode end to end: a real daemon process registers its webhook at the sandbox, the
sandbox calls the daemon's ingress on every change, and the change reaches the consumer in
about a second while the feed's own interval is minutes; when Pipedrive stops calling,
reconciliation finds the change anyway and the account polls at its own interval again."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from daemon.dev.local_server import serve
from daemon.dev.receiver import WebhookReceiver
from daemon.dev.sandbox import Sandbox
from daemon.dev.sandbox.webhooks.policy import Timings
from tests import processes
from tests.acceptance.test_cli import cli, start_daemon
from tests.conftest import API_TOKEN, SIGNING_SECRET, scratch_postgres
from tests.waiting import HANG_S


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def instant_daemon(
    tmp_path: Path,
    receiver: WebhookReceiver,
    *,
    reconcile: str = "10m",
    poll: str = "2m",
    repair: str = "1h",
) -> Iterator[tuple[Sandbox, processes.Child, Path]]:
    # Pipedrive's delays shortened a thousandfold (a 30 min ban lasts 1.8 s), its 10 s
    # timeout kept.
    timings = replace(Timings().scaled(0.001), timeout_s=10.0)
    with Sandbox(token=API_TOKEN, webhook_timings=timings) as sandbox, serve(sandbox.app) as api:
        port = _free_port()
        config = tmp_path / "config.toml"
        config.write_text(
            f'[database]\nurl = "sqlite:///{tmp_path / "d.db"}"\n\n'
            f'[instant]\nlisten = "127.0.0.1:{port}"\n'
            f'public_url = "http://127.0.0.1:{port}/pipedrive"\n'
            f'reconcile_interval = "{reconcile}"\nrepair_interval = "{repair}"\n\n'
            f'[[accounts]]\nname = "main"\napi_token = "{API_TOKEN}"\n'
            f'base_url = "{api.base_url}"\n\n'
            f'[[subscriptions]]\nname = "deals"\naccount = "main"\ntrigger = "deal.added"\n'
            f'callback_url = "{receiver.base_url}/hooks/deals"\n'  # type: ignore[attr-defined]
            f'secret = "{SIGNING_SECRET}"\npoll_interval = "{poll}"\n'
            "allow_private_targets = true\n"
        )
        log = tmp_path / "daemon.log"
        daemon = start_daemon(config, log)
        try:
            yield sandbox, daemon, log
        finally:
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(timeout=HANG_S)


def until(what: object, timeout_s: float, message: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not what():  # type: ignore[operator]
        assert time.monotonic() < deadline, message
        time.sleep(0.05)


def _titles(receiver: WebhookReceiver) -> list[str]:
    return [d.json()["data"]["title"] for d in list(receiver.received)]


def test_a_change_reaches_the_consumer_in_about_a_second(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    with instant_daemon(tmp_path, receiver) as (sandbox, _, log):
        until(
            lambda: any(w["is_active"] for w in sandbox.webhooks),
            HANG_S,
            "the daemon did not register its webhook",
        )
        [webhook] = sandbox.webhooks
        assert webhook["subscription_url"].endswith("/pipedrive/main")
        assert webhook["event_action"] == "*" and webhook["event_object"] == "*"
        assert webhook["version"] == "2.0" and webhook["http_auth_user"]
        until(lambda: sandbox.calls_to("GET", "/api/v2/deals") >= 1, HANG_S, "no first listing")
        time.sleep(0.5)  # the first listing has committed its watermark
        listings = sandbox.calls_to("GET", "/api/v2/deals")
        latencies = []
        for n in range(3):
            made = time.monotonic()
            sandbox.add_deal(f"instant {n}")
            until(lambda n=n: f"instant {n}" in _titles(receiver), 10, f"deal {n} not delivered")
            latencies.append(time.monotonic() - made)
        # The feed's interval is 2 minutes: only the nudges can have listed it.
        assert max(latencies) < 3.0, latencies
        assert sandbox.calls_to("GET", "/api/v2/deals") - listings <= 6
        status = cli("--config", str(tmp_path / "config.toml"), "status", "--accounts", "--json")
        assert '"webhook_state": "registered"' in status.stdout, status.stdout
        assert "Traceback" not in log.read_text()
        assert webhook["http_auth_password"] not in log.read_text()


def test_when_pipedrive_stops_calling_reconciliation_finds_the_change(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    with instant_daemon(tmp_path, receiver, reconcile="3s", poll="2s") as (sandbox, _, log):
        until(lambda: any(w["is_active"] for w in sandbox.webhooks), HANG_S, "no webhook")
        until(lambda: sandbox.calls_to("GET", "/api/v2/deals") >= 1, HANG_S, "no first listing")
        time.sleep(0.5)
        # Pipedrive drops the calls (as during a ban): the next reconciliation reads the deal.
        sandbox.webhooks_faults.add(drop=True)  # that change's call is lost
        sandbox.add_deal("dropped")
        until(lambda: "dropped" in _titles(receiver), HANG_S, "reconciliation missed it")
        until(
            lambda: "did not announce" in log.read_text(),
            HANG_S,
            "the unannounced change was not logged",
        )
        # Calls arrive again: nudges resume.
        sandbox.add_deal("announced")
        until(lambda: "announced" in _titles(receiver), HANG_S, "not delivered")
        until(lambda: "webhook calls resumed" in log.read_text(), HANG_S, "not logged")
        status = cli("--config", str(tmp_path / "config.toml"), "status", "--accounts", "--json")
        [account] = json.loads(status.stdout)
        assert account["unannounced_changes"] == 1 and account["last_unannounced_at"]
        assert _titles(receiver).count("dropped") == 1


def test_a_webhook_pipedrive_deleted_is_registered_again_and_nothing_is_lost(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    with instant_daemon(tmp_path, receiver, reconcile="5s", repair="5s") as (sandbox, _, log):
        until(lambda: any(w["is_active"] for w in sandbox.webhooks), HANG_S, "no webhook")
        [first] = sandbox.webhooks
        until(lambda: sandbox.calls_to("GET", "/api/v2/deals") >= 1, HANG_S, "no first listing")
        time.sleep(0.5)
        sandbox.delete_webhook(first["id"], "no successful delivery for 3 days")
        sandbox.add_deal("while deleted")  # no call for it: reconciliation reads it
        until(
            lambda: any(w["is_active"] and w["id"] != first["id"] for w in sandbox.webhooks),
            HANG_S,
            "the deleted webhook was not registered again",
        )
        until(lambda: "while deleted" in _titles(receiver), HANG_S, "the deal was lost")
        sandbox.add_deal("after")
        until(lambda: "after" in _titles(receiver), HANG_S, "not delivered after the repair")
        assert _titles(receiver).count("while deleted") == 1
        assert "re-created" in log.read_text() or "created webhook" in log.read_text()


def test_on_replicas_a_call_to_any_ingress_is_read_by_the_accounts_holder(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    """Pipedrive calls replica A's ingress (public_url points there); replica B holds the
    account: the nudge goes through the database and B lists the feed at once."""
    timings = replace(Timings().scaled(0.001), timeout_s=10.0)
    with (
        scratch_postgres("pdt_instant") as url,
        Sandbox(token=API_TOKEN, webhook_timings=timings) as sandbox,
        serve(sandbox.app) as api,
    ):
        ports = {"a": _free_port(), "b": _free_port()}
        configs = {}
        for name, port in ports.items():  # one file per host: each listens on its own port
            configs[name] = tmp_path / f"{name}.toml"
            configs[name].write_text(
                f'[database]\nurl = "{url}"\n\n[cluster]\nlease = "3s"\n\n'
                f'[instant]\nlisten = "127.0.0.1:{port}"\n'
                f'public_url = "http://127.0.0.1:{ports["a"]}/pipedrive"\n\n'
                f'[[accounts]]\nname = "main"\napi_token = "{API_TOKEN}"\n'
                f'base_url = "{api.base_url}"\n\n'
                f'[[subscriptions]]\nname = "deals"\naccount = "main"\ntrigger = "deal.added"\n'
                f'callback_url = "{receiver.base_url}/hooks/deals"\n'  # type: ignore[attr-defined]
                f'secret = "{SIGNING_SECRET}"\npoll_interval = "2m"\n'
                "allow_private_targets = true\n"
            )
        logs = {name: tmp_path / f"{name}.log" for name in ports}
        holder = start_daemon(configs["b"], logs["b"])
        try:
            until(lambda: "took 1 accounts" in logs["b"].read_text(), HANG_S, "B holds nothing")
            until(lambda: any(w["is_active"] for w in sandbox.webhooks), HANG_S, "no webhook")
            until(lambda: sandbox.calls_to("GET", "/api/v2/deals") >= 1, HANG_S, "no listing")
            ingress_only = start_daemon(configs["a"], logs["a"])
            try:
                until(lambda: "ingress listening" in logs["a"].read_text(), HANG_S, "A down")
                time.sleep(0.5)
                made = time.monotonic()
                listings = sandbox.calls_to("GET", "/api/v2/deals")
                deal = sandbox.add_deal("relayed")
                until(lambda: "relayed" in _titles(receiver), 10, "the relayed nudge was lost")
                assert time.monotonic() - made < 5, "read at once, not at the 2 min interval"
                # Relayed with its item: read by id (1 token), not by a listing (10).
                assert sandbox.calls_to("GET", f"/api/v2/deals/{deal['id']}") == 1
                assert sandbox.calls_to("GET", "/api/v2/deals") == listings
                assert "took" not in logs["a"].read_text(), "A never held the account"
            finally:
                ingress_only.send_signal(signal.SIGTERM)
                ingress_only.wait(timeout=HANG_S)
        finally:
            holder.send_signal(signal.SIGTERM)
            holder.wait(timeout=HANG_S)


def test_changes_made_while_the_ingress_was_down_are_delivered_after_a_restart(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    with instant_daemon(tmp_path, receiver) as (sandbox, daemon, log):
        until(lambda: any(w["is_active"] for w in sandbox.webhooks), HANG_S, "no webhook")
        until(lambda: sandbox.calls_to("GET", "/api/v2/deals") >= 1, HANG_S, "no first listing")
        time.sleep(0.5)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=HANG_S) == 0
        sandbox.add_deal("while down")  # Pipedrive's call and its retries all fail
        until(
            lambda: len([d for d in sandbox.webhook_deliveries if d.status is None]) >= 4,
            HANG_S,
            "the sandbox did not try and retry its call",
        )
        again = start_daemon(tmp_path / "config.toml", log)
        try:
            until(lambda: "while down" in _titles(receiver), HANG_S, "lost while down")
            sandbox.add_deal("after")
            until(lambda: "after" in _titles(receiver), 10, "no nudge after the restart")
            assert _titles(receiver).count("while down") == 1
        finally:
            again.send_signal(signal.SIGTERM)
            again.wait(timeout=HANG_S)


def test_a_renamed_person_shows_in_the_next_payload_though_names_are_kept_long(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    """While the webhook is healthy, related objects are cached for an hour; the person's
    own change webhook evicts it, so the next deal names the person as renamed."""
    with instant_daemon(tmp_path, receiver) as (sandbox, _, log):
        until(lambda: any(w["is_active"] for w in sandbox.webhooks), HANG_S, "no webhook")
        until(lambda: sandbox.calls_to("GET", "/api/v2/deals") >= 1, HANG_S, "no first listing")
        time.sleep(0.5)
        person = sandbox.add_person("Ada Lovelace")
        sandbox.add_deal("first", person_id=person["id"])
        until(lambda: "first" in _titles(receiver), 10, "first deal not delivered")
        sandbox.update_person(person["id"], name="Ada King")
        time.sleep(0.5)  # the person's webhook: its cached copy dropped
        sandbox.add_deal("second", person_id=person["id"])
        until(lambda: "second" in _titles(receiver), 10, "second deal not delivered")
        names = {
            body["data"]["title"]: body["data"]["person_id"]["name"]
            for body in (d.json() for d in list(receiver.received))
        }
        assert names == {"first": "Ada Lovelace", "second": "Ada King"}
        assert "Traceback" not in log.read_text()
