#!/usr/bin/env python3
"""CPU per received ``Ops`` frame of one op of ``run`` client writes, in one process: what a
multi-leader node's receive path (``codec.decode``, ``Replica.step``, ``deliver_ops``) costs
per frame, timed over all frames at once (no per-stage clock: ``time.thread_time_ns`` costs
~1.6 µs a call on this VM, as much as a stage of a small frame).

    PYTHONPATH=../src:.. python multileader_frame_cost.py [--kind INCR] [-n 32000] [--runs 1,4,16,64]

At -P 1 a node's op holds ~12 client writes (``multileader_cpu.py --timeline``); the fixed
cost per frame is the intercept of the printed lines. A script, not a test.
"""

from __future__ import annotations

import argparse
import gc
import random
import time

from crdt_path import workload
from multileader_remote import Node, fold_keys, run_ops

from replikv.core.multileader import codec
from replikv.core.multileader.effects import Deliver
from replikv.core.multileader.messages import Sync
from replikv.kv.crdt_view import deliver_ops


def frame_cost(kind: str, n: int, run_len: int) -> tuple[float, float]:
    """(µs per frame, µs per write) of node b receiving node a's ops, one op per frame."""
    a, b = Node("a"), Node("b")
    rng = random.Random(7)
    now = 1_700_000_000_000
    for x, y in ((a, "b"), (b, "a")):
        x.replica.step(Sync(sender=y, vv={}, matrix={}))
    argvs = fold_keys(workload(kind, n), 10_000)
    made = run_ops(a, argvs, run_len, now, rng)
    frames = [codec.encode_ops("a", [codec.pack_op(op)]) for op in made]
    # the runtime's decode: one Decoder per receiver where the code has it (older code: decode)
    decode = codec.Decoder().decode if hasattr(codec, "Decoder") else codec.decode
    gc.collect()
    gc.freeze()
    t0 = time.process_time()
    for frame in frames:
        for e in b.replica.step(decode(frame, b.replica.vv)):
            if isinstance(e, Deliver):
                b.applied = deliver_ops(b.store, b.view, e.ops, "b", b.applied)[0]
    spent = time.process_time() - t0
    gc.unfreeze()
    assert a.view.data == b.view.data
    return 1e6 * spent / len(frames), 1e6 * spent / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kind", default="INCR")
    ap.add_argument("-n", type=int, default=32_000)
    ap.add_argument("--runs", default="1,4,16,64", help="client writes per op, comma-separated")
    args = ap.parse_args()
    for run_len in (int(x) for x in args.runs.split(",")):
        per_frame, per_write = frame_cost(args.kind, args.n, run_len)
        print(f"{args.kind} run {run_len}: {per_frame:.1f} us per frame, {per_write:.2f} us per write")


if __name__ == "__main__":
    main()
