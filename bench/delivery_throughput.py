"""How fast does the daemon deliver its outbox, compared with a bare HTTP loop on the same host?

Why this exists: the delivery loop does much more per webhook than POST it (claim rows under
a lease, sign, record every attempt's outcome). This measures what that costs, in one run,
against ONE receiver process, so the ratios are meaningful even when absolute figures drift
from machine to machine:

* bare httpx          - `httpx.AsyncClient` (httpx's own pool), C workers POSTing N bodies
* bare httpx+aiohttp  - the same loop on `httpx_aiohttp.AiohttpTransport`, the daemon's transport
* bare aiohttp        - the same loop on `aiohttp.ClientSession` itself: not a rival design here,
                        it shows the receiver's ceiling is far above every other figure
* daemon SQLite       - N rows in the outbox (WAL file in a temp dir), `Deliverer.run` until all
                        N are delivered, timed from start to the last outcome recorded
* daemon PostgreSQL   - the same on a scratch database `bench_<random>`, dropped afterwards

The bodies are real `DealResponseV2` envelopes (`payloads.deal_v2` + `events.body`); the bare
loops send the very same bytes with the same Standard Webhooks headers (signed before the
clock starts), the daemon signs each attempt itself, as in production. The receiver is
`daemon.dev.receiver.WebhookReceiver(keep_bodies=False)` under uvicorn in a separate process
(2 cores: sharing the GIL with the sender would penalise whichever side is busier); by default
it does not verify signatures (`--verify` makes it), so it stays a cheap, common sink.

Run from the repository root:

    PYTHONPATH=. .venv/bin/python bench/delivery_throughput.py [--events N] [--concurrency C]
        [--repeat R] [--only MODE ...] [--json] [--verify] [--profile {sqlite,postgresql}]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy
from pydantic import SecretStr

from bench import child_server, local_postgres
from daemon.config import (
    DEFAULT_CONCURRENCY,
    DEFAULT_PER_SUBSCRIPTION_CONCURRENCY,
    DeliveryConfig,
    SubscriptionConfig,
)
from daemon.db import database, outbox
from daemon.delivery.callbacks import Callbacks
from daemon.delivery.deliverer import Deliverer
from daemon.delivery.signing import Signer
from daemon.model import deliveries
from daemon.payloads import envelope, shapes
from daemon.pipedrive.lookups import Lookups

REPO_ROOT = Path(__file__).resolve().parent.parent
SUBSCRIPTION = "bench-deals"
TRIGGER = "deal.added"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # a throwaway, for signing cost only
HOOK_PATH = "/hook"
STATS_PATH = "/stats"
DELIVERY_TIMEOUT_S = 15.0  # the daemon's default; no POST here comes close
BARE_CONCURRENCY = 32  # the bare loops' workers: what the issue compared against
RUN_TIMEOUT_S = 120.0  # any single measurement that takes longer is reported as a failure
RECEIVER_START_TIMEOUT_S = 15.0
INSERT_CHUNK = 500  # one poll page: how the poller hands rows to the outbox
MODES = ("httpx", "httpx+aiohttp", "aiohttp", "daemon-sqlite", "daemon-postgresql")
BARE_MODES = MODES[:3]
DAEMON_MODES = MODES[3:]
LABELS = {
    "httpx": "bare httpx.AsyncClient",
    "httpx+aiohttp": "bare httpx + AiohttpTransport",
    "aiohttp": "bare aiohttp (ceiling ref.)",
    "daemon-sqlite": "daemon, SQLite (WAL)",
    "daemon-postgresql": "daemon, PostgreSQL",
}


# --------------------------------------------------------------------------------------------
# The receiver, in its own process


def _receiver_app(secret: str | None) -> Callable[..., Awaitable[None]]:
    """`WebhookReceiver` plus `GET /stats` (counts; `?reset=1` empties its lists)."""
    from daemon.dev.receiver import WebhookReceiver

    receiver = WebhookReceiver(secret=secret, keep_bodies=False)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != STATS_PATH:
            await receiver(scope, receive, send)
            return
        stats = {
            "received": len(receiver.received),
            "distinct": len(receiver.event_ids()),
            "attempts": len(receiver.attempts),
            "unverified": sum(1 for item in receiver.received if item.verified is False),
        }
        if b"reset=1" in scope.get("query_string", b""):
            receiver.received = []
            receiver.attempts = []
        payload = json.dumps(stats).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    return app


def _serve_receiver(fd: int, secret: str | None) -> None:
    """Entry point of the receiver process: serve on the inherited listening socket until
    SIGTERM, or until the benchmark process goes away (our stdin closes)."""
    import uvicorn

    def exit_with_parent() -> None:
        sys.stdin.read()
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=exit_with_parent, daemon=True).start()
    config = uvicorn.Config(
        _receiver_app(secret), log_level="warning", access_log=False, lifespan="off"
    )
    uvicorn.Server(config).run(sockets=[socket.socket(fileno=fd)])


@dataclass
class Receiver:
    url: str
    stats_url: str
    process: subprocess.Popen[bytes]
    server: str  # which HTTP parser and loop uvicorn picked


@contextlib.contextmanager
def receiver_process(secret: str | None) -> Iterator[Receiver]:
    """Start the receiver on a free loopback port; the socket is bound here and inherited, so
    there is no window in which another process could take the port."""

    def command(fd: int) -> list[str]:
        served = [sys.executable, str(Path(__file__).resolve()), "--serve-fd", str(fd)]
        return served + (["--serve-secret", secret] if secret else [])

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT)])))
    with child_server.child_server(
        command,
        f"{STATS_PATH}?reset=1",
        "receiver",
        start_timeout_s=RECEIVER_START_TIMEOUT_S,
        poll_s=0.05,
        env=env,
    ) as (base, process):
        yield Receiver(f"{base}{HOOK_PATH}", f"{base}{STATS_PATH}", process, _uvicorn_stack())


def _uvicorn_stack() -> str:
    """What uvicorn's "auto" resolves to here: it matters for the receiver's ceiling."""
    http = "httptools" if _importable("httptools") else "h11"
    loop = "uvloop" if _importable("uvloop") else "asyncio"
    return f"uvicorn {_version('uvicorn')} ({http}, {loop})"


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


def receiver_stats(receiver: Receiver, reset: bool = True) -> dict[str, int]:
    url = receiver.stats_url + ("?reset=1" if reset else "")
    stats: dict[str, int] = httpx.get(url, timeout=10).json()
    return stats


# --------------------------------------------------------------------------------------------
# The workload: realistic DealResponseV2 envelopes


@dataclass(frozen=True)
class Event:
    event_id: str
    item_id: int
    body: str


def _v2_deal(deal_id: int, rng: random.Random) -> dict[str, Any]:
    """A v2 deal as `GET /api/v2/deals?include_fields=...` returns it."""
    added = datetime(2026, 3, 2, 9, 0, tzinfo=UTC) + timedelta(seconds=deal_id * 37)
    status = rng.choice(("open", "open", "open", "won", "lost"))
    return {
        "id": deal_id,
        "title": f"Acme Industrial {deal_id} - renewal of the 3-year service contract",
        "creator_user_id": 11,
        "owner_id": 12,
        "person_id": 2000 + deal_id % 50,
        "org_id": 3000 + deal_id % 20,
        "status": status,
        "value": round(rng.uniform(500, 250_000), 2),
        "currency": "EUR",
        "add_time": added.isoformat().replace("+00:00", "Z"),
        "update_time": (added + timedelta(minutes=5)).isoformat().replace("+00:00", "Z"),
        "stage_id": 3,
        "stage_change_time": (added + timedelta(minutes=4)).isoformat().replace("+00:00", "Z"),
        "is_deleted": False,
        "next_activity_id": 501,
        "last_activity_id": 502,
        "lost_reason": "Went with a competitor on price" if status == "lost" else None,
        "visible_to": 3,
        "close_time": None
        if status == "open"
        else (added + timedelta(days=3)).isoformat().replace("+00:00", "Z"),
        "pipeline_id": 1,
        "products_count": rng.randint(0, 6),
        "files_count": rng.randint(0, 4),
        "notes_count": rng.randint(0, 9),
        "followers_count": 1,
        "email_messages_count": rng.randint(0, 30),
        "activities_count": rng.randint(1, 12),
        "done_activities_count": rng.randint(0, 6),
        "undone_activities_count": rng.randint(0, 6),
        "participants_count": 1,
        "expected_close_date": "2026-06-30",
    }


def _lookups() -> Lookups:
    return Lookups(
        users={
            11: {"id": 11, "name": "Maria Jensen", "email": "maria.jensen@example.com"},
            12: {"id": 12, "name": "Tomás Ferreira", "email": "tomas.ferreira@example.com"},
        },
        persons={2000 + i: {"id": 2000 + i, "name": f"Contact Person {i}"} for i in range(50)},
        organizations={3000 + i: {"id": 3000 + i, "name": f"Acme Org {i} GmbH"} for i in range(20)},
        activities={
            501: {
                "id": 501,
                "subject": "Follow-up call about pricing and the onboarding plan",
                "type": "call",
                "due_date": "2026-03-10",
                "due_time": "14:30",
                "duration": "00:45",
                "note": "<p>Ask about <b>volume discount</b> and the Q3 rollout.</p>",
            },
            502: {
                "id": 502,
                "subject": "Intro meeting",
                "type": "meeting",
                "due_date": "2026-03-01",
            },
        },
    )


def make_events(count: int, seed: int = 7) -> list[Event]:
    rng = random.Random(seed)
    lookups = _lookups()
    detected_at = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    result = []
    for index in range(count):
        item_id = 100_000 + index
        data = shapes.deal_v2(_v2_deal(item_id, rng), lookups)
        result.append(
            Event(
                envelope.Origin(1, "bench").addition(SUBSCRIPTION, TRIGGER, item_id),
                item_id,
                envelope.body(TRIGGER, SUBSCRIPTION, data, detected_at),
            )
        )
    return result


# --------------------------------------------------------------------------------------------
# Measurements


@dataclass
class Run:
    mode: str
    events: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds


@dataclass
class DaemonDetail:
    """What the store saw during one daemon run: how many round trips per delivered event."""

    claims: int = 0
    claimed_rows: int = 0
    empty_claims: int = 0
    claim_s: float = 0.0
    writes: int = 0
    written: int = 0
    write_s: float = 0.0


async def bare_loop(
    make_client: Callable[[], httpx.AsyncClient],
    url: str,
    work: Sequence[tuple[bytes, dict[str, str]]],
    concurrency: int,
) -> float:
    """C workers share one client and POST every body once; returns the elapsed seconds."""
    async with make_client() as client:
        position = iter(work)

        async def worker() -> None:
            for content, headers in position:
                response = await client.post(url, content=content, headers=headers)
                if response.status_code != 200:
                    raise RuntimeError(f"receiver answered {response.status_code}")

        started = time.perf_counter()
        async with asyncio.timeout(RUN_TIMEOUT_S):
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started


async def bare_aiohttp_loop(
    url: str, work: Sequence[tuple[bytes, dict[str, str]]], concurrency: int
) -> float:
    """`bare_loop` on aiohttp's own client, without httpx's layer on top."""
    import aiohttp

    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=DELIVERY_TIMEOUT_S),
        headers={"user-agent": "pipedrive-triggers"},
    ) as session:
        position = iter(work)

        async def worker() -> None:
            for content, headers in position:
                async with session.post(
                    url, data=content, headers=headers, allow_redirects=False
                ) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"receiver answered {response.status}")

        started = time.perf_counter()
        async with asyncio.timeout(RUN_TIMEOUT_S):
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started


def bare_client(transport: str) -> Callable[[], httpx.AsyncClient]:
    """The daemon's client settings (timeout, no redirects, user-agent), transport aside."""

    def make() -> httpx.AsyncClient:
        options: dict[str, Any] = {
            "timeout": DELIVERY_TIMEOUT_S,
            "follow_redirects": False,
            "headers": {"user-agent": "pipedrive-triggers"},
        }
        if transport == "aiohttp":
            from httpx_aiohttp import AiohttpTransport

            options["transport"] = AiohttpTransport()
        return httpx.AsyncClient(**options)

    return make


def signed_work(workload: Sequence[Event]) -> list[tuple[bytes, dict[str, str]]]:
    signer = Signer(SecretStr(SECRET))
    now = datetime.now(UTC)
    return [(e.body.encode(), signer.headers(e.event_id, e.body, now)) for e in workload]


@contextlib.contextmanager
def counting_store(detail: DaemonDetail, target: int, done: asyncio.Event) -> Iterator[None]:
    """Wrap `outbox.claim_within_limits` and `outbox.record_outcomes` (looked up by the
    Deliverer at call time) to count round trips and to note the moment the last outcome is
    committed, with no polling load on the database or the event loop."""
    claim, record_outcomes = outbox.claim_within_limits, outbox.record_outcomes

    async def counted_claim(*args: Any, **kwargs: Any) -> outbox.Claim:
        started = time.perf_counter()
        claimed = await claim(*args, **kwargs)
        if not any(free > 0 for free in kwargs["capacity"].values()):
            return claimed  # nothing to claim: answered without a round trip
        detail.claim_s += time.perf_counter() - started
        detail.claims += 1
        detail.claimed_rows += len(claimed.rows)
        detail.empty_claims += not claimed.rows
        return claimed

    async def counted_record(
        engine: Any, outcomes: Sequence[deliveries.Outcome], *args: Any
    ) -> list[Any]:
        started = time.perf_counter()
        changes = await record_outcomes(engine, outcomes, *args)
        detail.write_s += time.perf_counter() - started
        detail.writes += 1
        detail.written += sum(1 for o in outcomes if o.verdict == "delivered")
        if detail.written >= target:
            done.set()
        return changes

    outbox.claim_within_limits, outbox.record_outcomes = counted_claim, counted_record  # type: ignore[assignment]
    try:
        yield
    finally:
        outbox.claim_within_limits, outbox.record_outcomes = claim, record_outcomes


async def fill_outbox(url: str, workload: Sequence[Event]) -> None:
    """Insert the events as the poller does: one transaction per page of rows."""
    engine = database.create_engine(url)
    try:
        now = datetime.now(UTC)
        for start in range(0, len(workload), INSERT_CHUNK):
            chunk = workload[start : start + INSERT_CHUNK]
            events = [
                deliveries.NewEvent(SUBSCRIPTION, e.event_id, TRIGGER, str(e.item_id), e.body)
                for e in chunk
            ]
            async with engine.begin() as connection:
                await outbox.insert_events(connection, events, now)
        if engine.dialect.name == "postgresql":
            async with engine.begin() as connection:  # steady-state statistics, as autovacuum
                await connection.execute(sqlalchemy.text("ANALYZE deliveries"))
    finally:
        await engine.dispose()


async def daemon_run(
    url: str, callback_url: str, events_count: int, concurrency: int, detail: DaemonDetail
) -> float:
    """Run a `Deliverer` over a filled outbox; seconds from `run()` to the last outcome."""
    subscription = SubscriptionConfig(
        name=SUBSCRIPTION,
        account="bench",
        trigger=TRIGGER,
        callback_url=callback_url,
        secret=SecretStr(SECRET),
        allow_private_targets=True,  # the receiver is on loopback
    )
    del concurrency  # the daemon runs as users run it: the default [delivery] settings
    settings = DeliveryConfig()
    engine = database.create_engine(url)
    try:
        async with Callbacks(settings.timeout) as http:
            deliverer = Deliverer(engine, http, {SUBSCRIPTION: subscription}, settings)
            stop, done = asyncio.Event(), asyncio.Event()
            with counting_store(detail, events_count, done):
                started = time.perf_counter()
                task = asyncio.create_task(deliverer.run(stop))
                try:
                    async with asyncio.timeout(RUN_TIMEOUT_S):
                        waiter = asyncio.create_task(done.wait())
                        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
                        waiter.cancel()
                        if task.done():
                            task.result()  # the loop crashed: raise its error
                            raise RuntimeError("the delivery loop stopped early")
                    elapsed = time.perf_counter() - started
                finally:
                    stop.set()
                    await task
        delivered = await _scalar(
            engine,
            sqlalchemy.text("SELECT count(*) FROM deliveries WHERE state = 'delivered'"),
        )
        attempts = await _scalar(engine, sqlalchemy.text("SELECT count(*) FROM delivery_attempts"))
        if delivered != events_count or attempts != events_count:
            raise RuntimeError(
                f"expected {events_count} delivered in as many attempts, "
                f"database has {delivered} delivered, {attempts} attempts"
            )
        return elapsed
    finally:
        await engine.dispose()


async def _scalar(engine: Any, statement: Any) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(statement)).scalar_one())


# --------------------------------------------------------------------------------------------
# Databases


@contextlib.contextmanager
def sqlite_databases(directory: Path) -> Iterator[Callable[[], str]]:
    """A fresh migrated WAL file per run, in the benchmark's temp dir."""
    counter = iter(range(1_000_000))

    def fresh() -> str:
        url = f"sqlite:///{directory / f'outbox-{next(counter)}.db'}"
        database.upgrade(url)
        return url

    yield fresh


@contextlib.contextmanager
def postgres_databases() -> Iterator[Callable[[], str]]:
    """One scratch database `bench_<random>`, emptied before each run, dropped at the end."""
    with local_postgres.scratch_database() as url:
        engine = sqlalchemy.create_engine(url)

        def fresh() -> str:
            with engine.begin() as connection:
                connection.execute(
                    sqlalchemy.text(
                        "TRUNCATE deliveries, delivery_attempts, subscription_state,"
                        " subscription_health, delivery_slots RESTART IDENTITY"
                    )
                )
            return url

        try:
            yield fresh
        finally:
            engine.dispose()


# --------------------------------------------------------------------------------------------
# The benchmark


@dataclass
class Results:
    events: int
    concurrency: int
    repeat: int
    verify: bool
    receiver: str
    client: str
    machine: str
    command: str
    runs: dict[str, list[float]] = field(default_factory=dict)  # events/s of every repetition
    details: dict[str, list[dict[str, float]]] = field(default_factory=dict)

    def median(self, mode: str) -> float:
        return statistics.median(self.runs[mode])

    def median_detail(self, mode: str) -> dict[str, float]:
        """The store counters of the run whose rate is the (lower) median."""
        rates = self.runs[mode]
        index = sorted(range(len(rates)), key=rates.__getitem__)[(len(rates) - 1) // 2]
        return self.details[mode][index]


async def measure_once(
    mode: str,
    receiver: Receiver,
    workload: Sequence[Event],
    concurrency: int,
    fresh_db: Callable[[], str] | None,
    profile_path: Path | None = None,
) -> tuple[float, DaemonDetail | None]:
    """One measurement of `mode`; returns events/s (and the daemon's store counters)."""
    if mode == "aiohttp":
        seconds = await bare_aiohttp_loop(receiver.url, signed_work(workload), concurrency)
        detail = None
    elif mode in BARE_MODES:
        work = signed_work(workload)
        transport = "aiohttp" if mode == "httpx+aiohttp" else "httpx"
        seconds = await bare_loop(bare_client(transport), receiver.url, work, concurrency)
        detail = None
    else:
        assert fresh_db is not None
        url = fresh_db()
        await fill_outbox(url, workload)
        detail = DaemonDetail()
        with _profiling(profile_path):
            seconds = await daemon_run(url, receiver.url, len(workload), concurrency, detail)
    stats = await asyncio.to_thread(receiver_stats, receiver)
    if stats["distinct"] != len(workload) or stats["received"] != len(workload):
        raise RuntimeError(f"{mode}: receiver got {stats}, expected {len(workload)} events")
    if stats["unverified"]:
        raise RuntimeError(f"{mode}: {stats['unverified']} signatures failed to verify")
    return len(workload) / seconds, detail


@contextlib.contextmanager
def _profiling(path: Path | None) -> Iterator[None]:
    """pyinstrument over the event loop's thread (a one-off tool, not a dependency)."""
    if path is None:
        yield
        return
    try:
        from pyinstrument import Profiler
    except ImportError:
        raise SystemExit(
            "--profile needs pyinstrument: .venv/bin/pip install pyinstrument"
        ) from None
    profiler = Profiler(async_mode="disabled")
    profiler.start()
    try:
        yield
    finally:
        profiler.stop()
        path.write_text(profiler.output_text(unicode=True), encoding="utf-8")
        path.with_suffix(".html").write_text(profiler.output_html(), encoding="utf-8")
        print(f"  profile: {path} and {path.with_suffix('.html')}", file=sys.stderr)


async def benchmark(args: argparse.Namespace, receiver: Receiver, results: Results) -> None:
    workload = make_events(args.events)
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pdt-bench-")))
        dbs: dict[str, Callable[[], str]] = {}
        if "daemon-sqlite" in args.only:
            dbs["daemon-sqlite"] = stack.enter_context(sqlite_databases(tmp))
        if "daemon-postgresql" in args.only:
            dbs["daemon-postgresql"] = stack.enter_context(postgres_databases())
        # Warm up both sides (imports, first connections, uvicorn's first requests).
        await measure_once("httpx+aiohttp", receiver, workload[:200], args.concurrency, None)
        for round_index in range(args.repeat):
            # Round-robin, so slow drift of the machine spreads over every mode alike.
            for mode in args.only:
                profile = None
                if args.profile and mode == f"daemon-{args.profile}" and round_index == 0:
                    profile = Path(args.profile_out)
                rate, detail = await measure_once(
                    mode, receiver, workload, args.concurrency, dbs.get(mode), profile
                )
                results.runs.setdefault(mode, []).append(rate)
                if detail is not None:
                    results.details.setdefault(mode, []).append(asdict(detail))
                if not args.json:
                    print(f"  round {round_index + 1}: {LABELS[mode]:<30} {rate:8.0f} events/s")


def report(results: Results) -> str:
    lines = [
        f"{results.events} events per run, bare loops at concurrency {results.concurrency}, "
        f"daemon with the default [delivery] settings (concurrency "
        f"{DEFAULT_CONCURRENCY}, per subscription {DEFAULT_PER_SUBSCRIPTION_CONCURRENCY}), "
        f"median of {results.repeat} run(s)",
        f"receiver: WebhookReceiver(keep_bodies=False) on {results.receiver}, own process, "
        f"signature verification {'on' if results.verify else 'off'}",
        f"client: {results.client}; machine: {results.machine}",
        "",
        f"{'':<32}{'events/s':>10}   runs",
    ]
    for mode in MODES:
        if mode in results.runs:
            runs = " ".join(f"{r:.0f}" for r in results.runs[mode])
            lines.append(f"{LABELS[mode]:<32}{results.median(mode):>10.0f}   {runs}")
    bare = [m for m in BARE_MODES if m in results.runs]
    daemons = [m for m in DAEMON_MODES if m in results.runs]
    if bare and daemons:
        lines += ["", f"{'daemon / bare, same run':<24}" + "".join(f"{'/ ' + m:>16}" for m in bare)]
        for mode in daemons:
            ratios = "".join(f"{results.median(mode) / results.median(m):>16.2f}" for m in bare)
            lines.append(f"{LABELS[mode]:<24}{ratios}")
        lines.append("")
    for mode in daemons:
        detail = results.median_detail(mode)
        lines.append(
            f"{LABELS[mode]} (median run): {detail['claims']:.0f} claims of "
            f"{detail['claimed_rows'] / max(detail['claims'], 1):.0f} rows on average, "
            f"{detail['claim_s']:.2f}s awaited; {detail['writes']:.0f} outcome writes, "
            f"{detail['write_s']:.2f}s awaited"
        )
    lines += ["", f"reproduce: {results.command}"]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=5000, help="events per run (5000)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=BARE_CONCURRENCY,
        help=f"workers of the bare loops ({BARE_CONCURRENCY}); the daemon always runs with "
        "the default [delivery] settings, as users run it",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per mode; median (3)")
    parser.add_argument(
        "--only", nargs="+", choices=MODES, default=list(MODES), help="measure only these"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--verify", action="store_true", help="the receiver verifies every signature"
    )
    parser.add_argument(
        "--profile",
        choices=("sqlite", "postgresql"),
        help="profile the first daemon run on this database with pyinstrument",
    )
    parser.add_argument(
        "--profile-out", default="delivery-profile.txt", help="(with --profile) report file"
    )
    parser.add_argument("--serve-fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-secret", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_fd is None:
        if not 1 <= args.events <= 100_000:
            parser.error("--events must be between 1 and 100000")
        if not 1 <= args.concurrency <= 512:
            parser.error("--concurrency must be between 1 and 512")
        if not 1 <= args.repeat <= 20:
            parser.error("--repeat must be between 1 and 20")
        args.only = [mode for mode in MODES if mode in args.only]
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.serve_fd is not None:
        _serve_receiver(args.serve_fd, args.serve_secret)
        return
    shown = ["PYTHONPATH=.", ".venv/bin/python", "bench/delivery_throughput.py"]
    shown += sys.argv[1:] if argv is None else list(argv)
    with receiver_process(SECRET if args.verify else None) as receiver:
        results = Results(
            events=args.events,
            concurrency=args.concurrency,
            repeat=args.repeat,
            verify=args.verify,
            receiver=receiver.server,
            client=f"httpx {_version('httpx')}, httpx-aiohttp {_version('httpx-aiohttp')}, "
            f"aiohttp {_version('aiohttp')}, Python {platform.python_version()}",
            machine=f"{os.cpu_count()} cores, {platform.machine()}",
            command=shlex.join(shown),
        )
        asyncio.run(benchmark(args, receiver, results))
    if args.json:
        out = asdict(results)
        out["events_per_s"] = {mode: results.median(mode) for mode in results.runs}
        out["ratios"] = {
            f"{d}/{b}": results.median(d) / results.median(b)
            for d in DAEMON_MODES
            for b in BARE_MODES
            if d in results.runs and b in results.runs
        }
        print(json.dumps(out, indent=2))
    else:
        print()
        print(report(results))


if __name__ == "__main__":
    main()
