"""kv/crdt_view.py: the list diff gives exactly the commands of the plain search."""

from __future__ import annotations

import random

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


def test_incremental_views_equal_a_view_built_from_scratch() -> None:
    """Views kept by materialize after every op (the member/field hints at work,
    with concurrent ops and type conflicts) equal a view materialized whole."""
    from replikv.core.crdt.store import CrdtStore
    from replikv.kv.crdt_view import materialize
    from replikv.kv.crdt_writes import translate
    from replikv.kv.state_machine import StateMachine

    rng = random.Random(11)
    names = ["n1", "n2", "n3"]
    stores = {n: CrdtStore() for n in names}
    views = {n: StateMachine() for n in names}
    seqs = dict.fromkeys(names, 0)
    hlc = 0
    for _ in range(400):
        batch = []
        for n in names:  # concurrent ops: each made before any of the others arrives
            if rng.random() < 0.3:
                continue
            muts, _ = translate(stores[n], _cmd(rng), 10**12, rng)
            if muts:
                seqs[n] += 1
                hlc += 1
                batch.append((n, seqs[n], hlc, dict(stores[n].vv), muts))
        for n in names:
            for op in rng.sample(batch, len(batch)):
                materialize(stores[n], views[n], stores[n].apply(*op))
        for n in names:
            fresh = StateMachine()
            materialize(stores[n], fresh, list(stores[n].keys()))
            assert views[n].data == fresh.data
            assert views[n].expires == fresh.expires
