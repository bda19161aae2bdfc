"""Lua scripting (EVAL, EVALSHA, EVAL_RO, EVALSHA_RO, SCRIPT) against redis-server 7.0.

Each script goes to Redis and to replikv's three paths (``oracle.py``): the
leader runs it and logs its effects, a follower applies those, raft logs
the script and runs it at apply; replies must be Redis's and the replicas
must agree. SCRIPT is the runtime's (per node), so :func:`script` sends it
to Redis and to the two replikv nodes that take clients (leader, raft).
"""

from __future__ import annotations

from typing import Any

import pytest
import redis.lock

from replikv.core.replies import RespError
from replikv.kv.commands import COMMANDS, CommandSpec
from replikv.kv.context import ApplyContext
from replikv.kv.lua import script_command, sha1hex
from tests.differential.oracle import Differential, _normal, _parsed

# --- helpers ----------------------------------------------------------------------------


def script(diff: Differential, *args: str | bytes) -> Any:
    argv = [a if isinstance(a, bytes) else a.encode() for a in ("SCRIPT", *args)]
    expected = diff.redis.call(*argv)
    for sm in (diff.leader, diff.raft):
        got = script_command(sm.scripts, argv)
        assert _normal(_parsed(got), False) == _normal(expected, False), (argv, got, expected)
    return expected


def ev(diff: Differential, body: str, *keys_then_args: str, keys: int = 0) -> Any:
    return diff.run("EVAL", body, keys, *keys_then_args)


@pytest.fixture
def fresh(diff: Differential) -> Differential:
    script(diff, "FLUSH")
    return diff


# --- Lua -> RESP ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "return 1",
        "return 1.9",
        "return -1.9",
        "return -0.5",
        "return 1e20",
        "return 0/0",
        "return 1/0",
        "return math.huge",
        "return 'str'",
        "return ''",
        "return true",
        "return false",
        "return nil",
        "return",
        "return {}",
        "return {1, 2, nil, 3}",
        "return {1, {2, {ok='x'}}, 's', true, false, 3.7}",
        "return {1, foo='x', 2}",
        "return {1, 2, [4]=4}",
        "return {ok='fine'}",
        "return {ok=''}",
        "return {ok='a\\r\\nb'}",
        "return {ok=1}",
        "return {ok=false}",
        "return {ok='y', 1, 2}",
        "return {err='My Error'}",
        "return {err='WRONGTYPE xx'}",
        "return {err='x\\r\\ny'}",
        "return {err={1}}",
        "return {err=1}",
        "return {err='x', ok='y'}",
        "return {double=1.5}",
        "return {double=0.1}",
        "return {double=3}",
        "return {double=1e300}",
        "return {double=1/0}",
        "return {double='2.5'}",
        "return {1, {double=0.1}}",
        "return type",
        "return tostring(1e15) .. ' ' .. tostring(0.1) .. ' ' .. tostring(123456789012345)",
        "return {tonumber('12'), tonumber('x')}",
        "return string.format('%.3f', 1/3)",
        "return table.concat({'a', 'b'}, ',')",
        "return string.rep('a', 3) .. ('abc'):upper()",
        "return _VERSION",
        "return unpack({1, 2})",
        "return select('#', 1, 2)",
        "return loadstring('return 1')()",
        "return coroutine.wrap(function() coroutine.yield(5) end)()",
        "local s = 0; for i, v in ipairs({1, 2, 3}) do s = s + v end; return s",
        "return pcall(function() error('x') end)",
        "local ok, e = pcall(function() return nil + 1 end); return e",
    ],
)
def test_lua_values_become_redis_replies(diff: Differential, body: str) -> None:
    ev(diff, body)


@pytest.mark.parametrize(
    "msg", ["y", "x y", "", "-y", "-x y", "ERR", "WRONGTYPE", " y", "y ", "--y z"]
)
def test_error_and_status_reply_helpers(diff: Differential, msg: str) -> None:
    if msg and not msg.startswith("-"):  # replikv's encoder: no empty error, no leading "-"
        ev(diff, f"return {{err='{msg}'}}")
        ev(diff, f"error({{err='{msg}'}})")
    if not msg.startswith("--"):  # error_reply drops one "-"
        ev(diff, f"return redis.error_reply('{msg}')")
        ev(diff, f"error(redis.error_reply('{msg}'))")
    ev(diff, f"return redis.error_reply('{msg}').err")
    ev(diff, f"local ok, e = pcall(error, {{err='{msg}'}}); return e")
    ev(diff, f"return redis.status_reply('{msg}')")
    ev(diff, f"return {{ok='{msg}'}}")


def test_reply_helper_argument_errors(diff: Differential) -> None:
    ev(diff, "return redis.error_reply(1)")
    ev(diff, "return redis.error_reply()")
    ev(diff, "return redis.status_reply(1)")
    ev(diff, "return redis.sha1hex('abc')")
    ev(diff, "return redis.sha1hex(1)")
    ev(diff, "return redis.sha1hex()")
    ev(diff, "return redis.log(redis.LOG_WARNING, 'hi')")
    ev(diff, "return {redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING}")
    ev(diff, "return redis.log()")
    ev(diff, "return redis.log(1)")
    ev(diff, "return redis.log(99, 'x')")
    ev(diff, "return redis.replicate_commands()")
    ev(diff, "return redis.setresp(2)")
    ev(diff, "return redis.breakpoint()")
    ev(diff, "return type()")


@pytest.mark.parametrize(
    "expr",
    ["bit.tohex(255)", "bit.tohex(-1, -4)", "bit.tohex(255, 2)", "bit.tohex(255, 12)",
     "bit.tohex(255, 0)", "bit.tohex(1.7)", "bit.band(0xff, 0x0f, 0x3)", "bit.bor(1, 2, 4)",
     "bit.bxor(5, 3)", "bit.bnot(0)", "bit.lshift(1, 31)", "bit.lshift(1, 32)",
     "bit.rshift(-1, 28)", "bit.arshift(-256, 4)", "bit.rol(0x12345678, 8)",
     "bit.ror(0x12345678, 8)", "bit.bswap(0x12345678)", "bit.tobit(0xffffffff)",
     "bit.tobit(2^40 + 5)", "bit.tobit(1.5)", "bit.tobit(2.5)", "bit.tobit(-1.5)",
     "bit.band()", "bit.band('7', 3)", "bit.band('x', 3)", "bit.tobit()", "bit.band(1, nil)",
     "bit.bor(1, {})", "bit.band(7)", "bit.rol(1, 33)"],
)
def test_bit_library(diff: Differential, expr: str) -> None:
    ev(diff, f"return {expr}")
    ev(diff, f"local ok, e = pcall(function() return {expr} end); return {{tostring(ok), e}}")
    ev(diff, f"\nlocal x = {expr}\nreturn x")


@pytest.mark.parametrize(
    "expr",
    [
        "cjson.encode({1, 'a', {x=1}, true, false})", "cjson.encode({})",
        "cjson.encode({a={b={1,2}}})", r"cjson.encode('a/b\"\\\n\t\1\127\200')",
        "cjson.encode(1.5)", "cjson.encode(0.1)", "cjson.encode(1e20)",
        "cjson.encode(123456789012345)", "cjson.encode(1/0)", "cjson.encode(0/0)",
        "cjson.encode(nil)", "cjson.encode()", "cjson.encode(1, 2)",
        "cjson.encode({[1]=1, [3]=3})", "cjson.encode({[1]=1, [2]=2, [4]=4})",
        "cjson.encode({[1]='a', x='b'})", "cjson.encode({[2]=1})", "cjson.encode({[10]=1})",
        "cjson.encode({[11]=1})", "cjson.encode({[1.5]=1})", "cjson.encode({[-1]=1})",
        "cjson.encode(cjson.null)", "cjson.encode({cjson.null})", "cjson.encode(function() end)",
        "cjson.encode({f=function() end})", "cjson.encode({[true]=1})", "cjson.encode({{},{}})",
        "cjson.encode({['1']=2})",
        "cjson.decode('[1,2,3]')", """cjson.decode('{"a":1}').a""", """cjson.decode('"x"')""",
        "cjson.decode('1.5')", "tostring(cjson.decode('1.5'))", "cjson.decode('[1,null,3]')",
        "type(cjson.decode('null'))", "tostring(cjson.decode('null') == cjson.null)",
        "cjson.decode('[')", "cjson.decode('')", """cjson.decode('{"a":}')""",
        "cjson.decode('nul')", r"""cjson.decode('"\\u00e9"')""", "cjson.decode('[true,false]')",
        """cjson.decode('{"a":[1,{"b":"c"}]}').a[2].b""", "cjson.decode(1)",
        "cjson.decode()", "cjson.decode({})", "cjson.decode('1e400')", "cjson.decode('[1] x')",
        "cjson.decode('  [1]  ')[1]", "cjson.decode('0x10')", "cjson.decode('-0')",
        """cjson.decode('{"1":2}')['1']""", "cjson.decode('[1,2]')[3]", "cjson.decode('{1:2}')",
        """cjson.decode('{"a" 2}')""", """cjson.decode('{"a":2 3}')""", "cjson.decode('[1 2]')",
        """cjson.decode('"abc')""", r"""cjson.decode('"\\q"')""", r"""cjson.decode('"\\u12"')""",
        r"""cjson.decode('"\\ud83d\\ude00"')""", r"""cjson.decode('"a\\/b\\n"')""",
        "cjson.decode('{}')", "cjson.decode('[]')", "cjson.decode(']')", "cjson.decode(',')",
        "cjson.decode(cjson.encode({x={1,2,{y='z'}}})).x[3].y", "cjson.decode('-')",
        "cjson.decode('1.5e3')", "cjson.decode('[1,]')", """cjson.decode('{"a":1,}')""",
    ],
)
def test_cjson_library(diff: Differential, expr: str) -> None:
    ev(diff, f"return {expr}")
    ev(diff, f"\nlocal ok, e = pcall(function() return {expr} end)\nreturn {{tostring(ok), e}}")


# --- KEYS, ARGV, numkeys, arity ----------------------------------------------------------


def test_keys_and_argv(diff: Differential) -> None:
    ev(diff, "return {KEYS[1], ARGV[1], ARGV[2], #KEYS, #ARGV}", "k1", "a1", "a2", keys=1)
    ev(diff, "return {#KEYS, #ARGV}", "a", "b", keys=0)
    ev(diff, "return {#KEYS, #ARGV}", "a", "b", keys=2)
    ev(diff, "return {KEYS[1], KEYS[2], ARGV[1]}", "k1", "a1", keys=1)  # nil ends the array
    ev(diff, "return #KEYS .. ':' .. #ARGV")
    ev(diff, "KEYS[1] = 'changed'; return KEYS[1]", "k", keys=1)
    ev(diff, "return KEYS[1]")  # KEYS does not leak from the previous script


def test_numkeys_and_arity_errors(diff: Differential) -> None:
    diff.run("EVAL", "return 1", "-1")
    diff.run("EVAL", "return 1", "2", "a")
    diff.run("EVAL", "return 1", "1")
    diff.run("EVAL", "return 1", "x")
    diff.run("EVAL", "return 1", "01")
    diff.run("EVAL", "return 1", "99999999999999999999")
    diff.run("EVAL", "return 1")
    diff.run("EVAL")
    diff.run("EVAL_RO", "return 1", "-1")
    diff.run("EVAL_RO", "return 1", "3", "a")
    diff.run("EVAL_RO", "return 1")
    diff.run("EVALSHA", sha1hex(b"return 1"), "5")
    diff.run("EVALSHA", "abc")
    diff.run("EVALSHA_RO", "abc")


# --- redis.call / redis.pcall --------------------------------------------------------------


def test_calls_read_and_write_the_data(diff: Differential) -> None:
    ev(diff, "return {redis.call('set','x','1'), redis.call('get','x'), "
             "redis.call('incr','x'), redis.call('del','x')}")
    ev(diff, "return redis.call('hgetall', 'nokey')")
    ev(diff, "return redis.call('get', 'nokey')")
    ev(diff, "redis.call('rpush', 'l', 'a', 'b'); return redis.call('lrange', 'l', 0, -1)")
    ev(diff, "return redis.call('set', 'x', '1', 'GET')")
    ev(diff, "local t = redis.call('set', 'x', '2'); return t.ok")
    ev(diff, "return redis.call('SET', KEYS[1], ARGV[1])", "k", "v", keys=1)
    ev(diff, "return redis.call('Get', KEYS[1])", "k", keys=1)
    ev(diff, "redis.call('hset', 'h', 'f', 1, 'g', 2.5); return redis.call('hgetall', 'h')")
    diff.run("HGETALL", "h", unordered="pairs")
    ev(diff, "return redis.call('lpop', 'l', 5)")
    ev(diff, "return redis.call('exists', 'l', 'h', 'x')")
    ev(diff, "return redis.call('type', 'h')")
    ev(diff, "return redis.call('mget', 'x', 'nokey', 'h')")
    ev(diff, "return redis.call('scard', 'nokey')")
    ev(diff, "redis.call('sadd', 's', 'b', 'a', 'c'); return redis.call('sismember', 's', 'a')")
    ev(diff, "return #redis.call('smembers', 's')")
    diff.run("SMEMBERS", "s", unordered=True)
    ev(diff, "return redis.call('flushall')")
    diff.run("DBSIZE")


def test_keys_and_scan_in_scripts(diff: Differential) -> None:
    diff.run("MSET", "a", "1", "b", "2", "c", "3")
    diff.run("EVAL", "return redis.call('keys', '*')", "0", unordered=True)
    diff.run("EVAL", "return redis.call('scan', 0, 'count', 100)[2]", "0", unordered=True)
    diff.run("EVAL", "return redis.call('scan', 0, 'count', 100)[1]", "0")
    diff.run("EVAL", "for _, k in ipairs(redis.call('keys', '*')) do redis.call('del', k) end", "0")
    diff.run("DBSIZE")


def test_number_arguments_are_formatted_as_redis_does(diff: Differential) -> None:
    for value in ["1.5", "3.0", "10000000000000000000", "123456789012345678", "2^53", "-7"]:
        ev(diff, f"redis.call('set', 'n', {value}); return redis.call('get', 'n')")


def test_call_errors(diff: Differential) -> None:
    diff.run("SET", "str", "v")
    ev(diff, "return redis.call('nosuch')")
    ev(diff, "return redis.call('ping')")
    ev(diff, "return redis.call('ping', 'hi')")
    ev(diff, "return redis.call('ping', 'a', 'b')")
    ev(diff, "return redis.call('echo', 'hi')")
    ev(diff, "return redis.call('select', 0)")
    ev(diff, "return redis.call('select', 'x')")
    ev(diff, "return redis.call('select')")
    ev(diff, "return redis.call('time', 'x')")
    ev(diff, "return #redis.call('time')")
    ev(diff, "return redis.call('echo')")
    ev(diff, "return redis.call('wait', 0, 0)")
    ev(diff, "return redis.call('client', 'list')")
    ev(diff, "return redis.call('exec')")
    ev(diff, "return redis.call('multi')")
    ev(diff, "return redis.call('eval', 'return 1', 0)")
    ev(diff, "return redis.call('evalsha', 'abc', 0)")
    ev(diff, "return redis.call('script', 'load', 'return 1')")
    ev(diff, "return redis.call('get')")
    ev(diff, "return redis.call('set', 'a')")
    ev(diff, "return redis.call()")
    ev(diff, "return redis.call(1)")
    ev(diff, "return redis.call('set', 'a', {})")
    ev(diff, "return redis.call('set', 'a', nil)")
    ev(diff, "return redis.call('set', 'a', true)")
    ev(diff, "return redis.call('get', KEYS[1])")
    ev(diff, "return redis.call('lpush', 'str', 'x')")
    ev(diff, "return redis.call('incr', 'str')")
    ev(diff, "return redis.call('set', 'str', 'v', 'BAD')")
    ev(diff, "local t = {}\nt.x = 1\nreturn redis.call('lpush', 'zz')")
    ev(diff, "local function f()\n return redis.call('nosuch')\nend\nreturn f()")
    ev(diff, "\n\nredis.call('lpush', 'str', 'a')\nreturn 1")


def test_pcall_returns_errors(diff: Differential) -> None:
    diff.run("SET", "str", "v")
    ev(diff, "return redis.pcall('lpush', 'str', 'a')")
    ev(diff, "local t = redis.pcall('lpush', 'str', 'a'); return {type(t), t.err}")
    ev(diff, "local t = redis.pcall('lpush', 'str', 'a'); error(t)")
    ev(diff, "return redis.pcall('nosuch')")
    ev(diff, "return redis.pcall('eval', 'return 1', 0)")
    ev(diff, "return redis.pcall()")
    ev(diff, "return redis.pcall('set', 'a', {})")
    ev(diff, "return redis.pcall('set', 'a')")
    ev(diff, "local ok, e = pcall(redis.call, 'nosuch'); return {type(e), e}")
    ev(diff, "local ok, e = pcall(redis.call, 'lpush', 'str', 'a'); return {type(e), e}")
    ev(diff, "local ok, e = pcall(redis.call, 'lpush', 'str', 'a'); error(e)")
    ev(diff, "local ok, e = pcall(redis.call, 'get'); return e")
    ev(diff, "local ok, e = pcall(redis.call); return e")
    ev(diff, "local ok, e = pcall(error, {err='x'}); return {type(e), tostring(e)}")
    ev(diff, "local ok, e = pcall(error, {foo='x'}); return {type(e), tostring(e.foo)}")
    ev(diff, "local ok, e = pcall(function() error(redis.error_reply('y')) end); return e")
    ev(diff, "return {pcall(redis.call, 'nosuch')}")


# --- script errors and the sandbox ---------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "error('boom')",
        "error('nopos', 0)",
        "error(42)",
        "error()",
        "error({err=5})",
        "error({err='x\\ny'})",
        "error('ERR x', 0)",
        "assert(false)",
        "assert(false, 'msg')",
        "local a = 1\nlocal b = nil\nreturn a + b",
        "return (",
        "return 1 +",
        "local x = \n\n)",
        "return x",
        "x = 1",
        "_G.x = 1",
        "redis.x = 1",
        "string.x = 1; return string.x",
        "math.floor = nil",
        "setmetatable(_G, nil)",
        "return load('return 2')()",
        "return {loadstring(string.dump(function() return 1 end))}",
        "local f, e = loadstring(string.dump(function() return 1 end)); return {type(f), e}",
        "local f, e = loadstring(string.dump(function() return 1 end), '=x'); return e",
        "local f, e = loadstring('\\27Lua'); return {type(f), e}",
        "local n = 0; local f, e = load(function() n = n + 1; if n == 1 then "
        "return string.dump(function() return 1 end) end end); return {type(f), e}",
        "local n = 0; return load(function() n = n + 1; "
        "if n == 1 then return 'return 7' end end)()",
        "local f, e = loadstring('return (', 'chunk'); return e",
    ],
)
def test_script_errors(diff: Differential, body: str) -> None:
    ev(diff, body)


@pytest.mark.parametrize(
    "name",
    ["os", "io", "debug", "loadfile", "dofile", "require", "module", "package", "print",
     "getfenv", "setfenv", "newproxy", "python"],
)
def test_sandbox_hides_what_redis_hides(diff: Differential, name: str) -> None:
    ev(diff, f"return type({name})")


@pytest.mark.parametrize(
    "name",
    ["string", "table", "math", "coroutine", "redis", "loadstring", "collectgarbage", "unpack",
     "gcinfo", "pcall", "xpcall", "select", "rawget", "rawset", "setmetatable", "getmetatable",
     "tonumber", "tostring", "next", "ipairs", "pairs", "assert", "error", "_G", "_VERSION",
     "rawequal", "type"],
)
def test_sandbox_keeps_what_redis_keeps(diff: Differential, name: str) -> None:
    ev(diff, f"return type({name})")


def test_no_state_survives_a_script(diff: Differential) -> None:
    ev(diff, "pcall(function() x = 1 end); return rawget(_G, 'x')")
    ev(diff, "rawset(_G, 'y', 1)")
    ev(diff, "return rawget(_G, 'y')")
    ev(diff, "local ok = pcall(function() string.upper = nil end); return string.upper('a')")


def test_a_failing_script_keeps_its_writes(diff: Differential) -> None:
    diff.run("SET", "str", "v")
    ev(diff, "redis.call('set', 'a', '1'); redis.call('lpush', 'str', 'x'); "
             "redis.call('set', 'b', '2')")
    diff.run("MGET", "a", "b")
    ev(diff, "redis.call('incr', 'a'); error('late')")
    diff.run("GET", "a")


# --- read-only scripts ------------------------------------------------------------------


def test_eval_ro(diff: Differential) -> None:
    diff.run("SET", "k", "v")
    diff.run("EVAL_RO", "return redis.call('get', KEYS[1])", "1", "k")
    diff.run("EVAL_RO", "return redis.call('set', 'a', 'b')", "0")
    diff.run("EVAL_RO", "return redis.pcall('set', 'a', 'b')", "0")
    diff.run("EVAL_RO", "return redis.call('del', 'k')", "0")
    diff.run("EVAL_RO", "return redis.call('nosuch')", "0")
    diff.run("EVAL_RO", "return {redis.call('exists', 'k'), redis.call('strlen', 'k')}", "0")
    diff.run("EXISTS", "a")


@pytest.mark.parametrize(
    "body",
    [
        "#!lua\nreturn 1",
        "#!lua\nerror('x')",
        "#!lua\nreturn redis.call('set', 'a', 'b')",
        "#!lua flags=no-writes\nreturn redis.call('set', 'a', 'b')",
        "#!lua flags=no-writes\nreturn redis.call('get', 'a')",
        "#!lua flags=no-writes,allow-stale\nreturn 1",
        "#!lua flags=\nreturn 1",
        "#!py\nreturn 1",
        "#!lua flags=bogus\nreturn 1",
        "#!lua name=x\nreturn 1",
    ],
)
def test_shebang_flags(diff: Differential, body: str) -> None:
    diff.run("EVAL", body, "0")
    diff.run("EVAL_RO", body, "0")


# --- EVALSHA and SCRIPT --------------------------------------------------------------------


def test_script_load_exists_flush_and_evalsha(fresh: Differential) -> None:
    diff = fresh
    sha = script(diff, "LOAD", "return {KEYS[1], ARGV[1]}")
    assert sha == sha1hex(b"return {KEYS[1], ARGV[1]}")
    diff.run("EVALSHA", sha, "1", "k", "a")
    diff.run("EVALSHA", sha.upper(), "1", "k", "a")
    diff.run("EVALSHA_RO", sha, "1", "k", "a")
    diff.run("EVALSHA", sha + b"x", "0")
    diff.run("EVALSHA", sha, "-1")
    script(diff, "EXISTS", sha, "abc", sha.upper())
    script(diff, "FLUSH")
    script(diff, "EXISTS", sha)
    diff.run("EVALSHA", sha, "1", "k", "a")
    diff.run("EVALSHA_RO", sha, "1", "k", "a")
    # EVAL caches what it runs
    diff.run("EVAL", "return 'cached'", "0")
    diff.run("EVALSHA", sha1hex(b"return 'cached'"), "0")
    script(diff, "EXISTS", sha1hex(b"return 'cached'"))
    # a body that does not compile is not cached
    diff.run("EVAL", "return (", "0")
    script(diff, "EXISTS", sha1hex(b"return ("))


def test_script_errors_and_options(fresh: Differential) -> None:
    diff = fresh
    script(diff, "LOAD", "return (")
    script(diff, "LOAD")
    script(diff, "LOAD", "a", "b")
    script(diff, "EXISTS")
    script(diff, "FLUSH", "ASYNC")
    script(diff, "FLUSH", "sync")
    script(diff, "FLUSH", "x")
    script(diff, "FLUSH", "SYNC", "ASYNC")
    script(diff, "NOPE")
    script(diff, "nope", "x")
    script(diff, "HELP")
    script(diff, "HELP", "x")
    script(diff, "KILL")
    script(diff, "KILL", "x")
    script(diff, "LOAD", "#!lua flags=bogus\nreturn 1")
    script(diff, "LOAD", "#!lua flags=no-writes\nreturn 1")


def test_evalsha_writes_replicate_to_a_replica_that_never_saw_the_script(
    fresh: Differential,
) -> None:
    diff = fresh
    sha = script(diff, "LOAD", "return redis.call('incrby', KEYS[1], ARGV[1])")
    diff.run("EVALSHA", sha, "1", "counter", "5")
    diff.run("EVALSHA", sha, "1", "counter", "7")
    diff.run("GET", "counter")
    assert not diff.follower.scripts.cache  # it applied effects, never the script


# --- real-world scripts ---------------------------------------------------------------------


def test_redis_py_lock_scripts(diff: Differential) -> None:
    lock = redis.lock.Lock
    diff.run("SET", "lock", "token", "PX", "100000")
    diff.run("EVAL", lock.LUA_EXTEND_SCRIPT, "1", "lock", "other", "5000", "0")
    diff.run("EVAL", lock.LUA_EXTEND_SCRIPT, "1", "lock", "token", "500000", "1")
    diff.run("EVAL", lock.LUA_EXTEND_SCRIPT, "1", "nolock", "token", "5000", "0")
    diff.run("EVAL", lock.LUA_REACQUIRE_SCRIPT, "1", "lock", "token", "200000")
    diff.run("EVAL", lock.LUA_REACQUIRE_SCRIPT, "1", "lock", "other", "200000")
    diff.run("EVAL", lock.LUA_RELEASE_SCRIPT, "1", "lock", "other")
    diff.run("EXISTS", "lock")
    diff.run("EVAL", lock.LUA_RELEASE_SCRIPT, "1", "lock", "token")
    diff.run("EXISTS", "lock")
    diff.run("EVAL", lock.LUA_RELEASE_SCRIPT, "1", "lock", "token")
    diff.run("SET", "forever", "token")
    diff.run("EVAL", lock.LUA_EXTEND_SCRIPT, "1", "forever", "token", "5000", "0")
    diff.run("EVAL", lock.LUA_EXTEND_SCRIPT, "1", "forever", "token", "5000", "1")


COMPARE_AND_DELETE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""

# A token bucket: KEYS[1] a hash {tokens, ts}; ARGV: capacity, refill per second, now (s),
# tokens wanted. Returns {allowed, tokens left}.
TOKEN_BUCKET = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local wanted = tonumber(ARGV[4])
local state = redis.call('hmget', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or capacity
local ts = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + (now - ts) * rate)
local allowed = 0
if tokens >= wanted then
  tokens = tokens - wanted
  allowed = 1
end
redis.call('hset', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('expire', KEYS[1], math.ceil(capacity / rate) * 2)
return {allowed, tostring(tokens)}
"""


# A JSON document in a string: update one field, keep a history list.
JSON_UPDATE = """
local doc = cjson.decode(redis.call('get', KEYS[1]) or '{}')
local old = doc[ARGV[1]]
doc[ARGV[1]] = tonumber(ARGV[2]) or ARGV[2]
redis.call('set', KEYS[1], cjson.encode(doc))
redis.call('rpush', KEYS[2], cjson.encode({field=ARGV[1], old=old or cjson.null}))
return cjson.encode(doc)
"""


def test_json_document_update(diff: Differential) -> None:
    diff.run("EVAL", JSON_UPDATE, "2", "doc", "history", "count", "1")
    diff.run("EVAL", JSON_UPDATE, "2", "doc", "history", "count", "2")
    diff.run("EVAL", JSON_UPDATE, "2", "doc", "history", "name", "x/y")
    diff.run("GET", "doc")
    diff.run("LRANGE", "history", "0", "-1")
    diff.run("SET", "bad", "{not json")
    diff.run("EVAL", JSON_UPDATE, "2", "bad", "history", "count", "1")


def test_compare_and_delete(diff: Differential) -> None:
    diff.run("SET", "k", "mine")
    diff.run("EVAL", COMPARE_AND_DELETE, "1", "k", "theirs")
    diff.run("EVAL", COMPARE_AND_DELETE, "1", "k", "mine")
    diff.run("EVAL", COMPARE_AND_DELETE, "1", "k", "mine")
    diff.run("LPUSH", "l", "x")
    diff.run("EVAL", COMPARE_AND_DELETE, "1", "l", "x")


def test_token_bucket_rate_limiter(diff: Differential) -> None:
    for now, wanted in [(100, 3), (100, 3), (100, 5), (101, 2), (101, 9), (110, 10), (110, 1)]:
        diff.run("EVAL", TOKEN_BUCKET, "1", "bucket", "10", "2", str(now), str(wanted))
    diff.run("HGETALL", "bucket", unordered="pairs")
    ttl = diff.run("TTL", "bucket")
    assert 0 < ttl <= 10
    diff.run("SET", "bucket2", "x")
    diff.run("EVAL", TOKEN_BUCKET, "1", "bucket2", "10", "2", "1", "1")


# --- what Redis cannot be compared on -------------------------------------------------------


def test_math_random_is_reseeded_before_every_script(diff: Differential) -> None:
    """Redis 7 does not reseed (its draws depend on earlier scripts); replikv
    reseeds as Redis 5 did, so every replica draws the same numbers."""
    body = "return {math.random(100), math.random(100), math.random(5, 9), tostring(math.random())}"
    first = diff.run_replikv("EVAL", body, "0")
    assert diff.run_replikv("EVAL", body, "0") == first
    assert first == [18, 75, 5, b"0.87046522734243"]
    seeded = diff.run_replikv("EVAL", "math.randomseed(7); return math.random(1000)", "0")
    assert seeded == diff.redis.call("EVAL", "math.randomseed(7); return math.random(1000)", "0")
    # a random draw decides a write: every replica writes the same
    diff.run_replikv("EVAL", "redis.call('set', 'r', math.random(1000000)); return 1", "0")


@pytest.mark.parametrize(
    ("name", "flags"), [("SRANDMEMBER", "readonly"), ("XRANDREAD", "readonly random")]
)
def test_random_reads_are_refused_in_scripts(
    diff: Differential, monkeypatch: pytest.MonkeyPatch, name: str, flags: str
) -> None:
    """A read with a random reply (by name, or Redis's ``random`` flag) would
    draw differently on each replica that re-runs the script."""
    if name.encode() not in COMMANDS:  # the sets family may not have it on this branch
        flag_set = frozenset(flags.split())
        op = lambda *a: b"drawn"  # noqa: E731
        spec = CommandSpec(name.lower(), -2, flag_set, 1, 1, 1,
                           apply=op if "write" in flag_set else None,
                           read=None if "write" in flag_set else op)
        monkeypatch.setitem(COMMANDS, name.encode(), spec)
    diff.run("SADD", "s", "a", "b")
    reply = diff.run_replikv("EVAL", f"return redis.call('{name}', 's')", "0")
    assert isinstance(reply, RespError)
    assert f"ERR '{name.lower()}' has a random outcome and is not allowed from scripts" in (
        reply.message
    )
    reply = diff.run_replikv("EVAL", f"return redis.pcall('{name}', 's')", "0")
    assert reply.message.startswith(f"ERR '{name.lower()}' has a random outcome")
    diff.run("SCARD", "s")


def test_random_writes_go_through_their_rewrite(
    diff: Differential, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write flagged random is allowed: the table's rule is that its rewrite
    makes it deterministic (SPOP logs the seed it draws with)."""
    def pick(sm: Any, argv: list[bytes], ctx: Any) -> Any:
        sm.delete(argv[1])
        return argv[-1]

    def rewrite(sm: Any, argv: list[bytes], now_ms: int, exact: bool) -> list[bytes]:
        return [b"XRANDPOP", argv[1], b"%d" % now_ms]  # the "draw": the write's time

    spec = CommandSpec("xrandpop", -2, frozenset({"write", "random"}), 1, 1, 1, apply=pick,
                       rewrite=rewrite)
    monkeypatch.setitem(COMMANDS, b"XRANDPOP", spec)
    diff.run("SET", "k", "v")
    drawn = diff.run_replikv("EVAL", "return redis.call('xrandpop', 'k')", "0")
    assert isinstance(drawn, bytes) and drawn.isdigit()
    assert diff.run_replikv("EXISTS", "k") == 0


def test_time_is_the_time_of_the_write(diff: Differential) -> None:
    """TIME inside a script answers the write's time, the same on every
    replica, so a script may write what it read from it (raft runs it at
    apply on each replica)."""
    body = "local t = redis.call('time'); redis.call('set', 'now', t[1] .. '.' .. t[2]); return t"
    seconds, micros = diff.run_replikv("EVAL", body, "0")
    redis_seconds = int(diff.redis.call("TIME")[0])
    assert abs(int(seconds) - redis_seconds) <= 2 and int(micros) % 1000 == 0
    ctx = ApplyContext(1_700_000_000_123)
    assert diff.leader.execute([b"EVAL", body.encode(), b"0"], ctx) == (
        [b"1700000000", b"123000"], [[b"set", b"now", b"1700000000.123000"]])


def test_time_in_scripts_is_the_entry_time(diff: Differential) -> None:
    """SET .. EX inside a script is rewritten (leader) or applied at the
    entry's time (raft): the replicas agree on the absolute expiry."""
    diff.run("EVAL", "return redis.call('set', KEYS[1], 'v', 'EX', 100)", "1", "k")
    diff.run("EVAL", "return redis.call('expire', KEYS[1], 50)", "1", "k")
    diff.run("EVAL", "return redis.call('pexpire', KEYS[1], 0)", "1", "k")
    diff.run("EXISTS", "k")
    ctx = ApplyContext(1_000)
    _, cmds = diff.leader.execute(
        [b"EVAL", b"return redis.call('set', 'x', 'v', 'EX', 10)", b"0"], ctx
    )
    assert cmds == [[b"SET", b"x", b"v", b"PXAT", b"11000"]]
