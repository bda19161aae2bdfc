"""Streams (``kv/types/streams.py``): snapshot round trip and replication determinism.

Replies are checked against Redis in ``tests/differential/test_streams.py``;
here: the stream value type survives ``snapshot``/``restore`` exactly, and
the three write paths agree on ids and times chosen by the leader (``XADD
*``, delivery and seen times) however far apart in time the replicas apply
them, and whatever the process's hash seed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from replikv.core.replies import NULL_ARRAY
from replikv.kv.args import NEEDS_CLOCK
from replikv.kv.context import ApplyContext
from replikv.kv.state_machine import StateMachine
from replikv.kv.types.streams import TIME_MARK, Stream

T0 = 1_700_000_000_000
LOG = ApplyContext(None)

# A workload touching every kind of stream state: entries across several
# nodes, deletions, groups, consumers, pending entries, claims, XSETID.
WORKLOAD: list[list[bytes]] = [
    *[[b"XADD", b"s", b"*", b"n", b"%d" % i] for i in range(230)],
    [b"XADD", b"s", b"MAXLEN", b"~", b"150", b"*", b"f", b"v"],
    [b"XDEL", b"s", b"%d-5" % T0, b"%d-7" % T0],
    *[[b"XGROUP", b"CREATE", b"s", b"g%d" % i, b"0"] for i in range(6)],
    [b"XGROUP", b"CREATE", b"t", b"g", b"$", b"MKSTREAM"],
    *[[b"XGROUP", b"CREATECONSUMER", b"s", b"g0", b"c%d" % i] for i in range(8)],
    *[[b"XREADGROUP", b"GROUP", b"g%d" % (i % 6), b"c%d" % i, b"COUNT", b"7",
       b"STREAMS", b"s", b">"] for i in range(12)],
    [b"XREADGROUP", b"GROUP", b"g1", b"c1", b"STREAMS", b"s", b"0"],
    [b"XACK", b"s", b"g0", b"%d-8" % T0, b"%d-9" % T0],
    [b"XCLAIM", b"s", b"g1", b"z", b"0", b"%d-10" % T0, b"%d-11" % T0, b"IDLE", b"5"],
    [b"XAUTOCLAIM", b"s", b"g2", b"y", b"0", b"0", b"COUNT", b"5"],
    [b"XGROUP", b"DELCONSUMER", b"s", b"g0", b"c3"],
    [b"XADD", b"t", b"*", b"a", b"b"],
    [b"XSETID", b"t", b"99999999999999-0", b"ENTRIESADDED", b"10"],
    [b"XADD", b"t", b"*", b"a", b"b"],
    [b"XTRIM", b"s", b"MINID", b"~", b"%d-120" % T0],
]


def _leader_and_follower() -> tuple[StateMachine, StateMachine, list[object]]:
    """The workload on a leader (exact rewrite, one ms per command) and a
    follower applying its log without a clock."""
    leader, follower = StateMachine(), StateMachine()
    replies = []
    for i, argv in enumerate(WORKLOAD):
        reply, cmds = leader.execute(list(argv), ApplyContext(T0 + i // 200))
        replies.append(reply)
        if cmds:
            for cmd in cmds:
                assert not (cmd[0] == b"XADD" and b"*" in cmd), "XADD * is logged with its id"
            assert follower.apply(cmds, LOG)[-1] == reply
    return leader, follower, replies


def test_follower_applies_the_leaders_ids_and_times() -> None:
    leader, follower, replies = _leader_and_follower()
    assert follower.digest() == leader.digest()
    assert replies[0] == b"%d-0" % T0 and replies[199] == b"%d-199" % T0
    assert replies[200] == b"%d-0" % (T0 + 1)


def test_snapshot_round_trip() -> None:
    leader, _, _ = _leader_and_follower()
    copy = StateMachine()
    copy.restore(leader.snapshot())
    assert copy.digest() == leader.digest()
    assert copy.snapshot() == leader.snapshot()
    now = T0 + 10
    for argv in ([b"XINFO", b"STREAM", b"s", b"FULL", b"COUNT", b"0"],
                 [b"XINFO", b"GROUPS", b"s"], [b"XPENDING", b"s", b"g1", b"-", b"+", b"99"],
                 [b"XINFO", b"CONSUMERS", b"s", b"g0"], [b"TYPE", b"t"]):
        assert copy.read(argv, now) == leader.read(argv, now)
    # the node model came along: approximate trimming removes the same entries
    trim = [b"XTRIM", b"s", b"MAXLEN", b"~", b"10"]
    assert copy.execute(trim, ApplyContext(now)) == leader.execute(trim, ApplyContext(now))
    assert copy.digest() == leader.digest()


def test_digest_sees_times_and_groups() -> None:
    a, b = StateMachine(), StateMachine()
    for sm, when in ((a, T0), (b, T0 + 1)):
        sm.execute([b"XADD", b"s", b"1-1", b"f", b"v"], ApplyContext(T0))
        sm.execute([b"XGROUP", b"CREATE", b"s", b"g", b"0"], ApplyContext(T0))
        sm.execute([b"XREADGROUP", b"GROUP", b"g", b"c", b"STREAMS", b"s", b">"],
                   ApplyContext(when))
    assert a.digest() != b.digest()  # the delivery time is replicated state


def test_raft_path_uses_the_entry_time() -> None:
    """prepare(exact=False) must not read the state: XADD * stays *, and the
    timed commands carry an empty time, filled from the entry's at apply."""
    leader = StateMachine()
    raft = StateMachine()
    for i, argv in enumerate(WORKLOAD):
        ctx = ApplyContext(T0 + i // 200)
        reply, _ = leader.execute(list(argv), ctx)
        err, cmds = raft.prepare(list(argv), ctx, exact=False)
        assert err is None and cmds is not None
        if argv[0] == b"XADD":
            assert cmds == [argv]
        if argv[0] in (b"XREADGROUP", b"XCLAIM", b"XAUTOCLAIM"):
            assert cmds[-1][-2:] == [TIME_MARK, b""]
        assert raft.apply(cmds, ctx)[-1] == reply
    assert raft.digest() == leader.digest()


def test_log_forms_need_their_time() -> None:
    sm = StateMachine()
    assert sm.apply([[b"XADD", b"s", b"*", b"f", b"v"]], LOG) == [NEEDS_CLOCK]
    assert b"s" not in sm.data
    sm.apply([[b"XADD", b"s", b"1-1", b"f", b"v"], [b"XGROUP", b"CREATE", b"s", b"g", b"0"]], LOG)
    bare = [b"XREADGROUP", b"GROUP", b"g", b"c", b"STREAMS", b"s", b">"]
    assert "internal form" in str(sm.apply([bare], LOG)[0])
    assert sm.apply([[*bare, TIME_MARK, b""]], LOG) == [NEEDS_CLOCK]
    reply = sm.apply([[*bare, TIME_MARK, b"%d" % T0]], LOG)[0]
    assert reply == {b"s": [[b"1-1", [b"f", b"v"]]]}
    stream = sm.data[b"s"]
    assert isinstance(stream, Stream)
    assert stream.groups[b"g"].pel[(1, 1)].delivery_time == T0
    assert stream.groups[b"g"].consumers[b"c"].seen_time == T0


def test_a_client_cannot_send_the_internal_form() -> None:
    """A client's argv ending like the internal form is stamped again, so its
    bytes stay arguments (here: keys ``s``, ``>`` read from ids ``TIME_MARK``, ``1``;
    the first is no valid id, as Redis would answer)."""
    sm = StateMachine()
    sm.execute([b"XGROUP", b"CREATE", b"s", b"g", b"$", b"MKSTREAM"], ApplyContext(T0))
    argv = [b"XREADGROUP", b"GROUP", b"g", b"c", b"STREAMS", b"s", b">", TIME_MARK, b"1"]
    reply, cmds = sm.execute(argv, ApplyContext(T0))
    assert str(reply) == "ERR Invalid stream ID specified as stream command argument"
    assert cmds is None


_CHILD = """
import json, sys
from replikv.kv.context import ApplyContext
from replikv.kv.state_machine import StateMachine
from tests.unit.test_streams import T0, WORKLOAD
sm = StateMachine()
replies = []
for i, argv in enumerate(WORKLOAD):
    ctx = ApplyContext(T0 + i // 200)
    err, cmds = sm.prepare(list(argv), ctx, exact=False)
    replies.append(repr(sm.apply(cmds, ctx)[-1]))
replies.append(repr(sm.read([b"XINFO", b"STREAM", b"s", b"FULL", b"COUNT", b"0"], T0 + 5)))
print(json.dumps([sm.digest().hex(), replies]))
"""


def test_raft_replicas_agree_across_hash_seeds() -> None:
    """Two raft replicas in processes with different hash seeds (dict/set
    order of bytes differs) reach the same state and replies."""
    root = Path(__file__).resolve().parents[2]
    outs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed,
               "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)])}
        proc = subprocess.run([sys.executable, "-c", _CHILD], env=env, cwd=root,
                              capture_output=True, text=True, timeout=120, check=True)
        outs.append(json.loads(proc.stdout))
    assert outs[0] == outs[1]
    leader, _, _ = _leader_and_follower()
    assert outs[0][0] == leader.digest().hex()


def test_pair_map_encoding() -> None:
    """XREAD's reply type: pairs in RESP2, a map in RESP3."""
    from replikv.core.replies import PairMap
    from replikv.core.resp import encode_reply

    value = PairMap([(b"a", [b"1"]), (b"b", [])])
    assert encode_reply(value) == b"*2\r\n*2\r\n$1\r\na\r\n*1\r\n$1\r\n1\r\n*2\r\n$1\r\nb\r\n*0\r\n"
    assert encode_reply(value, resp3=True) == b"%2\r\n$1\r\na\r\n*1\r\n$1\r\n1\r\n$1\r\nb\r\n*0\r\n"


_TOKENS = [b"s", b"t", b"g", b"c", b"0", b"1", b"-1", b"*", b"$", b">", b"+", b"-", b"(", b"(1",
           b"1-*", b"0-0", b"18446744073709551615-18446744073709551615", b"18446744073709551616",
           b"MAXLEN", b"MINID", b"~", b"=", b"LIMIT", b"NOMKSTREAM", b"COUNT", b"BLOCK", b"STREAMS",
           b"GROUP", b"NOACK", b"CREATE", b"SETID", b"DESTROY", b"CREATECONSUMER", b"DELCONSUMER",
           b"HELP", b"MKSTREAM", b"ENTRIESREAD", b"IDLE", b"TIME", b"RETRYCOUNT", b"FORCE",
           b"JUSTID", b"LASTID", b"FULL", b"STREAM", b"GROUPS", b"CONSUMERS", b"ENTRIESADDED",
           b"MAXDELETEDID", b"", b"x", TIME_MARK, b"99999999999999999999", b" 1", b"-0"]


def test_garbage_is_answered_with_errors_only() -> None:
    """Random argv (client commands and log entries alike, internal form
    included) never raise anything but an error reply on any path."""
    import random

    from replikv.kv.commands import COMMANDS

    rng = random.Random(7)
    names = [n for n in COMMANDS if n.startswith(b"X")] + [b"XADD"] * 5 + [b"XGROUP"] * 2
    sm = StateMachine()
    for i in range(6000):
        argv = [rng.choice(names)] + [rng.choice(_TOKENS) for _ in range(rng.randint(0, 9))]
        ctx = ApplyContext(T0 + i)
        sm.execute(list(argv), ctx)
        _err, cmds = sm.prepare(list(argv), ctx, exact=False)
        if cmds:
            sm.apply(cmds, ctx)
        sm.apply([list(argv)], LOG)
        sm.apply([list(argv)], ctx)
    assert any(type(v) is Stream for v in sm.data.values())


def test_pin_last_ids_fixes_dollar_when_a_reader_blocks() -> None:
    """XREAD BLOCK .. $: the runtime attempts again the pinned form, so an
    entry added after the client blocked is served (``$`` re-read at the
    wake-up would name that entry itself and serve nothing)."""
    sm = StateMachine()
    sm.execute([b"XADD", b"s", b"5-1", b"f", b"v"], ApplyContext(T0))
    sm.execute([b"SET", b"str", b"x"], ApplyContext(T0))
    argv = [b"XREAD", b"BLOCK", b"0", b"STREAMS", b"s", b"new", b"$", b"$"]
    pinned = Stream.pin_last_ids(sm, argv, T0)
    assert pinned == [b"XREAD", b"BLOCK", b"0", b"STREAMS", b"s", b"new", b"5-1", b"0-0"]
    assert sm.read(pinned, T0) is NULL_ARRAY  # nothing yet
    sm.execute([b"XADD", b"s", b"6-0", b"g", b"w"], ApplyContext(T0))
    sm.execute([b"XADD", b"new", b"1-1", b"h", b"u"], ApplyContext(T0))
    assert sm.read(pinned, T0) == {b"s": [[b"6-0", [b"g", b"w"]]], b"new": [[b"1-1", [b"h", b"u"]]]}
    assert sm.read(argv, T0) is NULL_ARRAY  # what re-reading $ would have done
    for other in ([b"XREAD", b"STREAMS", b"s", b"0"], [b"XREAD", b"STREAMS", b"s"],
                  [b"XREAD", b"STREAMS", b"str", b"$"],
                  [b"XREADGROUP", b"GROUP", b"g", b"c", b"STREAMS", b"s", b">"]):
        assert Stream.pin_last_ids(sm, other, T0) is other
