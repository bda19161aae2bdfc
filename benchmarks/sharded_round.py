"""In-process cost of one sharded Raft write round, per node role; prints figures, asserts nothing.

Three ``ShardedRaftRunner`` nodes (n1, n2, n3) are built in one process with a transport that
only records frames (no sockets, no event loop, no profiler); a round is what the 2-core
cluster does per loop iteration under load (BENCHMARKS.md, issue 13): each group's leader gets
``--per-round`` SETs of 16-byte values, then every node takes the frames sent to it
(``_on_frame``: batch decode, ``host.step``) and runs its ``_drain`` (``host.ready``, the
persist into the node log, applies, the batches encoded, the LEADERS announce check,
``write_held``). Frames sent in one node's drain reach their peers in the next round, so a
round carries each group's new entries to its followers, their acknowledgements of the
previous round's entries and the leaders' commits, as on the cluster. Timing is the
thread's CPU time (``time.thread_time_ns``; ``--clock wall``: ``time.perf_counter_ns``, which
counts the time the process waits for a core on a loaded machine) around each node's ``_on_frame`` calls and its ``_drain``, split by
whether the node leads a group that had proposals (all nodes lead one with ``--shards 3``;
with ``--shards 1`` n1 leads and n2, n3 only follow), over ``--rounds`` rounds after a
warm-up, the best of ``--repeat`` runs; every 500 rounds the survivors are frozen out of
the cyclic GC's sight, as a node does once a second. The node log writes to a temp dir with fsync
``everysec`` (no fsync in the drain, as the cluster runs measured).

    cd benchmarks && PYTHONPATH=<tree>/src:<tree> python sharded_round.py [--shards 3] [--per-round 4]

``--shards 0`` runs the same rounds on three unsharded ``RaftRunner`` nodes (raft mode without
``--shards``: n1 leads the one group, no lazy third replica), the reference of issue 13's ratio:
what the sharded runtime costs above it, round for round.

Figures: us per round for a leader node and a follower-only node (``--shards 1``) or per node
(``--shards 3``, each leads one and follows two), us per SET over the 3 nodes (the figure to
compare with the cluster's CPU per SET), Raft messages and frames per round.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack

from replikv.config import ClusterConfig, NodeAddress, NodeOptions
from replikv.core.raft.node import Role
from replikv.runtime.raft_runner import RaftRunner
from replikv.runtime.sharded_raft import ShardedRaftRunner

NAMES = ("n1", "n2", "n3")
# rounds between the survivors' freezes: without them, collections that the nodes' freeze avoids
# ran inside the timed rounds (py-spy, one 30,000-round run at --per-round 1: ~10 % of its samples,
# charged to whichever call allocated; the best-of-5 figures moved within their noise, +-5 %)
FREEZE_EVERY = 500
clock: Callable[[], int] = time.thread_time_ns


class _Recorder:
    """A transport that records what a node sends; the benchmark delivers it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.total = 0

    def send(self, name: str, frame: bytes) -> None:
        self.sent.append((name, frame))
        self.total += 1

    def write_held(self) -> None:
        """Nothing is held: recorded frames are delivered by the benchmark."""


def build(root: Path, shards: int) -> dict[str, Any]:
    nodes = {n: NodeAddress(id=n, host="127.0.0.1", port=1 + i, peer_port=101 + i, data_dir=str(root / n))
             for i, n in enumerate(NAMES)}
    cfg = ClusterConfig(mode="raft", secret="s", initial_leader="n1", nodes=nodes,
                        options=NodeOptions(shards=shards, fsync="everysec"))
    kind = ShardedRaftRunner if shards else RaftRunner
    runners = {n: kind(cfg, n) for n in NAMES}
    for r in runners.values():
        r.transport = _Recorder()
    return runners


def deliver(runners: dict[str, Any], times: dict[str, int] | None = None) -> int:
    """Every recorded frame to its destination (``_on_frame``); the number delivered."""
    out: dict[str, list[tuple[str, bytes]]] = {n: [] for n in runners}
    for src, r in runners.items():
        sent = r.transport.sent
        for dst, frame in sent:
            out[dst].append((src, frame))
        sent.clear()
    count = 0
    for dst, frames in out.items():
        r = runners[dst]
        t0 = clock()
        for src, frame in frames:
            r._on_frame(src, frame)
        if times is not None:
            times[dst] += clock() - t0
        count += len(frames)
    return count


def elect_unsharded(runners: dict[str, RaftRunner]) -> None:
    """An election timeout of ticks (leader stickiness, as in ``elect``), n1 campaigns; frames
    delivered until it leads."""
    for r in runners.values():
        for _ in range(r.election_ticks):
            r._queue(r.core.tick())
    n1 = runners["n1"]
    n1._queue(n1.core.campaign())
    for _ in range(50):
        for r in runners.values():
            r._drain()
        deliver(runners)
        if n1.core.role is Role.LEADER:
            return
    raise SystemExit("no leader elected")


def messages_sent(runners: dict[str, Any]) -> int:
    """Raft messages sent so far: a sharded node counts them (several per frame); an unsharded
    node sends each in a frame of its own."""
    return sum(r.host.stats["messages_sent"] if isinstance(r, ShardedRaftRunner) else r.transport.total
               for r in runners.values())


def elect(runners: dict[str, ShardedRaftRunner]) -> None:
    """The peers' features exchange (embedded batches), an election timeout of ticks (a follower
    ignores votes until then: leader stickiness), then each group's preferred member campaigns;
    frames delivered until every group has a leader."""
    for n, r in runners.items():
        for peer in runners:
            if peer != n:
                r._on_peer_connected(peer)
    deliver(runners)
    deliver(runners)
    for r in runners.values():
        for _ in range(r.election_ticks):
            r.host.tick()
    for r in runners.values():
        for g, grp in r.groups.items():
            if r.placement[g][0] == r.raft_id:
                r.host.call(g, grp.core.campaign())
    for _ in range(50):
        for r in runners.values():
            r._drain()
        deliver(runners)
        if all(any(r.groups[g].core.role is Role.LEADER for r in runners.values()) for g in runners["n1"].groups):
            return
    raise SystemExit("no leader elected")


def run(shards: int, per_round: int, rounds: int, warmup: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="sharded_round_"))
    try:
        runners = build(root, shards)
        if shards:
            elect(runners)
            leaders = {g: n for n, r in runners.items() for g, grp in r.groups.items() if grp.core.role is Role.LEADER}
        else:
            elect_unsharded(runners)
            leaders = {0: "n1"}
        rid = 0
        key = 0
        times = dict.fromkeys(runners, 0)
        frames = 0
        msgs0 = messages_sent(runners)
        gc.collect()
        for i in range(warmup + rounds):
            if i % FREEZE_EVERY == 0:  # as a node does once a second (BaseRunner._fsync_loop)
                gc.collect(1)
                gc.freeze()
            if i == warmup:
                times = dict.fromkeys(runners, 0)
                frames = 0
                msgs0 = messages_sent(runners)
            for g, n in leaders.items():
                r = runners[n]
                items = r.pending.setdefault(g, []) if shards else r.pending
                for _ in range(per_round):
                    rid += 1
                    key = (key + 7919) % 10000
                    cmd = msgpack.packb([0, False, [[b"SET", b"key:%012d" % key, b"x" * 16]]])
                    items.append((cmd, ("bench", rid), None, None))  # a tuple rid: no client waits
            counted = i >= warmup
            frames += deliver(runners, times if counted else None)
            for n, r in runners.items():
                t0 = clock()
                r._drain()
                if counted:
                    times[n] += clock() - t0
        msgs = messages_sent(runners) - msgs0
        sets = rounds * per_round * len(leaders)
        for r in runners.values():
            (r.node_log if shards else r.wal).close()
        return {"times": times, "sets": sets, "msgs": msgs, "frames": frames, "leaders": leaders}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, default=3)
    ap.add_argument("--per-round", type=int, default=4, help="SETs per group leader per round (default 4)")
    ap.add_argument("--rounds", type=int, default=3000)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    args = ap.parse_args()
    global clock
    clock = time.thread_time_ns if args.clock == "cpu" else time.perf_counter_ns
    best: dict[str, Any] | None = None
    for _ in range(args.repeat):
        res = run(args.shards, args.per_round, args.rounds, args.warmup)
        total = sum(res["times"].values())
        if best is None or total < sum(best["times"].values()):
            best = res
    assert best is not None
    rounds = args.rounds
    led = set(best["leaders"].values())
    per_node = {n: t / rounds / 1000 for n, t in sorted(best["times"].items())}
    print(f"shards={args.shards} per_round={args.per_round} rounds={rounds} (best of {args.repeat})")
    for n, us in per_node.items():
        print(f"  {n} ({'leads' if n in led else 'follows'}): {us:.1f} us/round")
    total_us = sum(best["times"].values()) / 1000
    print(f"  3 nodes: {total_us / rounds:.1f} us/round, {total_us / best['sets']:.2f} us/SET, "
          f"{best['msgs'] / rounds:.2f} raft msgs/round, {best['frames'] / rounds:.2f} frames/round")


if __name__ == "__main__":
    main()
