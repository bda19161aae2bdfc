"""core/crdt/keyed.py: writes shipped as deltas (``write_delta`` / ``apply_delta``).

A delta applied where the receiver holds its base must leave the key exactly as joining the
writer's whole state (as of just after the write) would; a delta is refused (the key named as
missing, nothing changed) where the base is not there; in any order, delivered any number of
times, with whole-state exchanges in between."""

from __future__ import annotations

import random

import msgpack
import pytest

from hypothesis import event, given, settings
from hypothesis import strategies as st

from replikv.core.crdt.hlc import Hlc
from replikv.core.crdt.keyed import KeyedStore, decode_delta, write_delta
from replikv.kv.crdt_writes import translate

KEYS = [b"k", b"s", b"h", b"l", b"m"]
COMMANDS = [
    (b"SET", b"k", b"1"), (b"SET", b"k", b"2"), (b"DEL", b"k"), (b"INCR", b"k"), (b"INCRBY", b"k", b"-3"),
    (b"SADD", b"s", b"x"), (b"SADD", b"s", b"y"), (b"SREM", b"s", b"x"), (b"DEL", b"s"),
    (b"HSET", b"h", b"f", b"1"), (b"HINCRBY", b"h", b"g", b"2"), (b"HDEL", b"h", b"f"),
    (b"RPUSH", b"l", b"a"), (b"LPUSH", b"l", b"b"), (b"LPOP", b"l"), (b"EXPIRE", b"k", b"100"),
    (b"MSET", b"k", b"3", b"m", b"4"), (b"DEL", b"k", b"m"),
]


class GeneralPathKeyed(KeyedStore):
    """A keyed store that applies every write through the general path (no ``_put_fast``)."""

    __slots__ = ()

    def _put_fast(self, *args: object) -> bool:
        return False


class Node:
    def __init__(self, name: str) -> None:
        self.name = name
        self.store = KeyedStore()
        self.twin = GeneralPathKeyed()  # gets every call the store gets: must hold the same states
        self.clock = Hlc()
        self.ms = 1_000

    def write(self, *argv: bytes) -> tuple[bytes, dict[bytes, bytes]] | None:
        """Make the write here; its delta and the whole states of its keys just after it."""
        self.ms += 1
        muts, _ = translate(self.store, list(argv), self.ms, random.Random(0))
        if not muts:
            return None
        hlc = self.clock.now(self.ms)
        before = {k: dict(self.store.context(k)) for k in {bytes(m[1]) for m in muts}}
        delta = write_delta(self.name, hlc, muts, before)
        assert self.store.apply_write(self.name, hlc, muts, self.ms) == self.twin.apply_write(
            self.name, hlc, muts, self.ms)
        self.check_twin()
        after = {k: b for k in before if (b := self.store.key_blob(k)) is not None}
        return delta, after

    def check_twin(self) -> None:
        for key in KEYS:
            assert self.store.key_blob(key) == self.twin.key_blob(key), key

    def join(self, key: bytes, blob: bytes) -> None:
        self.store.join_key(key, blob, self.ms)
        self.twin.join_key(key, blob, self.ms)
        self.check_twin()
        self.clock.observe(max(self.store.context(key).values(), default=0), self.ms)
        # a join that took the incoming state keeps its blob as the key's: it must be the encoding
        assert self.store.key_blob(key) == fresh_blob(self.store, key)


def fresh_blob(store: KeyedStore, key: bytes) -> bytes | None:
    """``key_blob(key)`` computed again, not from the cache."""
    if not store.known(key):
        return None
    ks = store.data.get(key)
    body = [sorted(store.context(key).items()), None if ks is None else ks.dump()]
    out: bytes = msgpack.packb(body, use_bin_type=True)
    return out


def joined(node: Node, key: bytes, blob: bytes) -> bytes | None:
    """``node``'s state of ``key`` joined with ``blob``, on a copy."""
    copy = KeyedStore()
    mine = node.store.key_blob(key)
    if mine is not None:
        copy.join_key(key, mine, 0)
    copy.join_key(key, blob, 0)
    return copy.key_blob(key)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["write", "deliver", "ship"]), st.integers(0, 2),
                          st.integers(0, len(COMMANDS) - 1), st.integers(0, 2), st.integers(0, 1 << 16)),
                min_size=10, max_size=60))
def test_a_delta_applied_equals_joining_the_whole_state_in_any_order_and_duplicated(
        steps: list[tuple[str, int, int, int, int]]) -> None:
    nodes = [Node(n) for n in "abc"]
    sent: list[tuple[bytes, dict[bytes, bytes]]] = []  # every delta made, kept: deliveries repeat
    for action, who, cmd, to, pick in steps:
        if action == "write":
            made = nodes[who].write(*COMMANDS[cmd])
            if made is not None:
                sent.append(made)
        elif action == "deliver" and sent:
            delta, after = sent[pick % len(sent)]
            r = nodes[to]
            expect = {k: joined(r, k, b) for k, b in after.items()}
            before = {k: r.store.key_blob(k) for k in after}
            changed, missing = r.store.apply_delta(decode_delta(delta), r.ms)
            assert r.twin.apply_delta(decode_delta(delta), r.ms) == (changed, missing)
            r.check_twin()
            event("applied" if changed else "missing" if missing else "duplicate")
            for k in after:
                if k in missing:  # no base here: nothing changed, the whole state is the fallback
                    assert r.store.key_blob(k) == before[k]
                    r.join(k, after[k])
                else:
                    assert r.store.key_blob(k) == expect[k] == fresh_blob(r.store, k), k
                    assert (k in changed) == (before[k] != expect[k])
            r.clock.observe(decode_delta(delta)[1], r.ms)
        elif action == "ship" and who != to:
            for key in KEYS:
                blob = nodes[who].store.key_blob(key)
                if blob is not None:
                    nodes[to].join(key, blob)
    # every delta delivered everywhere (with the fallback) then converges with whole-state exchanges
    for delta, after in sent:
        for r in nodes:
            _, missing = r.store.apply_delta(decode_delta(delta), r.ms)
            assert r.twin.apply_delta(decode_delta(delta), r.ms)[1] == missing
            for k in missing:
                r.join(k, after[k])
    for key in KEYS:
        for a in nodes:
            for b in nodes:
                if (blob := a.store.key_blob(key)) is not None:
                    b.join(key, blob)
        assert len({n.store.key_blob(key) for n in nodes}) == 1


def test_a_delta_on_a_replica_that_holds_its_base_is_applied_and_elsewhere_named_missing() -> None:
    a, b, c = Node("a"), Node("b"), Node("c")
    d1, _ = a.write(b"SET", b"k", b"1") or (b"", {})
    assert b.store.apply_delta(decode_delta(d1), 0) == ([b"k"], [])  # empty before: every replica has the base
    d2, after2 = a.write(b"SET", b"k", b"2") or (b"", {})
    assert c.store.apply_delta(decode_delta(d2), 0) == ([], [b"k"])  # c never saw the first write
    assert not c.store.known(b"k")
    assert b.store.apply_delta(decode_delta(d2), 0) == ([b"k"], [])
    assert b.store.key_blob(b"k") == after2[b"k"]
    assert b.store.apply_delta(decode_delta(d2), 0) == ([], [])  # a duplicate: nothing to do
    assert b.store.apply_delta(decode_delta(d1), 0) == ([], [])  # an older write of the same origin too


def test_a_garbled_delta_is_refused() -> None:
    good = write_delta("a", 5, [("incr", b"k", 1)], {b"k": {}})
    assert decode_delta(good)[0] == "a"
    for junk in (b"", b"\x00", good[:-1], write_delta("a", 5, [("incr", b"x", 1)], {b"k": {}}),
                 write_delta("a", 0, [], {})):
        try:
            decode_delta(junk)
        except ValueError:
            continue
        raise AssertionError(f"{junk!r} was accepted")


def test_a_delta_whose_context_is_not_origins_to_integers_is_refused() -> None:
    """A context maps origins (strings) to sequence numbers (integers): anything else is a garbled
    delta, never coerced (``str(1)`` would have named an origin "1" no replica is)."""
    assert decode_delta(write_delta("a", 5, [("put", b"k", b"v", None)], {b"k": {"b": 3}}))[3] == {b"k": {"b": 3}}
    for ctx in ({1: 3}, {"b": "3"}, {"b": 3.0}, {"b": None}):
        blob = msgpack.packb(["a", 5, [["put", b"k", b"v", None]], [[b"k", sorted(ctx.items())]]], use_bin_type=True)
        with pytest.raises(ValueError):
            decode_delta(blob)


def test_write_delta_is_deterministic_whatever_the_order_of_keys_and_origins() -> None:
    muts = [("incr", b"x", 1), ("incr", b"k", 2)]
    one = write_delta("a", 5, muts, {b"x": {"c": 1, "b": 2}, b"k": {"b": 7}})
    other = write_delta("a", 5, tuple(muts), {b"k": {"b": 7}, b"x": {"b": 2, "c": 1}})
    assert one == other
    assert decode_delta(one)[3] == {b"k": {"b": 7}, b"x": {"b": 2, "c": 1}}
