"""Absolute times for tests that compare Redis's TTL with replikv's.

TTL rounds the remaining milliseconds to the nearest second, and Redis and
replikv read their clocks a fraction of a millisecond apart: a remaining
time near a half second could round differently. An absolute time in whole
seconds is therefore taken just after a second starts.
"""

from __future__ import annotations

import time


def unix_seconds_from_now(seconds: int) -> int:
    """``now + seconds`` in whole unix seconds, read early in a second (sleeps < 1 s)."""
    frac = time.time() % 1
    if frac > 0.2:
        time.sleep(1.001 - frac)
    return int(time.time()) + seconds
