"""A real `run` process at scale: 1,000 accounts x 10 subscriptions against a sandbox.

The benchmark starts `python -m daemon --config FILE run` as a user runs it, with the config of
`scale.generate` (ten triggers over four object types per account, so 4 feeds per account),
every account pointed at one in-process sandbox on loopback. The sandbox holds one token, so
every account uses it; each account's `base_url` carries its own path prefix (`/a/<n>`), which
a thin ASGI layer in front of the sandbox strips and logs with the call's time, so calls are
told apart per account and per feed. The sandbox's burst limit is raised out of the way (one
token serves a thousand accounts); the daemon's own `calls_per_minute` is what is checked.
The sandbox holds no deals, activities, persons or organizations, so every listing is empty:
the daemon is idle, as the issue's deployment was. Callbacks point at example.com and are never
called (no events).

What is reported, per run:

* **peak RSS**: `VmHWM` of `/proc/<pid>/status`, read just before SIGTERM;
* **idle CPU**: user+system seconds of the process (`/proc/<pid>/stat`) over a window that
  begins 10 s after the first interval ends (counted from the daemon's first call) and lasts
  one interval, as % of one core;
* **first listings**: the most feeds that made their first call in any one second, the most
  calls the sandbox got in any one second of the first interval (a new feed's first poll
  makes two: its highest id, then its listing), and the second (after the process started)
  of the last feed's first call;
* **gaps**: for each feed, the time between two consecutive listings (calls with
  `updated_since`) minus the interval: p99 and max over all feeds;
* **calls per account per minute**: the most calls of one account in any sliding 60 s;
* **startup**: seconds from the process start to its first call.

The baseline is measured in the same invocation: `--baseline REV` runs the same configs with
the daemon of commit REV (exported with `git archive` into a temporary directory), and the
ratios current / baseline are printed. Without it, only the working tree's daemon runs.

Run from the repository root (the defaults take about 5 min per run). The daemon measured is
the one in the current directory; on a checkout others edit at the same time, export a commit
first, so nobody's half-written file is measured:

    PYTHONPATH=. .venv/bin/python bench/scale_run.py --baseline fd099a2
    git archive HEAD daemon bench | tar -x -C /tmp/tree && cd /tmp/tree && PYTHONPATH=. \
        /work/main/.venv/bin/python bench/scale_run.py --repo /work/main --baseline fd099a2
    PYTHONPATH=. .venv/bin/python bench/scale_run.py --interval 30 --accounts 200 --only sqlite
    PYTHONPATH=. .venv/bin/python bench/scale_run.py --wrap bench/profile_daemon.py ...

`--wrap SCRIPT` starts the daemon as `python SCRIPT -m daemon ...` (a profiler that runs the
module, see `profile_daemon.py`); its figures are then not comparable.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import local_postgres, scale
from daemon.dev.local_server import serve
from daemon.dev.sandbox import Sandbox

SETTLE_S = 10.0  # after the first interval, before the idle window opens
STOP_TIMEOUT_S = 60.0
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass(frozen=True)
class Call:
    at: float  # time.monotonic(), the same clock in both processes
    account: int
    path: str
    listing: bool  # a change-feed listing (`updated_since`), not a first call's highest id


class PerAccount:
    """ASGI layer before the sandbox: `/a/<n>/api/v2/deals` is account n's `/api/v2/deals`."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.calls: list[Call] = []  # appended from the server thread; list.append is atomic

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/a/"):
            _, _, number, rest = scope["path"].split("/", 3)
            path = "/" + rest
            listing = b"updated_since" in scope["query_string"]
            self.calls.append(Call(time.monotonic(), int(number), path, listing))
            scope = {**scope, "path": path, "raw_path": path.encode()}
        await self.app(scope, receive, send)


@dataclasses.dataclass
class Sample:
    at: float
    cpu_s: float
    rss_kb: int


def _sample(pid: int) -> Sample | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15)
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    return Sample(time.monotonic(), cpu, rss)


def _peak_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))


@dataclasses.dataclass
class Result:
    label: str
    peak_rss_mb: float
    idle_cpu_pct: float
    idle_window_s: float
    busiest_second: int
    busiest_first_second: int
    last_first_call_s: float
    gap_p99_s: float
    gap_max_s: float
    feeds_listed_twice: int
    feeds: int
    max_calls_per_account_minute: int
    calls_per_minute_limit: int
    startup_s: float
    calls: int
    log_warnings: int
    exit_code: int | None


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1)]


def _busiest_minute(times: list[float]) -> int:
    times = sorted(times)
    best, left = 0, 0
    for right, at in enumerate(times):
        while at - times[left] >= 60.0:
            left += 1
        best = max(best, right - left + 1)
    return best


@dataclasses.dataclass(frozen=True)
class Listings:
    busiest_second: int  # calls in the busiest second of the first interval
    busiest_first_second: int  # feeds that made their first call in the busiest second
    last_first_call_s: float  # after the process started
    gaps: list[float]  # between two listings of a feed, minus the interval
    feeds_listed_twice: int
    feeds: int
    busiest_account_minute: int  # the most calls of one account in any 60 s


def analyse(calls: list[Call], started: float, interval_s: float) -> Listings:
    first: dict[tuple[int, str], float] = {}
    listings: dict[tuple[int, str], list[float]] = collections.defaultdict(list)
    per_account: dict[int, list[float]] = collections.defaultdict(list)
    per_second: collections.Counter[int] = collections.Counter()
    opening = calls[0].at if calls else started
    for call in calls:
        key = (call.account, call.path)
        first.setdefault(key, call.at - started)
        if call.listing:
            listings[key].append(call.at)
        per_account[call.account].append(call.at)
        if call.at - opening < interval_s:
            per_second[int(call.at - opening)] += 1
    gaps = [
        later - earlier - interval_s
        for times in listings.values()
        for earlier, later in itertools.pairwise(times)
    ]
    return Listings(
        busiest_second=max(per_second.values(), default=0),
        busiest_first_second=max(
            collections.Counter(int(at) for at in first.values()).values(), default=0
        ),
        last_first_call_s=max(first.values(), default=math.nan),
        gaps=gaps,
        feeds_listed_twice=sum(1 for times in listings.values() if len(times) >= 2),
        feeds=len(first),
        busiest_account_minute=max((_busiest_minute(t) for t in per_account.values()), default=0),
    )


def run_once(
    label: str,
    source: Path,
    server_url: str,
    front: PerAccount,
    *,
    accounts: int,
    per_account: int,
    interval_s: int,
    database_url: str | None,
    token: str,
    wrap: str | None,
    keep: Path | None,
) -> Result:
    with tempfile.TemporaryDirectory(prefix="scale-run-") as tmp:
        directory = Path(tmp)
        config = scale.generate(
            accounts,
            per_account,
            directory,
            database_url=database_url,
            base_url=lambda a: f"{server_url}/a/{a}",
            token=token,
            interval_s=interval_s if interval_s != 120 else None,
        )
        front.calls.clear()
        env = {**os.environ, "PYTHONPATH": str(source), "PYTHONDONTWRITEBYTECODE": "1"}
        prefix = [sys.executable, *([wrap] if wrap else [])]
        command = [*prefix, "-m", "daemon", "--config", str(config), "run"]
        log_path = (keep or directory) / f"{label.replace(' ', '_')}.log"
        with log_path.open("wb") as log:
            started = time.monotonic()
            # cwd: the temporary directory, so `-m daemon` finds `source`'s package only.
            process = subprocess.Popen(command, cwd=directory, env=env, stdout=log, stderr=log)
            samples: list[Sample] = []
            # From the first call, not from the start: the first interval begins when the
            # polls are scheduled, and until idle_until every feed has listed twice.
            idle_from = idle_until = math.inf
            profiling = False
            try:
                while time.monotonic() < idle_until + 1:
                    if idle_from == math.inf and front.calls:
                        idle_from = front.calls[0].at + interval_s + SETTLE_S
                        idle_until = idle_from + interval_s
                    if process.poll() is not None:
                        raise SystemExit(f"{label}: the daemon exited {process.returncode}")
                    sample = _sample(process.pid)
                    if sample is not None:
                        samples.append(sample)
                    if wrap and not profiling and time.monotonic() >= idle_from:
                        process.send_signal(signal.SIGUSR1)  # profile_daemon.py: start
                        profiling = True
                    time.sleep(1.0)
                if wrap:
                    process.send_signal(signal.SIGUSR2)  # profile_daemon.py: stop, write
                    time.sleep(5.0)
                peak_kb = _peak_kb(process.pid)
            finally:
                process.send_signal(signal.SIGTERM)
                try:
                    exit_code: int | None = process.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    exit_code = None
        calls = list(front.calls)
        text = log_path.read_text(errors="replace")
        warnings = sum(1 for line in text.splitlines() if "WARNING" in line or "ERROR" in line)
    window = [s for s in samples if idle_from <= s.at <= idle_until + 1]
    idle_cpu = (window[-1].cpu_s - window[0].cpu_s) / (window[-1].at - window[0].at) * 100
    listed = analyse(calls, started, interval_s)
    return Result(
        label=label,
        peak_rss_mb=peak_kb / 1024,
        idle_cpu_pct=idle_cpu,
        idle_window_s=window[-1].at - window[0].at,
        busiest_second=listed.busiest_second,
        busiest_first_second=listed.busiest_first_second,
        last_first_call_s=listed.last_first_call_s,
        gap_p99_s=_percentile(listed.gaps, 99),
        gap_max_s=max(listed.gaps, default=math.nan),
        feeds_listed_twice=listed.feeds_listed_twice,
        feeds=listed.feeds,
        max_calls_per_account_minute=listed.busiest_account_minute,
        calls_per_minute_limit=100,  # config.DEFAULT_CALLS_PER_MINUTE, which scale.generate keeps
        startup_s=min((c.at for c in calls), default=math.nan) - started,
        calls=len(calls),
        log_warnings=warnings,
        exit_code=exit_code,
    )


@contextlib.contextmanager
def exported(repository: Path, revision: str) -> Iterator[Path]:
    """The daemon package at `revision`, as files in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="scale-base-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(repository), "archive", revision, "daemon"],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        yield Path(tmp)


def _row(result: Result) -> str:
    return (
        f"{result.label:<28} {result.peak_rss_mb:7.0f} {result.idle_cpu_pct:6.1f} "
        f"{result.busiest_first_second:5d} {result.busiest_second:5d} "
        f"{result.last_first_call_s:7.1f} "
        f"{result.gap_p99_s:7.2f} {result.gap_max_s:7.2f} "
        f"{result.feeds_listed_twice:5d}/{result.feeds:<5d} "
        f"{result.max_calls_per_account_minute:4d}/{result.calls_per_minute_limit:<4d} "
        f"{result.startup_s:6.1f} {result.calls:6d} {result.log_warnings:4d} {result.exit_code}"
    )


HEADER = (
    f"{'run':<28} {'RSS MB':>7} {'CPU %':>6} {'1st/s':>5} {'call/s':>5} {'last 1st':>7} "
    f"{'gap p99':>7} {'gap max':>7} {'feeds x2':>11} {'calls/min':>9} {'start':>6} "
    f"{'calls':>6} {'warn':>4} rc"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--per-account", type=int, default=10)
    parser.add_argument("--interval", type=int, default=120, help="poll_interval, s")
    parser.add_argument("--only", choices=["sqlite", "postgresql"], action="append")
    parser.add_argument("--baseline", metavar="REV", help="also run the daemon of commit REV")
    parser.add_argument(
        "--repo", type=Path, default=Path.cwd(), help="the git repository --baseline reads"
    )
    parser.add_argument("--wrap", metavar="SCRIPT", help="python SCRIPT -m daemon ... (profiling)")
    parser.add_argument("--keep", metavar="DIR", type=Path, help="keep the daemons' logs here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    backends = args.only or ["sqlite", "postgresql"]
    sandbox = Sandbox(token=scale.TOKEN)
    sandbox.set_limits(burst=1_000_000)  # one token for all accounts: the daemon limits itself
    front = PerAccount(sandbox.app)
    results: list[Result] = []
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(serve(front))
        sources = [("current", Path.cwd())]
        if args.baseline:
            sources.insert(
                0,
                (
                    f"baseline {args.baseline}",
                    stack.enter_context(exported(args.repo, args.baseline)),
                ),
            )
        print(
            f"{args.accounts} accounts x {args.per_account} subscriptions, "
            f"interval {args.interval} s, sandbox {server.base_url}",
            flush=True,
        )
        for backend in backends:
            for name, source in sources:
                url = None
                with contextlib.ExitStack() as per_run:
                    if backend == "postgresql":
                        url = per_run.enter_context(local_postgres.scratch_database())
                    result = run_once(
                        f"{name} {backend}",
                        source,
                        server.base_url,
                        front,
                        accounts=args.accounts,
                        per_account=args.per_account,
                        interval_s=args.interval,
                        database_url=url,
                        token=scale.TOKEN,
                        wrap=str(Path(args.wrap).resolve()) if args.wrap else None,
                        keep=args.keep,
                    )
                results.append(result)
                print(HEADER if len(results) == 1 else "", _row(result), sep="\n", flush=True)
    _ratios(results)
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in results], indent=1))


def _ratios(results: list[Result]) -> None:
    by_label = {r.label: r for r in results}
    for current in (r for r in results if r.label.startswith("current ")):
        backend = current.label.split(" ", 1)[1]
        base = next(
            (
                r
                for label, r in by_label.items()
                if label.startswith("baseline ") and label.endswith(backend)
            ),
            None,
        )
        if base is None:
            continue
        print(
            f"{backend}: current / baseline: peak RSS "
            f"{current.peak_rss_mb / base.peak_rss_mb:.2f}, "
            f"idle CPU {current.idle_cpu_pct / base.idle_cpu_pct:.2f}, gap p99 "
            f"{current.gap_p99_s:+.2f} s vs {base.gap_p99_s:+.2f} s"
        )


if __name__ == "__main__":
    main()
