"""Property: the log the leader writes reproduces the leader's state exactly.

A random sequence of client writes (with TTLs that expire along the way,
MULTI blocks and active expiry cycles) runs on a leader through
``execute``; every logged entry is applied with ``apply`` (no clock) to a
follower, and at a random point a second follower is started from a
snapshot of the first. After every step all machines have equal digests and
answer every read equally at the same ``now_ms``; the leader's structural
invariants hold throughout.
"""

from __future__ import annotations

from collections import deque

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replikv.kv.context import ApplyContext
from replikv.kv.state_machine import StateMachine

T0 = 1_700_000_000_000
LOG = ApplyContext(None)  # followers apply the leader-follower log without a clock
KEYS = [b"a", b"b", b"c"]
VALUES = [b"0", b"1", b"-3", b"x", b"", b"9223372036854775807"]

key = st.sampled_from(KEYS)
value = st.sampled_from(VALUES)
small_int = st.integers(min_value=-3, max_value=5).map(lambda i: b"%d" % i)
ttl_ms = st.sampled_from([b"-1", b"0", b"1", b"5", b"10", b"20", b"60", b"abc"])


def _cmd(name: bytes, *parts: st.SearchStrategy[bytes]) -> st.SearchStrategy[list[bytes]]:
    return st.tuples(*parts).map(lambda t: [name, *t])


def _varargs(
    name: bytes, head: st.SearchStrategy[bytes], item: st.SearchStrategy[bytes]
) -> st.SearchStrategy[list[bytes]]:
    return st.tuples(head, st.lists(item, min_size=1, max_size=3)).map(
        lambda t: [name, t[0], *t[1]]
    )


side = st.sampled_from([b"LEFT", b"RIGHT"])
side_before_after = st.sampled_from([b"BEFORE", b"AFTER", b"MIDDLE"])

set_options = st.lists(
    st.sampled_from(
        [
            [b"NX"],
            [b"XX"],
            [b"GET"],
            [b"KEEPTTL"],
            [b"PX", b"7"],
            [b"EX", b"1"],
            [b"PXAT", b"%d" % (T0 + 40)],
        ]
    ),
    max_size=2,
).map(lambda opts: [x for o in opts for x in o])

write_cmd = st.one_of(
    _cmd(b"SET", key, value),
    st.tuples(key, value, set_options).map(lambda t: [b"SET", t[0], t[1], *t[2]]),
    _cmd(b"SETNX", key, value),
    _cmd(b"GETSET", key, value),
    _cmd(b"GETDEL", key),
    _cmd(b"PSETEX", key, st.sampled_from([b"1", b"10", b"0"]), value),
    st.lists(st.tuples(key, value), min_size=1, max_size=3).map(
        lambda kv: [b"MSET", *[x for pair in kv for x in pair]]
    ),
    st.lists(key, min_size=1, max_size=3).map(lambda ks: [b"DEL", *ks]),
    _cmd(b"INCR", key),
    _cmd(b"DECRBY", key, small_int),
    _cmd(b"APPEND", key, value),
    _cmd(b"PEXPIRE", key, ttl_ms),
    st.tuples(key, ttl_ms, st.sampled_from([b"NX", b"XX", b"GT", b"LT"])).map(
        lambda t: [b"PEXPIRE", *t]
    ),
    _cmd(b"EXPIRE", key, st.sampled_from([b"-1", b"1", b"100"])),
    _cmd(b"PEXPIREAT", key, st.sampled_from([b"1", b"%d" % (T0 + 30), b"%d" % (T0 + 500)])),
    _cmd(b"PERSIST", key),
    _varargs(b"LPUSH", key, value),
    _varargs(b"RPUSH", key, value),
    _cmd(b"LPOP", key),
    _cmd(b"RPOP", key, st.sampled_from([b"0", b"1", b"2", b"-1"])),
    _varargs(b"SADD", key, value),
    _varargs(b"SREM", key, value),
    st.tuples(key, st.lists(st.tuples(value, value), min_size=1, max_size=2)).map(
        lambda t: [b"HSET", t[0], *[x for pair in t[1] for x in pair]]
    ),
    _varargs(b"HDEL", key, value),
    _cmd(b"HINCRBY", key, value, small_int),
    st.just([b"FLUSHALL"]),
    # issue 12: the rest of the list, set and hash families
    _cmd(b"LSET", key, small_int, value),
    _cmd(b"LINSERT", key, side_before_after, value, value),
    _cmd(b"LREM", key, small_int, value),
    _cmd(b"LTRIM", key, small_int, small_int),
    _cmd(b"LMOVE", key, key, side, side),
    _cmd(b"RPOPLPUSH", key, key),
    _varargs(b"LPUSHX", key, value),
    _varargs(b"RPUSHX", key, value),
    st.tuples(st.lists(key, min_size=1, max_size=3), side, small_int).map(
        lambda t: [b"LMPOP", b"%d" % len(t[0]), *t[0], t[1], b"COUNT", t[2]]
    ),
    _cmd(b"SPOP", key),
    _cmd(b"SPOP", key, small_int),
    _cmd(b"SMOVE", key, key, value),
    _cmd(b"SINTERSTORE", key, key, key),
    _cmd(b"SUNIONSTORE", key, key, key),
    _cmd(b"SDIFFSTORE", key, key, key),
    _cmd(b"HSETNX", key, value, value),
    _cmd(b"HMSET", key, value, value),
    _cmd(b"HINCRBYFLOAT", key, value, st.sampled_from([b"0.1", b"1e20", b"-3", b"x", b"inf"])),
    _cmd(b"INCRBYFLOAT", key, st.sampled_from([b"1.5", b"-0.1", b"x", b"1e3"])),
    _cmd(b"GETEX", key, st.sampled_from([b"PX", b"EX", b"PERSIST"]), ttl_ms),
    _cmd(b"GETEX", key, st.sampled_from([b"PXAT", b"EXAT"]), st.sampled_from(
        [b"1", b"%d" % (T0 + 30), b"%d" % (T0 + 500)])),
    _cmd(b"SETRANGE", key, small_int, value),
    st.lists(st.tuples(key, value), min_size=1, max_size=2).map(
        lambda kv: [b"MSETNX", *[x for pair in kv for x in pair]]
    ),
    _cmd(b"SETBIT", key, small_int, st.sampled_from([b"0", b"1"])),
    st.tuples(st.sampled_from([b"AND", b"OR", b"XOR", b"NOT"]), key, key).map(
        lambda t: [b"BITOP", *t]
    ),
    _cmd(b"RENAME", key, key),
    _cmd(b"RENAMENX", key, key),
    st.tuples(key, key, st.sampled_from([[], [b"REPLACE"]])).map(
        lambda t: [b"COPY", t[0], t[1], *t[2]]
    ),
    st.just([b"FLUSHDB"]),
)

read_cmd = st.one_of(
    _cmd(b"GET", key), _cmd(b"TTL", key), _cmd(b"LRANGE", key, small_int, small_int)
)

step = st.one_of(
    st.tuples(st.just("write"), write_cmd),
    st.tuples(st.just("write"), write_cmd),
    st.tuples(st.just("multi"), st.lists(st.one_of(write_cmd, read_cmd), min_size=1, max_size=4)),
    st.tuples(st.just("expire_cycle"), st.integers(min_value=1, max_value=3)),
    st.tuples(st.just("tick"), st.integers(min_value=1, max_value=40)),
)


def _reads(sm: StateMachine, now: int) -> list[object]:
    """Every observable answer at ``now`` (unordered replies made comparable)."""
    out: list[object] = []
    for k in KEYS:
        for name in (
            b"GET",
            b"TYPE",
            b"TTL",
            b"PTTL",
            b"EXISTS",
            b"STRLEN",
            b"LLEN",
            b"SCARD",
            b"HLEN",
        ):
            out.append(sm.read([name, k], now))
        out.append(sm.read([b"LRANGE", k, b"0", b"-1"], now))
        members = sm.read([b"SMEMBERS", k], now)
        out.append(sorted(members) if isinstance(members, set) else members)
        fields = sm.read([b"HGETALL", k], now)
        out.append(sorted(fields.items()) if isinstance(fields, dict) else fields)
    out.append(sorted(sm.read([b"KEYS", b"*"], now)))
    out.append(sm.read([b"DBSIZE"], now))
    scanned: set[bytes] = set()
    cursor = b"0"
    while True:
        cursor, keys = sm.read([b"SCAN", cursor, b"COUNT", b"2"], now)
        scanned.update(keys)
        if cursor == b"0":
            break
    out.append(sorted(scanned))
    return out


def _check_invariants(sm: StateMachine) -> None:
    assert set(sm.expires) <= set(sm.data)
    for v in sm.data.values():
        assert type(v) in (bytes, deque, set, dict)
        if type(v) is not bytes:
            assert len(v) > 0, "empty containers must be deleted"


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    steps=st.lists(step, min_size=5, max_size=60), restore_at=st.integers(min_value=0, max_value=60)
)
def test_log_replay_reproduces_leader_state(
    steps: list[tuple[str, object]], restore_at: int
) -> None:
    leader = StateMachine()
    followers = [StateMachine()]
    now = T0

    def ship(entry: list[list[bytes]] | None) -> None:
        if entry is not None:
            assert entry, "an entry is None or non-empty"
            for f in followers:
                f.apply(entry, LOG)

    for i, (kind, arg) in enumerate(steps):
        if i == restore_at:
            late = StateMachine()
            late.restore(followers[0].snapshot())
            followers.append(late)
        if kind == "write":
            argv = list(arg)  # type: ignore[call-overload]
            _reply, entry = leader.execute(argv, ApplyContext(now))
            ship(entry)
        elif kind == "multi":
            queued = [list(c) for c in arg]  # type: ignore[union-attr]
            _replies, entry = leader.execute_transaction(queued, ApplyContext(now))
            ship(entry)
        elif kind == "expire_cycle":
            ship(leader.expire_cycle(now, arg))  # type: ignore[arg-type]
        else:
            now += arg  # type: ignore[operator]
        _check_invariants(leader)
        expected_digest = leader.digest()
        expected_reads = _reads(leader, now)
        for f in followers:
            assert f.digest() == expected_digest
            assert _reads(f, now) == expected_reads
