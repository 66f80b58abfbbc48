"""Replicas: 3 `run` processes share 30 accounts by leases; one is SIGKILLed while deals arrive.

What runs:

* **Sandboxes**: one `Sandbox` per account (its own deals, rate limit and call log), all behind
  one loopback uvicorn server in this process; account n's `base_url` is `/a/<n>`, which a thin
  ASGI layer strips and logs with the call's wall-clock time (`time.time()`: the replicas' log
  lines are compared with it).
* **Receiver**: `daemon.dev.receiver.WebhookReceiver` with the subscriptions' secret (every
  signature is checked), on its own loopback server in this process.
* **Database**: a scratch PostgreSQL database `bench_replicas_<random>` on the tests' server,
  created empty (the first replica migrates it, the others wait for it) and dropped at the end.
* **Replicas**: `python -m daemon --config FILE run`, real processes with one config (one
  `deal.added` subscription per account, `poll_interval = --interval`, `[cluster] lease =
  --lease`), each logging to its own file.

The run: start the replicas; wait until the accounts are spread evenly (`status --json
--instances`) and every feed has listed twice (so deals made from then on are new to it); add
deals at `--rate` per second, round-robin over the accounts, for `--duration` seconds; SIGKILL
one replica half-way (`--kill-at`); stop adding deals; wait until every deal has reached the
receiver (or `--drain-timeout`). Then it prints:

* deals made, events delivered (distinct webhook-ids), duplicates (POSTs beyond the first of a
  webhook-id) and whether every deal's deliveries share one webhook-id; deals lost;
* **takeover**: for the killed replica's accounts (the leases it held just before the kill,
  read from the database), the gap in each feed's listings around the kill minus the interval,
  and the time from the kill to the account's first listing by another replica (the issue's
  target: within lease + 5 s); the time from the kill to the survivors' `took N accounts` log
  lines, and to the database showing every lease held by a survivor;
* **baseline, same run**: the steady-state gaps of every feed between the first deal and the
  kill (minus the interval), and calls per account per minute at the sandbox before the kill
  (first deal to kill) and after the takeover (every killed account listed again, to the last
  deal), max and mean over the accounts, with the ratios;
* each replica's accounts before the kill and after the takeover (`status --json
  --instances`), and the ERROR/Traceback lines of the replicas' logs.

It exits 1 when a deal was lost (or a replica died on its own, or the run could not start).

Run from the repository root. The replicas run the `daemon` package of the working tree, or,
with `--rev REV`, the one of commit REV exported with `git archive` (on a checkout others edit
at the same time, so nobody's half-written file is measured):

    PYTHONPATH=. .venv/bin/python bench/replicas.py
    PYTHONPATH=. .venv/bin/python bench/replicas.py --rev HEAD --keep /tmp/replicas-logs
    PYTHONPATH=. .venv/bin/python bench/replicas.py --replicas 3 --accounts 30 --lease 10s \
        --interval 10 --rate 2 --duration 180
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import dataclasses
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy

from bench import local_postgres
from daemon import times
from daemon.dev.local_server import serve
from daemon.dev.receiver import WebhookReceiver
from daemon.dev.sandbox import Sandbox

REPO = Path(__file__).resolve().parents[1]
TOKEN = "0123456789abcdef0123456789abcdef01234567"
SECRET = "whsec_" + base64.b64encode(b"bench-replicas-signing-secret-32b").decode()
DEALS = "/api/v2/deals"
STOP_TIMEOUT_S = 30.0
START_TIMEOUT_S = 120.0
STATUS = ("status", "--json", "--instances")


@dataclasses.dataclass(frozen=True)
class Call:
    at: float  # time.time()
    account: int
    path: str
    listing: bool  # a deals listing (`updated_since`), not a first poll's highest-id probe


class PerAccount:
    """ASGI layer: `/a/<n>/...` goes to account n's own sandbox as `/...`, logged."""

    def __init__(self, sandboxes: list[Sandbox]) -> None:
        self.sandboxes = sandboxes
        self.calls: list[Call] = []  # appended from the server thread; list.append is atomic

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/a/"):
            return
        _, _, number, rest = scope["path"].split("/", 3)
        path = "/" + rest
        listing = path == DEALS and b"updated_since" in scope["query_string"]
        self.calls.append(Call(time.time(), int(number), path, listing))
        scope = {**scope, "path": path, "raw_path": path.encode()}
        await self.sandboxes[int(number)].app(scope, receive, send)


def account_name(n: int) -> str:
    return f"acct-{n:02d}"


def config_text(url: str, api: str, hooks: str, args: argparse.Namespace) -> str:
    lines = [
        "[database]",
        f'url = "{url}"',
        "",
        "[cluster]",
        f'lease = "{args.lease}"',
    ]
    for n in range(args.accounts):
        lines += [
            "",
            "[[accounts]]",
            f'name = "{account_name(n)}"',
            f'api_token = "{TOKEN}"',
            f'base_url = "{api}/a/{n}"',
        ]
    for n in range(args.accounts):
        lines += [
            "",
            "[[subscriptions]]",
            f'name = "deals-{n:02d}"',
            f'account = "{account_name(n)}"',
            'trigger = "deal.added"',
            f'callback_url = "{hooks}/hooks/{n}"',
            f'secret = "{SECRET}"',
            f"poll_interval = {args.interval:g}",
            "allow_private_targets = true",
        ]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def scratch_database() -> Iterator[str]:
    """An empty database (no migration: the replicas' own release migrates it), dropped after."""
    local_postgres.ensure_running()
    name = f"bench_replicas_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(
        local_postgres.POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    url = sqlalchemy.engine.make_url(local_postgres.POSTGRES_ADMIN_URL).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def daemon_source(rev: str | None) -> Iterator[Path]:
    """Where the replicas import `daemon` from: the working tree, or REV exported."""
    if rev is None:
        yield REPO
        return
    with tempfile.TemporaryDirectory(prefix="replicas-src-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", rev, "daemon"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        yield Path(tmp)


@dataclasses.dataclass
class Replica:
    name: str
    log: Path
    process: subprocess.Popen[bytes]


class Cluster:
    def __init__(self, directory: Path, config: Path, source: Path, url: str) -> None:
        self.directory = directory
        self.config = config
        self.env = {**os.environ, "PYTHONPATH": str(source), "PYTHONDONTWRITEBYTECODE": "1"}
        self.replicas: list[Replica] = []
        self.engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)

    def start(self, name: str) -> Replica:
        log = self.directory / f"{name}.log"
        with log.open("wb") as sink:
            # cwd: the temporary directory, so `-m daemon` finds `source`'s package only.
            process = subprocess.Popen(
                [sys.executable, "-m", "daemon", "--config", str(self.config), "run"],
                cwd=self.directory,
                env=self.env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        replica = Replica(name, log, process)
        self.replicas.append(replica)
        return replica

    def instances(self) -> list[dict[str, Any]]:
        """`status --json --instances`, as an operator reads it."""
        done = subprocess.run(
            [sys.executable, "-m", "daemon", "--config", str(self.config), *STATUS],
            cwd=self.directory,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode not in (0, 1) or not done.stdout.strip():
            return []  # not migrated yet, or not started
        rows: list[dict[str, Any]] = json.loads(done.stdout)
        return rows

    def held(self) -> dict[str, int]:
        """Accounts under an unexpired lease, by holder pid (read from the database)."""
        try:
            with self.engine.connect() as connection:
                rows = connection.execute(
                    sqlalchemy.text(
                        "SELECT l.name, i.pid FROM leases l JOIN instances i "
                        "ON i.instance = l.holder WHERE l.name LIKE 'account:%' "
                        "AND l.expires_at > now()"
                    )
                ).all()
        except sqlalchemy.exc.DBAPIError:
            return {}  # not migrated yet
        return {row.name.removeprefix("account:"): row.pid for row in rows}

    def stop(self) -> dict[str, int | None]:
        codes: dict[str, int | None] = {}
        for replica in self.replicas:
            if replica.process.poll() is None:
                replica.process.send_signal(signal.SIGTERM)
        for replica in self.replicas:
            try:
                codes[replica.name] = replica.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                replica.process.kill()  # this benchmark's own child, by its pid
                replica.process.wait()
                codes[replica.name] = None
        self.engine.dispose()
        return codes


class DealMaker(threading.Thread):
    """`rate` deals a second, round-robin over the accounts, until stopped."""

    def __init__(self, sandboxes: list[Sandbox], rate: float) -> None:
        super().__init__(name="deals", daemon=True)
        self.sandboxes = sandboxes
        self.rate = rate
        self.made: list[tuple[float, int, str]] = []  # (time.time(), account, title)
        self.stopping = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        for n in itertools.count():
            due = started + n / self.rate
            if self.stopping.wait(max(due - time.monotonic(), 0.0)):
                return
            account = n % len(self.sandboxes)
            title = f"deal {n} of {account_name(account)}"
            self.sandboxes[account].add_deal(title)
            self.made.append((time.time(), account, title))


def wait_until(what: Any, timeout_s: float, message: str, every_s: float = 0.5) -> float:
    started = time.monotonic()
    while not what():
        if time.monotonic() - started > timeout_s:
            raise SystemExit(f"gave up: {message}")
        time.sleep(every_s)
    return time.monotonic() - started


def check_alive(cluster: Cluster, except_pid: int | None = None) -> None:
    for replica in cluster.replicas:
        if replica.process.pid != except_pid and replica.process.poll() is not None:
            tail = replica.log.read_text(errors="replace")[-3000:]
            raise SystemExit(f"{replica.name} exited {replica.process.returncode}:\n{tail}")


def logged(log: Path, text: str, after: float) -> list[tuple[float, str]]:
    """(time, line) of the log lines holding `text` written at or after `after`."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        if text not in line:
            continue
        try:
            at = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        except ValueError:
            continue
        if at >= after - 0.001:
            found.append((at, line))
    return found


def per_minute(calls: list[Call], accounts: range, start: float, end: float) -> list[float]:
    counts = collections.Counter(c.account for c in calls if start <= c.at < end)
    minutes = (end - start) / 60
    return [counts[a] / minutes for a in accounts]


def listings_by_account(calls: list[Call]) -> dict[int, list[float]]:
    found: dict[int, list[float]] = collections.defaultdict(list)
    for call in calls:
        if call.listing:
            found[call.account].append(call.at)
    return found


def max_gap(times_: list[float], start: float, end: float) -> float:
    """The longest time between two listings, with `start` and `end` as bounds."""
    inside = [start, *(t for t in times_ if start < t < end), end]
    return max(b - a for a, b in itertools.pairwise(inside))


def table(rows: list[dict[str, Any]]) -> str:
    running = [r for r in rows if r.get("state") == "running"]
    return ", ".join(f"pid {r['pid']}: {r['accounts']}" for r in running) or "(none running)"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--accounts", type=int, default=30)
    parser.add_argument("--lease", default="10s", help="[cluster] lease (default 10s, min 3s)")
    parser.add_argument("--interval", type=float, default=5.0, help="poll_interval, s")
    parser.add_argument("--rate", type=float, default=2.0, help="deals a second, all accounts")
    parser.add_argument("--duration", type=float, default=180.0, help="s of deals")
    parser.add_argument("--kill-at", type=float, help="s after the first deal (duration / 2)")
    parser.add_argument("--drain-timeout", type=float, default=120.0)
    parser.add_argument("--rev", help="run the daemon of this commit (git archive)")
    parser.add_argument("--keep", type=Path, help="copy the config and replicas' logs here")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    lease_s = times.parse_duration(args.lease)
    kill_at = args.kill_at if args.kill_at is not None else args.duration / 2
    accounts = range(args.accounts)
    print(
        f"{args.replicas} replicas, {args.accounts} accounts (one deal.added subscription "
        f"each), lease {lease_s:g} s, poll_interval {args.interval:g} s, {args.rate:g} deals/s "
        f"for {args.duration:g} s, SIGKILL of one at {kill_at:g} s; "
        f"daemon: {args.rev or 'working tree'}; load average {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} cores",
        flush=True,
    )
    sandboxes = [Sandbox(token=TOKEN) for _ in accounts]
    front = PerAccount(sandboxes)
    receiver = WebhookReceiver(secret=SECRET)
    with contextlib.ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="replicas-")))
        source = stack.enter_context(daemon_source(args.rev))
        api = stack.enter_context(serve(front))
        hooks = stack.enter_context(serve(receiver))
        url = stack.enter_context(scratch_database())
        config = directory / "config.toml"
        config.write_text(config_text(url, api.base_url, hooks.base_url, args))
        cluster = Cluster(directory, config, source, url)
        try:
            return run(args, cluster, sandboxes, front, receiver, lease_s, kill_at)
        finally:
            codes = cluster.stop()
            print(f"replicas stopped (SIGTERM), exit codes: {codes}")
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                for path in directory.glob("*.log"):
                    shutil.copy(path, args.keep / path.name)
                shutil.copy(config, args.keep / "config.toml")
                print(f"logs and config copied to {args.keep}")
    return 1


def run(
    args: argparse.Namespace,
    cluster: Cluster,
    sandboxes: list[Sandbox],
    front: PerAccount,
    receiver: WebhookReceiver,
    lease_s: float,
    kill_at: float,
) -> int:
    accounts = range(args.accounts)
    began = time.time()
    for n in range(args.replicas):
        cluster.start(f"replica-{n}")
    pids = {r.process.pid for r in cluster.replicas}
    share = -(-args.accounts // args.replicas)

    def spread() -> bool:
        check_alive(cluster)
        held = collections.Counter(cluster.held().values())
        return (
            sum(held.values()) == args.accounts
            and set(held) == pids
            and max(held.values()) <= share
        )

    took = wait_until(spread, START_TIMEOUT_S, "the accounts were not spread evenly")
    wait_until(
        lambda: all(len(listings_by_account(front.calls)[a]) >= 2 for a in accounts),
        START_TIMEOUT_S,
        "not every feed listed twice",
    )
    print(
        f"accounts spread {took:.1f} s after the replicas started; every feed listed twice "
        f"{time.time() - began:.1f} s after",
        flush=True,
    )
    before_rows = cluster.instances()
    print(f"accounts held before the kill (status --json --instances): {table(before_rows)}")

    maker = DealMaker(sandboxes, args.rate)
    deals_from = time.time()
    maker.start()
    time.sleep(max(deals_from + kill_at - time.time(), 0.0))
    check_alive(cluster)
    holders = cluster.held()
    victim = next(r for r in cluster.replicas if r.process.pid == holders[account_name(0)])
    victim_accounts = sorted(
        int(name.removeprefix("acct-"))
        for name, pid in holders.items()
        if pid == victim.process.pid
    )
    killed_at = time.time()
    victim.process.send_signal(signal.SIGKILL)  # this benchmark's own child, by its pid
    victim.process.wait()
    print(
        f"SIGKILL {victim.name} (pid {victim.process.pid}, {len(victim_accounts)} accounts) "
        f"{killed_at - deals_from:.1f} s after the first deal",
        flush=True,
    )
    survivors = {r.process.pid for r in cluster.replicas} - {victim.process.pid}

    def taken_over() -> bool:
        check_alive(cluster, except_pid=victim.process.pid)
        held = cluster.held()
        return len(held) == args.accounts and set(held.values()) <= survivors

    db_takeover = wait_until(taken_over, 10 * lease_s + 60, "the leases did not move", 0.25)

    def relisted() -> bool:
        by_account = listings_by_account(front.calls)
        return all(any(t > killed_at for t in by_account[a]) for a in victim_accounts)

    wait_until(relisted, 10 * lease_s + 60, "the killed replica's accounts were not listed")
    relisted_at = max(
        min(t for t in listings_by_account(front.calls)[a] if t > killed_at)
        for a in victim_accounts
    )
    after_rows = cluster.instances()
    print(f"accounts held after the takeover (status --json --instances): {table(after_rows)}")
    time.sleep(max(deals_from + args.duration - time.time(), 0.0))
    maker.stopping.set()
    maker.join()
    deals_to = time.time()
    made = list(maker.made)
    titles = {title for _, _, title in made}
    print(f"{len(made)} deals made in {deals_to - deals_from:.1f} s; waiting for deliveries")

    def delivered_titles() -> set[str]:
        return {d.json()["data"]["title"] for d in list(receiver.received)}

    drain_started = time.monotonic()
    while time.monotonic() - drain_started < args.drain_timeout:
        if titles <= delivered_titles():
            break
        check_alive(cluster, except_pid=victim.process.pid)
        time.sleep(0.5)
    drained_s = time.monotonic() - drain_started
    calls = list(front.calls)
    return report(
        args,
        cluster,
        receiver,
        calls,
        made,
        lease_s,
        killed_at=killed_at,
        deals_from=deals_from,
        deals_to=deals_to,
        relisted_at=relisted_at,
        db_takeover=db_takeover,
        victim=victim,
        victim_accounts=victim_accounts,
        drained_s=drained_s,
    )


def report(
    args: argparse.Namespace,
    cluster: Cluster,
    receiver: WebhookReceiver,
    calls: list[Call],
    made: list[tuple[float, int, str]],
    lease_s: float,
    *,
    killed_at: float,
    deals_from: float,
    deals_to: float,
    relisted_at: float,
    db_takeover: float,
    victim: Replica,
    victim_accounts: list[int],
    drained_s: float,
) -> int:
    accounts = range(args.accounts)
    interval = args.interval
    titles = {title for _, _, title in made}
    received = list(receiver.received)
    ids_by_title: dict[str, set[str]] = collections.defaultdict(set)
    for delivery in received:
        ids_by_title[delivery.json()["data"]["title"]].add(delivery.event_id)
    distinct = {d.event_id for d in received}
    duplicates = len(received) - len(distinct)
    split = sorted(t for t, ids in ids_by_title.items() if len(ids) > 1)
    lost = sorted(titles - ids_by_title.keys())
    unverified = sum(1 for d in received if d.verified is not True)
    made_around_kill = sum(
        1
        for at, account, _ in made
        if account in victim_accounts and killed_at <= at <= relisted_at
    )
    print()
    print("== deliveries")
    print(f"deals made                  {len(made)} ({made_around_kill} on the killed replica's "
          f"accounts between the kill and their takeover)")  # fmt: skip
    print(f"events delivered (distinct) {len(distinct)} of {len(titles)} deals, "
          f"{drained_s:.1f} s after the last deal")  # fmt: skip
    print(f"POSTs received (2xx)        {len(received)}; signatures not verified: {unverified}")
    same = "every deal under one webhook-id" if not split else f"{len(split)} deals under 2+ ids"
    print(f"duplicates                  {duplicates} ({same})")
    print(f"deals lost                  {len(lost)}{': ' + ', '.join(lost[:10]) if lost else ''}")

    listings = listings_by_account(calls)
    steady = [max_gap(listings[a], deals_from, killed_at) - interval for a in accounts]
    around = {
        a: max_gap(listings[a], killed_at - 2 * interval, relisted_at + interval) - interval
        for a in victim_accounts
    }
    first_after = {
        a: min(t for t in listings[a] if t > killed_at) - killed_at for a in victim_accounts
    }
    print()
    print(f"== takeover of {victim.name}'s {len(victim_accounts)} accounts (lease {lease_s:g} s, "
          f"interval {interval:g} s)")  # fmt: skip
    print(
        f"kill -> listed again by another replica: max {max(first_after.values()):.1f} s, mean "
        f"{statistics.mean(first_after.values()):.1f} s (target: lease + 5 s = {lease_s + 5:g} s: "
        f"{'PASS' if max(first_after.values()) <= lease_s + 5 else 'FAIL'})"
    )
    print(
        f"gap in a feed's listings around the kill, minus the interval: max "
        f"{max(around.values()):.1f} s, mean {statistics.mean(around.values()):.1f} s"
    )
    print(
        f"baseline, steady state before the kill (every feed, first deal -> kill): max gap minus "
        f"interval {max(steady):.1f} s, mean {statistics.mean(steady):.1f} s"
    )
    print(
        f"longest gap between two listings, around the kill / steady: "
        f"{max(around.values()) + interval:.1f} / {max(steady) + interval:.1f} s = "
        f"{(max(around.values()) + interval) / (max(steady) + interval):.2f}x"
    )
    took_lines = [
        (at, line)
        for r in cluster.replicas
        if r is not victim
        for at, line in logged(r.log, "took ", killed_at)
    ]
    if took_lines:
        taken = sum(int(line.split("took ", 1)[1].split()[0]) for _, line in took_lines)
        first = min(at for at, _ in took_lines) - killed_at
        print(
            f"kill -> survivors' 'took N accounts' log lines: first {first:.1f}"
            f" s, last {max(at for at, _ in took_lines) - killed_at:.1f} s "
            f"({len(took_lines)} lines, {taken} accounts)"
        )
    else:
        print("kill -> survivors' 'took N accounts' log lines: none found")
    print(f"kill -> every lease held by a survivor (database, every 0.25 s): {db_takeover:.1f} s")

    before = per_minute(calls, accounts, deals_from, killed_at)
    after = per_minute(calls, accounts, relisted_at, deals_to)
    print()
    print("== calls per account per minute at the sandbox")
    print(
        f"before the kill ({killed_at - deals_from:.0f} s): max {max(before):.1f}, mean "
        f"{statistics.mean(before):.1f}"
    )
    print(
        f"after the takeover ({deals_to - relisted_at:.0f} s): max {max(after):.1f}, mean "
        f"{statistics.mean(after):.1f}; ratio after/before: max "
        f"{max(after) / max(before):.2f}x, "
        f"mean {statistics.mean(after) / statistics.mean(before):.2f}x"
    )
    listings_before = per_minute([c for c in calls if c.listing], accounts, deals_from, killed_at)
    listings_after = per_minute([c for c in calls if c.listing], accounts, relisted_at, deals_to)
    print(
        f"of which listings: before max {max(listings_before):.1f} mean "
        f"{statistics.mean(listings_before):.1f}; after max {max(listings_after):.1f} mean "
        f"{statistics.mean(listings_after):.1f} (one per interval: {60 / interval:.1f})"
    )
    others = sorted({c.path for c in calls if not c.listing})
    rates = []
    for path in others:
        chosen = [c for c in calls if c.path == path and not c.listing]
        was = statistics.mean(per_minute(chosen, accounts, deals_from, killed_at))
        now = statistics.mean(per_minute(chosen, accounts, relisted_at, deals_to))
        rates.append(f"{path} {was:.2f} -> {now:.2f}")
    print(f"other calls, mean per account per minute, before -> after: {'; '.join(rates)}")

    print()
    print("== replicas' logs")
    for replica in cluster.replicas:
        text = replica.log.read_text(errors="replace")
        lines = text.splitlines()
        errors = [line for line in lines if " ERROR " in line or "Traceback" in line]
        warnings = [line for line in lines if " WARNING " in line and "daemon.config:" not in line]
        state = "killed" if replica is victim else "running"
        print(
            f"{replica.name} (pid {replica.process.pid}, {state}): {len(errors)} ERROR/Traceback, "
            f"{len(warnings)} WARNING (besides the config's poll_interval one)"
        )
        for line in warnings[:3]:
            print(f"    {line[:200]}")
        for line in errors[:5]:
            print(f"    {line[:200]}")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
