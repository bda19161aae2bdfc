"""Transactional anomalies in a list-append history, in the manner of Jepsen's Elle.

The ``list-append`` workload (check/workloads.py) runs transactions (MULTI /
EXEC) of micro-operations over a few keys: ``append`` (RPUSH of a value
unique over the whole run) and ``r`` (LRANGE 0 -1). Because every value is
unique and lists only grow, a read names exactly the appends it saw, in
order, and the longest read of a key gives that key's version order.

Each op of the history is one transaction: ``op = "txn"``, ``key = "txn"``
(so the per-key driver hands every transaction to this checker at once),
``value`` = JSON ``[[f, key, v], ...]`` with ``f`` ``append`` or ``r`` and,
for a read, ``v`` the list it returned (``None`` before it ran).
``ok`` True: committed, results known; None: unknown outcome (it may have
committed: its appends may be observed); False: did not happen.

Anomalies (Adya's, as Elle names them), each with the transactions that
witness it (history indices):

- ``incompatible-order``: two reads of a key where neither is a prefix of
  the other (no single version order explains them).
- ``duplicate``: a value twice in one read (an append applied twice).
- ``G1a`` aborted read: a read sees an append of a failed transaction.
- ``G1b`` intermediate read: a read ends at an append that its
  transaction followed with another append to the same key.
- ``garbage``: a read sees a value no transaction appended.
- Dependency cycles over three edge kinds between transactions,
  ``ww`` (T2 appended right after T1 in a key's order), ``wr`` (T2 read a
  list whose last value T1 appended) and ``rw`` (T1 read a list that T2's
  append extends, anti-dependency):
  ``G0`` a cycle of ww edges only; ``G1c`` ww and wr edges, at least one
  wr; ``G-single`` exactly one rw edge; ``G2`` more than one rw edge.
  Serializability forbids all of them; snapshot isolation allows G2 only.

Cost: building the graph is linear in the total size of the reads; cycles
are searched inside strongly connected components (Tarjan, iterative), with
one breadth-first search per candidate edge and at most ``MAX_SEARCHES``
searches per component, so a history with no cycle costs O(V + E).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from replikv.check.history import KeyOps, Op
from replikv.check.result import Anomaly, CheckResult, KeyChecker

__all__ = ["ListAppendChecker", "Txn", "check_list_append", "txn_value"]

MAX_SEARCHES = 2000
WW, WR, RW = "ww", "wr", "rw"


def txn_value(mops: Iterable[tuple[str, str, Any]]) -> str:
    """The ``value`` of a txn op: JSON of its micro-operations."""
    return json.dumps([list(m) for m in mops], separators=(",", ":"))


@dataclass
class Txn:
    index: int  # in the history
    ok: bool | None
    process: int
    call: int
    mops: list[tuple[str, str, Any]] = field(default_factory=list)


def _txns(ops: Sequence[Op], indices: Sequence[int]) -> list[Txn]:
    out = []
    for i, op in zip(indices, ops):
        if op.op != "txn" or op.value is None:
            continue
        mops = [(str(f), str(k), v) for f, k, v in json.loads(op.value)]
        out.append(Txn(i, op.ok, op.process, op.call, mops))
    return out


class _Graph:
    def __init__(self) -> None:
        self.out: dict[int, dict[int, tuple[str, str]]] = {}  # a -> b -> (kind, key); the first edge kept

    def add(self, a: int, b: int, kind: str, key: str) -> None:
        if a == b:
            return
        edges = self.out.setdefault(a, {})
        old = edges.get(b)
        # keep the strongest kind between a pair (ww < wr < rw for cycle classes)
        if old is None or (old[0] == RW and kind != RW) or (old[0] == WR and kind == WW):
            edges[b] = (kind, key)
        self.out.setdefault(b, {})

    def sccs(self) -> list[list[int]]:
        """Tarjan's algorithm without recursion; components of 2+ nodes."""
        index: dict[int, int] = {}
        low: dict[int, int] = {}
        on: set[int] = set()
        stack: list[int] = []
        out: list[list[int]] = []
        counter = 0
        for root in self.out:
            if root in index:
                continue
            work = [(root, iter(self.out[root]))]
            index[root] = low[root] = counter
            counter += 1
            stack.append(root)
            on.add(root)
            while work:
                node, it = work[-1]
                advanced = False
                for nxt in it:
                    if nxt not in index:
                        index[nxt] = low[nxt] = counter
                        counter += 1
                        stack.append(nxt)
                        on.add(nxt)
                        work.append((nxt, iter(self.out[nxt])))
                        advanced = True
                        break
                    if nxt in on:
                        low[node] = min(low[node], index[nxt])
                if advanced:
                    continue
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == node:
                            break
                    if len(comp) > 1:
                        out.append(comp)
        return out

    def path(self, src: int, dst: int, allowed: set[str], within: set[int]) -> list[int] | None:
        """Shortest path src -> dst over edges of the allowed kinds inside ``within``."""
        prev: dict[int, int] = {src: src}
        queue = deque([src])
        while queue:
            node = queue.popleft()
            if node == dst:
                path = [dst]
                while path[-1] != src:
                    path.append(prev[path[-1]])
                return path[::-1]
            for nxt, (kind, _) in self.out[node].items():
                if nxt in within and nxt not in prev and kind in allowed:
                    prev[nxt] = node
                    queue.append(nxt)
        return None


class ListAppendChecker(KeyChecker):
    """Every transaction of a list-append history (one key group, ``txn``)."""

    name = "serializable"  # the property its claim names (modes' claims for list-append)

    def __init__(self) -> None:
        self.result_ = CheckResult(self.name, "pass", "")
        self.txns = 0
        self.edges = 0

    def key(self, group: KeyOps) -> None:
        self._check(_txns(group.ops, group.indices))

    def _anomaly(self, kind: str, key: str, text: str, txns: list[Txn]) -> None:
        self.result_.add(Anomaly(kind, key, text, [t.index for t in txns],
                                 time=txns[0].call if txns else 0, process=txns[0].process if txns else None))

    def _check(self, txns: list[Txn]) -> None:
        self.txns += len(txns)
        by_index = {t.index: t for t in txns}
        writer: dict[tuple[str, Any], Txn] = {}  # (key, value) -> the txn that appended it (ok or unknown)
        failed: dict[tuple[str, Any], Txn] = {}
        last_append: dict[tuple[int, str], Any] = {}  # (txn, key) -> its final append to key
        for t in txns:
            for f, k, v in t.mops:
                if f == "append":
                    (failed if t.ok is False else writer)[(k, _hashable(v))] = t
                    last_append[(t.index, k)] = v
        # version orders: the longest read of each key; every read must be a prefix of it
        reads: dict[str, list[tuple[Txn, list[Any]]]] = {}
        for t in txns:
            if t.ok is not True:
                continue
            for f, k, v in t.mops:
                if f == "r" and isinstance(v, list):
                    reads.setdefault(k, []).append((t, v))
        order: dict[str, list[Any]] = {}
        for k, rs in reads.items():
            longest_t, longest = max(rs, key=lambda r: len(r[1]))
            order[k] = longest
            for t, v in rs:
                if longest[: len(v)] != v:
                    self._anomaly("incompatible-order", k, f"reads of {k} disagree: {_short(v)} is not a prefix "
                                  f"of {_short(longest)}", [t, longest_t])
            if len(set(map(_hashable, longest))) != len(longest):
                self._anomaly("duplicate", k, f"a value appears twice in {k}: {_short(longest)}", [longest_t])
        graph = _Graph()
        for t in txns:
            graph.out.setdefault(t.index, {})
        for k, vs in order.items():  # ww: consecutive appends in the version order
            prev_w: Txn | None = None
            for v in vs:
                w = writer.get((k, _hashable(v)))
                if w is None:
                    if (k, _hashable(v)) in failed:
                        continue  # G1a, reported below
                    self._anomaly("garbage", k, f"{k} holds {v!r}, which no transaction appended", [])
                    continue
                if prev_w is not None:
                    graph.add(prev_w.index, w.index, WW, k)
                prev_w = w
        for k, rs in reads.items():
            vs = order[k]
            for t, v in rs:
                if vs[: len(v)] != v:
                    continue  # incompatible: no edges from it
                if v:
                    last = _hashable(v[-1])
                    bad = failed.get((k, last))
                    if bad is not None:
                        self._anomaly("G1a", k, f"T{t.index} read {last!r} in {k}, appended by T{bad.index}, "
                                      "which failed", [t, bad])
                    w = writer.get((k, last))
                    if w is not None:
                        graph.add(w.index, t.index, WR, k)
                        final = last_append.get((w.index, k))
                        if final is not None and _hashable(final) != last and w.index != t.index:
                            self._anomaly("G1b", k, f"T{t.index} read {k} ending at {last!r}, an intermediate "
                                          f"append of T{w.index} (its last to {k} is {final!r})", [t, w])
                if len(v) < len(vs):  # rw: whoever appended the next value overwrote what t saw
                    nxt = writer.get((k, _hashable(vs[len(v)])))
                    if nxt is not None:
                        graph.add(t.index, nxt.index, RW, k)
        self.edges += sum(len(e) for e in graph.out.values())
        for comp in graph.sccs():
            self._cycles(graph, set(comp), by_index)

    def _cycles(self, graph: _Graph, comp: set[int], by_index: dict[int, Txn]) -> None:
        """Report the strongest anomaly class one cycle in this component shows."""
        edges = [(a, b, kind) for a in comp for b, (kind, _) in graph.out[a].items() if b in comp]
        searches = 0
        for cls, first_kinds, allowed in (("G0", {WW}, {WW}), ("G1c", {WR}, {WW, WR}),
                                          ("G-single", {RW}, {WW, WR}), ("G2", {RW}, {WW, WR, RW})):
            for a, b, kind in edges:
                if kind not in first_kinds:
                    continue
                searches += 1
                if searches > MAX_SEARCHES:
                    return
                back = graph.path(b, a, allowed, comp)
                if back is not None:
                    cycle = [a, *back]
                    self._anomaly(cls, "", _describe(cycle, graph), [by_index[i] for i in cycle[:-1]])
                    return

    def result(self) -> CheckResult:
        r = self.result_
        r.stats = {"transactions": self.txns, "edges": self.edges}
        if r.count:
            kinds = sorted({a.kind for a in r.anomalies})
            r.status, r.summary = "fail", f"{r.count} anomalies ({', '.join(kinds)}) in {self.txns} transactions"
        else:
            r.summary = f"{self.txns} transactions, {self.edges} dependency edges, no anomaly"
        return r


def check_list_append(history: Sequence[Op]) -> CheckResult:
    checker = ListAppendChecker()
    checker.key(KeyOps("txn", list(range(len(history))), list(history)))
    return checker.result()


def _describe(cycle: list[int], graph: _Graph) -> str:
    parts = [f"T{cycle[0]}"]
    for a, b in zip(cycle, cycle[1:]):
        kind, key = graph.out[a][b]
        parts.append(f"-{kind}({key})-> T{b}")
    return " ".join(parts)


def _hashable(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _short(v: list[Any]) -> str:
    return repr(v if len(v) <= 8 else [*v[:3], "...", *v[-3:]])
