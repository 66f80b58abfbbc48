"""How does one feed catch up on a large backlog: time, calls per minute, memory?

N deals sit behind the feed's watermark: a `deal.added` subscription whose `start` is 8 days
back, and deals whose add/update times are spread over the 7 days after it. The daemon's own
code does the work: `accounts.open_accounts` (the default `AccountRateLimiter`, at the
account's `calls_per_minute`, 100 unless `--calls-per-minute`), `plan.feeds` and
`Poller.poll`, cycle after cycle (at most `--timeout` seconds) until every deal is an outbox
row in `deliveries`.

Three processes, so that each figure belongs to the right one:

* the sandbox (`--serve-fd`, internal): a `Sandbox` filled straight through its store
  (`Store.add_person`, `add_organization`, `create_deal`, `create_activity`, no HTTP), served
  on an inherited loopback socket behind a small ASGI layer that notes the arrival time of
  every request (`time.monotonic`) and answers `/__bench/calls` without logging it;
* the daemon (`--run-one`, internal): database, poller, rate limiter; it measures its own
  peak RSS (`getrusage`) before and after, the tracemalloc peak, RSS at every committed page;
* this process: starts both per N, reads the sandbox's call log, prints the table.

Every deal links a person (a pool of N/4) and an organization (N/10), and one deal in 10 has
an activity, so payloads need persons, organizations, activities, users and stages looked up.

Run from the repository root:

    PYTHONPATH=. .venv/bin/python bench/catch_up.py [--deals N [N ...]] [--database {sqlite,
        postgresql}] [--calls-per-minute C] [--timeout S] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import resource
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy

from bench import child_server, local_postgres
from daemon import config as config_module
from daemon.db import database, feed_store, tables
from daemon.dev.sandbox import Sandbox, costs
from daemon.pipedrive.client import MAX_PAGE_SIZE
from daemon.polling import plan, poller
from daemon.service import accounts

TOKEN = "0123456789abcdef0123456789abcdef01234567"
BENCH_PATH = "/__bench/calls"
BACKLOG_DAYS = 7
START_DAYS_BACK = 8
DEFAULT_DEALS = (20_000, 100_000)
DEFAULT_TIMEOUT_S = 3600.0
SANDBOX_START_TIMEOUT_S = 300.0
WINDOW_S = 60.0


# --------------------------------------------------------------------------------------------
# The sandbox process


def fill(sandbox: Sandbox, deals: int, seed: int = 11) -> None:
    """N deals straight into the store, oldest first, spread over the last BACKLOG_DAYS."""
    rng = random.Random(seed)
    store = sandbox.store
    now = datetime.now(UTC).replace(microsecond=0)
    first = now - timedelta(days=BACKLOG_DAYS)
    step = timedelta(days=BACKLOG_DAYS) / deals
    orgs = [store.add_organization(f"Org {n}")["id"] for n in range(max(1, deals // 10))]
    persons = [
        store.add_person(f"Person {n}", org_id=rng.choice(orgs))["id"]
        for n in range(max(1, deals // 4))
    ]
    for n in range(deals):
        moment = first + step * n
        fields = {
            "title": f"Deal {n}",
            "value": rng.randrange(100, 50_000),
            "person_id": rng.choice(persons),
            "org_id": rng.choice(orgs),
        }
        deal = store.create_deal(fields, "ManuallyCreated", moment, moment)
        if n % 10 == 0:
            store.create_activity(
                {"subject": f"Call {n}", "type": "call", "deal_id": deal["id"]}, moment, moment
            )


def _timed_app(sandbox: Sandbox) -> Any:
    """The sandbox behind a layer that notes each request's arrival and serves the log."""
    arrivals: list[float] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == BENCH_PATH:
            log = sandbox.calls
            body = json.dumps(
                [
                    {
                        "method": c.method,
                        "path": c.path,
                        "query": c.query,
                        "status": c.status,
                        "arrived": arrivals[i] if i < len(arrivals) else None,
                    }
                    for i, c in enumerate(log)
                ]
            ).encode()
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        if scope["type"] == "http":
            arrivals.append(time.monotonic())
        await sandbox.app(scope, receive, send)

    return app


def _serve_sandbox(fd: int, deals: int) -> None:
    import uvicorn

    def exit_with_parent() -> None:
        sys.stdin.read()
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=exit_with_parent, daemon=True).start()
    sandbox = Sandbox(token=TOKEN)
    fill(sandbox, deals)
    config = uvicorn.Config(
        _timed_app(sandbox), log_level="warning", access_log=False, lifespan="off"
    )
    uvicorn.Server(config).run(sockets=[socket.socket(fileno=fd)])


@contextlib.contextmanager
def sandbox_process(deals: int) -> Iterator[str]:
    def command(fd: int) -> list[str]:
        script = str(Path(__file__).resolve())
        return [sys.executable, script, "--serve-fd", str(fd), "--deals", str(deals)]

    with child_server.child_server(
        command,
        BENCH_PATH,
        "sandbox",
        start_timeout_s=SANDBOX_START_TIMEOUT_S,
        poll_s=0.2,
        backlog=128,
    ) as (base, _):
        yield base


# --------------------------------------------------------------------------------------------
# Databases


@contextlib.contextmanager
def scratch_database(kind: str, directory: Path) -> Iterator[str]:
    """A migrated, empty database: a SQLite file, or `bench_<random>` dropped at the end."""
    if kind == "sqlite":
        url = f"sqlite:///{directory / 'catch-up.db'}"
        database.upgrade(url)
        yield url
        return
    with local_postgres.scratch_database() as url:
        yield url


# --------------------------------------------------------------------------------------------
# The daemon process


def _rss_kb() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


def _peak_rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux


@dataclass
class DaemonRun:
    deals: int
    database: str
    calls_per_minute: int
    detected: int = 0
    detect_s: float = 0.0
    cycles: int = 0
    pages: int = 0
    complete: bool = False
    errors: list[str] = field(default_factory=list)
    peak_rss_before_kb: int = 0
    peak_rss_after_kb: int = 0
    rss_before_kb: int = 0
    tracemalloc_peak_kb: int | None = None
    rss_at_pages: list[tuple[int, int]] = field(default_factory=list)  # (page, rss kB)

    @property
    def peak_growth_kb(self) -> int:
        return self.peak_rss_after_kb - self.peak_rss_before_kb


async def _count(engine: Any) -> int:
    async with engine.connect() as connection:
        query = sqlalchemy.select(sqlalchemy.func.count()).select_from(tables.deliveries)
        return int((await connection.execute(query)).scalar_one())


async def run_daemon(args: argparse.Namespace, url: str, run: DaemonRun) -> None:
    start = datetime.now(UTC) - timedelta(days=START_DAYS_BACK)
    raw = {
        "database": {"url": url},
        "accounts": [
            {
                "name": "main",
                "api_token": TOKEN,
                "base_url": args.api_url,
                "calls_per_minute": args.calls_per_minute,
            }
        ],
        "subscriptions": [
            {
                "name": "backfill",
                "account": "main",
                "trigger": "deal.added",
                "callback_url": "http://127.0.0.1:9/hooks/backfill",
                "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        ],
    }
    config = config_module.parse(raw, "<catch_up>", Path.cwd())
    (feed,) = plan.feeds(config)
    engine = database.create_engine(url)
    original_commit = feed_store.commit_page

    async def counting_commit(*a: Any, **kw: Any) -> set[str]:
        queued = await original_commit(*a, **kw)
        run.pages += 1
        if run.pages == 1 or run.pages % 20 == 0:
            run.rss_at_pages.append((run.pages, _rss_kb()))
        return queued

    feed_store.commit_page = counting_commit
    try:
        async with accounts.open_accounts(config) as opened:
            poll = poller.Poller(engine, opened.clients, opened.caches)
            await _count(engine)  # the engine's first connection, before the baseline
            gc.collect()
            run.rss_before_kb = _rss_kb()
            run.peak_rss_before_kb = _peak_rss_kb()
            if args.tracemalloc:
                tracemalloc.start()
            started = time.monotonic()
            deadline = started + args.timeout
            while time.monotonic() < deadline:
                await poll.poll(feed)
                run.cycles += 1
                run.detected = await _count(engine)
                states = await feed_store.load_states(engine, ["backfill"])
                error = states["backfill"].last_error
                if error:
                    run.errors.append(error)
                if run.detected >= run.deals:
                    run.complete = True
                    break
                await asyncio.sleep(1)  # a failed or partial cycle: try again shortly
            run.detect_s = time.monotonic() - started
            if args.tracemalloc:
                run.tracemalloc_peak_kb = tracemalloc.get_traced_memory()[1] // 1024
                tracemalloc.stop()
            run.peak_rss_after_kb = _peak_rss_kb()
            run.rss_at_pages.append((run.pages, _rss_kb()))
    finally:
        feed_store.commit_page = original_commit
        await engine.dispose()


def _run_one(args: argparse.Namespace) -> None:
    run = DaemonRun(args.deals[0], args.database, args.calls_per_minute)
    with tempfile.TemporaryDirectory() as directory:
        with scratch_database(args.database, Path(directory)) as url:
            asyncio.run(run_daemon(args, url, run))
    print(json.dumps(asdict(run)))


# --------------------------------------------------------------------------------------------
# This process: one sandbox and one daemon per N, then the report


@dataclass
class Measured:
    run: DaemonRun
    fill_s: float
    calls: int = 0
    listing_calls: int = 0
    lookup_calls: int = 0
    lookups_by_route: dict[str, int] = field(default_factory=dict)
    status_429: int = 0
    tokens: int = 0
    max_in_window: int = 0
    busiest_minute_start_s: float = 0.0


def _is_listing(call: dict[str, Any]) -> bool:
    query = call["query"]
    return "updated_since" in query or query.get("sort_by") == "id"


def max_in_window(times: Sequence[float], window: float = WINDOW_S) -> tuple[int, float]:
    """The most calls that arrived in any `window` seconds, and when that window began."""
    ordered = sorted(times)
    best, best_start, lo = 0, 0.0, 0
    for hi, moment in enumerate(ordered):
        while moment - ordered[lo] >= window:
            lo += 1
        if hi - lo + 1 > best:
            best, best_start = hi - lo + 1, ordered[lo]
    return best, best_start - (ordered[0] if ordered else 0.0)


def analyse(run: DaemonRun, fill_s: float, log: list[dict[str, Any]]) -> Measured:
    measured = Measured(run, fill_s, calls=len(log))
    for call in log:
        if call["status"] == 429:
            measured.status_429 += 1
        if call["status"] == 200:
            measured.tokens += costs.cost_of(call["method"], call["path"])
        if _is_listing(call):
            measured.listing_calls += 1
        else:
            measured.lookup_calls += 1
            route = f"{call['path']}{' ids' if 'ids' in call['query'] else ''}"
            measured.lookups_by_route[route] = measured.lookups_by_route.get(route, 0) + 1
    arrivals = [c["arrived"] for c in log if c["arrived"] is not None]
    measured.max_in_window, measured.busiest_minute_start_s = max_in_window(arrivals)
    return measured


def measure(args: argparse.Namespace, deals: int) -> Measured:
    started = time.monotonic()
    with sandbox_process(deals) as base:
        fill_s = time.monotonic() - started
        command = [sys.executable, str(Path(__file__).resolve()), "--run-one", "--api-url", base]
        command += ["--deals", str(deals), "--database", args.database]
        command += ["--calls-per-minute", str(args.calls_per_minute)]
        command += ["--timeout", str(args.timeout)]
        if not args.tracemalloc:
            command.append("--no-tracemalloc")
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        raw = json.loads(done.stdout.strip().splitlines()[-1])
        raw["rss_at_pages"] = [tuple(p) for p in raw["rss_at_pages"]]
        run = DaemonRun(**raw)
        log = httpx.get(base + BENCH_PATH, timeout=60.0).json()
    return analyse(run, fill_s, log)


def _mb(kb: int | None) -> str:
    return "-" if kb is None else f"{kb / 1024:.1f}"


def report(results: list[Measured], args: argparse.Namespace, command: str) -> str:
    lines = [
        f"deal.added backfill, one feed, {args.database}, calls_per_minute "
        f"{args.calls_per_minute} (AccountRateLimiter, 62 s moving window), "
        f"{MAX_PAGE_SIZE} deals a page",
        "sandbox in its own process; persons N/4, organizations N/10, an activity on 1 deal in 10",
        "",
    ]
    rows: list[tuple[str, list[str]]] = [
        ("deals behind the watermark", [f"{m.run.deals:,}" for m in results]),
        ("outbox rows (deliveries)", [f"{m.run.detected:,}" for m in results]),
        ("all detected", ["yes" if m.run.complete else "NO" for m in results]),
        ("time to detect all, s", [f"{m.run.detect_s:,.0f}" for m in results]),
        (
            "deals detected per minute",
            [f"{m.run.detected / m.run.detect_s * 60:,.0f}" for m in results],
        ),
        ("poll cycles", [str(m.run.cycles) for m in results]),
        ("listing pages committed", [f"{m.run.pages:,}" for m in results]),
        ("calls, total", [f"{m.calls:,}" for m in results]),
        ("  listing calls", [f"{m.listing_calls:,}" for m in results]),
        ("  lookup calls", [f"{m.lookup_calls:,}" for m in results]),
        ("  lookups per page", [f"{m.lookup_calls / max(m.run.pages, 1):.1f}" for m in results]),
        ("  answered 429", [str(m.status_429) for m in results]),
        ("tokens charged", [f"{m.tokens:,}" for m in results]),
        (f"max calls in any {WINDOW_S:.0f} s", [str(m.max_in_window) for m in results]),
        ("peak RSS before, MB", [_mb(m.run.peak_rss_before_kb) for m in results]),
        ("peak RSS after, MB", [_mb(m.run.peak_rss_after_kb) for m in results]),
        ("peak RSS growth, MB", [_mb(m.run.peak_growth_kb) for m in results]),
        ("tracemalloc peak, MB", [_mb(m.run.tracemalloc_peak_kb) for m in results]),
        ("sandbox fill + start, s", [f"{m.fill_s:.0f}" for m in results]),
    ]
    width = max(len(label) for label, _ in rows) + 2
    for label, values in rows:
        lines.append(f"{label:<{width}}" + "".join(f"{v:>14}" for v in values))
    lines += ["", "lookup calls by route:"]
    for m in results:
        routes = ", ".join(f"{r} x{n}" for r, n in sorted(m.lookups_by_route.items()))
        lines.append(f"  {m.run.deals:,} deals: {routes}")
    lines += ["", "RSS (MB) after page:"]
    for m in results:
        points = ", ".join(f"{page}: {_mb(kb)}" for page, kb in m.run.rss_at_pages)
        lines.append(f"  {m.run.deals:,} deals: {points}")
    for m in results:
        if m.run.errors:
            lines.append(f"  {m.run.deals:,} deals, cycle errors: {'; '.join(m.run.errors[:3])}")
    lines += ["", "targets:"]
    for m in results:
        ok = m.max_in_window <= args.calls_per_minute
        lines.append(
            f"  {m.run.deals:,} deals: max calls in {WINDOW_S:.0f} s {m.max_in_window} <= "
            f"{args.calls_per_minute} {'PASS' if ok else 'MISS'}; all detected "
            f"{'PASS' if m.run.complete else 'MISS'}"
        )
    if len(results) >= 2:
        small, large = results[0], results[-1]
        ratio = large.run.deals / small.run.deals
        growth = large.run.peak_growth_kb - small.run.peak_growth_kb
        lines.append(
            f"  memory bounded by a page, not the backlog: {ratio:.0f}x the deals grew peak RSS "
            f"by {_mb(large.run.peak_growth_kb)} MB against {_mb(small.run.peak_growth_kb)} MB "
            f"({growth / 1024:+.1f} MB)"
        )
    lines += ["", f"reproduce: {command}"]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--deals",
        type=int,
        nargs="+",
        default=list(DEFAULT_DEALS),
        help="backlog sizes, each measured in fresh processes (20000 100000)",
    )
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--calls-per-minute",
        type=int,
        default=config_module.DEFAULT_CALLS_PER_MINUTE,
        help=f"the account's limit ({config_module.DEFAULT_CALLS_PER_MINUTE})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help=f"give up detecting after this many seconds per N ({DEFAULT_TIMEOUT_S:.0f})",
    )
    parser.add_argument(
        "--no-tracemalloc",
        dest="tracemalloc",
        action="store_false",
        help="do not trace Python allocations (RSS is measured anyway)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--serve-fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--run-one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--api-url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if any(not 1 <= n <= 1_000_000 for n in args.deals):
        parser.error("--deals must be between 1 and 1000000")
    if not 1 <= args.calls_per_minute <= 100_000:
        parser.error("--calls-per-minute must be between 1 and 100000")
    if not 1 <= args.timeout <= 4 * 3600:
        parser.error("--timeout must be between 1 and 14400 seconds")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.serve_fd is not None:
        _serve_sandbox(args.serve_fd, args.deals[0])
        return
    if args.run_one:
        _run_one(args)
        return
    shown = ["PYTHONPATH=.", ".venv/bin/python", "bench/catch_up.py"]
    shown += sys.argv[1:] if argv is None else list(argv)
    results = []
    for deals in args.deals:
        measured = measure(args, deals)
        print(
            f"  {deals:,} deals: {measured.run.detected:,} detected in "
            f"{measured.run.detect_s:.0f} s, {measured.calls} calls",
            file=sys.stderr,
        )
        results.append(measured)
    if args.json:
        print(json.dumps([asdict(m) for m in results], indent=2))
    else:
        print()
        print(report(results, args, shlex.join(shown)))


if __name__ == "__main__":
    main()
