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
