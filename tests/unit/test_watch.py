"""WATCH's change index (kv/watch.py) and raft's decision at apply (runtime/raft_app.py)."""

from __future__ import annotations

import random

import msgpack

from replikv.core.raft.messages import Entry
from replikv.core.replies import NULL_ARRAY
from replikv.kv.state_machine import StateMachine
from replikv.kv.watch import ChangeIndex
from replikv.runtime.raft_app import app_snapshot, apply_normal, encode_write, restore_app


def test_a_change_after_the_watch_is_seen_and_one_before_is_not() -> None:
    c = ChangeIndex()
    c.touch_commands([[b"SET", b"a", b"1"], [b"MSET", b"b", b"1", b"c", b"2"]], 5)
    assert c.changed_since([b"a"], 4) and c.changed_since([b"c"], 4)
    assert not c.changed_since([b"a", b"b", b"c", b"d"], 5)
    c.touch_commands([[b"EXPIREDUE", b"d"]], 6)  # deletions decided at apply name their keys
    assert c.any_changed([(b"a", 5), (b"d", 5)]) and not c.any_changed([(b"a", 5), (b"d", 6)])
    c.touch_commands([[b"FLUSHALL"]], 7)  # a keyless write changes every key
    assert c.changed_since([b"never-written"], 6) and not c.changed_since([b"a"], 7)


def test_at_rest_nothing_is_recorded_and_a_position_handed_out_after_needs_nothing() -> None:
    """kv/watch.py "At rest": every way of touching records nothing until ``arm``; ``rest``
    forgets; the changes made at rest are at or below the next position handed out, so a
    WATCH from there is decided as an index that recorded them would decide it."""
    c = ChangeIndex(3, watching=False)
    c.touch(b"a", 4)
    c.touch_keys({b"b": 5, b"c": 5})
    c.touch_commands([[b"SET", b"d", b"1"], [b"FLUSHALL"]], 6)
    assert c.last == {} and c.floor == 3
    recorded = ChangeIndex(3)  # the same changes, recorded
    recorded.touch(b"a", 4)
    recorded.touch_keys({b"b": 5, b"c": 5})
    recorded.touch_commands([[b"SET", b"d", b"1"], [b"FLUSHALL"]], 6)
    c.arm()  # a WATCH at position 6, the changes up to there made
    for index in (c, recorded):
        index.touch(b"a", 7)
    for keys in ([b"a"], [b"b"], [b"c", b"d"], [b"never-written"]):
        assert c.changed_since(keys, 6) == recorded.changed_since(keys, 6)
    assert c.changed_since([b"a"], 6) and not c.changed_since([b"b", b"c", b"d"], 6)
    c.rest()
    assert c.last == {} and not c.watching
    c.touch(b"b", 8)
    assert c.last == {}


def test_forgetting_never_claims_unchanged() -> None:
    """Past LIMIT keys the older half is forgotten; a WATCH from before the floor aborts."""
    c = ChangeIndex(limit=100)
    truth: dict[bytes, int] = {}
    rng = random.Random(7)
    for index in range(1, 2000):
        key = b"k%d" % rng.randrange(500)
        c.touch(key, index)
        truth[key] = index
        assert len(c.last) <= 100
        since = rng.randrange(index + 1)
        probe = b"k%d" % rng.randrange(500)
        if truth.get(probe, 0) > since:
            assert c.changed_since([probe], since), (probe, since)
    assert c.floor > 0
    assert ChangeIndex.from_state(msgpack.unpackb(msgpack.packb(c.state()))).state() == c.state()


def _entry(sm: StateMachine, index: int, commands: list[list[bytes]], watch: dict[bytes, int] | None = None,
           transaction: bool = False) -> Entry:
    err, data = encode_write(sm, commands, transaction, 1_000, "n1", watch)
    assert err is None
    return Entry(index=index, term=1, data=data)


def test_raft_aborts_an_exec_at_apply_iff_a_watched_key_changed_and_every_replica_agrees() -> None:
    a, b = StateMachine(), StateMachine()
    log = [_entry(a, 1, [[b"SET", b"k", b"1"]]), _entry(a, 2, [[b"SET", b"other", b"x"]])]
    for e in log:
        apply_normal(a, e)
    # b joins from a snapshot taken here: it must decide as a does
    b = restore_app(app_snapshot(a, []), 2)[0]
    ok = _entry(a, 3, [[b"INCR", b"k"]], {b"k": 1, b"other": 2}, transaction=True)
    assert apply_normal(a, ok) == [2] and apply_normal(b, ok) == [2]
    stale = _entry(a, 4, [[b"SET", b"k", b"lost"]], {b"k": 2}, transaction=True)  # k changed at 3
    assert apply_normal(a, stale) is NULL_ARRAY and apply_normal(b, stale) is NULL_ARRAY
    assert a.data[b"k"] == b"2" and a.digest() == b.digest()
    # an aborted entry changed nothing, so a later WATCH from 3 still holds
    assert apply_normal(a, _entry(a, 5, [[b"SET", b"k", b"3"]], {b"k": 3}, transaction=True)) == ["OK"]


def test_a_snapshot_from_before_watch_loads_with_its_index_as_floor() -> None:
    sm = StateMachine()
    old = msgpack.packb([sm.snapshot(), []])  # the two-part application snapshot
    restored = restore_app(old, 40)[0]
    assert restored.changes.floor == 40 and restored.changes.changed_since([b"k"], 39)
