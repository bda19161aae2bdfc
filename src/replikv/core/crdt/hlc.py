"""Hybrid logical clock (Kulkarni et al., 2014), packed into one int.

A timestamp is ``(physical_ms << 16) | logical``. Rules:

- ``now(pt)`` returns a timestamp strictly greater than every timestamp this
  clock issued or observed, and at least ``pt << 16`` (so it tracks wall time
  when the wall clock is ahead).
- ``observe(remote, pt)`` merges a received timestamp: afterwards ``now``
  issues something greater than ``remote``. An op created after its origin
  observed another therefore carries a greater HLC: last-writer-wins by HLC
  never lets an older write beat a write that saw it.
- The logical part counts up within one millisecond; if it overflows 16 bits
  it carries into the physical part (the clock runs ahead of wall time for a
  moment, it never goes back).
"""

from __future__ import annotations

LOGICAL_BITS = 16


def hlc_ms(ts: int) -> int:
    """The physical (milliseconds) part of a packed timestamp."""
    return ts >> LOGICAL_BITS


class Hlc:
    """One node's hybrid logical clock; ``last`` is the greatest timestamp seen."""

    __slots__ = ("last",)

    def __init__(self, last: int = 0) -> None:
        self.last = last

    def now(self, physical_ms: int) -> int:
        """A new timestamp greater than every one issued or observed."""
        wall = physical_ms << LOGICAL_BITS
        ts = wall if wall > self.last else self.last + 1
        self.last = ts
        return ts

    def observe(self, remote: int, physical_ms: int) -> None:
        """Merge a received timestamp (and the local wall clock)."""
        wall = physical_ms << LOGICAL_BITS
        self.last = max(self.last, remote, wall)
