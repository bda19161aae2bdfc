#!/usr/bin/env python3
"""CPU per op of a multi-leader node's receive path, in one process, for ``Ops`` frames.

Node ``a`` takes ``-n`` client writes (``translate`` + ``Replica.local`` + its store and
view), packed into ``Ops`` frames of ``--batch`` ops as the runner sends them. Node ``b``
then receives every frame the way ``runtime/multi_leader.py`` does: ``codec.decode`` with its
version vector, ``Replica.step``, and for the delivered ops ``store.apply`` + the view's WATCH
index + ``materialize``. Printed: microseconds per op of ``b``'s path, per stage, and
of ``a``'s (origin) path. The stores and views of both nodes are checked equal at the end.

    PYTHONPATH=../src:.. python multileader_remote.py [-n 50000] [--kind SET|INCR] [--batch 64]
        [--profile origin|remote] [--keys 10000] [--run 1]

``--keys`` folds the workload's key numbers onto that many keys (SET and INCR: 10,000 unless
given): with few keys every key's objects stay in the CPU caches, so the difference to 10,000
is what cold memory costs the path.

A script, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import random
import time

from crdt_path import workload

from replikv.core.crdt.store import CrdtStore
from replikv.core.multileader import codec
from replikv.core.multileader.effects import Deliver
from replikv.core.multileader.messages import Op, Sync
from replikv.core.multileader.replica import Replica
from replikv.kv.crdt_view import deliver_ops, show_applied
from replikv.kv.crdt_writes import translate
from replikv.kv.state_machine import StateMachine
from replikv.kv.watch import ChangeIndex


class Node:
    def __init__(self, name: str) -> None:
        self.store = CrdtStore()
        self.view = StateMachine()
        self.view.changes = ChangeIndex(0)
        self.replica = Replica(name, ["a", "b", "c"], max_pending=65536)
        self.applied = 0


def fold_keys(argvs: list[list[bytes]], keys: int) -> list[list[bytes]]:
    """``argvs`` with each key ``name:i`` renamed ``name:(i % keys)``."""
    out = []
    for argv in argvs:
        name, _, i = argv[1].rpartition(b":")
        out.append([argv[0], b"%s:%d" % (name, int(i) % keys), *argv[2:]])
    return out


def run_ops(a: Node, argvs: list[list[bytes]], run_len: int, now: int, rng: random.Random) -> list[Op]:
    """Node ``a`` (origin "a") runs ``argvs`` as ``MultiLeaderRunner._write_run`` makes a
    pipelined run of ``run_len`` writes into one op: the ops, in order."""
    made: list[Op] = []
    for r in range(0, len(argvs), run_len):
        seq, deps, hlc = a.replica.vv.get("a", 0) + 1, dict(a.replica.vv), (now << 16) + r
        payload: list = []
        changed: dict[bytes, None] = {}
        for argv in argvs[r:r + run_len]:
            muts, _ = translate(a.store, argv, now, rng)
            changed.update(dict.fromkeys(a.store.apply_muts("a", seq, hlc, deps, muts, len(payload))))
            payload += muts
        op, _ = a.replica.local(hlc, payload)
        a.store.advance("a", seq)
        a.applied += 1
        show_applied(a.store, a.view, changed, a.applied)
        made.append(op)
    return made


def run(kind: str, n: int, batch: int, profile: str | None, keys: int | None = None, run_len: int = 1) -> None:
    a, b = Node("a"), Node("b")
    rng = random.Random(7)
    now = 1_700_000_000_000
    for x, y in ((a, "b"), (b, "a")):  # each has heard from the other: ops may flow
        x.replica.step(Sync(sender=y, vv={}, matrix={}))
    perf = time.thread_time_ns  # CPU time: the machine is shared
    made: list[Op] = []
    argvs = workload(kind, n)
    if keys:
        argvs = fold_keys(argvs, keys)
    gc.collect()
    gc.freeze()  # the inputs are not the node's: the collector need not scan them over and over
    prof = cProfile.Profile() if profile == "origin" else None
    if prof:
        prof.enable()
    t0 = perf()
    if run_len == 1:
        for i, argv in enumerate(argvs):
            muts, _ = translate(a.store, argv, now, rng)
            op, effects = a.replica.local((now << 16) + i, muts)
            a.applied = deliver_ops(a.store, a.view, [op], "a", a.applied)[0]
            made.append(op)
    else:
        made = run_ops(a, argvs, run_len, now, rng)
    t_origin = perf() - t0
    if prof:
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    frames = [codec.encode_ops("a", [codec.pack_op(op) for op in made[i:i + batch]])
              for i in range(0, len(made), batch)]
    gc.collect()
    gc.freeze()
    t_decode = t_step = t_apply = 0
    prof = cProfile.Profile() if profile == "remote" else None
    if prof:
        prof.enable()
    for frame in frames:
        t0 = perf()
        msg = codec.decode(frame, b.replica.vv)
        t1 = perf()
        effects = b.replica.step(msg)
        t2 = perf()
        for e in effects:
            if isinstance(e, Deliver):
                b.applied = deliver_ops(b.store, b.view, e.ops, "b", b.applied)[0]
        t3 = perf()
        t_decode += t1 - t0
        t_step += t2 - t1
        t_apply += t3 - t2
    if prof:
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(20)
    assert a.store.digest() == b.store.digest()
    assert a.view.data == b.view.data
    per = 1000 * n  # per client write (a run of --run writes is one op)
    print(f"{kind} batch {batch}{f' run {run_len}' if run_len > 1 else ''}{f' keys {keys}' if keys else ''}: remote {(t_decode + t_step + t_apply) / per:.2f} us/op "
          f"(decode {t_decode / per:.2f}, step {t_step / per:.2f}, apply+view {t_apply / per:.2f}); "
          f"origin {t_origin / per:.2f} us/op")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=50_000)
    ap.add_argument("--kind", default="SET")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--profile", choices=["origin", "remote"], help="cProfile one path")
    ap.add_argument("--keys", type=int, help="fold the keys onto this many (SET, INCR)")
    ap.add_argument("--run", type=int, default=1,
                    help="client writes per op, as a pipelined run makes them (MultiLeaderRunner._write_run)")
    args = ap.parse_args()
    run(args.kind, args.n, args.batch, args.profile, args.keys, args.run)


if __name__ == "__main__":
    main()
