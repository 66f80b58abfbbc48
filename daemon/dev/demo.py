"""`pipedrive-triggers demo`: sandbox Pipedrive, daemon and webhook receiver in one process."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import signal
import socket
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from daemon import config as config_module
from daemon import triggers
from daemon.db import database
from daemon.dev.local_server import serve
from daemon.dev.receiver import Received, WebhookReceiver
from daemon.dev.sandbox import Sandbox, calls, costs
from daemon.service import lifecycle

POLL_INTERVAL_S = 2
DEMO_TIMEOUT_S = 90.0
SANDBOX_SEED = 7
FAIL_EVERY = 3  # the receiver refuses every third event once, to show a retry
FOREVER_PAUSE_S = 5.0  # between batches with --forever
CTRL_C_GRACE_S = 5.0  # after Ctrl-C, how long events already added may take to arrive
INSTANT_READY_TIMEOUT_S = 30.0  # --instant: until the webhook is registered and feeds listed
LISTING_PATHS = {o.path: o for o in triggers.OBJECT_TYPES.values()}
WEBHOOK_PATHS = ("/v1/webhooks",)


@dataclass
class _Clock:
    """When the last batch of changes was made, so each event shows its delay after it."""

    changed_at: float = 0.0

    def delay(self, item: Received) -> str:
        return f"  ({item.received_at - self.changed_at:.1f}s after the change)"


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


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _write_config(
    folder: Path,
    sandbox_url: str,
    token: str,
    receiver_url: str,
    secret: str,
    instant_port: int | None = None,
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
"""
    if instant_port is not None:
        # The sandbox calls the daemon's ingress on every change; the feeds reconcile at the
        # default 10 min and their own interval is the default 120 s.
        text += f"""
[instant]
listen = "127.0.0.1:{instant_port}"
public_url = "http://127.0.0.1:{instant_port}/pipedrive"
"""
    text += f"""
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
allow_private_targets = true
"""
        if instant_port is None:
            text += f"poll_interval = {POLL_INTERVAL_S}\n"
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


def _spent(sandbox: Sandbox) -> int:
    """Tokens the sandbox charged the demo's token today (`x-token-cost` per call)."""
    decision = sandbox.limiter.peek(sandbox.token, time.monotonic(), datetime.now(UTC))
    return decision.daily_limit - decision.daily_remaining


def _is_listing(call: calls.Call) -> bool:
    """A feed's own listing (or its id probe), not a lookup by ids."""
    if call.path not in LISTING_PATHS:
        return False
    return "updated_since" in call.query or call.query.get("sort_by") == "id"


def tokens_line(sandbox: Sandbox, feeds: list[str], elapsed_s: float, instant: bool) -> str:
    """What the demo spent in tokens, against polling every 120 s over the same time: the
    same lookups, but one listing per feed at start and then one every 120 s in place of
    the nudged and reconciling listings and the webhook's registration."""
    spent = _spent(sandbox)
    log = [c for c in sandbox.calls if 200 <= c.status < 300]
    listings = [c for c in log if _is_listing(c)]
    listing_tokens = sum(costs.cost_of(c.method, c.path) for c in listings)
    webhook_tokens = sum(
        costs.cost_of(c.method, c.path if c.method != "DELETE" else "/v1/webhooks/{id}")
        for c in log
        if c.path.startswith(WEBHOOK_PATHS)
    )
    interval = config_module.DEFAULT_POLL_INTERVAL_S
    cycles = 1 + int(elapsed_s // interval)  # one listing per feed at start, then one per 120 s
    polling_listings = len(feeds) * cycles
    page_tokens = sum(LISTING_PATHS[path].page_cost for path in feeds)
    polling = spent - listing_tokens - webhook_tokens + page_tokens * cycles
    mode = "instant mode" if instant else f"polling every {POLL_INTERVAL_S}s"
    return (
        f"tokens: {spent} spent in {elapsed_s:.0f}s ({mode}: {len(listings)} listings, "
        f"{webhook_tokens} on the webhook's registration); polling every {interval}s would "
        f"have spent about {polling} over the same {elapsed_s:.0f}s ({polling_listings} "
        f"listings), its events arriving {interval / 2:.0f}s after the change on average"
    )


async def _instant_ready(sandbox: Sandbox, feeds: list[str], interrupted: asyncio.Event) -> bool:
    """The daemon has registered its webhook at the sandbox and listed every feed once."""
    deadline = time.monotonic() + INSTANT_READY_TIMEOUT_S
    while time.monotonic() < deadline and not interrupted.is_set():
        registered = any(w["is_active"] for w in sandbox.webhooks)
        if registered and all(sandbox.calls_to("GET", path) >= 1 for path in feeds):
            await _pause(interrupted, 0.5)  # the first listings commit their watermarks
            return True
        await _pause(interrupted, 0.1)
    return False


async def run(*, forever: bool, deals: int, activities: int, instant: bool = False) -> int:
    """Show events flowing end to end; returns the exit code (0 when every event arrived).
    `instant`: the sandbox calls the daemon's instant-mode ingress on every change, and the
    feeds poll at the default interval (reconciling every 10 min) instead of every 2 s."""
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    token = secrets.token_hex(20)
    sandbox = Sandbox(token=token, seed=SANDBOX_SEED)  # Pipedrive's real webhook timings
    change = _Clock()
    receiver = WebhookReceiver(
        secret=secret,
        on_receive=lambda item: click.echo(_describe(item) + change.delay(item)),
    )
    feeds = ["/api/v2/deals", "/api/v2/activities"]
    with contextlib.ExitStack() as servers, tempfile.TemporaryDirectory() as folder:
        servers.callback(sandbox.close)  # the webhook sender's thread
        api = servers.enter_context(serve(sandbox.app))
        hooks = servers.enter_context(serve(receiver))
        port = _free_port() if instant else None
        config_path = _write_config(Path(folder), api.base_url, token, hooks.base_url, secret, port)
        config = config_module.load(config_path)
        database.upgrade(config.database.url)
        click.echo(f"sandbox Pipedrive at {api.base_url}, webhook receiver at {hooks.base_url}")
        if instant:
            click.echo(
                f"daemon config {config_path}: 5 subscriptions, instant mode: the daemon "
                f"registers a webhook at the sandbox, which calls its ingress on 127.0.0.1:{port} "
                "at every change; each call lists the feed at once (feeds also poll every 10 "
                f"min to reconcile; their own interval is {config_module.DEFAULT_POLL_INTERVAL_S}s)"
            )
        else:
            click.echo(
                f"daemon config {config_path}: 5 subscriptions, polling every {POLL_INTERVAL_S}s"
            )
            click.echo(
                f"  (polling every {POLL_INTERVAL_S}s on purpose, to show events within seconds: "
                "the daemon's warning about it below is part of the demo; a real subscription "
                f"polls every {config_module.DEFAULT_POLL_INTERVAL_S}s unless told otherwise, "
                "or see `demo --instant`)"
            )
        stop = asyncio.Event()
        interrupted = asyncio.Event()  # Ctrl-C ends the demo with its summary
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, interrupted.set)
        daemon = asyncio.create_task(lifecycle.run(config, stop))
        started = time.monotonic()
        expected = 0
        counter = 0
        try:
            if instant:
                if not await _instant_ready(sandbox, feeds, interrupted):
                    click.echo("the daemon did not register its webhook in time")
                    interrupted.set()
                else:
                    click.echo("webhook registered at the sandbox; the feeds have listed once")
            else:
                await _pause(interrupted, POLL_INTERVAL_S + 0.5)  # first poll ("start = now")
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
                change.changed_at = time.time()
                added = _add_items(sandbox, deals, activities, counter)
                counter += deals
                expected += 2 * deals + activities  # two deal subscriptions
                await _wait_for(receiver, expected, interrupted)
                if interrupted.is_set():
                    break
                click.echo("moving a deal to its next stage and winning another")
                change.changed_at = time.time()
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
        elapsed = time.monotonic() - started
        refused = len(receiver.attempts) - len(receiver.received)
        delivered = len(receiver.event_ids())
        list_calls = sum(1 for call in sandbox.calls if _is_listing(call))
        click.echo(
            f"summary: {delivered} of {expected} events delivered "
            f"in {elapsed:.1f}s, "
            f"{refused} refused attempts retried, "
            f"{len(sandbox.calls)} Pipedrive API calls ({list_calls} listings)"
        )
        click.echo(tokens_line(sandbox, feeds, elapsed, instant))
        return 0 if delivered >= expected else 1
