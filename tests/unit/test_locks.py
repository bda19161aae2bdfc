"""The lock table (kv/locks.py) and the lock commands (kv/types/locks.py), applied as raft applies them."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replikv.core.replies import OK, RespError
from replikv.kv.locks import EXPIRE_RETRY_MS, LockTable
from replikv.kv.state_machine import ApplyContext, StateMachine


def run(sm: StateMachine, index: int, *argv: bytes | str | int) -> Any:
    """Apply one command as the entry at log ``index`` (raft's apply path)."""
    cmd = [a if isinstance(a, bytes) else str(a).encode() for a in argv]
    err, cmds = sm.prepare(cmd, ApplyContext(1_000, "", 0), exact=False)
    if err is not None:
        return err
    if cmds is None:  # a read
        return sm.read(cmd, 1_000)
    return sm.apply(cmds, ApplyContext(1_000, "", index))[-1]


def test_grant_is_the_entry_index_and_a_held_lock_is_not_granted() -> None:
    sm = StateMachine()
    assert run(sm, 7, "LOCK", "l", 1000) == 7
    assert run(sm, 8, "LOCK", "l", 1000) is None
    assert run(sm, 9, "LOCK", "other", 1000) == 9
    assert run(sm, 10, "LOCKINFO", "l") == [b"holder", 7, b"ttl-ms", 1000, b"lease-ms", 1000, b"last-token", 7]
    assert sm.dbsize == 0 and sm.data == {}  # locks are not keys


def test_unlock_only_by_the_holder_and_tokens_keep_increasing() -> None:
    sm = StateMachine()
    assert run(sm, 5, "LOCK", "l", 1000) == 5
    assert run(sm, 6, "UNLOCK", "l", 4) == 0
    assert run(sm, 7, "UNLOCK", "l", 5) == 1
    assert run(sm, 8, "UNLOCK", "l", 5) == 0
    assert run(sm, 9, "LOCKINFO", "l") == [b"holder", None, b"ttl-ms", None, b"lease-ms", None, b"last-token", 5]
    # a lower index (a group with a shorter log after a slot move) never lowers the token
    table = sm.locks
    assert table.grant(b"l", 100, 3) == 6


def test_renew_by_the_holder_only() -> None:
    sm = StateMachine()
    token = run(sm, 3, "LOCK", "l", 1000)
    assert run(sm, 4, "RENEW", "l", token, 5000) == OK
    assert sm.locks.get(b"l").ttl_ms == 5000  # type: ignore[union-attr]
    err = run(sm, 5, "RENEW", "l", token + 1, 5000)
    assert isinstance(err, RespError) and err.message.startswith("NOTHOLDER token 4 does not hold lock 'l'")
    run(sm, 6, "UNLOCK", "l", token)
    assert isinstance(run(sm, 7, "RENEW", "l", token, 5000), RespError)


def test_expiry_frees_only_the_grant_or_renewal_it_names() -> None:
    sm = StateMachine()
    token = run(sm, 3, "LOCK", "l", 1000)
    assert run(sm, 4, "RENEW", "l", token, 1000) == OK  # the lease is now the one granted at 4
    assert run(sm, 5, "LOCKEXPIRE", "l", token, 3) == 0  # decided before the renewal applied
    assert sm.locks.holds(b"l", token)
    assert run(sm, 6, "LOCKEXPIRE", "l", token, 4) == 1
    assert not sm.locks.holds(b"l", token)
    assert run(sm, 7, "LOCK", "l", 1000) == 7


def test_bad_arguments_are_refused_before_anything_is_logged() -> None:
    sm = StateMachine()
    for argv in (["LOCK", "l", 0], ["LOCK", "l", "x"], ["LOCK", "l", 10, "WAIT"], ["LOCK", "l", 10, "NOWAIT", 5],
                 ["LOCK", "l", 10, "WAIT", -1], ["RENEW", "l", "t", 10], ["UNLOCK", "l", "-1"],
                 ["FENCED", "l", "x", "SET", "k", "v"], ["FENCED", "l", 1, "GET", "k"],
                 ["FENCED", "l", 1, "LOCK", "m", 10], ["FENCED", "l", 1, "SET", "k"], ["FENCED", "l", 1, "NOPE"]):
        cmd = [str(a).encode() for a in argv]
        err, cmds = sm.prepare(cmd, ApplyContext(1_000), exact=False)
        assert isinstance(err, RespError) and cmds is None, argv
    # the log form drops WAIT (the waiting is the runtime's)
    assert sm.prepare([b"LOCK", b"l", b"10", b"WAIT", b"500"], ApplyContext(1), exact=False) == \
        (None, [[b"LOCK", b"l", b"10"]])


def test_fenced_write_applies_until_a_higher_token_is_granted() -> None:
    sm = StateMachine()
    first = run(sm, 2, "LOCK", "l", 1000)
    assert run(sm, 3, "FENCED", "l", first, "SET", "k", "a") == OK
    assert sm.data[b"k"] == b"a"
    run(sm, 4, "LOCKEXPIRE", "l", first, 2)
    assert run(sm, 5, "FENCED", "l", first, "SET", "k", "b") == OK  # freed, but no higher token yet
    second = run(sm, 6, "LOCK", "l", 1000)
    err = run(sm, 7, "FENCED", "l", first, "SET", "k", "stale")
    assert isinstance(err, RespError)
    assert err.message == ("FENCED token 2 of lock 'l' is stale: token 6 has been granted since: it was not "
                           "applied")
    assert sm.data[b"k"] == b"b"
    assert run(sm, 8, "FENCED", "l", second, "INCR", "n") == 1


def test_fenced_rewrites_the_wrapped_command_and_names_its_keys() -> None:
    from replikv.kv.commands import lookup

    sm = StateMachine()
    err, cmds = sm.prepare([b"FENCED", b"l", b"3", b"SET", b"k", b"v", b"EX", b"10"], ApplyContext(1_000),
                           exact=False)
    assert err is None and cmds == [[b"FENCED", b"l", b"3", b"SET", b"k", b"v", b"PXAT", b"11000"]]
    spec = lookup(b"FENCED")
    assert spec is not None and spec.keys([b"FENCED", b"l", b"3", b"MSET", b"a", b"1", b"b", b"2"]) == \
        [b"l", b"a", b"b"]
    assert spec.keys([b"FENCED", b"l"]) == []


def test_a_mode_without_log_indexes_refuses_locks() -> None:
    sm = StateMachine()
    reply, cmds = sm.execute([b"LOCK", b"l", b"100"], ApplyContext(1_000))
    assert isinstance(reply, RespError) and "raft mode only" in reply.message and cmds is None
    reply, cmds = sm.execute([b"FENCED", b"l", b"1", b"SET", b"k", b"v"], ApplyContext(1_000))
    assert isinstance(reply, RespError) and cmds is None and sm.data == {}


def test_snapshot_round_trip_and_digest() -> None:
    sm = StateMachine()
    run(sm, 1, "SET", "k", "v")
    without_locks = sm.snapshot()
    digest_without = sm.digest()
    run(sm, 2, "LOCK", "a", 1000)
    run(sm, 3, "LOCK", "b", 2000)
    run(sm, 4, "UNLOCK", "b", 3)
    assert sm.digest() != digest_without
    copy = StateMachine()
    copy.restore(sm.snapshot())
    assert copy.digest() == sm.digest()
    assert copy.locks.state() == sm.locks.state() == [[b"a", 2, 1000, 2, 2], [b"b", None, 2000, 3, 3]]
    # a state without locks keeps the version-1 bytes
    plain = StateMachine()
    plain.restore(without_locks)
    assert plain.snapshot() == without_locks and plain.digest() == digest_without


def test_slot_move_carries_a_lock_and_its_last_token() -> None:
    source, target = StateMachine(), StateMachine()
    run(source, 40, "LOCK", "{t}l", 1000)
    run(source, 41, "SET", "{t}k", "v")
    payload = source.export_keys([b"{t}k"], [b"{t}l"])
    assert target.import_keys(payload, 3) == 1
    assert target.locks.state() == source.locks.state()
    source.drop_keys([b"{t}k"], 42, [b"{t}l"])
    assert len(source.locks) == 0 and source.data == {}
    assert run(target, 4, "UNLOCK", "{t}l", 40) == 1
    assert run(target, 5, "LOCK", "{t}l", 1000) == 41  # index 5 < last token 40 + 1


def test_import_keeps_a_later_token() -> None:
    table = LockTable()
    table.load([[b"l", None, 10, 50, 50]])
    table.load([[b"l", 30, 10, 30, 30]])
    assert table.state() == [[b"l", None, 10, 50, 50]]


# -- the lease clock ----------------------------------------------------------------------------


def test_lease_clock_expires_on_the_leader_only_after_a_full_ttl() -> None:
    table = LockTable()
    token = table.grant(b"l", 100, 5)
    clock = table.clock
    assert clock.observe(table, 1_000, term=2, leading=True) == []
    assert clock.observe(table, 1_099, term=2, leading=True) == []
    assert clock.remaining_ms(b"l") == 1
    assert clock.observe(table, 1_100, term=2, leading=True) == [[b"LOCKEXPIRE", b"l", b"%d" % token, b"5"]]
    # proposed once; again only if it has not applied after EXPIRE_RETRY_MS
    assert clock.observe(table, 1_101, term=2, leading=True) == []
    again = clock.observe(table, 1_100 + EXPIRE_RETRY_MS, term=2, leading=True)
    assert again == [[b"LOCKEXPIRE", b"l", b"%d" % token, b"5"]]
    # a follower never proposes
    follower = LockTable()
    follower.grant(b"l", 100, 5)
    assert follower.clock.observe(follower, 0, term=2, leading=False) == []
    assert follower.clock.observe(follower, 10_000, term=2, leading=False) == []


def test_renewal_and_a_new_term_restart_the_countdown_in_full() -> None:
    table = LockTable()
    token = table.grant(b"l", 100, 5)
    assert token is not None
    clock = table.clock
    clock.observe(table, 0, term=1, leading=True)
    assert table.renew(b"l", token, 100, 6)
    assert clock.observe(table, 90, term=1, leading=True) == []
    assert clock.observe(table, 149, term=1, leading=True) == []
    assert clock.deadlines[b"l"][0] == 190  # renewed at 90: due at 190
    # a new leader (term 2) at 150 counts the whole ttl again from then: never earlier than 250
    assert clock.observe(table, 150, term=2, leading=True) == []
    assert clock.observe(table, 249, term=2, leading=True) == []
    assert clock.observe(table, 250, term=2, leading=True) == [[b"LOCKEXPIRE", b"l", b"%d" % token, b"6"]]


def test_a_released_lock_stops_counting() -> None:
    table = LockTable()
    token = table.grant(b"l", 100, 5)
    assert token is not None
    table.clock.observe(table, 0, term=1, leading=True)
    table.release(b"l", token)
    assert table.clock.observe(table, 500, term=1, leading=True) == []
    assert table.clock.remaining_ms(b"l") is None


# -- at most one holder (hypothesis) --------------------------------------------------------------

_OPS = st.lists(st.tuples(st.sampled_from(["lock", "unlock", "renew", "expire", "fenced"]),
                          st.sampled_from([b"a", b"b"]), st.integers(0, 40), st.integers(1, 5)),
                max_size=60)


@settings(max_examples=300, deadline=None)
@given(_OPS)
def test_at_most_one_holder_and_fencing_admits_no_stale_token(ops: list[tuple[str, bytes, int, int]]) -> None:
    """Whatever the clients send, in any order: a lock has at most one holder, a grant only
    happens to a free lock, tokens strictly increase per name, and a fenced write is applied
    only under a token no lower than every token granted before it."""
    sm = StateMachine()
    holder: dict[bytes, int | None] = {}
    granted: dict[bytes, list[int]] = {b"a": [], b"b": []}
    for index, (op, name, token, ttl) in enumerate(ops, start=1):
        if op == "lock":
            got = run(sm, index, "LOCK", name, ttl)
            if holder.get(name) is not None:
                assert got is None
            else:
                assert got is not None and all(got > t for t in granted[name])
                granted[name].append(got)
                holder[name] = got
        elif op == "unlock":
            released = run(sm, index, "UNLOCK", name, token)
            assert released == (1 if holder.get(name) == token else 0)
            if released:
                holder[name] = None
        elif op == "renew":
            reply = run(sm, index, "RENEW", name, token, ttl)
            assert (reply == OK) == (holder.get(name) == token)
        elif op == "expire":
            st_ = sm.locks.get(name)
            lease = st_.lease_index if st_ is not None else 0
            if run(sm, index, "LOCKEXPIRE", name, token, lease):
                assert holder.get(name) == token
                holder[name] = None
        else:
            reply = run(sm, index, "FENCED", name, token, "SET", b"k" + name, token)
            stale = any(t > token for t in granted[name])
            assert isinstance(reply, RespError) == stale
        st_ = sm.locks.get(name)
        assert (st_.holder if st_ is not None else None) == holder.get(name)


@pytest.mark.parametrize("ttl", [b"1", b"%d" % (1 << 40)])
def test_ttl_bounds(ttl: bytes) -> None:
    sm = StateMachine()
    assert run(sm, 1, "LOCK", "l", ttl) == 1
