"""Run `python -m daemon ...` under a profiler switched by signals, for `scale_run.py --wrap`.

    python bench/profile_daemon.py -m daemon --config FILE run

`PROFILE=cpu` (the default): SIGUSR1 starts cProfile on the main thread (the event loop's),
SIGUSR2 stops it and writes `<PROFILE_OUT>.prof` and the top functions by own time and by
cumulative time to `<PROFILE_OUT>.txt`. `PROFILE=memory`: tracemalloc traces from the start
(`PROFILE_FRAMES` frames, 12 by default); SIGUSR2 writes the biggest allocation sites, by
line and by traceback, to `<PROFILE_OUT>.txt`. `PROFILE_OUT` defaults to
`/tmp/profile-daemon-<pid>`. `scale_run.py --wrap` sends SIGUSR1 when its idle window opens
and SIGUSR2 when it closes.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import runpy
import signal
import sys
import tracemalloc
from types import FrameType

MODE = os.environ.get("PROFILE", "cpu")
OUT = os.environ.get("PROFILE_OUT", f"/tmp/profile-daemon-{os.getpid()}")
FRAMES = int(os.environ.get("PROFILE_FRAMES", "12"))
TOP = 40

profiler = cProfile.Profile()


def _start(signum: int, frame: FrameType | None) -> None:
    if MODE == "cpu":
        profiler.enable()


def _stop(signum: int, frame: FrameType | None) -> None:
    text = io.StringIO()
    if MODE == "cpu":
        profiler.disable()
        profiler.dump_stats(OUT + ".prof")
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("tottime").print_stats(TOP)
        stats.sort_stats("cumulative").print_stats(TOP)
    else:
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)]
        )
        current, peak = tracemalloc.get_traced_memory()
        print(f"traced: {current / 2**20:.1f} MiB now, {peak / 2**20:.1f} MiB peak", file=text)
        for stat in snapshot.statistics("lineno")[:TOP]:
            print(stat, file=text)
        for stat in snapshot.statistics("traceback")[:15]:
            print(f"\n{stat.size / 2**20:.1f} MiB in {stat.count} blocks", file=text)
            for line in stat.traceback.format(limit=FRAMES):
                print(line, file=text)
    with open(OUT + ".txt", "w", encoding="utf-8") as out:
        out.write(text.getvalue())


def main() -> None:
    if sys.argv[1:3] != ["-m", "daemon"]:
        raise SystemExit("usage: profile_daemon.py -m daemon [daemon arguments]")
    if MODE == "memory":
        tracemalloc.start(FRAMES)
    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
    sys.argv = ["daemon", *sys.argv[3:]]
    runpy.run_module("daemon", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
