"""kv/memory.py: the size estimates maxmemory and MEMORY USAGE use grow with the data."""

from __future__ import annotations

from replikv.kv import memory
from replikv.kv.context import ApplyContext
from replikv.kv.state_machine import StateMachine


def test_every_type_counts_its_elements() -> None:
    sm = StateMachine()
    ctx = ApplyContext(1_000)
    big = b"x" * 1000
    sm.execute([b"SET", b"str", big], ctx)
    sm.execute([b"RPUSH", b"list", *[big] * 100], ctx)
    sm.execute([b"SADD", b"set", *[b"%d" % i + big for i in range(100)]], ctx)
    sm.execute([b"HSET", b"hash", *[x for i in range(100) for x in (b"f%d" % i, big)]], ctx)
    sm.execute([b"ZADD", b"zset", *[x for i in range(100) for x in (b"%d" % i, b"%d" % i + big)]], ctx)
    for i in range(100):
        sm.execute([b"XADD", b"stream", b"*", b"f", big], ApplyContext(1_000 + i))
    sizes = {k.decode(): memory.key_bytes(sm, k) for k in sm.data}
    assert 1000 <= sizes["str"] < 2000
    for name in ("list", "set", "hash", "zset", "stream"):  # 100 values of 1000 bytes each
        assert 100_000 <= sizes[name] < 400_000, (name, sizes[name])
    assert memory.key_bytes(sm, b"missing") == 0
    assert memory.dataset_bytes(sm) == sum(sizes.values())  # few keys: summed exactly


def test_the_dataset_estimate_of_many_keys_is_close_and_shrinks_with_deletes() -> None:
    sm = StateMachine()
    ctx = ApplyContext(1_000)
    for i in range(5000):
        sm.execute([b"SET", b"k%d" % i, b"v" * 100], ctx)
    exact = sum(memory.key_bytes(sm, k) for k in sm.data)
    estimate = memory.dataset_bytes(sm)
    assert 0.8 * exact <= estimate <= 1.2 * exact
    for i in range(2500):
        sm.execute([b"DEL", b"k%d" % i], ctx)
    assert memory.dataset_bytes(sm) < 0.7 * estimate
