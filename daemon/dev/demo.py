"""`pipedrive-triggers demo`: sandbox Pipedrive, daemon and webhook receiver in one process."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from daemon import config as config_module
from daemon.db import database
from daemon.dev.local_server import serve
from daemon.dev.receiver import Received, WebhookReceiver
from daemon.dev.sandbox import Sandbox
from daemon.service import lifecycle

POLL_INTERVAL_S = 2
DEMO_TIMEOUT_S = 90.0
SANDBOX_SEED = 7
FAIL_EVERY = 3  # the receiver refuses every third event once, to show a retry
FOREVER_PAUSE_S = 5.0  # between batches with --forever
CTRL_C_GRACE_S = 5.0  # after Ctrl-C, how long events already added may take to arrive


def _describe(item: Received) -> str:
    body = item.json()
    data = body["data"]
    if body["type"] == "activity.added":
        what = f"activity #{data['id']} {data['type']} {data['subject']!r}"
        what += f" (deal: {data['deal_title']})"
    else:
        stage = f", stage: {data['stage_name']}" if "stage_name" in data else ""
        owner = data["user_id"]["name"] if data.get("user_id") else "nobody"
        what = f"deal #{data['id']} {data['title']!r} {data['value']} {data['currency']}"
        what += f" (owner: {owner}{stage})"
        previous = body.get("previous") or {}
        if body["type"] == "deal.stage_changed" and "stage_id" in previous:
            what += f" moved from stage {previous['stage_id']} to {data['stage_id']}"
    signature = {True: "signature ok", False: "SIGNATURE BAD", None: "unsigned"}[item.verified]
    return (
        f"  -> {body['subscription']:<14} {body['type']:<18} {item.event_id}  {what}  [{signature}]"
    )


def _write_config(
    folder: Path, sandbox_url: str, token: str, receiver_url: str, secret: str
) -> Path:
    path = folder / "config.toml"
    subscriptions = [
        ("new-deals", "deal.added"),
        ("new-deals-legacy", "deal.added.legacy"),
        ("new-activities", "activity.added"),
        ("stage-changes", "deal.stage_changed"),
        ("won-deals", "deal.won"),
    ]
    text = f"""# Written by `pipedrive-triggers demo`.
[database]
url = "sqlite:///{folder / "demo.db"}"

[delivery]
timeout = 5
retry_schedule = ["1s", "2s", "4s"]
max_attempts = 5

[[accounts]]
name = "sandbox"
api_token = "{token}"
base_url = "{sandbox_url}"
"""
    for name, trigger in subscriptions:
        text += f"""
[[subscriptions]]
name = "{name}"
account = "sandbox"
trigger = "{trigger}"
callback_url = "{receiver_url}/hooks/{name}"
secret = "{secret}"
poll_interval = {POLL_INTERVAL_S}
allow_private_targets = true
"""
    path.write_text(text, encoding="utf-8")
    return path


def _move_deals(sandbox: Sandbox, deals: list[dict[str, Any]]) -> int:
    """Move the first deal one stage on and win the last one; returns the events expected."""
    first, last = sandbox.deal(deals[0]["id"]), deals[-1]
    stages = [s["id"] for s in sandbox.stages if s["pipeline_id"] == first["pipeline_id"]]
    following = stages[(stages.index(first["stage_id"]) + 1) % len(stages)]
    sandbox.update_deal(first["id"], stage_id=following)
    sandbox.update_deal(last["id"], status="won")
    return 2


def _add_items(sandbox: Sandbox, deals: int, activities: int, counter: int) -> list[dict[str, Any]]:
    """Add deals and activities linked to the seeded people, as a sales team would."""
    added_deals = []
    for index in range(deals):
        number = counter + index + 1
        added_deals.append(
            sandbox.add_deal(title=f"Demo deal {number}", value=1000 * number, currency="EUR")
        )
    for index in range(activities):
        deal = added_deals[index % len(added_deals)]
        sandbox.add_activity(
            subject=f"Call about {deal['title']}",
            type="call",
            deal_id=deal["id"],
            due_date="2026-12-01",
            due_time="10:30",
            duration="00:30",
        )
    return added_deals


async def _wait_for(receiver: WebhookReceiver, expected: int, interrupted: asyncio.Event) -> None:
    deadline = time.monotonic() + DEMO_TIMEOUT_S
    while len(receiver.event_ids()) < expected and time.monotonic() < deadline:
        await _pause(interrupted, 0.1)
        if interrupted.is_set():
            return


async def _pause(interrupted: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(interrupted.wait(), seconds)


async def run(*, forever: bool, deals: int, activities: int) -> int:
    """Show events flowing end to end; returns the exit code (0 when every event arrived)."""
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    token = secrets.token_hex(20)
    sandbox = Sandbox(token=token, seed=SANDBOX_SEED)
    receiver = WebhookReceiver(secret=secret, on_receive=lambda item: click.echo(_describe(item)))
    with contextlib.ExitStack() as servers, tempfile.TemporaryDirectory() as folder:
        api = servers.enter_context(serve(sandbox.app))
        hooks = servers.enter_context(serve(receiver))
        config_path = _write_config(Path(folder), api.base_url, token, hooks.base_url, secret)
        config = config_module.load(config_path)
        database.upgrade(config.database.url)
        click.echo(f"sandbox Pipedrive at {api.base_url}, webhook receiver at {hooks.base_url}")
        click.echo(
            f"daemon config {config_path}: 5 subscriptions, polling every {POLL_INTERVAL_S}s"
        )
        click.echo(
            f"  (polling every {POLL_INTERVAL_S}s on purpose, to show events within seconds: "
            "the daemon's warning about it below is part of the demo; a real subscription "
            f"polls every {config_module.DEFAULT_POLL_INTERVAL_S}s unless told otherwise)"
        )
        stop = asyncio.Event()
        interrupted = asyncio.Event()  # Ctrl-C ends the demo with its summary
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, interrupted.set)
        daemon = asyncio.create_task(lifecycle.run(config, stop))
        started = time.monotonic()
        await _pause(interrupted, POLL_INTERVAL_S + 0.5)  # first poll marks ("start = now")
        expected = 0
        counter = 0
        try:
            while not interrupted.is_set():
                # Refuse some deliveries once: the daemon retries them.
                refusals = max(1, deals // FAIL_EVERY)
                receiver.reply(503, times=refusals)
                click.echo(f"adding {deals} deals and {activities} activities in the sandbox")
                click.echo(
                    f"  (the receiver refuses {refusals} "
                    f"{'delivery' if refusals == 1 else 'deliveries'} with 503 on purpose, to "
                    "show a retry: the daemon's 'callback returned 503' warning is part of "
                    "the demo, and the event arrives on the next attempt)"
                )
                added = _add_items(sandbox, deals, activities, counter)
                counter += deals
                expected += 2 * deals + activities  # two deal subscriptions
                await _wait_for(receiver, expected, interrupted)
                if interrupted.is_set():
                    break
                click.echo("moving a deal to its next stage and winning another")
                expected += _move_deals(sandbox, added)
                await _wait_for(receiver, expected, interrupted)
                if not forever:
                    break
                await _pause(interrupted, FOREVER_PAUSE_S)
            if interrupted.is_set():
                await asyncio.to_thread(receiver.wait_for, expected, CTRL_C_GRACE_S)
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            stop.set()
            await daemon
        refused = len(receiver.attempts) - len(receiver.received)
        delivered = len(receiver.event_ids())
        list_calls = sum(
            1
            for call in sandbox.calls
            if call.method == "GET" and call.path in ("/api/v2/deals", "/api/v2/activities")
        )
        click.echo(
            f"summary: {delivered} of {expected} events delivered "
            f"in {time.monotonic() - started:.1f}s, "
            f"{refused} refused attempts retried, "
            f"{len(sandbox.calls)} Pipedrive API calls ({list_calls} listings)"
        )
        return 0 if delivered >= expected else 1
