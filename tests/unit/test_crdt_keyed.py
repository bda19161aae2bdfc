"""core/crdt/keyed.py: per-key causal contexts (the leaderless key space).

Writes are made with the real translation (kv/crdt_writes.py) on one replica
and shipped as whole key states, as the leaderless coordinator does."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from replikv.core.crdt.hlc import Hlc
from replikv.core.crdt.keyed import KeyedStore
from replikv.core.crdt.store import overwrite_muts
from replikv.core.replies import OK
from replikv.kv.crdt_writes import translate, vget


class Replica:
    def __init__(self, name: str, conflicts: str = "lww") -> None:
        self.name = name
        self.store = KeyedStore(conflicts)
        self.clock = Hlc()
        self.ms = 1_000

    def write(self, *argv: bytes) -> object:
        self.ms += 1
        muts, reply = translate(self.store, list(argv), self.ms, random.Random(0))
        if muts:
            self.store.apply_write(self.name, self.clock.now(self.ms), muts, self.ms)
        return reply

    def send(self, other: Replica, key: bytes) -> bool:
        blob = self.store.key_blob(key)
        assert blob is not None
        changed = other.store.join_key(key, blob, other.ms)
        other.clock.observe(max(self.store.context(key).values()), other.ms)
        return changed

    def get(self, key: bytes) -> object:
        vis = self.store.visible(key)
        return None if vis is None else vis.value


def exchange(replicas: list[Replica], key: bytes) -> None:
    for a in replicas:
        for b in replicas:
            if a is not b and a.store.known(key):
                a.send(b, key)


def test_a_shipped_write_shows_on_the_other_replica_and_joining_again_changes_nothing() -> None:
    a, b = Replica("a"), Replica("b")
    assert a.write(b"SET", b"k", b"v1") == OK
    assert a.send(b, b"k")
    assert b.get(b"k") == b"v1"
    assert not a.send(b, b"k")  # idempotent
    assert a.store.key_digest(b"k") == b.store.key_digest(b"k")


def test_an_overwrite_that_saw_the_old_value_replaces_it_everywhere() -> None:
    a, b = Replica("a"), Replica("b")
    a.write(b"SET", b"k", b"old")
    a.send(b, b"k")
    b.write(b"SET", b"k", b"new")  # b saw "old"
    b.send(a, b"k")
    assert a.get(b"k") == b.get(b"k") == b"new"
    assert b.store.siblings(b"k") == a.store.siblings(b"k")
    assert len(a.store.state(b"k").reg) == 1  # the old entry is gone, not hidden


def test_concurrent_writes_are_siblings_and_lww_shows_the_later_hlc() -> None:
    a, b = Replica("a", "siblings"), Replica("b", "siblings")
    a.write(b"SET", b"k", b"from-a")
    b.ms += 5
    b.write(b"SET", b"k", b"from-b")  # later HLC, did not see a's
    exchange([a, b], b"k")
    assert a.store.key_digest(b"k") == b.store.key_digest(b"k")
    ctx, values = vget(a.store, b"k")
    assert sorted(values) == [b"from-a", b"from-b"]
    assert ctx == b"a:" + str(a.store.context(b"k")["a"]).encode() + b",b:" + str(
        a.store.context(b"k")["b"]).encode()
    assert a.get(b"k") == b"from-b"
    # VSET with that context supersedes both siblings on every replica
    assert a.write(b"VSET", b"k", b"merged", b"CONTEXT", ctx) == OK
    exchange([a, b], b"k")
    assert vget(b.store, b"k")[1] == [b"merged"]


def test_a_delete_is_a_tombstone_that_wins_over_the_state_it_saw() -> None:
    a, b, c = Replica("a"), Replica("b"), Replica("c")
    a.write(b"SET", b"k", b"v")
    a.send(b, b"k")
    a.send(c, b"k")
    assert b.write(b"DEL", b"k") == 1
    assert b.store.known(b"k") and b.store.visible(b"k") is None
    assert b.store.dead_ms[b"k"] == b.ms
    b.send(a, b"k")
    assert a.get(b"k") is None
    a.send(c, b"k")  # c had the value only; the tombstone's context covers it
    assert c.get(b"k") is None
    # c's stale copy shipped back does not resurrect it
    assert not c.send(a, b"k")
    assert a.store.collect(b"k") and not a.store.known(b"k")
    assert not a.store.collect(b"k")


def test_a_write_concurrent_with_a_delete_survives_it() -> None:
    a, b = Replica("a"), Replica("b")
    a.write(b"SET", b"k", b"v")
    a.send(b, b"k")
    b.write(b"DEL", b"k")
    a.write(b"SADD", b"s", b"x")  # unrelated
    a.ms += 10
    a.write(b"SET", b"k", b"v2")  # did not see the delete
    exchange([a, b], b"k")
    assert a.get(b"k") == b.get(b"k") == b"v2"


def test_set_adds_win_over_concurrent_removes_and_observed_removes_stick() -> None:
    a, b = Replica("a"), Replica("b")
    a.write(b"SADD", b"s", b"x", b"y")
    a.send(b, b"s")
    a.write(b"SREM", b"s", b"x")  # observed x
    b.write(b"SREM", b"s", b"x")
    b.write(b"SADD", b"s", b"x")  # a new add of x, concurrent with a's remove
    b.write(b"SREM", b"s", b"y")
    b.write(b"SADD", b"s", b"z")
    exchange([a, b], b"s")
    assert a.get(b"s") == b.get(b"s") == {b"x", b"z"}


def test_concurrent_increments_on_every_replica_all_count() -> None:
    rs = [Replica(n) for n in "abc"]
    for i, r in enumerate(rs):
        for _ in range(i + 1):
            r.write(b"INCRBY", b"n", b"5")
    rs[0].write(b"DECR", b"n")
    exchange(rs, b"n")
    assert {r.get(b"n") for r in rs} == {b"29"}


def test_snapshot_restore_and_whole_state_join_keep_contexts_and_tombstones() -> None:
    a, b = Replica("a"), Replica("b")
    a.write(b"SET", b"k", b"v")
    a.write(b"HSET", b"h", b"f", b"1")
    a.write(b"DEL", b"k")
    blob = a.store.snapshot()
    back = KeyedStore.restore(blob)
    assert back.snapshot() == blob
    assert back.known(b"k") and back.visible(b"k") is None and back.dead_ms[b"k"] == a.store.dead_ms[b"k"]
    assert sorted(b.store.join(blob, 5)) == [b"h", b"k"]
    assert b.store.visible(b"h").value == {b"f": b"1"}
    assert b.store.key_digest(b"k") == a.store.key_digest(b"k")


def test_a_garbled_key_state_is_refused() -> None:
    a = Replica("a")
    for junk in (b"\x00", b"\x92\x01\x02", b"\xc1"):
        try:
            a.store.join_key(b"k", junk, 0)
        except ValueError:
            continue
        raise AssertionError(f"{junk!r} was accepted")
    assert not a.store.known(b"k")


COMMANDS = [
    (b"SET", b"k", b"1"), (b"SET", b"k", b"2"), (b"DEL", b"k"), (b"INCR", b"k"),
    (b"SADD", b"s", b"x"), (b"SADD", b"s", b"y"), (b"SREM", b"s", b"x"), (b"DEL", b"s"),
    (b"HSET", b"h", b"f", b"1"), (b"HINCRBY", b"h", b"g", b"2"), (b"HDEL", b"h", b"f"),
    (b"RPUSH", b"l", b"a"), (b"LPUSH", b"l", b"b"), (b"LPOP", b"l"), (b"EXPIRE", b"k", b"100"),
]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, len(COMMANDS) - 1),
                          st.integers(0, 2), st.booleans()), max_size=40))
def test_any_interleaving_of_writes_and_joins_converges(steps: list[tuple[int, int, int, bool]]) -> None:
    """Whatever each replica wrote and whichever key states were shipped when,
    one final exchange leaves every replica with the same state of every key
    (the join is a least upper bound: commutative, associative, idempotent)."""
    rs = [Replica(n) for n in "abc"]
    keys = [b"k", b"s", b"h", b"l"]
    for who, cmd, to, ship in steps:
        rs[who].write(*COMMANDS[cmd])
        if ship:
            for key in keys:
                if rs[who].store.known(key) and to != who:
                    rs[who].send(rs[to], key)
    for key in keys:
        exchange(rs, key)
        digests = {r.store.key_digest(key) for r in rs}
        assert len(digests) == 1, key
        assert all(r.store.visible(key) == rs[0].store.visible(key) for r in rs)


def test_a_join_under_a_covering_context_that_drops_their_entries_keeps_its_own_blob() -> None:
    """Two replicas can reach equal contexts with different entries (a Paxos commit written over
    a context that missed the commit before it: paxos.py, "A replica that missed a commit"):
    ``a`` applied the second commit over the first value, ``b`` applied it without the first and
    then joined the first value's state, which keeps both as siblings, and a tombstone's dot.
    Joining ``b``'s state (its context covers ``a``'s) into ``a`` drops ``b``'s entry that
    ``a``'s context covers; ``a``'s ``key_blob`` must be its own
    state, not ``b``'s blob (it once was: the digests then lied and anti-entropy swapped the
    two states for ever), and the two converge."""
    key = b"k"
    first, second = ("n1", 100 << 16), ("n3", 200 << 16)
    a, b, old = KeyedStore(), KeyedStore(), KeyedStore()
    for store in (a, old):
        store.apply_write(*first, overwrite_muts(store, key, b"first"), 1)
    a.apply_write(*second, overwrite_muts(a, key, b"second"), 2)
    b.apply_write(*second, overwrite_muts(b, key, b"second"), 2)
    old_blob = old.key_blob(key)
    assert old_blob is not None and b.join_key(key, old_blob, 3)
    assert a.context(key) == b.context(key) and a.key_blob(key) != b.key_blob(key)
    gone = KeyedStore()  # and a dot ``a`` has not seen: ``b``'s context now covers ``a``'s strictly
    gone.apply_write("n2", 150 << 16, overwrite_muts(gone, key, None), 1)
    gone_blob = gone.key_blob(key)
    assert gone_blob is not None and b.join_key(key, gone_blob, 3)
    b_blob = b.key_blob(key)
    assert b_blob is not None
    a.join_key(key, b_blob, 4)
    fresh = KeyedStore.restore(a.snapshot())
    assert a.key_blob(key) == fresh.key_blob(key)  # its own state, packed
    a_blob = a.key_blob(key)
    assert a_blob is not None
    b.join_key(key, a_blob, 5)
    assert a.key_blob(key) == b.key_blob(key) == KeyedStore.restore(b.snapshot()).key_blob(key)
