"""Virtual time for the simulator: integer microseconds, and per-node drifting tick clocks.

Nothing reads the wall clock. Each node ticks every `tick_us * (1 + drift)`
where its drift is drawn once from [-max_drift, +max_drift] (the bounded
clock drift lease reads rely on, thesis §6.4.1).
"""

from __future__ import annotations

import random

__all__ = ["NodeClock", "VirtualClock"]


class VirtualClock:
    __slots__ = ("now_us",)

    def __init__(self) -> None:
        self.now_us = 0

    def advance_to(self, t_us: int) -> None:
        if t_us < self.now_us:
            raise ValueError(f"virtual time runs forward only ({t_us} < {self.now_us})")
        self.now_us = t_us


class NodeClock:
    __slots__ = ("period_us",)

    def __init__(self, rng: random.Random, tick_us: int, max_drift: float) -> None:
        self.period_us = max(1, round(tick_us * (1 + rng.uniform(-max_drift, max_drift))))

    def next_tick(self, now_us: int) -> int:
        return now_us + self.period_us
