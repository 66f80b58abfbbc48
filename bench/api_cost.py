"""What does polling cost in Pipedrive calls and tokens a day, shared feeds against one listing
per subscription (as the hosted connector polls)?

Every scenario runs real `Poller`s against a served `Sandbox`, driven by a fake clock (the
poller's `clock`, the lookup cache's clock and the sandbox clock move together), 120 s a cycle:

* one warm-up cycle creates the feeds (the id probe), then the call log is cleared;
* an **active hour** (30 cycles) with a little activity: deals added, updated, moved, won;
  activities added and done; a person, an organization, a note and a lead added;
* an **idle hour** (30 cycles) in which nothing changes, for which lookups should be 0.

Scenarios: (a) the connector's three triggers on one account, (b) the whole trigger catalog
(every trigger in `daemon.triggers.REGISTRY` once, plus a few filtered subscriptions), and for
each a **baseline** that really runs one Poller per subscription (a config per subscription,
each with its own account entry, client and lookup cache) against an identical sandbox.

(i) is (a) in **instant mode** (`[instant]`, reconciliation every 10 min): the webhook is
registered at the sandbox by `instant.registration.repair_all` (and checked again once an hour,
as `repair_interval` does, without a call if it called meanwhile), the sandbox sends its real
webhooks v2 to the daemon's own ingress (`instant.ingress.serving`, on loopback), each nudge
is coalesced by `instant.coalesce` (1 s, wall clock) into a read of its feed (`Poller.read`:
the items it names, one `GET .../{id}` each, where that is cheaper than a listing), and every
feed also lists every 10 min (each 5th cycle) to reconcile. Those reads by id are counted
with the lookups (`lookup/day`): both are one object by id. The writes are the same; after
each cycle's writes the benchmark waits for the sandbox's calls to be answered and the nudged
reads to end.

Calls and tokens are counted on the sandbox: its call log, and the tokens its rate limiter
charged (the spec's `x-token-cost` per route). Per day = the hour's figure x 24.

Run from the repository root:

    PYTHONPATH=. .venv/bin/python bench/api_cost.py [--cycles N] [--interval S] [--json]
    PYTHONPATH=. .venv/bin/python bench/api_cost.py --only-instant   # (a) and (i) only
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from daemon import config as config_module
from daemon import triggers
from daemon.db import database
from daemon.dev.local_server import serve
from daemon.dev.sandbox import Sandbox, calls, costs
from daemon.instant import coalesce, ingress, nudges, registration
from daemon.pipedrive import lookups
from daemon.pipedrive.client import PipedriveClient
from daemon.pipedrive.rate_limit import AccountRateLimiter
from daemon.polling import plan, poller

TOKEN = "0123456789abcdef0123456789abcdef01234567"
T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)  # the first cycle; seed data is older
DEFAULT_INTERVAL_S = config_module.DEFAULT_POLL_INTERVAL_S
DEFAULT_CYCLES = 30  # one hour at 120 s
CONNECTOR_DAILY_TOKENS = 14_400  # the issue's target for scenario (a)
V2_PAGE_TOKENS = 10  # the issue's formula: 10 tokens x object types x cycles
# The benchmark compresses an hour into seconds; the real limiter (wall clock) would only
# slow it down, and calls per minute are `catch_up.py`'s subject.
BENCH_CALLS_PER_MINUTE = 100_000
CONNECTOR_TRIGGERS = ("deal.added", "deal.added.legacy", "activity.added")
FILTERED = (
    ("won-in-pipeline-1", "deal.won", {"pipeline_id": 1}),
    ("stage-2-or-3", "deal.stage_changed", {"stage_id": [2, 3]}),
    ("calls-added", "activity.added", {"type": "call"}),
)


# --------------------------------------------------------------------------------------------
# The account and what happens in it


def build_sandbox() -> Sandbox:
    """The same account for every scenario: a little history, all of it before T0."""
    sandbox = Sandbox(token=TOKEN)
    sandbox.set_limits(burst=1_000_000)  # no 429s: the burst window is not measured here
    sandbox.set_time(T0 - timedelta(days=1))
    org = sandbox.add_organization("Northwind Logistics")
    person = sandbox.add_person("Maria Tamm", org_id=org["id"], email="maria@northwind.io")
    for n in range(5):
        deal = sandbox.add_deal(f"old deal {n}", person_id=person["id"], org_id=org["id"])
        sandbox.add_activity(subject=f"old call {n}", type="call", deal_id=deal["id"])
        sandbox.advance_time(600)
    sandbox.add_note("old note", deal_id=1)
    sandbox.add_lead("old lead", person_id=person["id"])
    return sandbox


def activity(sandbox: Sandbox, cycle: int) -> list[str]:
    """Writes made during `cycle` of the active hour (between two polls)."""
    done: list[str] = []
    if cycle == 2:
        org = sandbox.add_organization("Helio Solar GmbH")
        sandbox.add_person("Lukas Schmidt", org_id=org["id"], email="lukas@heliosolar.de")
        done += ["organization added", "person added"]
    elif cycle == 4:
        sandbox.add_deal("Helio pilot", person_id=2, org_id=2, value=5000)
        done.append("deal added")
    elif cycle == 6:
        sandbox.add_activity(subject="Intro call", type="call", deal_id=6, person_id=2)
        done.append("activity added")
    elif cycle == 9:
        sandbox.update_deal(6, value=7500)
        done.append("deal updated")
    elif cycle == 12:
        sandbox.update_deal(6, stage_id=2)
        done.append("deal stage changed")
    elif cycle == 15:
        sandbox.add_deal("Northwind expansion", person_id=1, org_id=1, value=12000)
        done.append("deal added")
    elif cycle == 18:
        sandbox.update_activity(6, done=True)
        done.append("activity done")
    elif cycle == 21:
        sandbox.update_deal(6, status="won")
        done.append("deal won")
    elif cycle == 24:
        sandbox.add_activity(subject="Demo", type="meeting", deal_id=7, person_id=1)
        done.append("activity added")
    elif cycle == 27:
        sandbox.add_note("Sent the proposal", deal_id=7)
        sandbox.add_lead("Aurora Foods", organization_id=1)
        done += ["note added", "lead added"]
    return done


# --------------------------------------------------------------------------------------------
# Scenarios


@dataclass(frozen=True)
class Subscription:
    name: str
    trigger: str
    filter: dict[str, Any] = field(default_factory=dict)


def connector_subscriptions() -> list[Subscription]:
    return [Subscription(t.replace(".", "-"), t) for t in CONNECTOR_TRIGGERS]


def catalog_subscriptions() -> list[Subscription]:
    """Every trigger polling can serve: a deletion trigger needing instant mode (Pipedrive
    lists no deleted activity, person, ...) is left out."""
    every = [
        Subscription(name.replace(".", "-"), name)
        for name in sorted(triggers.REGISTRY)
        if not getattr(triggers.get(name), "deletion", False)
    ]
    return every + [Subscription(name, trig, dict(flt)) for name, trig, flt in FILTERED]


def _config(
    url: str,
    api_url: str,
    accounts: dict[str, list[Subscription]],
    instant: dict[str, Any] | None = None,
) -> Any:
    raw: dict[str, Any] = {
        "database": {"url": url},
        "accounts": [{"name": name, "api_token": TOKEN, "base_url": api_url} for name in accounts],
        "subscriptions": [
            {
                "name": s.name,
                "account": account,
                "trigger": s.trigger,
                "callback_url": f"http://127.0.0.1:9/hooks/{s.name}",
                "poll_interval": DEFAULT_INTERVAL_S,
                "filter": s.filter,
            }
            for account, subs in accounts.items()
            for s in subs
        ],
    }
    if instant is not None:
        raw["instant"] = instant
    return config_module.parse(raw, "<api_cost>", Path.cwd())


@dataclass
class Phase:
    cycles: int = 0
    listing_calls: int = 0
    lookup_calls: int = 0
    tokens: int = 0  # as the sandbox's limiter charged them
    listing_tokens: int = 0
    other_statuses: int = 0  # anything but 200 (should be none)
    webhook_calls: int = 0  # GET /v1/webhooks (instant mode)
    by_route: dict[str, int] = field(default_factory=dict)


@dataclass
class Scenario:
    label: str
    subscriptions: int
    object_types: list[str]
    pollers: int
    page_costs: dict[str, int]
    active: Phase = field(default_factory=Phase)
    idle: Phase = field(default_factory=Phase)
    warm_up_calls: int = 0
    writes: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    nudges_active: int | None = None  # instant mode: webhook calls that nudged a feed


LISTING_PATHS = {o.path for o in triggers.OBJECT_TYPES.values()}


class BenchClock:
    """The poller's and the lookup cache's `daemon.clock.Clock`: the cycle's fake time
    (`now[0]`), monotonic seconds since T0 with it; sleeps are real (none at these limits)."""

    def __init__(self, now: list[datetime]) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now[0]

    def monotonic(self) -> float:
        return (self._now[0] - T0).total_seconds()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def _is_listing(call: calls.Call) -> bool:
    """A feed's own listing (or its id probe); everything else is a lookup."""
    if call.path not in LISTING_PATHS:
        return False
    return "updated_since" in call.query or call.query.get("sort_by") == "id"


def _spent(sandbox: Sandbox) -> int:
    decision = sandbox.limiter.peek(sandbox.token, time.monotonic(), datetime.now(UTC))
    return decision.daily_limit - decision.daily_remaining


def _tally(sandbox: Sandbox, phase: Phase, spent_before: int) -> None:
    for call in sandbox.calls:
        if call.status != 200:
            phase.other_statuses += 1
            continue
        cost = costs.cost_of(call.method, call.path)
        route = f"{call.method} {call.path}{' ids' if 'ids' in call.query else ''}"
        phase.by_route[route] = phase.by_route.get(route, 0) + 1
        if _is_listing(call):
            phase.listing_calls += 1
            phase.listing_tokens += cost
        elif call.path.startswith("/v1/webhooks"):
            phase.webhook_calls += 1  # instant mode's hourly check of its webhook
        else:
            phase.lookup_calls += 1
    phase.tokens = _spent(sandbox) - spent_before
    sandbox.clear_calls()


async def run_scenario(
    label: str, subs: list[Subscription], one_per_subscription: bool, cycles: int, interval: float
) -> Scenario:
    sandbox = build_sandbox()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory, serve(sandbox.app) as server:
        url = f"sqlite:///{Path(directory) / 'cost.db'}"
        database.upgrade(url)
        if one_per_subscription:
            configs = [_config(url, server.base_url, {f"acct-{s.name}": [s]}) for s in subs]
        else:
            configs = [_config(url, server.base_url, {"main": subs})]
        now = [T0]
        clock = BenchClock(now)

        engine = database.create_engine(url)
        https = []
        pollers: list[tuple[poller.Poller, list[plan.Feed]]] = []
        try:
            for cfg in configs:
                clients = {}
                for account in cfg.accounts:
                    http = PipedriveClient.http_client(account.api_root, account.token)
                    https.append(http)
                    clients[account.name] = PipedriveClient(
                        http,
                        account=account.name,
                        limiter=AccountRateLimiter(BENCH_CALLS_PER_MINUTE),
                    )
                caches = {name: lookups.LookupCache(clock=clock) for name in clients}
                poll = poller.Poller(engine, clients, caches, clock=clock)
                pollers.append((poll, plan.feeds(cfg)))
            watched = sorted({f.object.name for _, fs in pollers for f in fs})
            scenario = Scenario(
                label=label,
                subscriptions=len(subs),
                object_types=watched,
                pollers=len(pollers),
                page_costs={o: triggers.OBJECT_TYPES[o].page_cost for o in watched},
            )

            async def cycle(at: datetime) -> None:
                sandbox.set_time(at)
                now[0] = at
                for poll, feeds in pollers:
                    for feed in feeds:
                        await poll.poll(feed)

            await cycle(T0)  # warm-up: feeds created, ids probed
            scenario.warm_up_calls = len(sandbox.calls)
            sandbox.clear_calls()
            spent = _spent(sandbox)
            for k in range(1, cycles + 1):
                at = T0 + timedelta(seconds=k * interval)
                sandbox.set_time(at - timedelta(seconds=interval / 2))
                scenario.writes += activity(sandbox, k)
                await cycle(at)
            scenario.active.cycles = cycles
            _tally(sandbox, scenario.active, spent)
            spent = _spent(sandbox)
            for k in range(cycles + 1, 2 * cycles + 1):
                await cycle(T0 + timedelta(seconds=k * interval))
            scenario.idle.cycles = cycles
            _tally(sandbox, scenario.idle, spent)
        finally:
            for http in https:
                await http.aclose()
            await engine.dispose()
    scenario.wall_s = time.perf_counter() - started
    return scenario


INSTANT_RECONCILE_S = config_module.DEFAULT_INSTANT_RECONCILE_S
INSTANT_REPAIR_S = config_module.DEFAULT_INSTANT_REPAIR_S
SETTLE_S = 0.3  # no new webhook call for this long: the sandbox has sent a cycle's changes


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def run_instant_scenario(
    label: str, subs: list[Subscription], cycles: int, interval: float
) -> Scenario:
    """(a) in instant mode: real registration, real webhooks from the sandbox to the real
    ingress, coalesced nudged listings, and a reconciliation listing of every feed each
    `reconcile_interval`; the webhook checked again every `repair_interval`."""
    sandbox = build_sandbox()
    started = time.perf_counter()
    reconcile_every = max(1, round(INSTANT_RECONCILE_S / interval))
    repair_every = max(1, round(INSTANT_REPAIR_S / interval))
    with tempfile.TemporaryDirectory() as directory, serve(sandbox.app) as server, sandbox:
        url = f"sqlite:///{Path(directory) / 'cost.db'}"
        database.upgrade(url)
        port = _free_port()
        instant = {
            "listen": f"127.0.0.1:{port}",
            "public_url": f"http://127.0.0.1:{port}/pipedrive",
        }
        cfg = _config(url, server.base_url, {"main": subs}, instant)
        now = [T0]
        clock = BenchClock(now)

        engine = database.create_engine(url)
        [account] = cfg.accounts
        http = PipedriveClient.http_client(account.api_root, account.token)
        client = PipedriveClient(
            http, account=account.name, limiter=AccountRateLimiter(BENCH_CALLS_PER_MINUTE)
        )
        cache = lookups.LookupCache(clock=clock)
        cache.rely_on_webhooks(True)  # the webhook is registered and calling throughout
        caches = {account.name: cache}
        poll = poller.Poller(engine, {account.name: client}, caches, clock=clock)
        feeds = {f.object.name: f for f in plan.feeds(cfg)}
        watched = sorted(feeds)
        scenario = Scenario(
            label=label,
            subscriptions=len(subs),
            object_types=watched,
            pollers=1,
            page_costs={o: triggers.OBJECT_TYPES[o].page_cost for o in watched},
        )
        reading = [0]
        nudged: list[str] = []
        called: list[str] = []  # nudges since the last check of the webhook

        async def read(_: str, object_type: str, item_ids: frozenset[str] | None) -> None:
            reading[0] += 1
            try:
                await poll.read(feeds[object_type], item_ids)
            finally:
                reading[0] -= 1

        coalescing = coalesce.Coalescing(read, cfg.instant.coalesce)

        def on_nudge(nudge: nudges.Nudge) -> None:  # as `service.lifecycle` hands them on
            called.append(nudge.account)
            cache.forget(nudge.object_type, nudge.entity_id)
            if nudge.object_type not in feeds:
                return
            nudged.append(nudge.object_type)
            item = None if nudge.action == "delete" else nudge.entity_id
            coalescing.nudge(nudge.account, nudge.object_type, item)

        async def settle() -> None:
            """Until the sandbox has sent every call and the nudged listings have ended."""
            seen = -1
            while seen != len(sandbox.webhook_deliveries):
                seen = len(sandbox.webhook_deliveries)
                await asyncio.sleep(SETTLE_S)
            await asyncio.sleep(cfg.instant.coalesce + 0.1)  # a window's trailing read
            while reading[0]:  # noqa: ASYNC110 (a benchmark's wait, polled)
                await asyncio.sleep(0.02)

        async def cycle(k: int, at: datetime) -> None:
            sandbox.set_time(at)
            now[0] = at
            if k % reconcile_every == 0:
                for feed in feeds.values():
                    await poll.poll(feed)
            if k % repair_every == 0:  # as the daemon does: not listed if it called since
                proven = {account.name} if called else set()
                called.clear()
                await registration.repair_all(engine, cfg, {account.name: client}, proven=proven)

        try:
            # Warm-up: the webhook registered, the feeds created (id probe).
            await registration.repair_all(engine, cfg, {account.name: client})
            for feed in feeds.values():
                await poll.poll(feed)
            async with ingress.serving(cfg, engine, on_nudge, lambda _: True):
                scenario.warm_up_calls = len(sandbox.calls)
                sandbox.clear_calls()
                spent = _spent(sandbox)
                for k in range(1, cycles + 1):
                    at = T0 + timedelta(seconds=k * interval)
                    sandbox.set_time(at - timedelta(seconds=interval / 2))
                    writes = activity(sandbox, k)
                    if writes:
                        scenario.writes += writes
                        await settle()
                    await cycle(k, at)
                scenario.active.cycles = cycles
                _tally(sandbox, scenario.active, spent)
                scenario.nudges_active = len(nudged)
                spent = _spent(sandbox)
                for k in range(cycles + 1, 2 * cycles + 1):
                    await cycle(k, T0 + timedelta(seconds=k * interval))
                scenario.idle.cycles = cycles
                _tally(sandbox, scenario.idle, spent)
                await coalescing.aclose()
        finally:
            await http.aclose()
            await engine.dispose()
    scenario.wall_s = time.perf_counter() - started
    return scenario


# --------------------------------------------------------------------------------------------
# Report


def per_day(value: int, phase: Phase, interval: float) -> int:
    return round(value * (86_400 / interval) / phase.cycles)


def listing_target(scenario: Scenario, interval: float) -> tuple[int, int]:
    """(the issue's 10 x types x cycles, the same with each type's real page cost)."""
    cycles_per_day = round(86_400 / interval)
    issue = V2_PAGE_TOKENS * len(scenario.object_types) * cycles_per_day
    real = sum(scenario.page_costs.values()) * cycles_per_day
    return issue, real


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report(results: list[Scenario], interval: float, command: str) -> str:
    cycles = results[0].active.cycles
    factor = 86_400 / interval / cycles
    lines = [
        f"fake clock, {interval:.0f} s a cycle; active hour = {cycles} cycles with writes, "
        f"idle hour = {cycles} cycles without; per day = the hour x {factor:.0f}"
        " (every hour as busy as the measured one)",
        f"writes in the active hour: {', '.join(results[0].writes)}",
        "",
    ]
    head = (
        f"{'scenario':<34}{'subs':>5}{'types':>6}{'pollers':>8}"
        f"{'listing/day':>12}{'lookup/day':>11}{'tokens/day':>11}"
        f"{'idle tok/day':>13}{'idle lookups':>13}"
    )
    lines += [head, "-" * len(head)]
    for s in results:
        lines.append(
            f"{s.label:<34}{s.subscriptions:>5}{len(s.object_types):>6}{s.pollers:>8}"
            f"{per_day(s.active.listing_calls, s.active, interval):>12,}"
            f"{per_day(s.active.lookup_calls, s.active, interval):>11,}"
            f"{per_day(s.active.tokens, s.active, interval):>11,}"
            f"{per_day(s.idle.tokens, s.idle, interval):>13,}"
            f"{s.idle.lookup_calls:>13}"
        )
    lines += ["", "measured hours (raw):"]
    for s in results:
        for name, phase in (("active", s.active), ("idle", s.idle)):
            routes = ", ".join(f"{r} x{n}" for r, n in sorted(phase.by_route.items()))
            lines.append(
                f"  {s.label} / {name}: {phase.listing_calls} listing calls "
                f"({phase.listing_tokens} tokens), {phase.lookup_calls} lookup calls, "
                f"{phase.webhook_calls} webhook checks, "
                f"{phase.tokens} tokens charged, {phase.other_statuses} non-200"
            )
            lines.append(f"      {routes}")
    lines += ["", "targets:"]
    by_label = {s.label.split(" ")[0]: s for s in results}
    a, b = by_label.get("(a)"), by_label.get("(b)")
    if a is not None:
        day = per_day(a.active.tokens, a.active, interval)
        idle = per_day(a.idle.tokens, a.idle, interval)
        lines.append(
            f"  (a) tokens/day <= {CONNECTOR_DAILY_TOKENS:,}: active {day:,} "
            f"{_verdict(day <= CONNECTOR_DAILY_TOKENS)}; idle {idle:,} "
            f"{_verdict(idle <= CONNECTOR_DAILY_TOKENS)}"
        )
    i = by_label.get("(i)")
    if i is not None and a is not None:
        quarter = CONNECTOR_DAILY_TOKENS // 4
        day = per_day(i.active.tokens, i.active, interval)
        idle = per_day(i.idle.tokens, i.idle, interval)
        polling_day = per_day(a.active.tokens, a.active, interval)
        polling_idle = per_day(a.idle.tokens, a.idle, interval)
        lines.append(
            f"  (i) tokens/day <= a quarter of polling at 120 s ({CONNECTOR_DAILY_TOKENS:,} / 4 ="
            f" {quarter:,}): 12 writes an hour {day:,} {_verdict(day <= quarter)} "
            f"({day / polling_day:.2f}x (a)'s {polling_day:,} in the same run); idle {idle:,} "
            f"{_verdict(idle <= quarter)} ({idle / polling_idle:.2f}x (a)'s {polling_idle:,}); "
            f"{i.nudges_active} webhook calls nudged a feed in the active hour"
        )
    if b is not None:
        issue, real = listing_target(b, interval)
        day = per_day(b.active.tokens, b.active, interval)
        idle = per_day(b.idle.tokens, b.idle, interval)
        costs_text = " + ".join(f"{o} {c}" for o, c in b.page_costs.items())
        lines.append(
            f"  (b) tokens/day <= page cost x types x cycles = ({costs_text}) x "
            f"{round(86_400 / interval)} = {real:,} (the issue's 10 x {len(b.object_types)} x "
            f"cycles = {issue:,} assumes v2 pages only; v1 notes and leads cost 20 a page): "
            f"active {day:,} {_verdict(day <= real)}; idle {idle:,} {_verdict(idle <= real)}"
        )
    for s in results:
        lines.append(
            f"  idle-hour lookups = 0, {s.label}: {s.idle.lookup_calls} "
            f"{_verdict(s.idle.lookup_calls == 0)}"
        )
    lines += ["", f"reproduce: {command}"]
    return "\n".join(lines)


async def benchmark(args: argparse.Namespace) -> list[Scenario]:
    plan: list[tuple[str, Callable[[], list[Subscription]], bool]] = [
        ("(a) connector triggers, feeds", connector_subscriptions, False),
        ("(c) (a) one listing per sub", connector_subscriptions, True),
        ("(b) whole catalog, feeds", catalog_subscriptions, False),
        ("(c) (b) one listing per sub", catalog_subscriptions, True),
    ]
    if args.only_instant:
        plan = plan[:1]
    results = []
    for label, subs, baseline in plan:
        scenario = await run_scenario(label, subs(), baseline, args.cycles, args.interval)
        print(f"  {label}: {scenario.wall_s:.1f} s", file=sys.stderr)
        results.append(scenario)
    label = "(i) (a) instant, reconcile 10 min"
    scenario = await run_instant_scenario(
        label, connector_subscriptions(), args.cycles, args.interval
    )
    print(f"  {label}: {scenario.wall_s:.1f} s", file=sys.stderr)
    results.insert(1, scenario)
    return results


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--cycles", type=int, default=DEFAULT_CYCLES, help="cycles per simulated hour (30)"
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=DEFAULT_INTERVAL_S,
        help=f"seconds between cycles ({DEFAULT_INTERVAL_S})",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--only-instant", action="store_true", help="only (a) and (i), its instant mode"
    )
    args = parser.parse_args(argv)
    if not 28 <= args.cycles <= 300:
        parser.error("--cycles must be between 28 and 300 (the writes happen in cycles 2-27)")
    if not 1 <= args.interval <= 3600:
        parser.error("--interval must be between 1 and 3600")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    shown = ["PYTHONPATH=.", ".venv/bin/python", "bench/api_cost.py"]
    shown += sys.argv[1:] if argv is None else list(argv)
    results = asyncio.run(benchmark(args))
    if args.json:
        print(json.dumps([asdict(s) for s in results], indent=2))
    else:
        print()
        print(report(results, args.interval, shlex.join(shown)))


if __name__ == "__main__":
    main()
