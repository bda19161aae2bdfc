"""The send interval of batched peer sends: the one rule multi-leader (``MultiLeaderRunner._send_peers``,
every op) and leaderless (``LeaderlessRunner._ship``, the writes whose level is met) pace the peer
sends they may hold by (docs/multi-leader.md, "interval rule").

Batching rule (the runner keeps it): after a send, the next held one waits until the interval has
passed since it (``wait``), so under load a frame carries the writes of every loop iteration in
that time instead of one frame per peer per iteration; the first send after a quiet spell leaves at
once.

Interval rule (``sent``, at each send, for the next): a send that nothing held (the first after a
quiet spell of at least one interval) sets the interval to ``least``; otherwise it doubles, to at
most ``most``, when the largest frame sent carried at least ``busy`` writes per ``least`` since the
previous send (the node made them that fast: one per loop iteration with writes), and halves, to
no less than ``least``, when it carried fewer. An idle or lightly loaded node keeps the minimum
interval and its lag; a busy one sends less often, which saves each node the wake-ups, loop
iterations and frames of the sends it leaves out (BENCHMARKS.md, session 25, ml25b; session 26,
ll26). Pure: the runner passes its clock's readings.
"""

from __future__ import annotations

import os

# the defaults both modes start from (each reads its own override: REPLIKV_ML_SEND_*_MS, REPLIKV_LL_SEND_*_MS)
LEAST_MS = 2.0
# 5 ms, not 10: as little CPU per write in the cluster (BENCHMARKS.md, session 25, ml25b), half the
# replication lag under load.
MOST_MS = 5.0
BUSY_WRITES = 2


def from_env(name: str, default_ms: float) -> float:
    """An interval bound in seconds: the environment's ``name`` (ms; for tests and benchmarks) or the default."""
    return float(os.environ.get(name, default_ms)) / 1000


class SendInterval:
    """The current interval of one node's held peer sends and when the last send left (the module's rules)."""

    __slots__ = ("least", "most", "busy", "every", "sent_at")

    def __init__(self, least: float, most: float, busy: int = BUSY_WRITES) -> None:
        self.least, self.most, self.busy = least, max(most, least), busy
        self.every = least  # the interval now
        self.sent_at = float("-inf")  # the first send leaves at once

    def wait(self, now: float) -> float:
        """How long a send that may be held waits yet (<= 0: it may leave now)."""
        return self.sent_at + self.every - now

    def sent(self, now: float, held: bool, writes: int) -> None:
        """A send left at ``now``: ``held`` whether a timer held it (False: the first after a quiet
        spell); ``writes`` how many writes its largest frame carried. Sets the next interval."""
        since, self.sent_at = now - self.sent_at, now
        if not held:
            self.every = self.least
        elif writes * self.least >= self.busy * since:
            self.every = min(self.most, 2 * self.every)
        else:
            self.every = max(self.least, self.every / 2)
