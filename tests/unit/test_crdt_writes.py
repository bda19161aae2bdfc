"""kv/crdt_writes.py replies and mutations, and kv/crdt_view.py keeping a view equal to the store."""

from __future__ import annotations

import random

import pytest

from replikv.core.crdt import CrdtStore
from replikv.core.replies import OK, RespError
from replikv.kv.crdt_view import materialize
from replikv.kv.crdt_writes import refusal, supported, translate, vget
from replikv.kv.state_machine import StateMachine

NOW = 1_000_000


class Node:
    def __init__(self, name: str, conflicts: str = "lww") -> None:
        self.name = name
        self.store = CrdtStore(conflicts)
        self.view = StateMachine()
        self.seq = 0
        self.hlc = 0
        self.log: list[tuple] = []

    def run(self, *argv, now=NOW):
        args = [a if isinstance(a, bytes) else str(a).encode() for a in argv]
        muts, reply = translate(self.store, args, now, random.Random(7))
        if muts:
            self.seq += 1
            self.hlc += 1
            op = (self.name, self.seq, self.hlc, dict(self.store.vv), muts)
            self.deliver(op)
            self.log.append(op)
        return reply

    def deliver(self, op):
        self.hlc = max(self.hlc, op[2])
        materialize(self.store, self.view, self.store.apply(*op))

    def read(self, *argv, now=NOW):
        return self.view.read([a if isinstance(a, bytes) else str(a).encode() for a in argv], now)


def test_string_replies():
    n = Node("n1")
    assert n.run("SET", "k", "v") == "OK"
    assert n.run("SET", "k", "w", "NX") is None
    assert n.run("SET", "k", "w", "XX", "GET") == b"v"
    assert n.run("SETNX", "k", "z") == 0
    assert n.run("APPEND", "k", "x") == 2
    assert n.run("INCR", "k") == RespError("ERR value is not an integer or out of range")
    assert n.run("INCRBY", "c", "5") == 5 and n.run("DECRBY", "c", "2") == 3
    assert n.read("GET", "c") == b"3"
    assert n.run("MSET", "a", "1", "b", "2") == "OK" and n.run("MSETNX", "a", "1", "z", "2") == 0
    assert n.run("GETDEL", "a") == b"1" and n.read("GET", "a") is None
    assert n.run("SETRANGE", "b", "3", "x") == 4 and n.read("GET", "b") == b"2\0\0x"
    assert n.run("SET", "t", "v", "PX", "500") == "OK"
    assert n.read("PTTL", "t") == 500
    assert n.run("PERSIST", "t") == 1 and n.read("PTTL", "t") == -1
    assert n.run("EXPIRE", "t", "0") == 1 and n.read("GET", "t") is None
    assert n.run("SET", "k", "v", "EX", "0") == RespError("ERR invalid expire time in 'set' command")
    assert n.run("DEL", "k", "c", "nope") == 2


def test_collections_and_wrongtype():
    n = Node("n1")
    assert n.run("SADD", "s", "a", "b", "a") == 2 and n.run("SADD", "s", "a") == 0
    assert n.run("SREM", "s", "a", "q") == 1
    assert n.run("SMOVE", "s", "s2", "b") == 1 and n.read("SMEMBERS", "s2") == {b"b"}
    assert n.run("HSET", "h", "f", "1", "g", "x") == 2 and n.run("HINCRBY", "h", "f", "4") == 5
    assert n.run("HINCRBY", "h", "g", "1") == RespError("ERR hash value is not an integer")
    assert n.run("HSETNX", "h", "f", "9") == 0 and n.run("HDEL", "h", "g", "zz") == 1
    assert n.read("HGETALL", "h") == {b"f": b"5"}
    assert n.run("RPUSH", "l", "a", "b", "c") == 3 and n.run("LPUSH", "l", "y", "z") == 5
    assert n.read("LRANGE", "l", 0, -1) == [b"z", b"y", b"a", b"b", b"c"]
    assert n.run("LINSERT", "l", "AFTER", "a", "m") == 6 and n.run("LSET", "l", 0, "Z") == "OK"
    assert n.run("LPOP", "l", 2) == [b"Z", b"y"] and n.run("RPOP", "l") == b"c"
    assert n.run("LREM", "l", 0, "m") == 1 and n.run("RPOPLPUSH", "l", "l2") == b"b"
    assert n.run("LMOVE", "l2", "l2", "LEFT", "RIGHT") == b"b"
    assert n.read("LRANGE", "l", 0, -1) == [b"a"] and n.run("LPUSHX", "nope", "x") == 0
    # a count that is no integer, or negative: Redis's one error for both (kv/args.py parse_int_min)
    positive = RespError("ERR value is out of range, must be positive")
    assert n.run("LPOP", "l", "abc") == positive and n.run("RPOP", "l", -1) == positive
    assert n.run("SPOP", "s2", "abc") == positive
    assert n.run("SADD", "h", "x") == RespError("WRONGTYPE Operation against a key holding the wrong kind of value")
    assert n.run("FLUSHALL") == "OK" and n.view.dbsize == 0


def test_refusals():
    assert supported("SET") and not supported("zadd")
    n = Node("n1")
    assert n.run("ZADD", "z", 1, "a") == RespError(
        "ERR 'zadd' is not offered in multi-leader mode: sorted sets have no convergent type here")
    assert "float increments" in refusal("INCRBYFLOAT") and "INCRBYFLOAT" in refusal("incrbyfloat")


def test_vget_vset_context_resolves_siblings():
    a, b = Node("a", "siblings"), Node("b", "siblings")
    a.run("SET", "k", "1")
    b.run("SET", "k", "2")
    b.deliver(a.log[0])
    a.deliver(b.log[0])
    ctx, values = vget(a.store, b"k")
    assert ctx == b"a:1,b:1" and sorted(values) == [b"1", b"2"]
    assert a.run("VSET", "k", "3", "CONTEXT", ctx) == "OK"
    assert vget(a.store, b"k")[1] == [b"3"]
    assert a.run("VSET", "k", "3", "CONTEXT", "garbage") == RespError("ERR invalid context")


def test_concurrent_incr_and_set():
    a, b = Node("a"), Node("b")
    a.run("INCRBY", "c", 10)
    b.deliver(a.log[-1])
    a.run("INCR", "c")
    b.run("SET", "c", "100")
    a.deliver(b.log[-1])
    b.deliver(a.log[-1])
    assert a.read("GET", "c") == b.read("GET", "c") == b"101"


@pytest.mark.parametrize("seed", range(30))
def test_view_equals_store_after_random_commands(seed):
    rng = random.Random(seed)
    nodes = [Node("a"), Node("b")]
    cmds = [
        lambda: ("SET", "k%d" % rng.randrange(3), rng.choice(["1", "x"])),
        lambda: ("INCR", "k%d" % rng.randrange(3)),
        lambda: ("SADD", "k%d" % rng.randrange(3), rng.choice("abc")),
        lambda: ("SREM", "k%d" % rng.randrange(3), rng.choice("abc")),
        lambda: ("HSET", "k%d" % rng.randrange(3), rng.choice("fg"), rng.choice(["1", "v"])),
        lambda: ("HDEL", "k%d" % rng.randrange(3), rng.choice("fg")),
        lambda: (rng.choice(["LPUSH", "RPUSH"]), "k%d" % rng.randrange(3), rng.choice("abc")),
        lambda: (rng.choice(["LPOP", "RPOP"]), "k%d" % rng.randrange(3)),
        lambda: ("LINSERT", "k%d" % rng.randrange(3), "BEFORE", rng.choice("abc"), "i"),
        lambda: ("DEL", "k%d" % rng.randrange(3)),
        lambda: ("PEXPIRE", "k%d" % rng.randrange(3), rng.choice([100, 5000])),
        lambda: ("PERSIST", "k%d" % rng.randrange(3)),
    ]
    sent = [0, 0]
    for _ in range(60):
        i = rng.randrange(2)
        nodes[i].run(*rng.choice(cmds)())
        if rng.random() < 0.3:  # deliver the other node's ops so far (causal: in order)
            j = 1 - i
            for op in nodes[j].log[sent[j]:]:
                nodes[i].deliver(op)
            sent[j] = len(nodes[j].log)
    for i in (0, 1):
        j = 1 - i
        for op in nodes[j].log[sent[j]:]:
            nodes[i].deliver(op)
        sent[j] = len(nodes[j].log)
    assert nodes[0].store.digest() == nodes[1].store.digest()
    for n in nodes:
        for k in (b"k0", b"k1", b"k2"):
            vis = n.store.visible(k)
            if vis is None:
                assert n.read("EXISTS", k, now=0) == 0
                continue
            reader = {"string": ("GET", k), "set": ("SMEMBERS", k), "hash": ("HGETALL", k),
                      "list": ("LRANGE", k, 0, -1)}[vis.type]
            assert n.read(*reader, now=0) == vis.value
            assert n.view.expires.get(k) == vis.deadline_ms


@pytest.mark.parametrize("seed", range(10))
def test_set_and_incr_short_ways_translate_as_the_general_path(seed):
    """``translate``'s short ways (``SET key value`` and ``INCR key`` as clients send them)
    give the mutations and the reply (or error) the general path gives: the same command
    spelled ``Set`` / ``Incr`` takes the general path. Over keys that are absent, strings,
    non-integers, counters alone (live, reset, near the 64-bit limit), counters under a
    register or a TTL, hashes and sets."""
    rng = random.Random(seed)
    a, b = Node("a"), Node("b")
    cmds = [
        lambda k: ("SET", k, rng.choice(["1", "x", str(2**63 - 1)])),
        lambda k: ("INCRBY", k, rng.choice([1, -3, 2**62])),
        lambda k: ("INCR", k),
        lambda k: ("DEL", k),
        lambda k: ("PEXPIRE", k, rng.choice([100, 5000])),
        lambda k: ("PERSIST", k),
        lambda k: ("HSET", k, "f", "1"),
        lambda k: ("SADD", k, "m"),
    ]
    checked = {"short": 0}
    sent = [0, 0]
    for _ in range(150):
        node = rng.choice([a, b])
        node.run(*rng.choice(cmds)(rng.choice(["k0", "k1", "k2"])), now=NOW + rng.randrange(3000))
        if rng.random() < 0.3:  # each node gets the other's ops so far (causal: in order)
            for i, (x, y) in enumerate(((a, b), (b, a))):
                for op in x.log[sent[i]:]:
                    y.deliver(op)
                sent[i] = len(x.log)
        for n in (a, b):
            for k in (b"k0", b"k1", b"k2"):
                short_set = translate(n.store, [b"SET", k, b"v"], NOW, random.Random(1))
                general_set = translate(n.store, [b"Set", k, b"v"], NOW, random.Random(1))
                short_incr = translate(n.store, [b"INCR", k], NOW, random.Random(1))
                general_incr = translate(n.store, [b"Incr", k], NOW, random.Random(1))
                for short, general in ((short_set, general_set), (short_incr, general_incr)):
                    assert [tuple(m) for m in short[0]] == [tuple(m) for m in general[0]]
                    assert type(short[1]) is type(general[1]) and str(short[1]) == str(general[1])
                checked["short"] += n.store.counter_alone(k) is not None
    assert checked["short"] > 50  # counters alone were met


def test_incr_and_its_view_read_a_counter_alone_without_the_visible_string():
    """An INCR of a key that is a counter alone reads the counter's cached sum
    (``CrdtStore.counter_alone``) at its origin and in the view, never ``visible``'s
    ``Visible`` (a number formatted, then parsed back); a plain SET does not read the key."""

    class NoVisible(CrdtStore):
        __slots__ = ()

        def visible(self, key):
            raise AssertionError("visible read")

    n = Node("a")
    n.store = NoVisible()
    n.store.apply("a", 1, 1, {}, [("incr", b"c", 41)])
    n.seq = n.hlc = 1
    assert n.run("INCR", "c") == 42 and n.run("incr", "c") == 43
    assert n.view.data[b"c"] == b"43" and n.store.counter_alone(b"c") == (43, True)
    assert n.run("SET", "s", "x") == OK and n.view.data[b"s"] == b"x"
