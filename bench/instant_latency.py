"""Instant mode, end to end: how long from a change in the sandbox to the consumer's receipt,
against polling at its interval in the same run; and a burst of changes on one account.

A real daemon process (`python -m daemon --config FILE run`) with `[instant]` (its ingress on a
free loopback port, `public_url` on it, `reconcile_interval` 10 min), one account, four
subscriptions over four object types (deal.added, activity.added, person.added,
organization.added) at the default poll interval, a signed-webhook receiver and a `Sandbox`
in this process. The sandbox sends its webhooks v2 at Pipedrive's real timings (10 s timeout,
retries after 3/30/150 s) to the ingress the daemon registered itself.

* **latency** (default): `--changes` changes (200) round-robin over the four object types, one
  every `--pace` seconds (1.0: 60 a minute, each a listing, within the default 100 calls a
  minute; at 0.5 s the account's limiter is what the changes wait for); each change's time
  (`time.time()` just before the sandbox write) against the receiver's `received_at` of the
  event carrying its tag; the webhook call's answer splits it in two. Then the
  **baseline**: the same daemon and changes with `[instant]` removed, polling at the default
  interval (120 s), the changes spread over `--baseline-span` intervals (3) so the poll phase
  is sampled evenly (`--no-baseline` skips it).
* **burst** (`--burst`): `--burst-changes` (500) changes in `--burst-seconds` (10) on the one
  account, the four object types round-robin: listings of each object type in any `coalesce`
  window (from the sandbox's call log), every change delivered once, the most calls in any 60 s
  against the account's `calls_per_minute`.

Tokens are the sandbox's own accounting (`x-token-cost` per route, charged by its limiter),
counted from the first change to the last receipt.

Run from the repository root:

    PYTHONPATH=. .venv/bin/python bench/instant_latency.py               # ~10 min
    PYTHONPATH=. .venv/bin/python bench/instant_latency.py --no-baseline # ~2 min
    PYTHONPATH=. .venv/bin/python bench/instant_latency.py --burst       # ~1 min
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from daemon import config as config_module
from daemon.dev.local_server import serve
from daemon.dev.receiver import WebhookReceiver
from daemon.dev.sandbox import Sandbox

TOKEN = "0123456789abcdef0123456789abcdef01234567"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ACCOUNT = "main"
SUBSCRIPTIONS = (  # (name, trigger, listing path)
    ("deals", "deal.added", "/api/v2/deals"),
    ("activities", "activity.added", "/api/v2/activities"),
    ("persons", "person.added", "/api/v2/persons"),
    ("organizations", "organization.added", "/api/v2/organizations"),
)
LISTING_PATHS = {path: name for name, _, path in SUBSCRIPTIONS}
TAG = re.compile(rb"bench-(\d+)-x")
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


# --------------------------------------------------------------------------------------------
# The daemon and its surroundings


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def config_text(
    folder: Path,
    api_url: str,
    hooks_url: str,
    *,
    instant_port: int | None,
    reconcile: str = "10m",
    coalesce: str = "1s",
    poll_interval: float | None = None,
    calls_per_minute: int | None = None,
) -> str:
    text = f'[database]\nurl = "sqlite:///{folder / "bench.db"}"\n\n'
    if instant_port is not None:
        text += (
            f'[instant]\nlisten = "127.0.0.1:{instant_port}"\n'
            f'public_url = "http://127.0.0.1:{instant_port}/pipedrive"\n'
            f'reconcile_interval = "{reconcile}"\ncoalesce = "{coalesce}"\n\n'
        )
    text += f'[[accounts]]\nname = "{ACCOUNT}"\napi_token = "{TOKEN}"\nbase_url = "{api_url}"\n'
    if calls_per_minute is not None:
        text += f"calls_per_minute = {calls_per_minute}\n"
    for name, trigger, _ in SUBSCRIPTIONS:
        text += (
            f'\n[[subscriptions]]\nname = "{name}"\naccount = "{ACCOUNT}"\ntrigger = "{trigger}"\n'
            f'callback_url = "{hooks_url}/hooks/{name}"\nsecret = "{SECRET}"\n'
            "allow_private_targets = true\n"
        )
        if poll_interval is not None:
            text += f"poll_interval = {poll_interval:g}\n"
    return text


@contextlib.contextmanager
def daemon_process(folder: Path, config: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m daemon --config FILE run`, logging to `folder/daemon.log`; SIGTERM at the end
    (SIGKILL of this very child, by its pid, if it does not stop)."""
    log = folder / "daemon.log"
    env = {**os.environ, "PYTHONPATH": str(Path.cwd()), "PYTHONDONTWRITEBYTECODE": "1"}
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "daemon", "--config", str(config), "run"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_until(
    what: Callable[[], bool], timeout_s: float, message: str, every: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout_s
    while not what():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up: {message}")
        time.sleep(every)


def spent(sandbox: Sandbox) -> int:
    """Tokens the sandbox's limiter charged today, for the sandbox's token."""
    decision = sandbox.limiter.peek(sandbox.token, time.monotonic(), datetime.now(UTC))
    return decision.daily_limit - decision.daily_remaining


ENTITIES = {"deals": "deal", "activities": "activity", "persons": "person"}


def make_change(sandbox: Sandbox, n: int) -> tuple[str, str]:
    """Change number `n`: an object of the n-th type (round-robin), tagged `bench-n-x`;
    returns its object type and (Pipedrive's entity, id) as the webhook names it."""
    tag = f"bench-{n}-x"
    kind = SUBSCRIPTIONS[n % len(SUBSCRIPTIONS)][0]
    if kind == "deals":
        made = sandbox.add_deal(f"deal {tag}", value=100 + n, currency="EUR")
    elif kind == "activities":
        made = sandbox.add_activity(subject=f"call {tag}", type="call")
    elif kind == "persons":
        made = sandbox.add_person(f"person {tag}")
    else:
        made = sandbox.add_organization(f"org {tag}")
    return kind, f"{ENTITIES.get(kind, 'organization')}:{made['id']}"


@dataclass(frozen=True)
class Arrival:
    at: float  # time.time() when the request reached the sandbox
    method: str
    path: str
    query: str


class Arrivals:
    """The sandbox's app behind a layer that notes each request's arrival to the microsecond
    (the sandbox's own call log keeps whole seconds, as Pipedrive's timestamps do)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.log: list[Arrival] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            query = scope.get("query_string", b"").decode("latin-1")
            self.log.append(Arrival(time.time(), scope["method"], scope["path"], query))
        await self.app(scope, receive, send)


class Receipts:
    """The first receipt time of each tag, read from the receiver's deliveries."""

    def __init__(self, receiver: WebhookReceiver) -> None:
        self.receiver = receiver
        self.first: dict[int, float] = {}
        self.deliveries: dict[int, int] = {}
        self._seen = 0

    def update(self) -> None:
        received = list(self.receiver.received)
        for item in received[self._seen :]:
            match = TAG.search(item.body)
            if match is None:
                continue
            n = int(match.group(1))
            self.deliveries[n] = self.deliveries.get(n, 0) + 1
            self.first.setdefault(n, item.received_at)
        self._seen = len(received)

    def have(self, tags: Sequence[int]) -> bool:
        self.update()
        return all(n in self.first for n in tags)


# --------------------------------------------------------------------------------------------
# One run


@dataclass
class Run:
    label: str
    changes: int = 0
    made: dict[int, float] = field(default_factory=dict)  # tag -> time.time()
    kinds: dict[int, str] = field(default_factory=dict)
    entities: dict[int, str] = field(default_factory=dict)  # tag -> "deal:12"
    hook_delays: dict[int, float] = field(default_factory=dict)  # change -> webhook answered
    latencies: dict[int, float] = field(default_factory=dict)
    lost: list[int] = field(default_factory=list)
    duplicates: int = 0
    window_s: float = 0.0  # first change to last receipt
    tokens: int = 0
    calls: int = 0
    listings: dict[str, list[float]] = field(default_factory=dict)  # object type -> times
    by_route: dict[str, int] = field(default_factory=dict)
    webhook_calls: int = 0
    webhook_failed: int = 0
    max_calls_60s: int = 0
    calls_per_minute: int = config_module.DEFAULT_CALLS_PER_MINUTE
    log_errors: int = 0
    log_warnings: list[str] = field(default_factory=list)


def _ready(sandbox: Sandbox, instant: bool) -> bool:
    if instant and not any(w["is_active"] for w in sandbox.webhooks):
        return False
    return all(sandbox.calls_to("GET", path) >= 1 for path in LISTING_PATHS)


def _listing_times(arrivals: list[Arrival]) -> dict[str, list[float]]:
    """Start of each listing (the first page: no cursor) per object type."""
    out: dict[str, list[float]] = {name: [] for name in LISTING_PATHS.values()}
    for call in arrivals:
        name = LISTING_PATHS.get(call.path)
        if call.method == "GET" and name is not None and "updated_since" in call.query:
            if "cursor=" not in call.query:
                out[name].append(call.at)
    return out


def _max_in_window(times_: list[float], window_s: float) -> int:
    times_ = sorted(times_)
    best, lo = 0, 0
    for hi, t in enumerate(times_):
        while times_[lo] <= t - window_s:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def run_once(
    label: str,
    *,
    instant: bool,
    changes: int,
    pace_s: float,
    drain_s: float,
    keep: Path | None,
    reconcile: str = "10m",
    coalesce: str = "1s",
    poll_interval: float | None = None,
    calls_per_minute: int | None = None,
) -> Run:
    run = Run(label, changes)
    receiver = WebhookReceiver(secret=SECRET, keep_bodies=True)
    with (
        tempfile.TemporaryDirectory(prefix="bench-instant-") as tmp,
        Sandbox(token=TOKEN) as sandbox,  # Pipedrive's real webhook timings
        serve(arrivals := Arrivals(sandbox.app)) as api,
        serve(receiver) as hooks,
    ):
        folder = Path(tmp)
        sandbox.set_limits(burst=1_000_000)  # the daemon's own limiter is what is measured
        config = folder / "config.toml"
        config.write_text(
            config_text(
                folder,
                api.base_url,
                hooks.base_url,
                instant_port=free_port() if instant else None,
                reconcile=reconcile,
                coalesce=coalesce,
                poll_interval=poll_interval,
                calls_per_minute=calls_per_minute,
            ),
            encoding="utf-8",
        )
        if calls_per_minute is not None:
            run.calls_per_minute = calls_per_minute
        receipts = Receipts(receiver)
        with daemon_process(folder, config) as process:
            wait_until(
                lambda: process.poll() is not None or _ready(sandbox, instant),
                READY_TIMEOUT_S,
                "the daemon did not register its webhook and list every feed",
            )
            if process.poll() is not None:
                raise SystemExit((folder / "daemon.log").read_text(errors="replace")[-3000:])
            time.sleep(1.0)  # the first listings have committed their watermarks
            arrivals_before = len(arrivals.log)
            tokens_before = spent(sandbox)
            calls_before = len(sandbox.calls)
            deliveries_before = len(sandbox.webhook_deliveries)
            started = time.monotonic()
            for n in range(changes):
                due = started + n * pace_s
                time.sleep(max(0.0, due - time.monotonic()))
                run.made[n] = time.time()
                run.kinds[n], run.entities[n] = make_change(sandbox, n)
                receipts.update()
            with contextlib.suppress(SystemExit):
                wait_until(lambda: receipts.have(range(changes)), drain_s, "", every=0.1)
            last = max(receipts.first.values(), default=time.time())
            run.window_s = last - run.made[0]
            run.tokens = spent(sandbox) - tokens_before
            time.sleep(1.0)  # late duplicates
            receipts.update()
            if process.poll() is not None:
                raise SystemExit(f"the daemon exited {process.returncode}")
        calls_now = sandbox.calls[calls_before:]
        run.calls = len(calls_now)
        for call in calls_now:
            route = f"{call.method} {call.path}"
            run.by_route[route] = run.by_route.get(route, 0) + 1
        arrived = arrivals.log[arrivals_before:]
        run.max_calls_60s = _max_in_window([a.at for a in arrived if a.at <= last], 60.0)
        run.listings = _listing_times(arrived)
        hooks_sent = sandbox.webhook_deliveries[deliveries_before:]
        run.webhook_calls = len(hooks_sent)
        run.webhook_failed = sum(1 for d in hooks_sent if not d.ok)
        answered = {
            f"{d.entity}:{d.entity_id}": d.at.timestamp() for d in hooks_sent if d.attempt == 1
        }
        for n, entity in run.entities.items():
            if entity in answered:
                run.hook_delays[n] = answered[entity] - run.made[n]
        for n, made in run.made.items():
            if n in receipts.first:
                run.latencies[n] = receipts.first[n] - made
            else:
                run.lost.append(n)
        run.duplicates = sum(count - 1 for count in receipts.deliveries.values())
        log = (folder / "daemon.log").read_text(errors="replace")
        run.log_errors = log.count('"level": "ERROR"') + log.count("Traceback")
        run.log_warnings = sorted({line[:160] for line in log.splitlines() if "WARNING" in line})[
            :5
        ]
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            slug = label.split()[0]
            (keep / f"{slug}.config.toml").write_text(config.read_text())
            (keep / f"{slug}.daemon.log").write_text(log)
    return run


# --------------------------------------------------------------------------------------------
# Report


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def latency_row(run: Run) -> str:
    v = list(run.latencies.values())
    return (
        f"{run.label:<34}{len(v):>4}/{run.changes:<4}"
        f"{pct(v, 50):>8.2f}{pct(v, 90):>8.2f}{pct(v, 99):>8.2f}"
        f"{max(v, default=float('nan')):>8.2f}"
        f"{statistics.fmean(v) if v else float('nan'):>8.2f}"
        f"{run.tokens:>8}{run.window_s:>9.0f}"
    )


def per_type(run: Run) -> str:
    parts = []
    for name, _, _ in SUBSCRIPTIONS:
        v = [lat for n, lat in run.latencies.items() if run.kinds[n] == name]
        parts.append(f"{name} p50 {pct(v, 50):.2f} p99 {pct(v, 99):.2f}")
    return "; ".join(parts)


def _spread(values: list[float]) -> str:
    if not values:
        return "none"
    return f"p50 {pct(values, 50):.2f} p90 {pct(values, 90):.2f} max {max(values):.2f} s"


def describe(run: Run) -> list[str]:
    listings = ", ".join(f"{k} {len(t)}" for k, t in run.listings.items())
    routes = ", ".join(f"{r} x{n}" for r, n in sorted(run.by_route.items()))
    hooks = list(run.hook_delays.values())
    rest = [run.latencies[n] - run.hook_delays[n] for n in run.latencies if n in run.hook_delays]
    lines = [
        f"  {run.label}: {run.changes} changes, {len(run.latencies)} received, "
        f"{len(run.lost)} lost, {run.duplicates} duplicates; {run.window_s:.0f} s first change "
        f"to last receipt; {run.tokens} tokens, {run.calls} calls (max {run.max_calls_60s} in "
        f"any 60 s, limit {run.calls_per_minute})",
        f"      by type: {per_type(run)}",
        f"      change -> the sandbox's webhook call answered by the ingress: {_spread(hooks)}; "
        f"that answer -> receipt: {_spread(rest)}",
        f"      listings: {listings}; webhook calls from the sandbox: {run.webhook_calls} "
        f"({run.webhook_failed} not 2xx)",
        f"      calls: {routes}",
        f"      daemon log: {run.log_errors} ERROR/Traceback",
    ]
    lines += [f"      {w}" for w in run.log_warnings]
    return lines


def latency_report(runs: list[Run], command: str, load: tuple[str, str]) -> str:
    head = (
        f"{'run':<34}{'recv':>9}{'p50 s':>8}{'p90 s':>8}{'p99 s':>8}{'max s':>8}{'mean s':>8}"
        f"{'tokens':>8}{'window s':>9}"
    )
    lines = [head, "-" * len(head)] + [latency_row(r) for r in runs]
    lines += [""]
    for run in runs:
        lines += describe(run)
    instant = runs[0]
    v = list(instant.latencies.values())
    lines += ["", "targets (instant, reconciliation at 10 min):"]
    lines.append(
        f"  p50 < 1 s: {pct(v, 50):.2f} {_verdict(pct(v, 50) < 1)}; "
        f"p99 < 2 s: {pct(v, 99):.2f} {_verdict(pct(v, 99) < 2)}; "
        f"none lost: {len(instant.lost)} {_verdict(not instant.lost)}"
    )
    if len(runs) > 1:
        base = list(runs[1].latencies.values())
        lines.append(
            f"  ratio to polling at {config_module.DEFAULT_POLL_INTERVAL_S} s, same run: "
            f"p50 {pct(v, 50) / pct(base, 50):.3f}x, p99 {pct(v, 99) / pct(base, 99):.3f}x, "
            f"mean {statistics.fmean(v) / statistics.fmean(base):.3f}x "
            f"(expected of polling: mean = interval / 2 = "
            f"{config_module.DEFAULT_POLL_INTERVAL_S / 2:.0f} s)"
        )
    lines += [f"load average: start {load[0]}, end {load[1]} (2 cores)", f"reproduce: {command}"]
    return "\n".join(lines)


def burst_report(run: Run, coalesce_s: float, command: str, load: tuple[str, str]) -> str:
    lines = describe(run)
    lines += ["", f"listings per object type in any {coalesce_s:g} s (the coalesce window):"]
    worst = 0
    for name, times_ in run.listings.items():
        most = _max_in_window(times_, coalesce_s)
        worst = max(worst, most)
        gaps = [b - a for a, b in zip(sorted(times_), sorted(times_)[1:], strict=False)]
        lines.append(
            f"  {name:<14} {len(times_):>3} listings, at most {most} in any {coalesce_s:g} s, "
            f"shortest gap {min(gaps, default=float('nan')):.3f} s"
        )
    v = list(run.latencies.values())
    lines += [
        f"latency during the burst: p50 {pct(v, 50):.2f} s, p99 {pct(v, 99):.2f} s, "
        f"max {max(v, default=float('nan')):.2f} s",
        "targets:",
        f"  at most one listing per object type per coalesce window: {worst} "
        f"{_verdict(worst <= 1)}",
        f"  no event lost: {len(run.lost)} lost, {run.duplicates} duplicates "
        f"{_verdict(not run.lost)}",
        f"  within calls_per_minute: max {run.max_calls_60s} in any 60 s, limit "
        f"{run.calls_per_minute} {_verdict(run.max_calls_60s <= run.calls_per_minute)}",
        f"load average: start {load[0]}, end {load[1]} (2 cores)",
        f"reproduce: {command}",
    ]
    return "\n".join(lines)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--pace", type=float, default=1.0, help="seconds between changes (1.0)")
    parser.add_argument("--no-baseline", action="store_true", help="skip polling at 120 s")
    parser.add_argument(
        "--baseline-span", type=float, default=3.0, help="baseline changes over N intervals (3)"
    )
    parser.add_argument("--burst", action="store_true", help="the burst check instead")
    parser.add_argument("--burst-changes", type=int, default=500)
    parser.add_argument("--burst-seconds", type=float, default=10.0)
    parser.add_argument("--coalesce", type=float, default=config_module.DEFAULT_INSTANT_COALESCE_S)
    parser.add_argument("--calls-per-minute", type=int, default=None)
    parser.add_argument("--keep", type=Path, default=None, help="copy configs and logs here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    shown = ["PYTHONPATH=.", ".venv/bin/python", "bench/instant_latency.py"]
    shown += sys.argv[1:] if argv is None else list(argv)
    command = shlex.join(shown)
    load_start = _load()
    coalesce = f"{args.coalesce:g}s"
    if args.burst:
        run = run_once(
            "burst (instant)",
            instant=True,
            changes=args.burst_changes,
            pace_s=args.burst_seconds / args.burst_changes,
            drain_s=300.0,
            keep=args.keep,
            coalesce=coalesce,
            calls_per_minute=args.calls_per_minute,
        )
        print(burst_report(run, args.coalesce, command, (load_start, _load())))
        return 0 if not run.lost else 1
    runs = [
        run_once(
            "instant, reconcile 10 min",
            instant=True,
            changes=args.changes,
            pace_s=args.pace,
            drain_s=60.0,
            keep=args.keep,
            coalesce=coalesce,
        )
    ]
    print(latency_row(runs[0]), file=sys.stderr)
    if not args.no_baseline:
        interval = config_module.DEFAULT_POLL_INTERVAL_S
        runs.append(
            run_once(
                f"polling at {interval} s (baseline)",
                instant=False,
                changes=args.changes,
                pace_s=args.baseline_span * interval / args.changes,
                drain_s=2 * interval,
                keep=args.keep,
            )
        )
    print(latency_report(runs, command, (load_start, _load())))
    return 0 if all(not r.lost for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
