"""When each feed first lists: a stable offset per feed, so thousands of feeds spread their
listings over their interval instead of all listing at second 0 (and at every tick after)."""

from __future__ import annotations

import hashlib
import math

# How far apart, on average, first listings land when the interval has room: 20 a second. A
# handful of feeds all list within a fraction of a second of start; 4,000 feeds at 120 s use
# the whole interval (about 33 a second).
SPACING_S = 0.05


def phase(key: str) -> float:
    """A fraction in [0, 1) that depends on `key` alone: the same in every process and every
    run (Python's `hash` of a string is salted per process, so it is not used)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 11) / 2**53  # 53 bits: a float's, so never 1.0


def first_delay(key: str, interval_s: float, feeds: int) -> float:
    """Seconds from start to the feed's first listing, in [0, interval_s): the feed's phase
    of a window as wide as `feeds` x SPACING_S, capped at its interval. Its later listings
    follow every `interval_s` after, so they keep the phase."""
    window = min(interval_s, max(feeds, 1) * SPACING_S)
    # The product may round up to the window itself; the interval stays out of reach.
    return min(phase(key) * window, math.nextafter(interval_s, 0))


def continue_after(
    last_listed_s_ago: float | None, key: str, interval_s: float, feeds: int
) -> float:
    """Seconds until a feed's next listing when this process takes it up (at start, or from
    another replica): one interval after its last listing, so a hand-over makes no extra
    listing; a feed never listed, or overdue, lists after its offset (`first_delay`)."""
    if last_listed_s_ago is None or last_listed_s_ago >= interval_s:
        return first_delay(key, interval_s, feeds)
    return interval_s - max(last_listed_s_ago, 0.0)
