"""A backlog end to end, tried from outside: detection and delivery together, as after downtime.

5,000 deals sit behind a `deal.added` subscription whose `start` is before them (a backfill).
A real `python -m daemon --config FILE run` process, at the defaults (`calls_per_minute` 100,
the default `[delivery]` settings, the sandbox's rate limits at theirs), lists them from the
sandbox and delivers every one to a receiver. The figure is the delivery rate measured at the
receiver: N / (last delivery - first delivery), with the time from the daemon's start to its
first and to its last delivery, compared with a bare loop POSTing N signed DealResponseV2
bodies of the same kind to the same receiver in the same run.

Processes (2 cores: nothing shares a GIL with what it measures):

* the sandbox (`--serve-sandbox`, internal): a `Sandbox` filled straight through its store
  (`Store.add_person`, `add_organization`, `create_deal`, no HTTP), served by uvicorn on an
  inherited loopback socket, behind a layer that counts calls per path at `/__bench/calls`;
* the receiver (`--serve-receiver`, internal): an aiohttp server answering 200 with an empty
  body at once, noting the first arrival (`time.time()`) of every webhook-id, how many POSTs
  and body bytes it got, served at `/__bench/stats` (`?reset=1` empties it);
* the daemon: `python -m daemon --config FILE run` (or `--replicas 2`: two of them on one
  PostgreSQL database, one holds the account and detects, both deliver); SIGTERMed once the
  receiver has every deal;
* this process: the bare loop (httpx on `httpx_aiohttp.AiohttpTransport`, the daemon's
  transport, at the daemon's default `[delivery] concurrency`), and the report.

Data: every deal links one of `--persons` persons (50) and one of `--organizations`
organizations (20), round-robin, so the payloads carry names but the lookups are few: one
call each for persons, organizations, users and stages, reused for 120 s. 5,000 deals are 10
listing pages of 500 plus the first poll's id probe, about 15 calls: well under the default
100 calls a minute, so the rate limit does not hide the daemon's own costs.

Run from the repository root:

    PYTHONPATH=. .venv/bin/python bench/backlog.py              # SQLite, PostgreSQL, 3 rounds
    PYTHONPATH=. .venv/bin/python bench/backlog.py --database postgresql --replicas 2
    PYTHONPATH=. .venv/bin/python bench/backlog.py --repeat 1 --profile /tmp/backlog-prof
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench import child_server, delivery_throughput, local_postgres
from daemon.config import DEFAULT_CONCURRENCY, DEFAULT_PER_SUBSCRIPTION_CONCURRENCY
from daemon.dev.sandbox import Sandbox
from daemon.pipedrive.client import MAX_PAGE_SIZE

REPO = Path(__file__).resolve().parents[1]
TOKEN = "0123456789abcdef0123456789abcdef01234567"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # a throwaway
BENCH_CALLS = "/__bench/calls"
BENCH_STATS = "/__bench/stats"
HOOK_PATH = "/hooks/backlog"
BACKLOG_DAYS = 7
START_DAYS_BACK = 8
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
DATABASES = ("sqlite", "postgresql")
_SPIED: set[str] = set()


# --------------------------------------------------------------------------------------------
# The sandbox process


def fill(sandbox: Sandbox, deals: int, persons: int, organizations: int) -> None:
    """N deals straight into the store, oldest first, spread over the last BACKLOG_DAYS; deal
    n links person n mod P and organization n mod O (none when 0)."""
    rng = random.Random(11)
    store = sandbox.store
    now = datetime.now(UTC).replace(microsecond=0)
    first = now - timedelta(days=BACKLOG_DAYS)
    step = timedelta(days=BACKLOG_DAYS) / deals
    orgs = [store.add_organization(f"Acme Org {n} GmbH")["id"] for n in range(organizations)]
    people = [
        store.add_person(
            f"Contact Person {n}", **({"org_id": orgs[n % len(orgs)]} if orgs else {})
        )["id"]
        for n in range(persons)
    ]
    for n in range(deals):
        moment = first + step * n
        fields: dict[str, Any] = {
            "title": f"Acme Industrial {n} - renewal of the 3-year service contract",
            "value": rng.randrange(100, 250_000),
        }
        if people:
            fields["person_id"] = people[n % len(people)]
        if orgs:
            fields["org_id"] = orgs[n % len(orgs)]
        store.create_deal(fields, "ManuallyCreated", moment, moment)


def _counted_app(sandbox: Sandbox) -> Any:
    """The sandbox behind a layer that counts calls by path (`ids` lookups apart)."""
    counts: Counter[str] = Counter()
    log: list[tuple[str, float, float]] = []  # (path, arrival, answered), time.time()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == BENCH_CALLS:
            query = scope.get("query_string", b"")
            body = json.dumps(log if b"log=1" in query else counts).encode()
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        if scope["type"] == "http":
            ids = b"ids=" in scope.get("query_string", b"")
            path = scope["path"] + (" ids" if ids else "")
            counts[path] += 1
            arrived = time.time()
            await sandbox.app(scope, receive, send)
            log.append((path, arrived, time.time()))
            return
        await sandbox.app(scope, receive, send)

    return app


def _exit_with_parent() -> None:
    def wait() -> None:
        sys.stdin.read()
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=wait, daemon=True).start()


def _serve_sandbox(fd: int, args: argparse.Namespace) -> None:
    import uvicorn

    _exit_with_parent()
    sandbox = Sandbox(token=TOKEN)
    fill(sandbox, args.deals, args.persons, args.organizations)
    config = uvicorn.Config(
        _counted_app(sandbox), log_level="warning", access_log=False, lifespan="off"
    )
    uvicorn.Server(config).run(sockets=[socket.socket(fileno=fd)])


# --------------------------------------------------------------------------------------------
# The receiver process: aiohttp, 200 at once


def _serve_receiver(fd: int) -> None:
    from aiohttp import web

    _exit_with_parent()
    first_seen: dict[str, float] = {}
    totals = {"posts": 0, "bytes": 0, "last": 0.0}

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        now = time.time()
        totals["posts"] += 1
        totals["bytes"] += len(body)
        event_id = request.headers.get("webhook-id", "")
        if event_id not in first_seen:
            first_seen[event_id] = now
            totals["last"] = now
        return web.Response(status=200)

    async def stats(request: web.Request) -> web.Response:
        answer: dict[str, Any] = {
            "distinct": len(first_seen),
            "posts": totals["posts"],
            "bytes": totals["bytes"],
            "first": min(first_seen.values(), default=None),
            "last": totals["last"] or None,
        }
        if request.query.get("times") == "1":
            answer["times"] = sorted(first_seen.values())
        if request.query.get("reset") == "1":
            first_seen.clear()
            totals.update(posts=0, bytes=0, last=0.0)
        return web.json_response(answer)

    app = web.Application()
    app.router.add_get(BENCH_STATS, stats)
    app.router.add_post("/{tail:.*}", hook)
    web.run_app(
        app, sock=socket.socket(fileno=fd), print=None, access_log=None, handle_signals=True
    )


# --------------------------------------------------------------------------------------------
# Helper processes, started from here


@contextlib.contextmanager
def served(role: str, args: argparse.Namespace, ready_path: str) -> Iterator[str]:
    """Run this file as `role` on a loopback socket bound here and inherited (no window in
    which another process could take the port); yields its base URL once it answers."""

    def command(fd: int) -> list[str]:
        return [
            *(sys.executable, str(Path(__file__).resolve()), f"--serve-{role}", str(fd)),
            *("--deals", str(args.deals), "--persons", str(args.persons)),
            *("--organizations", str(args.organizations)),
        ]

    env = dict(os.environ, PYTHONPATH=str(REPO))
    with child_server.child_server(
        command, ready_path, role, start_timeout_s=START_TIMEOUT_S, env=env
    ) as (base, _):
        yield base


def receiver_stats(base: str, reset: bool = False, times: bool = False) -> dict[str, Any]:
    query = "&".join(q for q, on in (("reset=1", reset), ("times=1", times)) if on)
    answer: dict[str, Any] = httpx.get(f"{base}{BENCH_STATS}?{query}", timeout=10).json()
    return answer


def sandbox_calls(base: str) -> Counter[str]:
    return Counter(httpx.get(base + BENCH_CALLS, timeout=10).json())


def sandbox_log(base: str, since: float) -> list[tuple[str, float, float]]:
    log = httpx.get(base + BENCH_CALLS + "?log=1", timeout=10).json()
    return [(path, arrived, done) for path, arrived, done in log if arrived >= since]


# --------------------------------------------------------------------------------------------
# The two measurements


@dataclass
class Run:
    mode: str  # "baseline" or "daemon-<database>[-x<replicas>]"
    events: int
    seconds: float  # first to last delivery (baseline: the loop's own time)
    first_s: float | None = None  # daemon: its start to the first delivery
    last_s: float | None = None  # daemon: its start to the last delivery
    posts: int = 0
    mean_body: int = 0
    cpu_s: list[float] = field(default_factory=list)  # per daemon process
    calls: dict[str, int] = field(default_factory=dict)
    complete: bool = True
    note: str = ""
    # daemon: when each listing page was asked and answered, and how many events had reached
    # the receiver by the time each page was answered (seconds from the daemon's start)
    pages: list[tuple[float, float, int]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def baseline(receiver: str, work: Sequence[tuple[bytes, dict[str, str]]]) -> Run:
    receiver_stats(receiver, reset=True)
    url = receiver + HOOK_PATH
    seconds = asyncio.run(
        delivery_throughput.bare_loop(
            delivery_throughput.bare_client("aiohttp"), url, work, DEFAULT_CONCURRENCY
        )
    )
    stats = receiver_stats(receiver, reset=True)
    run = Run("baseline", stats["distinct"], seconds, posts=stats["posts"])
    run.mean_body = stats["bytes"] // max(stats["posts"], 1)
    run.complete = stats["distinct"] == len(work)
    return run


def config_text(url: str, api: str, receiver: str) -> str:
    start = datetime.now(UTC) - timedelta(days=START_DAYS_BACK)
    return "\n".join(
        [
            "[database]",
            f"url = {json.dumps(url)}",
            "",
            "[[accounts]]",
            'name = "main"',
            f'api_token = "{TOKEN}"',
            f'base_url = "{api}"',
            "",
            "[[subscriptions]]",
            'name = "backlog"',
            'account = "main"',
            'trigger = "deal.added"',
            f'callback_url = "{receiver}{HOOK_PATH}"',
            f'secret = "{SECRET}"',
            f'start = "{start.strftime("%Y-%m-%dT%H:%M:%SZ")}"',
            "allow_private_targets = true",
            "",
        ]
    )


def _cpu_s(pid: int) -> float:
    """utime + stime of a live process, from /proc."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def scratch_url(kind: str, directory: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{directory / 'backlog.db'}"  # `run` migrates it
        return
    with local_postgres.scratch_database() as url:
        yield url


def daemon_run(
    args: argparse.Namespace,
    kind: str,
    replicas: int,
    api: str,
    receiver: str,
    profile: Path | None,
) -> Run:
    mode = f"daemon-{kind}" + (f"-x{replicas}" if replicas > 1 else "")
    receiver_stats(receiver, reset=True)
    calls_before = sandbox_calls(api)
    with tempfile.TemporaryDirectory(prefix="backlog-") as tmp, scratch_url(kind, Path(tmp)) as url:
        directory = Path(tmp)
        config = directory / "config.toml"
        config.write_text(config_text(url, api, receiver), encoding="utf-8")
        env = dict(os.environ, PYTHONPATH=str(args.daemon_root or REPO))
        processes: list[subprocess.Popen[bytes]] = []
        logs = []
        started = time.time()
        for n in range(replicas):
            command = [sys.executable]
            if profile is not None and n == 0:
                command += [str(REPO / "bench" / "profile_daemon.py")]
                env["PROFILE_OUT"] = str(profile)
            command += ["-m", "daemon", "--config", str(config), "run"]
            log = open(directory / f"daemon-{n}.log", "wb")  # closed below
            logs.append(log)
            processes.append(
                subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp)
            )
        cpu: list[float] = []
        profiling = False
        spy: subprocess.Popen[bytes] | None = None
        try:
            deadline = time.monotonic() + args.timeout
            stats = receiver_stats(receiver)
            while stats["distinct"] < args.deals and time.monotonic() < deadline:
                if any(p.poll() is not None for p in processes):
                    break
                first_call = (profile or args.py_spy) and sandbox_calls(api) != calls_before
                if profile is not None and not profiling and first_call:
                    processes[0].send_signal(signal.SIGUSR1)  # its first call: profile from here
                    profiling = True
                if args.py_spy and spy is None and first_call and mode not in _SPIED:
                    _SPIED.add(mode)
                    out = f"{args.py_spy}-{mode}.txt"
                    spy = subprocess.Popen(
                        [
                            args.py_spy_bin,
                            "record",
                            "--pid",
                            str(processes[0].pid),
                            "--format",
                            "raw",
                            "--threads",
                            "--rate",
                            "250",
                            "--output",
                            out,
                            "--nonblocking",
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                time.sleep(0.1)
                stats = receiver_stats(receiver)
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(timeout=30)
            if profiling:
                processes[0].send_signal(signal.SIGUSR2)
                _wait_for(Path(str(profile) + ".txt"), 30.0)
            cpu = [_cpu_s(p.pid) for p in processes if p.poll() is None]
        finally:
            for process in processes:
                if process.poll() is None:
                    process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            for log in logs:
                log.close()
        stats = receiver_stats(receiver, reset=True, times=True)
        calls = sandbox_calls(api) - calls_before
        arrivals = stats.pop("times")
        pages = []
        for path, asked, answered in sandbox_log(api, started):
            if path == "/api/v2/deals":
                delivered = bisect.bisect_right(arrivals, answered)
                pages.append((asked - started, answered - started, delivered))
        run = Run(mode, stats["distinct"], 0.0, posts=stats["posts"], cpu_s=cpu, calls=calls)
        run.pages = pages
        run.mean_body = stats["bytes"] // max(stats["posts"], 1)
        if stats["first"] is not None:
            run.seconds = stats["last"] - stats["first"]
            run.first_s = stats["first"] - started
            run.last_s = stats["last"] - started
        run.complete = stats["distinct"] == args.deals
        if not run.complete:
            tails = [
                (directory / f"daemon-{n}.log").read_text(errors="replace")[-3000:]
                for n in range(replicas)
            ]
            run.note = "\n".join(tails)
    return run


def _wait_for(path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # let the writer finish


# --------------------------------------------------------------------------------------------
# This process


@dataclass
class Results:
    rounds: list[list[Run]] = field(default_factory=list)


def ratios(results: Results, mode: str) -> list[float]:
    """Each daemon run against the baseline measured just before it, in the same round."""
    out = []
    for runs in results.rounds:
        for index, run in enumerate(runs):
            if run.mode == mode and index > 0 and runs[index - 1].mode == "baseline":
                out.append(run.rate / runs[index - 1].rate)
    return out


def report(results: Results, modes: Sequence[str], args: argparse.Namespace) -> str:
    lines = [
        f"{args.deals:,} deals backfilled (deal.added, start before them), {MAX_PAGE_SIZE} a "
        f"page; deals link {args.persons} persons and {args.organizations} organizations",
        f"daemon at the defaults: calls_per_minute 100, [delivery] concurrency "
        f"{DEFAULT_CONCURRENCY}, per_subscription_concurrency "
        f"{DEFAULT_PER_SUBSCRIPTION_CONCURRENCY}; baseline: bare httpx on AiohttpTransport, "
        f"{DEFAULT_CONCURRENCY} workers; receiver: aiohttp, 200 at once",
        "rate = events / (last delivery - first delivery) at the receiver; ratio = daemon / "
        "the baseline run just before it",
        "",
    ]
    for number, runs in enumerate(results.rounds, 1):
        for run in runs:
            text = f"round {number}  {run.mode:<24} {run.rate:8,.0f} events/s"
            if run.mode != "baseline":
                text += (
                    f"  start->first {run.first_s or 0:5.1f} s  start->last "
                    f"{run.last_s or 0:5.1f} s  CPU {'+'.join(f'{c:.1f}' for c in run.cpu_s)} s"
                    f"  calls {sum(run.calls.values())}"
                )
            text += f"  posts {run.posts:,}  body {run.mean_body} B"
            if run.pages:
                text += "\n    listing pages (asked-answered s, delivered by then): " + "  ".join(
                    f"{a:.1f}-{b:.1f} {d}" for a, b, d in run.pages
                )
            if not run.complete:
                text += f"  INCOMPLETE ({run.events} distinct)\n{run.note}"
            lines.append(text)
    lines.append("")
    base = [r.rate for runs in results.rounds for r in runs if r.mode == "baseline"]
    lines.append(
        f"{'baseline':<24} median {statistics.median(base):8,.0f} events/s  "
        f"runs {' '.join(f'{r:,.0f}' for r in base)}"
    )
    for mode in modes:
        rates = [r.rate for runs in results.rounds for r in runs if r.mode == mode]
        got = ratios(results, mode)
        if not rates:
            continue
        lines.append(
            f"{mode:<24} median {statistics.median(rates):8,.0f} events/s  ratio median "
            f"{statistics.median(got):.2f}x  (runs {' '.join(f'{r:.2f}' for r in got)}; "
            f"rates {' '.join(f'{r:,.0f}' for r in rates)})"
        )
    calls = next((r.calls for runs in results.rounds for r in runs if r.calls), {})
    if calls:
        lines.append(
            "Pipedrive calls of one daemon run: "
            + ", ".join(f"{path} {count}" for path, count in sorted(calls.items()))
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=5000)
    parser.add_argument("--persons", type=int, default=50)
    parser.add_argument("--organizations", type=int, default=20)
    parser.add_argument("--database", nargs="+", choices=DATABASES, default=list(DATABASES))
    parser.add_argument(
        "--replicas", type=int, default=1, help="PostgreSQL: run this many daemons as well"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600.0, help="per daemon run, seconds")
    parser.add_argument(
        "--profile",
        type=Path,
        help="profile the first daemon run per database (cProfile, from its first Pipedrive "
        "call to its last delivery) into PREFIX-<database>.txt/.prof",
    )
    parser.add_argument(
        "--py-spy",
        help="sample the first daemon run per mode with py-spy (not a project dependency: "
        "install it in a scratch venv) into PREFIX-<mode>.txt, collapsed stacks",
    )
    parser.add_argument("--py-spy-bin", default="py-spy")
    parser.add_argument(
        "--daemon-root",
        type=Path,
        help="run the daemon package found here (a `git archive` of another revision, say) "
        "instead of this checkout's; everything else runs from this checkout",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve-sandbox", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-receiver", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.serve_sandbox is not None:
        _serve_sandbox(args.serve_sandbox, args)
        return
    if args.serve_receiver is not None:
        _serve_receiver(args.serve_receiver)
        return
    modes = [f"daemon-{kind}" for kind in args.database]
    if args.replicas > 1 and "postgresql" in args.database:
        modes.append(f"daemon-postgresql-x{args.replicas}")
    events = delivery_throughput.make_events(args.deals)
    work = delivery_throughput.signed_work(events)
    results = Results()
    with (
        served("sandbox", args, BENCH_CALLS) as api,
        served("receiver", args, BENCH_STATS) as receiver,
    ):
        asyncio.run(  # warm-up: connections, the receiver's first requests
            delivery_throughput.bare_loop(
                delivery_throughput.bare_client("aiohttp"),
                receiver + HOOK_PATH,
                work[:200],
                DEFAULT_CONCURRENCY,
            )
        )
        receiver_stats(receiver, reset=True)
        profiled: set[str] = set()
        for _ in range(args.repeat):
            runs: list[Run] = []
            for mode in modes:
                kind = "sqlite" if mode.startswith("daemon-sqlite") else "postgresql"
                replicas = args.replicas if mode.endswith(f"-x{args.replicas}") else 1
                profile = None
                if args.profile is not None and mode not in profiled:
                    profiled.add(mode)
                    profile = Path(f"{args.profile}-{mode}")
                runs.append(baseline(receiver, work))
                runs.append(daemon_run(args, kind, replicas, api, receiver, profile))
                print(
                    f"{runs[-1].mode}: {runs[-1].rate:,.0f} events/s, baseline "
                    f"{runs[-2].rate:,.0f}",
                    file=sys.stderr,
                    flush=True,
                )
            results.rounds.append(runs)
    if args.json:
        print(json.dumps([[asdict(r) | {"rate": r.rate} for r in rs] for rs in results.rounds]))
    print(report(results, modes, args))


if __name__ == "__main__":
    main()
