"""Synthetic register histories of a correct store, with anomalies on request.

For benchmarks (benchmarks/check_scale.py) and tests that need histories far
larger than a test can afford to produce on a real cluster.

The model is an atomic register per key. Each client is one sequential
process issuing read / write / cas with random think times and latencies;
every op takes effect at one instant inside its interval (its
linearization point), so the history is linearizable by construction
unless anomalies are injected. Outcomes follow clients.py: a fraction of ops
fail definitely (``ok=False``, no effect) and a fraction time out (``ok=None``,
no return time; half of those still take effect, at some point after the
call), after which the client continues as a new process. A cas expects the
value its client last read of that key and fails (``ok=False``) when the
register holds something else. Values are unique per key. A final read per
key (``FINAL_PROCESS``) closes the history.

Anomalies (each makes the history non-linearizable):
- ``stale=n``: n acknowledged reads return the value of a write that an
  acknowledged write had already replaced before the read began;
- ``lost=n``: n acknowledged writes never take effect (reads that follow see
  the older value, and so may the final read).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from replikv.check.history import FINAL_PROCESS, Op

__all__ = ["iter_register_history", "list_append_history", "register_history"]

_US = 1000  # ns


def register_history(n_ops: int, **kwargs: Any) -> list[Op]:
    """About `n_ops` client ops and one final read per key (see `iter_register_history`)."""
    return list(iter_register_history(n_ops, **kwargs))


@dataclass
class _Clients:
    """What carries over from one segment to the next."""

    time: list[int]
    process: list[int]
    state: dict[str, str | None]
    last_read: dict[tuple[int, str], str | None] = field(default_factory=dict)
    replaced: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    seq: int = 0


def iter_register_history(n_ops: int, *, keys: int = 10, clients: int = 12, seed: int = 0,
                          unknown: float = 0.01, failed: float = 0.02, read_ratio: float = 0.5,
                          cas_ratio: float = 0.15, stale: int = 0, lost: int = 0,
                          segment: int = 200_000) -> Iterator[Op]:
    """Yield about `n_ops` client ops in completion order, then one final read per key.

    Generated `segment` ops at a time (memory is bounded by a segment): every
    client starts a segment after everything of the previous one has taken
    effect, and the registers, processes and last reads carry over. Injected
    anomalies are spread over the segments."""
    rng = random.Random(seed)
    names = [f"k{i}" for i in range(keys)]
    cl = _Clients([rng.randrange(1000) * _US for _ in range(clients)], list(range(clients)),
                  {k: None for k in names}, replaced={k: [] for k in names})
    segments = max(1, -(-n_ops // segment))
    done = 0
    for sgi in range(segments):
        size = min(segment, n_ops - done)
        done += size
        yield from _segment(rng, cl, names, clients, size, unknown, failed, read_ratio, cas_ratio,
                            stale * (sgi + 1) // segments - stale * sgi // segments,
                            lost * (sgi + 1) // segments - lost * sgi // segments)
    end = max(cl.time)
    for i, k in enumerate(names):
        yield Op(FINAL_PROCESS, "final", k, json.dumps(cl.state[k]), None, True, end + 2 * i + 1,
                 end + 2 * i + 2)


def _segment(rng: random.Random, cl: _Clients, names: list[str], clients: int, n_ops: int,
             unknown: float, failed: float, read_ratio: float, cas_ratio: float, stale: int,
             lost: int) -> Iterator[Op]:
    # 1. each client's op intervals, outcomes and linearization points
    plan: list[tuple[float, int, int, str, str, int, int | None, bool | None, bool, int]] = []
    # (point, seq, process, kind, key, call, ret, ok, applies, recorded at)
    start = max(cl.time)
    for c in range(clients):
        t = start + rng.randrange(1000) * _US
        process = cl.process[c]
        for _ in range(n_ops // clients + (c < n_ops % clients)):
            t += int(rng.expovariate(1 / 200)) * _US  # think time, mean 200 us
            call = t
            latency = (300 + int(rng.expovariate(1 / 700))) * _US  # 0.3 ms + mean 0.7 ms
            ret: int | None = call + latency
            x = rng.random()
            kind = "read" if x < read_ratio else ("cas" if x < read_ratio + cas_ratio else "write")
            key = rng.choice(names)
            y = rng.random()
            if y < unknown:
                ok: bool | None = None
                applies = kind != "read" and rng.random() < 0.5
                point = call + rng.random() * latency * 3  # may land after the client gave up
                ret = None
                t = call + latency * 3  # the client's timeout, then a new connection
            elif y < unknown + failed:
                ok, applies, point = False, False, call + rng.random() * latency
                t = call + latency
            else:
                ok, applies, point = True, True, call + rng.random() * latency
                t = call + latency
            plan.append((point, cl.seq, process, kind, key, call, ret, ok, applies, t))
            cl.seq += 1
            if ok is None:
                process += clients
        cl.time[c] = t + 1
        cl.process[c] = process
    plan.sort()
    for c in range(clients):  # nothing of this segment takes effect after the next one starts
        cl.time[c] = max(cl.time[c], int(plan[-1][0]) + 1 if plan else 0)

    # 2. apply in linearization order; inject anomalies on chosen ops
    state, replaced, last_read = cl.state, cl.replaced, cl.last_read
    writes = [i for i, p in enumerate(plan) if p[3] == "write" and p[7] is True]
    lost_at = set(rng.sample(writes, min(lost, len(writes))))
    reads = [i for i, p in enumerate(plan) if p[3] == "read" and p[7] is True]
    stale_at = set(rng.sample(reads, min(stale * 20, len(reads))))  # candidates; `stale` are used
    stale_left = stale
    out: list[tuple[int, Op]] = []
    for n, (_, s, process, kind, key, call, ret, ok, applies, done) in enumerate(plan):
        value: str | None = f"{process}-{s}"
        expected: str | None = None
        client = process % clients
        if kind == "read":
            value = state[key] if ok is True else None
            if n in stale_at and stale_left and ret is not None:
                old = [v for v, r_ret in replaced[key][-50:] if r_ret < call]
                if len(old) >= 2:
                    value = old[-2]
                    stale_left -= 1
            if ok is True:
                last_read[(client, key)] = value
        elif kind == "cas":
            expected = last_read.get((client, key))
            if expected is None:
                kind = "write"
            elif state[key] != expected:
                applies = False
                if ok is True:
                    ok = False  # "precondition failed"
        if kind != "read" and applies and n not in lost_at:
            old_value = state[key]
            if old_value is not None and ok is True and ret is not None:
                replaced[key].append((old_value, ret))
                del replaced[key][:-100]
            state[key] = value
        out.append((done, Op(process, kind, key, value, expected, ok, call, ret)))
    out.sort(key=lambda t: t[0])  # the order clients record them: at completion or timeout
    for _, op in out:
        yield op


def list_append_history(n_txns: int, *, keys: int = 20, clients: int = 12, seed: int = 0,
                        read_skews: int = 0) -> list[Op]:
    """A list-append history (check/elle.py) of a serializable store: each
    transaction (1-4 appends and reads over ``keys`` keys) runs against a dict of
    lists, one at a time, so the history has no anomaly; its call and return
    times overlap those of its neighbours, as concurrent clients' do. Keys
    rotate every 200 transactions, as the list-append workload's.
    ``read_skews`` later transactions each read one key as it was before its
    last append (a stale read inside a transaction): an anti-dependency on that
    append's transaction, which closes a cycle (G-single, G2) when the reader
    also depends on it another way; the history is then no longer serializable
    in general, only where no such cycle forms."""
    from replikv.check.elle import txn_value

    rng = random.Random(seed)
    state: dict[str, list[str]] = {}
    ops: list[Op] = []
    skew_at = set(rng.sample(range(n_txns // 2, n_txns), min(read_skews, n_txns // 2)))
    for i in range(n_txns):
        mops: list[tuple[str, str, Any]] = []
        for j in range(rng.randint(1, 4)):
            k = f"l{i // 200 * keys + rng.randrange(keys)}"  # keys rotate, as the workload's do
            if rng.random() < 0.5:
                v = f"{i}.{j}"
                state.setdefault(k, []).append(v)
                mops.append(("append", k, v))
            else:
                seen = list(state.get(k, []))
                if i in skew_at and len(seen) > 1:
                    seen = seen[:-1]  # missed the last append: an anti-dependency to its writer
                mops.append(("r", k, seen))
        t = i * 1_000_000
        ops.append(Op(i % clients, "txn", "txn", txn_value(mops), None, True, t, t + 1_500_000))
    return ops
