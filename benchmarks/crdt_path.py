"""Per-operation CPU of the multi-leader CRDT data path, in one process.

For each operation kind it times, in microseconds per operation:

- ``origin``: ``translate`` + ``store.apply`` (own op) + ``materialize``
  (what the node that took the client write does);
- ``remote``: ``store.apply`` (the same op, received) + ``materialize`` on a
  second node (what every other node does);
- ``kv``: ``StateMachine().execute(argv, ApplyContext(now))``, the
  leader-follower leader's work for the same command (the reference).

Ops reach the second node msgpack-encoded and decoded as on the wire
(outside the timed region). Run: ``python benchmarks/crdt_path.py [-n N]``
(``--profile KIND`` prints a cProfile of the origin+remote path).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import time
from collections.abc import Callable, Iterator

import msgpack

from replikv.core.crdt.store import CrdtStore
from replikv.kv.context import ApplyContext
from replikv.kv.crdt_view import materialize
from replikv.kv.crdt_writes import translate
from replikv.kv.state_machine import StateMachine

Argv = list[bytes]


def _val(rng: random.Random) -> bytes:
    return rng.randbytes(8).hex().encode()  # 16 bytes


def workload(kind: str, n: int, seed: int = 1) -> list[Argv]:
    rng = random.Random(seed)
    out: list[Argv] = []
    if kind == "SET":
        for _ in range(n):
            out.append([b"SET", b"key:%d" % rng.randrange(10_000), _val(rng)])
    elif kind == "INCR":
        for _ in range(n):
            out.append([b"INCR", b"ctr:%d" % rng.randrange(10_000)])
    elif kind == "SADD":
        for _ in range(n):
            out.append([b"SADD", b"set:%d" % rng.randrange(100), b"m:%d" % rng.randrange(1_000_000)])
    elif kind == "HSET":
        for _ in range(n):
            out.append([b"HSET", b"hash:%d" % rng.randrange(1_000), b"f:%d" % rng.randrange(100), _val(rng)])
    elif kind == "RPUSH/LPOP":
        # 100 lists kept around 50 elements: alternate pushes and pops
        for i in range(n):
            key = b"list:%d" % rng.randrange(100)
            out.append([b"RPUSH", key, _val(rng)] if i % 2 == 0 else [b"LPOP", key])
    else:
        raise ValueError(kind)
    return out


def prefill(kind: str) -> list[Argv]:
    if kind == "RPUSH/LPOP":
        return [[b"RPUSH", b"list:%d" % k, *[b"v%02d" % j for j in range(50)]] for k in range(100)]
    return []


class Node:
    def __init__(self, name: str) -> None:
        self.name = name
        self.store = CrdtStore()
        self.view = StateMachine()
        self.seq = 0
        self.hlc = 0


def _ops(kind: str, n: int) -> Iterator[Argv]:
    yield from prefill(kind)
    yield from workload(kind, n)


def bench_kind(kind: str, n: int) -> tuple[float, float, float]:
    a, b = Node("a"), Node("b")
    rng = random.Random(7)
    now = 1_700_000_000_000
    pre = len(prefill(kind))
    wire: list[tuple[str, int, int, dict[str, int], bytes]] = []
    perf = time.perf_counter_ns
    t_origin = 0
    for i, argv in enumerate(_ops(kind, n)):
        t0 = perf()
        muts, _reply = translate(a.store, argv, now, rng)
        if muts:
            a.seq += 1
            a.hlc = max(a.hlc + 1, now << 16)
            deps = dict(a.store.vv)
            changed = a.store.apply(a.name, a.seq, a.hlc, deps, muts)
            materialize(a.store, a.view, changed)
        t1 = perf()
        if i >= pre:
            t_origin += t1 - t0
        if muts:
            wire.append((a.name, a.seq, a.hlc, deps, msgpack.packb(list(muts), use_bin_type=True)))
    # the receiving node (ops decoded as on the wire, outside the timed region)
    ops = [(o, s, h, d, msgpack.unpackb(p, raw=False, use_list=True)) for o, s, h, d, p in wire]
    t_remote = 0
    for j, (o, s, h, d, muts) in enumerate(ops):
        t0 = perf()
        changed = b.store.apply(o, s, h, d, muts)
        materialize(b.store, b.view, changed)
        t1 = perf()
        if j >= pre:
            t_remote += t1 - t0
    assert a.store.digest() == b.store.digest()
    assert a.view.data == b.view.data
    # the reference: the leader-follower leader
    sm = StateMachine()
    ctx = ApplyContext(now)
    for argv in prefill(kind):
        sm.execute(argv, ctx)
    t_kv = 0
    for argv in workload(kind, n):
        t0 = perf()
        sm.execute(argv, ctx)
        t_kv += perf() - t0
    assert sm.data == a.view.data, "the view differs from the kv state machine"
    return t_origin / n / 1000, t_remote / n / 1000, t_kv / n / 1000


KINDS = ["SET", "INCR", "SADD", "HSET", "RPUSH/LPOP"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=100_000, help="ops per kind (default 100k)")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--profile", default=None, help="cProfile one kind")
    args = ap.parse_args()
    if args.profile:
        prof = cProfile.Profile()
        run: Callable[[], object] = lambda: bench_kind(args.profile, args.n)  # noqa: E731
        prof.runcall(run)
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return
    print(f"{'kind':<12} {'origin us':>10} {'remote us':>10} {'kv ref us':>10} {'origin/kv':>10} {'remote/kv':>10}")
    for kind in args.kinds.split(","):
        o, r, k = bench_kind(kind, args.n)
        print(f"{kind:<12} {o:>10.2f} {r:>10.2f} {k:>10.2f} {o / k:>10.1f} {r / k:>10.1f}", flush=True)


if __name__ == "__main__":
    main()
