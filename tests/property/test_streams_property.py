"""Property: random stream workloads replicate exactly along every write path.

A random sequence of stream commands (``XADD *`` with trimming, deletions,
groups, reads, claims, acks, ``XSETID``, TTLs that expire along the way)
runs on a leader-follower leader through ``execute`` while the clock moves
(sometimes backwards, as a wall clock may); a follower applies what it
logged without a clock, a raft replica runs ``prepare(exact=False)`` +
``apply`` at each command's time, and at a random point a fourth replica
starts from the follower's snapshot. After every step all digests are
equal, raft's replies equal the leader's, and every replica answers the
reads (XINFO FULL, XPENDING, XRANGE) alike.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replikv.kv.context import ApplyContext
from replikv.kv.state_machine import StateMachine

T0 = 1_700_000_000_000
LOG = ApplyContext(None)

key = st.sampled_from([b"s", b"t"])
group = st.sampled_from([b"g", b"h"])
consumer = st.sampled_from([b"c1", b"c2", b"c3"])
sid = st.tuples(st.integers(0, 3), st.integers(0, 3)).map(
    lambda t: b"%d-%d" % (T0 + t[0], t[1])
)
small = st.integers(0, 6).map(lambda i: b"%d" % i)
fields = st.lists(st.sampled_from([b"f", b"g", b"1", b"x" * 40]), min_size=2, max_size=4).map(
    lambda fs: fs if len(fs) % 2 == 0 else fs[:-1]
)
trim = st.sampled_from([[], [b"MAXLEN", b"~", b"2"], [b"MAXLEN", b"3"], [b"MINID", b"%d" % T0],
                        [b"MAXLEN", b"~", b"0", b"LIMIT", b"1"]])
min_idle = st.sampled_from([b"0", b"2"])
claim_options = st.sampled_from(
    [[], [b"JUSTID"], [b"IDLE", b"1"], [b"FORCE"], [b"RETRYCOUNT", b"4"]]
)


def _cmd(*parts: st.SearchStrategy[bytes] | bytes) -> st.SearchStrategy[list[bytes]]:
    return st.tuples(*[p if isinstance(p, st.SearchStrategy) else st.just(p) for p in parts]).map(
        list
    )


command = st.one_of(
    st.tuples(key, trim, st.sampled_from([b"*", b"*", b"*-*"]), fields).map(
        lambda t: [b"XADD", t[0], *t[1], b"%d-*" % T0 if t[2] == b"*-*" else t[2], *t[3]]
    ),
    st.tuples(key, sid, fields).map(lambda t: [b"XADD", t[0], t[1], *t[2]]),
    st.tuples(key, st.lists(sid, min_size=1, max_size=3)).map(lambda t: [b"XDEL", t[0], *t[1]]),
    st.tuples(key, trim.filter(bool)).map(lambda t: [b"XTRIM", t[0], *t[1]]),
    _cmd(b"XGROUP", b"CREATE", key, group, st.sampled_from([b"0", b"$"]), b"MKSTREAM"),
    _cmd(b"XGROUP", b"SETID", key, group, st.sampled_from([b"0", b"$"])),
    _cmd(b"XGROUP", b"DESTROY", key, group),
    _cmd(b"XGROUP", b"CREATECONSUMER", key, group, consumer),
    _cmd(b"XGROUP", b"DELCONSUMER", key, group, consumer),
    st.tuples(group, consumer, small, st.booleans(), key, st.sampled_from([b">", b">", b"0"])).map(
        lambda t: [b"XREADGROUP", b"GROUP", t[0], t[1], b"COUNT", t[2],
                   *([b"NOACK"] if t[3] else []), b"STREAMS", t[4], t[5]]
    ),
    st.tuples(key, group, st.lists(sid, min_size=1, max_size=3)).map(
        lambda t: [b"XACK", t[0], t[1], *t[2]]
    ),
    st.tuples(key, group, consumer, min_idle, st.lists(sid, max_size=2), claim_options).map(
        lambda t: [b"XCLAIM", t[0], t[1], t[2], t[3], b"0-1", *t[4], *t[5]]
    ),
    st.tuples(key, group, consumer, min_idle, small.filter(lambda c: c != b"0")).map(
        lambda t: [b"XAUTOCLAIM", t[0], t[1], t[2], t[3], b"0", b"COUNT", t[4]]
    ),
    _cmd(b"XSETID", key, st.sampled_from([b"%d-9" % (T0 + 5), b"%d-0" % (T0 + 50)])),
    _cmd(b"PEXPIREAT", key, st.sampled_from([b"%d" % (T0 + 3), b"%d" % (T0 + 30)])),
    _cmd(b"DEL", key),
)
# the clock: mostly forward, sometimes backwards (XADD * then follows the last id)
step = st.tuples(command, st.integers(-2, 3))

READS = [
    [b"XINFO", b"STREAM", b"s", b"FULL", b"COUNT", b"0"],
    [b"XINFO", b"STREAM", b"t", b"FULL", b"COUNT", b"0"],
    [b"XINFO", b"GROUPS", b"s"],
    [b"XPENDING", b"s", b"g", b"-", b"+", b"100"],
    [b"XPENDING", b"t", b"h"],
    [b"XRANGE", b"s", b"-", b"+"],
    [b"XINFO", b"CONSUMERS", b"t", b"g"],
]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, min_size=5, max_size=40), restore_at=st.integers(0, 40))
def test_stream_workloads_replicate(steps: list[tuple[list[bytes], int]], restore_at: int) -> None:
    leader, follower, raft = StateMachine(), StateMachine(), StateMachine()
    late: StateMachine | None = None
    now = T0
    for i, (argv, dt) in enumerate(steps):
        now += dt
        ctx = ApplyContext(now)
        reply, cmds = leader.execute(list(argv), ctx)
        if cmds:
            follower.apply(cmds, LOG)
            if late is not None:
                late.apply(cmds, LOG)
        err, raft_cmds = raft.prepare(list(argv), ctx, exact=False)
        raft_reply = err if raft_cmds is None else raft.apply(raft_cmds, ctx)[-1]
        assert raft_reply == reply, (argv, raft_reply, reply)
        if i == restore_at:
            late = StateMachine()
            late.restore(follower.snapshot())
        digest = leader.digest()
        assert follower.digest() == digest, argv
        assert raft.digest() == digest, argv
        assert late is None or late.digest() == digest
        for read in READS:
            expected = leader.read(read, now)
            assert follower.read(read, now) == expected
            assert raft.read(read, now) == expected
