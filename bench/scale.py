"""How does the daemon fare with many accounts? 1,000 accounts x 10 subscriptions by default.

Two measurements, both from a generated config (tokens inline, callbacks on example.com, a
SQLite database in a temporary directory; no Pipedrive or sandbox needed):

* **check-config** runs as a process (`python -m daemon --config FILE check-config`), as a
  user runs it, and its wall-clock seconds are printed (median of `--repeat` runs, every run
  shown). The process must exit 0.
* **first listings**: each feed's first listing after start, from the feed plan and
  `schedule.first_delay` (what `lifecycle` hands APScheduler), as the most listings due in
  any one second and the last one's second.

Run from the repository root:

    PYTHONPATH=. .venv/bin/python bench/scale.py [--accounts N] [--per-account M] [--repeat R]
    PYTHONPATH=. .venv/bin/python bench/scale.py --profile /tmp/scale.prof   # cProfile, in-process
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import io
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from daemon import config as config_module
from daemon.cli.main import main as cli_main
from daemon.polling import forecast, plan, schedule

# Ten triggers over four object types, as the measured deployment had.
TRIGGERS = (
    "deal.added",
    "deal.updated",
    "deal.won",
    "deal.lost",
    "activity.added",
    "activity.done",
    "activity.updated",
    "person.added",
    "person.updated",
    "organization.added",
)
TOKEN = "0123456789abcdef0123456789abcdef01234567"


def generate(
    accounts: int,
    per_account: int,
    directory: Path,
    *,
    database_url: str | None = None,
    base_url: Callable[[int], str] | None = None,
    token: str = TOKEN,
    interval_s: int | None = None,
) -> Path:
    """A config of `accounts` accounts, each with `per_account` subscriptions. `base_url(a)`
    points account `a` at an API root (Pipedrive's by default); `interval_s` sets every
    subscription's poll_interval (the default, 120 s, when None)."""
    url = database_url or f"sqlite:///{directory / 'scale.db'}"
    lines = [f'[database]\nurl = "{url}"\n']
    for a in range(accounts):
        root = f'base_url = "{base_url(a)}"\n' if base_url else ""
        lines.append(f'[[accounts]]\nname = "acct-{a:05d}"\napi_token = "{token}"\n{root}')
    interval = f"poll_interval = {interval_s}\n" if interval_s else ""
    for a in range(accounts):
        for s in range(per_account):
            trigger = TRIGGERS[s % len(TRIGGERS)]
            lines.append(
                f'[[subscriptions]]\nname = "acct-{a:05d}-{s:02d}"\naccount = "acct-{a:05d}"\n'
                f'trigger = "{trigger}"\ncallback_url = "https://hooks.example.com/{a}/{s}"\n'
                f"{interval}"
            )
    path = directory / "scale.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def time_check_config(path: Path) -> float:
    command = [sys.executable, "-m", "daemon", "--config", str(path), "check-config"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"check-config exited {done.returncode}: {done.stderr[-2000:]}")
    return took


def profile(path: Path, out: str) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    result = CliRunner().invoke(cli_main, ["--config", str(path), "check-config"])
    profiler.disable()
    if result.exit_code != 0:
        raise SystemExit(f"check-config exited {result.exit_code}: {result.output[-2000:]}")
    profiler.dump_stats(out)
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(25)
    print(text.getvalue())


def first_listings(path: Path) -> tuple[int, int, float]:
    """(feeds, most first listings due in one second, the last one's second after start)."""
    config = config_module.load_to_run(path)
    feeds = plan.feeds(config, forecast.fitted_intervals(config))
    delays = [schedule.first_delay(feed.key, feed.interval_s, len(feeds)) for feed in feeds]
    per_second = collections.Counter(int(delay) for delay in delays)
    return len(feeds), max(per_second.values()), max(delays)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--per-account", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", metavar="FILE", help="cProfile check-config in-process")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="scale-") as tmp:
        path = generate(args.accounts, args.per_account, Path(tmp))
        print(
            f"{args.accounts} accounts x {args.per_account} subscriptions "
            f"({args.accounts * args.per_account}), {path.stat().st_size // 1024} KiB of TOML"
        )
        if args.profile:
            profile(path, args.profile)
            return
        runs = [time_check_config(path) for _ in range(args.repeat)]
        print(
            f"check-config: {statistics.median(runs):.2f} s median "
            f"(runs: {' '.join(f'{r:.2f}' for r in runs)})"
        )
        feeds, busiest, last = first_listings(path)
        print(
            f"first listings: {feeds} feeds, at most {busiest} due in one second, "
            f"the last {last:.1f} s after start"
        )


if __name__ == "__main__":
    main()
