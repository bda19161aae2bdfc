"""Scripts and the determinism invariant: what each path logs, and that
every replica reaches the same state (``kv/types/scripting.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from replikv import config
from replikv.core.replies import OK, RespError
from replikv.core.resp import command_bytes
from replikv.kv.args import NEEDS_CLOCK
from replikv.kv.context import ApplyContext
from replikv.kv.lua import ScriptEngine, script_command, sha1hex, with_bodies, with_body
from replikv.kv.state_machine import StateMachine

NOW = 1_700_000_000_000
CTX = ApplyContext(NOW)
SRC = str(Path(__file__).resolve().parents[2] / "src")


def _eval(body: str, *rest: str | bytes) -> list[bytes]:
    return [b"EVAL", body.encode(), *(r if isinstance(r, bytes) else r.encode() for r in rest)]


# --- leader-follower: effects replication ------------------------------------------------


def test_the_leader_logs_the_writes_a_script_made_as_one_entry() -> None:
    leader, follower = StateMachine(), StateMachine()
    argv = _eval("redis.call('set', KEYS[1], 'v', 'EX', 10); redis.call('get', KEYS[1]); "
                 "redis.call('rpush', 'l', 'a', 'b'); redis.call('del', 'missing'); "
                 "return redis.call('incr', 'n')", "1", "k")
    reply, cmds = leader.execute(argv, CTX)
    assert reply == 1
    assert cmds == [
        [b"SET", b"k", b"v", b"PXAT", b"%d" % (NOW + 10_000)],
        [b"rpush", b"l", b"a", b"b"],
        [b"incr", b"n"],
    ]
    follower.apply(cmds, ApplyContext(None))
    assert follower.digest() == leader.digest()


def test_a_script_that_changes_nothing_logs_nothing() -> None:
    sm = StateMachine()
    assert sm.execute(_eval("return redis.call('get', 'k')", "0"), CTX) == (None, None)
    assert sm.execute(_eval("return redis.call('del', 'k')", "0"), CTX) == (0, None)
    reply, cmds = sm.execute(_eval("return (", "0"), CTX)
    assert isinstance(reply, RespError) and cmds is None
    assert sm.execute([b"EVAL", b"return 1"], CTX)[1] is None  # wrong arity


def test_a_failing_script_logs_the_writes_it_made_before_failing() -> None:
    leader, follower = StateMachine(), StateMachine()
    leader.execute([b"SET", b"str", b"x"], CTX)
    follower.apply([[b"SET", b"str", b"x"]], ApplyContext(None))
    reply, cmds = leader.execute(
        _eval("redis.call('set', 'a', '1'); redis.call('lpush', 'str', 'x'); "
              "redis.call('set', 'b', '2')", "0"), CTX)
    assert isinstance(reply, RespError) and reply.message.startswith("WRONGTYPE")
    assert cmds == [[b"set", b"a", b"1"]]
    follower.apply(cmds, ApplyContext(None))
    assert follower.digest() == leader.digest()


def test_expired_keys_a_script_touches_are_deleted_in_the_log_first() -> None:
    leader, follower = StateMachine(), StateMachine()
    setup = [b"SET", b"k", b"old", b"PXAT", b"%d" % (NOW - 1)]
    leader.apply([setup], ApplyContext(None))
    follower.apply([setup], ApplyContext(None))
    reply, cmds = leader.execute(_eval("return redis.call('append', KEYS[1], 'x')", "1", "k"), CTX)
    assert reply == 1
    assert cmds == [[b"DEL", b"k"], [b"append", b"k", b"x"]]
    follower.apply(cmds, ApplyContext(None))
    assert follower.digest() == leader.digest()


def test_a_transaction_of_scripts_is_one_entry() -> None:
    leader, follower = StateMachine(), StateMachine()
    replies, cmds = leader.execute_transaction(
        [_eval("return redis.call('incr', 'n')", "0"), [b"INCR", b"n"],
         _eval("return redis.call('incr', 'n')", "0")], CTX)
    assert replies == [1, 2, 3]
    assert cmds is not None and len(cmds) == 3
    follower.apply(cmds, ApplyContext(None))
    assert follower.digest() == leader.digest()


def test_a_transaction_entry_stops_at_the_command_that_would_pass_max_command_bytes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """EXEC bounds a block by its commands' sizes, but a script's effects may outweigh the
    script: the leader-follower leader counts what the block logs (NodeOptions.
    max_command_bytes, 2 MiB here). A script counts from what the block logged before it and
    fails at the write that would pass the limit; a later command that would pass it fails in
    its place; smaller commands after still run; the entry holds the writes before."""
    monkeypatch.setattr(config, "PEER_FRAME_SLACK_BYTES", 2 * 1024 * 1024)
    leader, follower = StateMachine(), StateMachine()
    leader.limits = config.NodeOptions(max_bulk_len=1024 * 1024)
    assert leader.limits.max_command_bytes == 2 * 1024 * 1024
    two = "for i = 1, 2 do redis.call('SET', ARGV[1] .. i, string.rep('x', 600000)) end return 1"
    replies, cmds = leader.execute_transaction(
        [_eval(two, "0", "a"), _eval(two, "0", "b"), [b"SET", b"c", b"y" * 600_000], [b"SET", b"d", b"1"]], CTX)
    assert replies[0] == 1  # 1.2 MB logged
    assert isinstance(replies[1], RespError) and "the script's writes come to more than the 2097152" in str(replies[1])
    assert isinstance(replies[2], RespError) and "the transaction's writes come to more than" in str(replies[2])
    assert replies[3] is OK
    assert cmds is not None and [c[1] for c in cmds] == [b"a1", b"a2", b"b1", b"d"]
    assert sum(map(command_bytes, cmds)) <= leader.limits.max_command_bytes
    follower.apply(cmds, ApplyContext(None))
    assert follower.digest() == leader.digest()
    assert leader.logged_in_block == 0  # a script run alone counts from nothing again
    assert leader.execute(_eval(two, "0", "e"), CTX)[0] == 1


# --- raft: script replication --------------------------------------------------------------


def test_raft_logs_eval_as_sent_and_evalsha_with_its_body() -> None:
    sm = StateMachine()
    argv = _eval("return redis.call('incr', KEYS[1])", "1", "n")
    err, cmds = sm.prepare(argv, CTX, exact=False)
    assert err is None and cmds is not None and cmds[-1] is argv
    sha = script_command(sm.scripts, [b"SCRIPT", b"LOAD", argv[1]])
    err, cmds = sm.prepare([b"EVALSHA", sha.upper(), b"1", b"n"], CTX, exact=False)
    assert cmds == [[b"EVAL", argv[1], b"1", b"n"]]
    # a replica that never saw the script runs it from the log
    other = StateMachine()
    assert other.apply(cmds, CTX) == [1]
    assert sm.prepare([b"EVALSHA", b"0" * 40, b"0"], CTX, exact=False) == (
        RespError("NOSCRIPT No matching script. Please use EVAL."), None)
    assert sm.prepare(_eval("return (", "0"), CTX, exact=False)[1] is None
    assert sm.prepare(_eval("return 1", "2", "k"), CTX, exact=False)[1] is None


def test_raft_runs_the_script_against_the_state_it_meets_at_apply() -> None:
    """The rewrite reads no data: entries applied in between are seen."""
    sm = StateMachine()
    _, cmds = sm.prepare(_eval("return redis.call('incr', KEYS[1])", "1", "n"), CTX, exact=False)
    sm.apply([[b"SET", b"n", b"10"]], CTX)
    assert sm.apply(cmds, CTX) == [11]


def test_raft_applies_time_at_the_entry_time() -> None:
    a, b = StateMachine(), StateMachine()
    _, cmds = a.prepare(_eval("redis.call('set', 'k', 'v', 'EX', 5); "
                              "return redis.call('pttl', 'k')", "0"), CTX, exact=False)
    assert cmds is not None
    assert a.apply(cmds, CTX) == [5000]
    assert b.apply(cmds, CTX) == [5000]
    assert a.expires == {b"k": NOW + 5000} and a.digest() == b.digest()
    # a key due at the entry's time is gone for the script
    late = ApplyContext(NOW + 5000)
    assert a.apply([_eval("return redis.call('exists', 'k')", "0")], late) == [0]


def test_scripts_are_never_applied_without_a_clock() -> None:
    sm = StateMachine()
    assert sm.apply([_eval("return redis.call('set', 'k', 'v')", "0")], ApplyContext(None)) == [
        NEEDS_CLOCK]
    reply = sm.apply([[b"EVALSHA", sha1hex(b"return 1"), b"0"]], CTX)[0]
    assert isinstance(reply, RespError) and "never logged" in reply.message
    assert sm.digest() == StateMachine().digest()


_REPLICA = """
import json, sys
from replikv.kv.context import ApplyContext
from replikv.kv.state_machine import StateMachine
cmds, now = json.loads(sys.argv[1]), int(sys.argv[2])
sm = StateMachine()
replies = []
for argv in cmds:
    replies.append(repr(sm.apply([[a.encode() for a in argv]], ApplyContext(now))[0]))
print(json.dumps([sm.digest().hex(), replies]))
"""

# A script whose writes follow the order of a set's members and of math.random.
_ORDER_SCRIPT = textwrap.dedent("""
    local members = redis.call('smembers', KEYS[1])
    for i, m in ipairs(members) do redis.call('rpush', 'order', m) end
    redis.call('set', 'first', members[1])
    redis.call('set', 'draw', math.random(1000000))
    local scanned = redis.call('scan', 0, 'count', 1000)[2]
    for i, k in ipairs(scanned) do redis.call('rpush', 'scanned', k) end
    for i, k in ipairs(redis.call('keys', '*')) do redis.call('rpush', 'keys', k) end
    return members
""")


@pytest.mark.parametrize("seed", ["1", "2", "3"])
def test_raft_replicas_in_processes_with_other_hash_seeds_agree(seed: str) -> None:
    """prepare(exact=False) + apply on separate processes: a Python set's
    order differs with PYTHONHASHSEED, the state the script builds must not."""
    members = [f"m{i}" for i in range(40)]
    entries = [["SADD", "s", *members], *(["SET", m, "v"] for m in members),
               ["EVAL", _ORDER_SCRIPT, "1", "s"]]
    outcomes = []
    for hash_seed in ("0", seed + "17"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": SRC}
        out = subprocess.run(
            [sys.executable, "-c", _REPLICA, json.dumps(entries), str(NOW)],
            env=env, capture_output=True, text=True, timeout=60, check=True,
        )
        outcomes.append(json.loads(out.stdout))
    assert outcomes[0] == outcomes[1]
    assert "m0" in outcomes[0][1][-1] and "m9" in outcomes[0][1][-1]


def test_leader_and_raft_paths_agree_on_a_mixed_workload() -> None:
    leader, follower, raft = StateMachine(), StateMachine(), StateMachine()
    scripts = [
        [b"SADD", b"s", b"a", b"b", b"c"],
        _eval(_ORDER_SCRIPT, "1", "s"),
        _eval("redis.call('hset', 'h', 'f', ARGV[1]); return redis.call('hincrby', 'h', 'f', 2)",
              "0", "40"),
        _eval("redis.call('expire', 'h', 100); return redis.call('ttl', 'h')", "0"),
        _eval("local ok = redis.pcall('lpush', 'h', 'x'); redis.call('del', 'first'); "
              "return ok", "0"),
        _eval("redis.call('set', 'gone', 1, 'PX', 1); return 1", "0"),
    ]
    for i, argv in enumerate(scripts):
        ctx = ApplyContext(NOW + i)
        reply, cmds = leader.execute(list(argv), ctx)
        if cmds:
            follower.apply(cmds, ApplyContext(None))
        err, raft_cmds = raft.prepare(list(argv), ctx, exact=False)
        assert err is None and raft_cmds is not None
        assert raft.apply(raft_cmds, ctx)[-1] == reply, argv
        assert leader.digest() == follower.digest() == raft.digest(), argv


# --- read-only scripts, the cache, the sandbox ----------------------------------------------


def test_eval_ro_is_a_read() -> None:
    sm = StateMachine()
    sm.execute([b"SET", b"k", b"v"], CTX)
    assert sm.prepare([b"EVAL_RO", b"return 1", b"0"], CTX, exact=False) == (None, None)
    assert sm.read([b"EVAL_RO", b"return redis.call('get', KEYS[1])", b"1", b"k"], NOW) == b"v"
    reply = sm.read([b"EVAL_RO", b"return redis.call('set', 'k', 'w')", b"0"], NOW)
    assert isinstance(reply, RespError) and reply.message.startswith(
        "ERR Write commands are not allowed from read-only scripts.")
    assert sm.read([b"GET", b"k"], NOW) == b"v"


def test_the_script_cache_is_not_replicated_state() -> None:
    sm = StateMachine()
    before = sm.digest()
    script_command(sm.scripts, [b"SCRIPT", b"LOAD", b"return 1"])
    sm.execute(_eval("return redis.call('set', 'k', 'v')", "0"), CTX)
    assert sm.scripts.body(sha1hex(b"return 1")) == b"return 1"
    assert sm.digest() != before
    copy = StateMachine()
    copy.restore(sm.snapshot())
    assert copy.digest() == sm.digest()
    assert copy.scripts.cache == {}


def test_scripts_cannot_reach_python() -> None:
    engine = ScriptEngine()
    replies = []
    for body in [b"return redis.call.__self__", b"return python", b"return redis.call.__class__",
                 b"return getmetatable(_G)", b"return debug"]:
        sha = engine.load(body)
        replies.append(engine.run(sha, [], [], lambda argv: (False, None)))
    assert all(isinstance(r, RespError) or r is None for r in replies), replies
    assert replies[3] is None  # getmetatable(_G) is protected: false -> nil


def test_what_differs_between_processes_is_hidden_from_scripts() -> None:
    """Addresses and memory use would make two replicas' scripts write differently."""
    body = (b"local t, f = {}, function() end; "
            b"return {tostring(t), tostring(f), tostring(t), tostring(redis.call), "
            b"collectgarbage('count'), gcinfo(), tostring(getmetatable(redis.call)), "
            b"tostring(setmetatable({}, {__tostring = function() return 'mine' end}))}")
    replies = []
    for _ in range(2):
        engine = ScriptEngine()
        engine.load(b"local junk = {}; for i = 1, 100 do junk[i] = {} end")  # other history
        replies.append(engine.run(engine.load(body), [], [], lambda argv: (False, None)))
    assert replies[0] == replies[1] == [
        b"table: 0x00000001", b"function: 0x00000002", b"table: 0x00000001",
        b"userdata: 0x00000003", 0, 0, b"nil", b"mine"]


@pytest.mark.parametrize(
    "loop",
    ["while true do end",
     "while true do pcall(function() while true do end end) end",
     "while true do xpcall(function() while true do end end, function(e) return e end) end"],
)
def test_a_script_that_never_ends_is_stopped_at_the_same_point_everywhere(loop: str) -> None:
    leader, follower, raft = StateMachine(), StateMachine(), StateMachine()
    for sm in (leader, raft):
        sm.scripts.instruction_limit = 2  # two million instructions
    argv = _eval(f"redis.call('set', 'before', '1')\n{loop}\nredis.call('set', 'after', '1')", "0")
    reply, cmds = leader.execute(list(argv), CTX)
    assert isinstance(reply, RespError)
    assert reply.message.startswith("ERR Script killed: it ran more Lua instructions")
    assert cmds == [[b"set", b"before", b"1"]]
    follower.apply(cmds, ApplyContext(None))
    _, raft_cmds = raft.prepare(list(argv), CTX, exact=False)
    assert raft_cmds is not None
    assert raft.apply(raft_cmds, CTX) == [reply]
    assert leader.digest() == follower.digest() == raft.digest()
    assert raft.read([b"GET", b"after"], NOW) is None
    # the engine is usable afterwards
    assert raft.apply([_eval("return 7", "0")], CTX) == [7]


def test_replies_of_every_python_shape_reach_lua_as_redis_sends_them() -> None:
    """What a data command may return (core/replies.py's table), as RESP2 hands it to Lua."""
    from replikv.core.replies import NULL_ARRAY, Raw

    engine = ScriptEngine()
    cases: list[tuple[object, object]] = [
        (b"bulk", b"bulk"), ("OK", [b"table", b"OK"]), (7, 7), (True, 1), (False, 0),
        (None, False), (NULL_ARRAY, False), (1.5, b"1.5"), ([b"a", [1, None]], [b"a", [1, False]]),
        ({b"f": b"v"}, [b"f", b"v"]), ({b"b", b"a", b"c"}, [b"a", b"b", b"c"]),
        (Raw(b"$3\r\nraw\r\n"), b"raw"), (RespError("ERR boom"), "error:ERR boom"),
        (Raw(b"-ERR raw\r\n"), "error:ERR raw"), ([RespError("ERR in")], [[b"err", b"ERR in"]]),
    ]
    for reply, expected in cases:
        is_error, value = engine.to_lua(reply)
        if is_error:
            assert expected == "error:" + value.decode(), reply
        else:
            assert _plain(value) == expected, reply


def _plain(value: object) -> object:
    """A Lua value as plain Python: arrays as lists, {ok=..}/{err=..} as [name, text]."""
    import lupa.lua51 as lua51

    if lua51.lua_type(value) != "table":
        return value
    table: Any = value
    for name in (b"ok", b"err"):
        if table[name] is not None:
            return [b"table" if name == b"ok" else name, table[name]]
    return [_plain(table[i]) for i in range(1, len(table) + 1)]


def test_a_node_forwards_evalsha_with_the_body_it_has() -> None:
    sm = StateMachine()
    sha = script_command(sm.scripts, [b"SCRIPT", b"LOAD", b"return 1"])
    assert with_body(sm, [b"evalsha", sha, b"0", b"x"]) == [b"EVAL", b"return 1", b"0", b"x"]
    assert with_body(sm, [b"EVALSHA_RO", sha.upper(), b"0"]) == [b"EVAL_RO", b"return 1", b"0"]
    unknown = [b"EVALSHA", b"0" * 40, b"0"]
    assert with_body(sm, unknown) is unknown
    other = [b"SET", b"k", b"v"]
    assert with_body(sm, other) is other
    # a block of commands: the same list back unless one is an EVALSHA the node holds the body of
    plain = [other, [b"GET", b"k"], [b"EVAL", b"return 1", b"0"], [b"EvalSha"]]
    assert with_bodies(sm, plain) is plain
    mixed = [other, [b"EvalSha", sha, b"0"], unknown]
    assert with_bodies(sm, mixed) == [other, [b"EVAL", b"return 1", b"0"], unknown]
