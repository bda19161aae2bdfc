"""A simulated network: seeded delay, drop, duplication, reordering and partitions.

Every message gets an independent random delay in [min_delay_us,
max_delay_us], so messages reorder; with probability `drop_p` it is lost and
with `dup_p` it is delivered twice. `cut` holds blocked directed links
(src, dst): a symmetric partition blocks both directions, a one-way
partition only one. A link is checked when the message is sent and again
when it would arrive (a partition formed meanwhile drops it too).
Bound: at most `max_in_flight` messages in flight; more are dropped, as a
full socket buffer would.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

__all__ = ["SimNetwork"]


class SimNetwork:
    def __init__(
        self,
        rng: random.Random,
        *,
        min_delay_us: int = 500,
        max_delay_us: int = 5_000,
        drop_p: float = 0.0,
        dup_p: float = 0.0,
        max_in_flight: int = 100_000,
    ) -> None:
        self.rng = rng
        self.min_delay_us = min_delay_us
        self.max_delay_us = max_delay_us
        self.drop_p = drop_p
        self.dup_p = dup_p
        self.max_in_flight = max_in_flight
        self.cut: set[tuple[int, int]] = set()
        self.in_flight = 0
        self.sent = 0
        self.dropped = 0

    def delays(self, src: int, dst: int) -> list[int]:
        """The delays (us) after which copies of a message sent now arrive."""
        self.sent += 1
        if (src, dst) in self.cut or self.in_flight >= self.max_in_flight:
            self.dropped += 1
            return []
        if self.drop_p and self.rng.random() < self.drop_p:
            self.dropped += 1
            return []
        copies = 2 if self.dup_p and self.rng.random() < self.dup_p else 1
        out = [self.rng.randint(self.min_delay_us, self.max_delay_us) for _ in range(copies)]
        self.in_flight += len(out)
        return out

    def arrives(self, src: int, dst: int) -> bool:
        """A copy reached dst's side of the link: delivered unless cut meanwhile."""
        self.in_flight -= 1
        if (src, dst) in self.cut:
            self.dropped += 1
            return False
        return True

    def partition(self, groups: Iterable[Iterable[int]]) -> None:
        """Symmetric partition: links between different groups are cut."""
        gs = [set(g) for g in groups]
        self.cut = {(a, b) for g in gs for h in gs if g is not h for a in g for b in h}

    def cut_one_way(self, src: Iterable[int], dst: Iterable[int]) -> None:
        self.cut |= {(a, b) for a in src for b in dst if a != b}

    def heal(self) -> None:
        self.cut = set()
