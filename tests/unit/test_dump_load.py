"""kv/dump.py load: the GC pause it takes leaves the GC as it found it, and every
value type (the strings' shortcut included) comes back as it was dumped."""

from __future__ import annotations

import gc
from collections import deque

import msgpack
import pytest

from replikv.kv import dump
from replikv.kv.state_machine import StateMachine  # registers every value type


def test_values_of_every_type_and_ttls_round_trip() -> None:
    assert StateMachine  # imported for its value types
    data = {b"s": b"v", b"empty": b"", b"l": deque([b"a", b"b"]), b"set": {b"x", b"y"},
            b"h": {b"f": b"1", b"g": b"2"}}
    expires = {b"s": 1_000, b"h": 2_000}
    got_data, got_expires = dump.load(dump.dump(data, expires))
    assert got_data == data and got_expires == expires
    assert type(got_data[b"s"]) is bytes and type(got_data[b"l"]) is deque and type(got_data[b"set"]) is set


@pytest.mark.parametrize("enabled", [True, False])
def test_the_gc_is_left_as_it_was(enabled: bool) -> None:
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        dump.load(dump.dump({b"k": b"v"}, {}))
        assert gc.isenabled() is enabled
        with pytest.raises(ValueError, match="unknown value type"):
            dump.load(msgpack.packb([dump._WITHOUT_LOCKS, [[b"k", 99, b"v", None]]], use_bin_type=True))
        assert gc.isenabled() is enabled
        with pytest.raises(ValueError, match="unknown snapshot version"):
            dump.load(msgpack.packb([99, []], use_bin_type=True))
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


def run_steps(raw: bytes, step_bytes: int) -> tuple[object, int]:
    """(what load_steps returns, how many steps it yielded)."""
    steps, gen = 0, dump.load_steps(raw, step_bytes)
    while True:
        try:
            next(gen)
        except StopIteration as done:
            return done.value, steps
        steps += 1


def sample_state() -> tuple[dict[bytes, object], dict[bytes, int], list[list[object]]]:
    data: dict[bytes, object] = {b"k%d" % i: bytes([i % 251]) * (i * 37 % 5000) for i in range(300)}
    data.update({b"l": deque([b"a", b"b"]), b"set": {b"x", b"y"}, b"h": {b"f": b"1", b"g": b"2"}})
    expires = {b"k7": 1_000, b"h": 2_000}
    locks = [[b"lock", b"me", 5000, 3, 17]]
    return data, expires, locks


@pytest.mark.parametrize("step_bytes", [1, 7, 4096, 1 << 20])
def test_load_steps_gives_what_load_all_gives(step_bytes: int) -> None:
    raw = dump.dump(*sample_state())
    got, steps = run_steps(raw, step_bytes)
    assert got == dump.load_all(raw)
    assert steps == -(-len(raw) // step_bytes)  # one step per piece fed: the work of a step is bounded


def test_load_steps_of_an_empty_state() -> None:
    raw = dump.dump({}, {})
    assert run_steps(raw, 3)[0] == ({}, {}, [])


def test_load_steps_loads_an_older_layout_in_one_go() -> None:
    raw = msgpack.packb([dump._ROWS_AND_LOCKS, [[b"k", 0, b"v", 9]], []], use_bin_type=True)
    assert run_steps(raw, 1) == (({b"k": b"v"}, {b"k": 9}, []), 0)


@pytest.mark.parametrize("bad", [
    dump.dump({b"k": b"v" * 100}, {})[:-5],  # cut short
    dump.dump({b"k": b"v"}, {}) + b"\x00",  # a byte after its end
    msgpack.packb([dump.SNAPSHOT_VERSION, [], [[b"k", 99, b"v", None]], []], use_bin_type=True),  # unknown type
])
def test_load_steps_refuses_what_load_all_refuses(bad: bytes) -> None:
    with pytest.raises(ValueError):
        dump.load_all(bad)
    with pytest.raises(ValueError):
        run_steps(bad, 4)


def test_load_steps_refuses_a_key_without_its_value() -> None:
    with pytest.raises(ValueError, match="without its value"):
        run_steps(msgpack.packb([dump.SNAPSHOT_VERSION, [b"k"], [], []], use_bin_type=True), 4)
