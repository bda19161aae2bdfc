"""kv/crdt_view.py: the list diff gives exactly the commands of the plain search."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from replikv.kv.crdt_view import _list_cmds


def _reference(key: bytes, old: list[bytes], new: list[bytes]) -> list[list[bytes]] | None:
    """The definition: the first (lpop, rpop) whose kept middle occurs in ``new``."""

    def find(seq: list[bytes], sub: list[bytes]) -> int:
        for i in range(len(seq) - len(sub) + 1):
            if seq[i : i + len(sub)] == sub:
                return i
        return -1

    for lpop in range(len(old) + 1):
        for rpop in range(len(old) - lpop + 1):
            mid = old[lpop : len(old) - rpop]
            if not mid:
                continue
            at = find(new, mid)
            if at < 0:
                continue
            cmds: list[list[bytes]] = []
            if lpop:
                cmds.append([b"LPOP", key, str(lpop).encode()])
            if rpop:
                cmds.append([b"RPOP", key, str(rpop).encode()])
            head, tail = new[:at], new[at + len(mid) :]
            if head:
                cmds.append([b"LPUSH", key, *reversed(head)])
            if tail:
                cmds.append([b"RPUSH", key, *tail])
            return cmds
    return None


def test_list_cmds_match_the_plain_search() -> None:
    rng = random.Random(5)
    for _ in range(5000):
        alphabet = [b"a", b"b", b"c", b"d"][: rng.randint(1, 4)]
        old = [rng.choice(alphabet) for _ in range(rng.randint(0, 8))]
        case = rng.randrange(4)
        if case == 0:
            new = [rng.choice(alphabet) for _ in range(rng.randint(0, 8))]
        else:
            lo = rng.randint(0, len(old))
            hi = rng.randint(lo, len(old))
            new = (
                [rng.choice(alphabet) for _ in range(rng.randint(0, 3))]
                + old[lo:hi]
                + [rng.choice(alphabet) for _ in range(rng.randint(0, 3))]
            )
        assert _list_cmds(b"k", old, new) == _reference(b"k", old, new), (old, new)


def _cmd(rng: random.Random) -> list[bytes]:
    k = rng.choice([b"k1", b"k2", b"k3"])
    m, v = rng.choice([b"a", b"b", b"c", b"1"]), rng.choice([b"x", b"y", b"5"])
    return rng.choice([
        [b"SADD", k, m, rng.choice([b"a", b"d"])], [b"SREM", k, m], [b"SPOP", k],
        [b"HSET", k, m, v], [b"HDEL", k, m], [b"HINCRBY", k, m, b"2"],
        [b"SET", k, v], [b"INCR", k], [b"DEL", k], [b"RPUSH", k, v], [b"LPOP", k],
        [b"EXPIRE", k, b"100"], [b"PERSIST", k], [b"SMOVE", k, rng.choice([b"k1", b"k2"]), m],
    ])


def _concurrent_round(stores: dict[str, Any], views: dict[str, Any], seqs: dict[str, int], hlc: int,
                      rng: random.Random, skip: float, make_cmd: Callable[[random.Random], list[bytes]]) -> int:
    """One round of concurrent ops: each replica (but a ``skip`` share) makes one before any of
    the others arrives, then every replica applies the round's ops in an order of its own, its
    view kept by materialize. Returns the HLC after the round."""
    from replikv.kv.crdt_view import materialize
    from replikv.kv.crdt_writes import translate

    batch = []
    for n, store in stores.items():
        if rng.random() < skip:
            continue
        muts, _ = translate(store, make_cmd(rng), 10**12, rng)
        if muts:
            seqs[n] += 1
            hlc += 1
            batch.append((n, seqs[n], hlc, dict(store.vv), muts))
    for n, store in stores.items():
        for op in rng.sample(batch, len(batch)):
            materialize(store, views[n], store.apply(*op))
    return hlc


def test_incremental_views_equal_a_view_built_from_scratch() -> None:
    """Views kept by materialize after every op (the member/field hints at work,
    with concurrent ops and type conflicts) equal a view materialized whole."""
    from replikv.core.crdt.store import CrdtStore
    from replikv.kv.crdt_view import materialize
    from replikv.kv.state_machine import StateMachine

    rng = random.Random(11)
    names = ["n1", "n2", "n3"]
    stores = {n: CrdtStore() for n in names}
    views = {n: StateMachine() for n in names}
    seqs = dict.fromkeys(names, 0)
    hlc = 0
    for _ in range(400):
        hlc = _concurrent_round(stores, views, seqs, hlc, rng, 0.3, _cmd)
        for n in names:
            fresh = StateMachine()
            materialize(stores[n], fresh, list(stores[n].keys()))
            assert views[n].data == fresh.data
            assert views[n].expires == fresh.expires


def _reference_deliver(store, view, ops, me, index):  # type: ignore[no-untyped-def]
    """deliver_ops by its definition: each op applied, each key it changed touched at the op's
    index (``ChangeIndex.touch``) and counted when a remote op left it with concurrent values,
    then the batch's changed keys materialized."""
    from replikv.kv.crdt_view import materialize

    changed_keys: dict[bytes, None] = {}
    received = conflicts = newest = 0
    for op in ops:
        index += 1
        changed = store.apply(op.origin, op.seq, op.hlc, op.deps, op.payload)
        if op.origin != me:
            received += 1
            newest = max(newest, op.hlc)
        for key in changed:
            view.changes.touch(key, index)
            changed_keys[key] = None
            if op.origin != me and key in store.data and len(store.data[key].reg) > 1:
                conflicts += 1
    materialize(store, view, list(changed_keys))
    return index, received, newest, conflicts


def test_deliver_ops_per_batch_equals_per_op_bookkeeping() -> None:
    """deliver_ops keeps the WATCH index per batch (one ``touch_keys``): the same stores,
    views, WATCH indexes (values and key order) and counters as touching every key of every
    op in turn, for batches of concurrent ops of every kind with the same key several times."""
    from replikv.core.crdt.store import CrdtStore
    from replikv.core.multileader.messages import Op
    from replikv.kv.crdt_view import deliver_ops
    from replikv.kv.crdt_writes import translate
    from replikv.kv.state_machine import StateMachine
    from replikv.kv.watch import ChangeIndex

    rng = random.Random(23)
    names = ["n1", "n2", "n3"]
    makers = {n: CrdtStore() for n in names}
    ops: list[Op] = []
    seqs = dict.fromkeys(names, 0)
    for hlc in range(1, 600):
        n = rng.choice(names)
        if rng.random() < 0.5:  # what the others made so far reaches n: later ops observe them
            for op in ops:
                if op.origin != n and op.seq > makers[n].vv.get(op.origin, 0) \
                        and all(makers[n].vv.get(o, 0) >= s for o, s in op.deps.items() if o != op.origin) \
                        and makers[n].vv.get(op.origin, 0) == op.seq - 1:
                    makers[n].apply(*op)
        muts, _ = translate(makers[n], _cmd(rng), 10**12, rng)
        if not muts:
            continue
        seqs[n] += 1
        op = Op(n, seqs[n], hlc, dict(makers[n].vv), muts)
        makers[n].apply(*op)
        ops.append(op)
    me = "n1"
    got = CrdtStore(), StateMachine()
    ref = CrdtStore(), StateMachine()
    for _, view in (got, ref):
        view.changes = ChangeIndex(0, limit=2)  # small: forgetting happens within the run
    i_got = i_ref = 0
    totals_got, totals_ref = [0, 0, 0], [0, 0, 0]
    at = 0
    while at < len(ops):  # ops in their made order (causal), in batches of 1-40
        batch = ops[at : at + rng.randint(1, 40)]
        at += len(batch)
        i_got, *c_got = deliver_ops(got[0], got[1], batch, me, i_got)
        i_ref, *c_ref = _reference_deliver(ref[0], ref[1], batch, me, i_ref)
        assert i_got == i_ref
        totals_got = [totals_got[0] + c_got[0], max(totals_got[1], c_got[1]), totals_got[2] + c_got[2]]
        totals_ref = [totals_ref[0] + c_ref[0], max(totals_ref[1], c_ref[1]), totals_ref[2] + c_ref[2]]
        assert got[0].digest() == ref[0].digest()
        assert got[1].data == ref[1].data and got[1].expires == ref[1].expires
        if got[1].changes.floor == ref[1].changes.floor:
            assert list(got[1].changes.last.items()) == list(ref[1].changes.last.items())
        # forgetting may fall at another point of a batch, never a false "unchanged"
        for key, idx in ref[1].changes.last.items():
            assert got[1].changes.changed_since([key], idx - 1)
    assert totals_got == totals_ref
    assert got[1].changes.floor > 0 and ref[1].changes.floor > 0  # both forgot
    assert totals_ref[2] > 0 and totals_ref[0] > 0  # remote ops left concurrent values


def test_string_keys_view_equals_store_visible() -> None:
    """materialize's short way for a key SET left (one register value, no counter) gives the
    view exactly ``store.visible``: value, deadline (``SET ... PX``, ``PERSIST``, ``EXPIRE`` on
    a key with concurrent TTLs) and absence, over concurrent SET/INCR/DEL/type changes, checked
    against ``visible`` itself rather than against another materialize."""
    from replikv.core.crdt.store import CrdtStore
    from replikv.kv.state_machine import StateMachine

    rng = random.Random(5)
    names = ["n1", "n2", "n3"]
    stores = {n: CrdtStore() for n in names}
    views = {n: StateMachine() for n in names}
    seqs = dict.fromkeys(names, 0)
    hlc = 0
    shapes = {"short": 0, "ttl": 0, "several": 0}
    def string_cmd(rng: random.Random) -> list[bytes]:
        k = rng.choice([b"k1", b"k2", b"k3", b"k4"])
        v = rng.choice([b"x", b"y", b"7"])
        return rng.choice([
            [b"SET", k, v], [b"SET", k, v], [b"SET", k, v, b"PX", b"100000"],
            [b"SET", k, v, b"KEEPTTL"], [b"PEXPIRE", k, b"50000"], [b"PERSIST", k],
            [b"INCR", k], [b"DEL", k], [b"SADD", k, v],
        ])

    for _ in range(600):
        hlc = _concurrent_round(stores, views, seqs, hlc, rng, 0.4, string_cmd)
        for n in names:
            store, view = stores[n], views[n]
            for key in (b"k1", b"k2", b"k3", b"k4"):
                vis = store.visible(key)
                ks = store.data.get(key)
                if ks is not None and len(ks.reg) == 1 and not ks.ctr and not ks.set:
                    shapes["short"] += 1
                    shapes["ttl"] += vis is not None and vis.deadline_ms is not None
                if ks is not None and len(ks.reg) > 1 and not ks.ctr and not ks.set and not ks.hash and not ks.lst:
                    shapes["several"] += 1  # concurrent SETs: the LWW winner, read in place
                if vis is None:
                    assert key not in view.data and key not in view.expires
                elif vis.type == "string":
                    assert view.data[key] == vis.value
                    assert view.expires.get(key) == vis.deadline_ms
    # the short ways (one value; several concurrent ones) and their deadlines were exercised
    assert shapes["short"] > 300 and shapes["ttl"] > 30 and shapes["several"] > 30
