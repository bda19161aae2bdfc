"""In-process cost of one replication round in the Raft core alone, per ``advance`` call; prints
figures, asserts nothing.

Three ``RaftNode``s of one group (no host, no runtime, no storage, no codec): each round, the
leader's ``advance`` gets the previous round's acknowledgements and ``--per-round`` proposals,
and each follower's gets the previous round's AppendEntries, as a 3-node group does at -P 1
under load (BENCHMARKS.md, issue 13: with 3 groups on 3 nodes every node makes one leader call
and two follower calls per round, against one call per node with one group, so this fixed cost
is paid 3x as often per SET). Timing is the thread's CPU time around each ``advance`` call,
``--rounds`` rounds after 500 of warm-up; ``--profile`` prints cProfile's table for the
leader's calls instead.

    cd benchmarks && PYTHONPATH=<tree>/src python raft_core_round.py [--per-round 4] [--rounds 20000]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import time
from typing import Any

from replikv.core.raft.effects import Send
from replikv.core.raft.node import RaftNode, Role


def route(effects: list[Any], queues: dict[int, list[Any]]) -> None:
    for e in effects:
        if type(e) is Send:
            queues[e.to].append(e.msg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-round", type=int, default=4, help="proposals per leader call (default 4)")
    ap.add_argument("--rounds", type=int, default=20_000)
    ap.add_argument("--profile", action="store_true", help="cProfile the leader's calls instead of timing")
    args = ap.parse_args()
    nodes = {i: RaftNode(i, voters=[1, 2, 3], rng=random.Random(i)) for i in (1, 2, 3)}
    queues: dict[int, list[Any]] = {1: [], 2: [], 3: []}
    for _ in range(200):  # ticks until a leader is elected, messages delivered each step
        for i, n in nodes.items():
            msgs, queues[i] = queues[i], []
            route(n.advance(msgs=msgs), queues)
            if not any(x.role is Role.LEADER for x in nodes.values()):
                route(n.tick(), queues)
    leader = next(i for i, x in nodes.items() if x.role is Role.LEADER)
    order = [leader] + [i for i in nodes if i != leader]
    times = dict.fromkeys(nodes, 0)
    prof = cProfile.Profile(time.thread_time) if args.profile else None
    command = b"x" * 60
    rid = 0

    def one_round(timed: bool) -> None:
        nonlocal rid
        for i in order:
            msgs, queues[i] = queues[i], []
            proposals = []
            if i == leader:
                for _ in range(args.per_round):
                    rid += 1
                    proposals.append((command, rid, None, None))
            profiled = prof is not None and timed and i == leader
            t0 = time.thread_time_ns()
            if profiled:
                prof.enable()  # type: ignore[union-attr]
            effects = nodes[i].advance(msgs=msgs, proposals=proposals)
            if profiled:
                prof.disable()  # type: ignore[union-attr]
            times[i] += time.thread_time_ns() - t0
            route(effects, queues)

    for _ in range(500):
        one_round(False)
    times = dict.fromkeys(nodes, 0)
    for _ in range(args.rounds):
        one_round(True)
    if prof is not None:
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
        return
    us = {i: t / args.rounds / 1000 for i, t in times.items()}
    print(f"per_round={args.per_round} rounds={args.rounds}: leader {us[order[0]]:.2f} us per advance, "
          f"followers {us[order[1]]:.2f} / {us[order[2]]:.2f} us")


if __name__ == "__main__":
    main()
