"""Replicas: several `run` processes with one config on one PostgreSQL database share the
accounts by leases. Real processes, a real PostgreSQL, one sandbox per account (so each
account's listings are counted apart), one receiver."""

from __future__ import annotations

import contextlib
import itertools
import json
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy

from daemon.dev.local_server import serve
from daemon.dev.receiver import WebhookReceiver
from daemon.dev.sandbox import Sandbox
from tests import processes
from tests.acceptance.test_cli import cli, start_daemon
from tests.conftest import API_TOKEN, SIGNING_SECRET, scratch_postgres
from tests.waiting import HANG_S

LEASE_S = 3.0  # the shortest `[cluster] lease`: takeovers within seconds
INTERVAL_S = 1.0
DEALS = "/api/v2/deals"


@dataclass
class Cluster:
    tmp_path: Path
    config: Path
    url: str
    sandboxes: dict[str, Sandbox]
    receiver: WebhookReceiver
    replicas: dict[str, processes.Child] = field(default_factory=dict)

    def start(self, name: str, *, instance: str | None = None) -> processes.Child:
        config = self.config
        if instance is not None:  # the same config but for its name
            config = self.tmp_path / f"{name}.toml"
            text = self.config.read_text()
            config.write_text(text.replace("[cluster]\n", f'[cluster]\ninstance = "{instance}"\n'))
        child = start_daemon(config, self.log(name))
        self.replicas[name] = child
        return child

    def log(self, name: str) -> Path:
        return self.tmp_path / f"{name}.log"

    def instances(self) -> list[dict[str, Any]]:
        result = cli("--config", str(self.config), "status", "--json", "--instances")
        if "database is at revision none" in result.stderr:
            return []  # the first replica has not migrated it yet
        assert result.returncode in (0, 1), result.stderr
        rows: list[dict[str, Any]] = json.loads(result.stdout)
        return rows

    def held(self) -> dict[int, int]:
        """Accounts held, by the pid of each running replica."""
        return {r["pid"]: r["accounts"] for r in self.instances() if r["state"] == "running"}

    def listings(self, account: str, since: float = 0.0) -> list[float]:
        return [
            c.time.timestamp()
            for c in self.sandboxes[account].calls
            if c.method == "GET" and c.path == DEALS and c.time.timestamp() >= since
        ]


def _config_text(url: str, sandboxes: dict[str, Sandbox], receiver: WebhookReceiver) -> str:
    lines = [
        "[database]",
        f'url = "{url}"',
        "",
        "[delivery]",
        'retry_schedule = ["0.2s"]',
        "timeout = 2",
        "",
        "[cluster]",
        f'lease = "{LEASE_S}s"',
    ]
    for name, sandbox in sandboxes.items():
        lines += [
            "",
            "[[accounts]]",
            f'name = "{name}"',
            f'api_token = "{API_TOKEN}"',
            f'base_url = "{sandbox.base_url}"',  # type: ignore[attr-defined]
        ]
    for name in sandboxes:
        lines += [
            "",
            "[[subscriptions]]",
            f'name = "deals-{name}"',
            f'account = "{name}"',
            'trigger = "deal.added"',
            f'callback_url = "{receiver.base_url}/hooks/deals-{name}"',  # type: ignore[attr-defined]
            f'secret = "{SIGNING_SECRET}"',
            f"poll_interval = {INTERVAL_S:g}",
            "allow_private_targets = true",
        ]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def cluster(tmp_path: Path, receiver: WebhookReceiver, accounts: int = 4) -> Iterator[Cluster]:
    with contextlib.ExitStack() as stack:
        sandboxes: dict[str, Sandbox] = {}
        for n in range(accounts):
            sandbox = Sandbox(token=API_TOKEN)
            server = stack.enter_context(serve(sandbox.app))
            sandbox.base_url = server.base_url  # type: ignore[attr-defined]
            sandboxes[f"a{n}"] = sandbox
        url = stack.enter_context(scratch_postgres("pdt_replicas"))
        config = tmp_path / "config.toml"
        config.write_text(_config_text(url, sandboxes, receiver))
        running = Cluster(tmp_path, config, url, sandboxes, receiver)
        try:
            yield running
        finally:
            for child in running.replicas.values():
                if child.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        child.send_signal(signal.SIGCONT)
                    child.kill()
                    child.wait(timeout=HANG_S)


def _logged_at(log: Path, text: str) -> datetime:
    """When the last log line holding `text` was written (the daemon's text log format)."""
    line = [line for line in log.read_text().splitlines() if text in line][-1]
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")


def _titles(receiver: WebhookReceiver) -> set[str]:
    return {d.json()["data"]["title"] for d in list(receiver.received)}


def until(what: Callable[[], bool], timeout_s: float, message: str) -> float:
    """Seconds it took for `what` to hold."""
    started = time.monotonic()
    while not what():
        assert time.monotonic() - started < timeout_s, message
        time.sleep(0.1)
    return time.monotonic() - started


def stop(child: processes.Child) -> None:
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=HANG_S) == 0


def test_replicas_share_the_accounts_and_take_over_a_stopped_or_killed_one(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    with cluster(tmp_path, receiver) as c:
        first = c.start("first")
        second = c.start("second")
        until(
            lambda: c.held() == {first.pid: 2, second.pid: 2},
            HANG_S,
            "two replicas did not split four accounts two and two",
        )
        # Each account listed by one replica only: about one listing a second, not two.
        window_start = time.time()
        time.sleep(3)
        for account in c.sandboxes:
            count = len(c.listings(account, window_start))
            assert 1 <= count <= 4, f"{account} listed {count} times in 3 s"
        for n, sandbox in enumerate(c.sandboxes.values()):
            sandbox.add_deal(f"before {n}")

        # A clean stop gives the leases up at once: the other replica takes them in seconds.
        stop(first)
        until(lambda: c.held() == {second.pid: 4}, HANG_S, "the leases did not move")
        # Timed from the logs (a `status` process takes a while itself under load).
        stopped_at = _logged_at(c.log("first"), "stopped")
        taken_at = _logged_at(c.log("second"), "took 2 accounts (1 replicas")
        moved = (taken_at - stopped_at).total_seconds()
        assert moved < 2, f"a rolling restart moved the accounts in {moved:.1f}s"

        third = c.start("third")
        until(
            lambda: c.held() == {second.pid: 2, third.pid: 2},
            HANG_S,
            "a new replica did not take its share",
        )
        # SIGKILL: nothing is given up; the leases run out and the survivor takes them.
        killed_at = time.time()
        second.kill()
        second.wait(timeout=HANG_S)
        for n, sandbox in enumerate(c.sandboxes.values()):
            sandbox.add_deal(f"after kill {n}")
        until(lambda: c.held() == {third.pid: 4}, HANG_S, "the killed replica's accounts stayed")
        taken_at = _logged_at(c.log("third"), "took 2 accounts (1 replicas")
        taken = (taken_at - datetime.fromtimestamp(killed_at)).total_seconds()
        assert taken <= LEASE_S + 5, f"takeover took {taken:.1f}s"
        time.sleep(INTERVAL_S * 2)
        for account in c.sandboxes:
            listed = sorted([killed_at - 5, *c.listings(account, killed_at - 5)])
            gap = max(b - a for a, b in itertools.pairwise(listed))
            assert gap <= LEASE_S + 5, f"{account} went {gap:.1f}s without a listing"

        # Every deal delivered (at least once; any duplicate bears the same webhook-id).
        until(
            lambda: len(_titles(c.receiver)) == 8,
            HANG_S,
            "not every deal was delivered",
        )
        by_title: dict[str, set[str]] = {}
        for delivery in c.receiver.received:
            by_title.setdefault(delivery.json()["data"]["title"], set()).add(delivery.event_id)
        assert all(len(ids) == 1 for ids in by_title.values()), by_title
        stop(third)
        rows = c.instances()
        assert {r["state"] for r in rows if r["pid"] in (first.pid, third.pid)} == {"stopped"}
        assert next(r for r in rows if r["pid"] == second.pid)["state"] in ("running", "gone")


def test_a_replica_paused_past_its_lease_finds_its_accounts_taken_and_rejoins(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    with cluster(tmp_path, receiver) as c:
        paused = c.start("paused")
        other = c.start("other")
        until(lambda: c.held() == {paused.pid: 2, other.pid: 2}, HANG_S, "no even split")
        paused.send_signal(signal.SIGSTOP)
        until(lambda: c.held().get(other.pid) == 4, HANG_S, "the paused one's accounts stayed")
        time.sleep(1)
        paused.send_signal(signal.SIGCONT)
        resumed_at = time.time()
        until(
            lambda: c.held() == {paused.pid: 2, other.pid: 2},
            HANG_S,
            "the resumed replica did not rejoin",
        )
        log = c.log("paused").read_text()
        assert "lost" in log and "leases" in log, log[-2000:]
        assert "Traceback" not in log
        # Never two replicas on one account: listings stay about one a second.
        time.sleep(2)
        for account in c.sandboxes:
            count = len(c.listings(account, resumed_at))
            elapsed = time.time() - resumed_at
            assert count <= elapsed / INTERVAL_S + 2, f"{account}: {count} in {elapsed:.1f}s"
        stop(paused)
        stop(other)


def test_replicas_started_together_on_an_empty_database_both_run(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    with cluster(tmp_path, receiver, accounts=2) as c:
        first = c.start("first")
        second = c.start("second")
        until(
            lambda: all("started:" in c.log(n).read_text() for n in ("first", "second")),
            HANG_S,
            "both replicas did not start (one migrates, the other waits)",
        )
        until(lambda: c.held() == {first.pid: 1, second.pid: 1}, HANG_S, "no even split")
        stop(first)
        stop(second)


def test_a_second_replica_with_the_same_instance_name_is_refused(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    with cluster(tmp_path, receiver, accounts=1) as c:
        first = c.start("first", instance="same")
        until(lambda: c.held() == {first.pid: 1}, HANG_S, "the first replica did not start")
        second = c.start("second", instance="same")
        assert second.wait(timeout=HANG_S) == 4
        line = c.log("second").read_text()
        assert "[cluster] instance 'same' is the name of a replica that is running" in line
        stop(first)


def test_replicas_ride_out_every_backend_killed(tmp_path: Path, receiver: WebhookReceiver) -> None:
    """The old single-instance guard was a session lock that vanished with its session; leases
    are rows: after pg_terminate_backend, each account still has one replica."""
    with cluster(tmp_path, receiver) as c:
        first = c.start("first")
        second = c.start("second")
        until(lambda: c.held() == {first.pid: 2, second.pid: 2}, HANG_S, "no even split")
        admin = sqlalchemy.create_engine(
            c.url.rsplit("/", 1)[0] + "/test", isolation_level="AUTOCOMMIT"
        )
        database = c.url.rsplit("/", 1)[1]
        with admin.connect() as connection:
            connection.execute(
                sqlalchemy.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": database},
            )
        admin.dispose()
        killed_at = time.time()
        for n, sandbox in enumerate(c.sandboxes.values()):
            sandbox.add_deal(f"after terminate {n}")
        until(
            lambda: len(_titles(c.receiver)) == 4,
            HANG_S,
            "deals made after the backends were killed were not delivered",
        )
        time.sleep(2)
        assert c.held() == {first.pid: 2, second.pid: 2}
        for account in c.sandboxes:
            count = len(c.listings(account, killed_at))
            elapsed = time.time() - killed_at
            assert count <= elapsed / INTERVAL_S + 2, f"{account}: {count} in {elapsed:.1f}s"
        for name in ("first", "second"):
            assert c.log(name).read_text().count("Traceback") == 0
        stop(first)
        stop(second)


def test_rolling_upgrade_old_replicas_run_on_and_a_new_old_one_is_refused(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    """The upgrade procedure (docs/replicas.md): start a replica of the new release (it
    migrates under the lock), then stop the old ones. Old replicas already running go on; an
    old one started after the migration refuses, naming both revisions."""
    with cluster(tmp_path, receiver, accounts=2) as c:
        old = c.start("old")
        until(lambda: c.held() == {old.pid: 2}, HANG_S, "the old replica did not start")
        engine = sqlalchemy.create_engine(c.url)
        with engine.begin() as connection:  # what the new release's migration leaves
            connection.execute(
                sqlalchemy.text("UPDATE alembic_version SET version_num = '0099_new'")
            )
        engine.dispose()
        late = c.start("late")
        assert late.wait(timeout=HANG_S) == 4
        line = c.log("late").read_text().strip().splitlines()[-1]
        assert "database is at revision 0099_new, written by a newer release" in line
        assert "which knows up to 00" in line
        before = {account: len(c.listings(account)) for account in c.sandboxes}
        time.sleep(LEASE_S)
        assert old.poll() is None, "the replica already running goes on"
        for account, count in before.items():
            assert len(c.listings(account)) > count, f"{account} is still polled"
        stop(old)
