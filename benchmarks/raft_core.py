"""Micro-benchmark of the pure Raft core's per-write cost; prints figures, asserts nothing.

Leader: a 3-voter leader takes batches of B proposals through one
``RaftNode.advance`` call, the two followers' acks through another (commit,
Apply, commit notices), and every AppendEntries it sends is encoded
(``codec.encode``), as the runtime does once per event-loop iteration.
Follower: decoding one AppendEntries of B entries (``codec.decode``). The
reference beside each figure is plain msgpack packing / unpacking the same
entries as lists (what any Python encoder of this wire form pays at least):
the ratio is the core's own overhead.

    .venv/bin/python benchmarks/raft_core.py [--batch 15]
"""

from __future__ import annotations

import argparse
import random

import msgpack
from _support import best_of

from replikv.core.raft import codec
from replikv.core.raft.effects import Send
from replikv.core.raft.messages import AppendEntries, AppendEntriesResponse, RequestVoteResponse
from replikv.core.raft.node import RaftNode, Role


def elected_leader() -> RaftNode:
    node = RaftNode(1, voters=[1, 2, 3], rng=random.Random(1), election_timeout_ticks=100,
                    heartbeat_ticks=10)
    node.campaign()
    for src in (2, 3):  # pre-vote round, then the election
        node.step(RequestVoteResponse(term=node.term + 1, src=src, dst=1, granted=True, pre_vote=True))
    for src in (2, 3):
        node.step(RequestVoteResponse(term=node.term, src=src, dst=1, granted=True))
    assert node.role is Role.LEADER
    return node


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=15, help="proposals per advance() (default 15)")
    ap.add_argument("--batches", type=int, default=400, help="batches per round (default 400)")
    args = ap.parse_args()
    batch, batches = args.batch, args.batches
    command = msgpack.packb([1_764_000_000_000, False, [[b"SET", b"key:000000001234", b"x" * 16]]])
    node = elected_leader()
    rid = 0

    def leader() -> None:
        nonlocal rid
        for _ in range(batches):
            proposals = []
            for _ in range(batch):
                rid += 1
                proposals.append((command, rid, None, None))
            effects = node.advance((), proposals)
            last = node.log.last_index
            acks = [AppendEntriesResponse(term=node.term, src=f, dst=1, success=True, match_index=last)
                    for f in (2, 3)]
            effects += node.advance(acks)
            for e in effects:
                if isinstance(e, Send):
                    codec.encode(e.msg)
            node.compact(node.log.applied, b"")  # keep the log short, as snapshots do

    leader()  # warm up, and leaves entries to build a realistic message from
    for _ in range(batch):
        rid += 1
        node.advance((), [(command, rid, None, None)])
    entries = tuple(node.log.slice(node.log.last_index - batch + 1, node.log.last_index + 1))
    msg = AppendEntries(term=node.term, src=1, dst=2, prev_log_index=entries[0].index - 1,
                        prev_log_term=node.term, entries=entries, leader_commit=entries[0].index - 1)
    frame = codec.encode(msg)
    plain = [[e.term, e.index, 0, e.data, None, None, None] for e in entries]
    plain_frame = msgpack.packb([2, msg.term, 1, 2, msg.prev_log_index, msg.prev_log_term, plain, 0])

    t_leader = best_of(leader) / (batches * batch)
    reps = 2000
    t_decode = best_of(lambda: [codec.decode(frame) for _ in range(reps)]) / reps
    t_unpack = best_of(lambda: [msgpack.unpackb(plain_frame) for _ in range(reps)]) / reps
    t_encode = best_of(lambda: [codec.encode(msg) for _ in range(reps)]) / reps
    t_pack = best_of(lambda: [msgpack.packb([2, 2, 1, 2, 0, 0, plain, 0]) for _ in range(reps)]) / reps
    print(f"leader: propose + commit + encode, batches of {batch}: {t_leader * 1e6:.2f} us per write")
    print(f"encode AppendEntries of {batch} entries: {t_encode * 1e6:.1f} us "
          f"(msgpack of the same lists {t_pack * 1e6:.1f} us, ratio {t_encode / t_pack:.1f})")
    print(f"decode AppendEntries of {batch} entries: {t_decode * 1e6:.1f} us "
          f"(msgpack of the same lists {t_unpack * 1e6:.1f} us, ratio {t_decode / t_unpack:.1f})")


if __name__ == "__main__":
    main()
