"""The command table, COMMAND replies and Redis glob matching."""

from __future__ import annotations

import inspect

import pytest

from replikv.core.replies import RespError
from replikv.kv import args, glob
from replikv.kv.commands import (
    COMMANDS,
    CommandSpec,
    command,
    command_reply,
    lookup,
    unknown_command,
)
from replikv.kv.types import FAMILIES

RUNTIME_COMMANDS = [
    "PING",
    "ECHO",
    "HELLO",
    "AUTH",
    "SELECT",
    "QUIT",
    "MULTI",
    "EXEC",
    "DISCARD",
    "WAIT",
    "INFO",
    "CLIENT",
    "COMMAND",
    "CONSISTENCY",
    "SESSION",
    "FAILOVER",
    "REPLIKV",
    "CONFIG",
    "DBSIZE",
    "FLUSHALL",
    "SCAN",
    "KEYS",
    "WRITE",
    "READ",
]

DATA_COMMANDS = {
    "write": "SET SETNX SETEX PSETEX GETSET CAS GETDEL MSET INCR DECR INCRBY DECRBY APPEND WRITE "
    "DEL UNLINK PERSIST FLUSHALL EXPIRE PEXPIRE EXPIREAT PEXPIREAT LPUSH RPUSH LPOP RPOP "
    "SADD SREM HSET HDEL HINCRBY "
    "LSET LINSERT LREM LTRIM LMOVE RPOPLPUSH LPUSHX RPUSHX LMPOP HSETNX HMSET HINCRBYFLOAT "
    "SMOVE SPOP SINTERSTORE SUNIONSTORE SDIFFSTORE "
    "INCRBYFLOAT GETEX SETRANGE MSETNX RENAME RENAMENX COPY FLUSHDB SETBIT BITOP "
    "ZADD ZINCRBY ZREM ZRANGESTORE ZPOPMIN ZPOPMAX ZMPOP ZUNIONSTORE ZINTERSTORE ZDIFFSTORE "
    "ZREMRANGEBYSCORE ZREMRANGEBYRANK ZREMRANGEBYLEX EVAL EVALSHA",
    "readonly": "GET READ MGET STRLEN EXISTS TYPE TTL PTTL EXPIRETIME PEXPIRETIME KEYS SCAN DBSIZE "
    "LRANGE LLEN SMEMBERS SISMEMBER SCARD HGET HMGET HEXISTS HGETALL HLEN "
    "LINDEX LPOS HKEYS HVALS HSTRLEN HRANDFIELD HSCAN "
    "SMISMEMBER SINTER SUNION SDIFF SINTERCARD SRANDMEMBER SSCAN "
    "GETRANGE SUBSTR RANDOMKEY TOUCH OBJECT GETBIT BITCOUNT BITPOS LCS "
    "ZSCORE ZMSCORE ZCARD ZCOUNT ZLEXCOUNT ZRANGE ZRANGEBYSCORE ZREVRANGEBYSCORE ZRANGEBYLEX "
    "ZREVRANGEBYLEX ZREVRANGE ZRANK ZREVRANK ZRANDMEMBER ZUNION ZINTER ZDIFF ZINTERCARD ZSCAN "
    "EVAL_RO EVALSHA_RO",
}


# --- table ---------------------------------------------------------------------


def test_every_required_command_is_in_the_table() -> None:
    for name in RUNTIME_COMMANDS:
        assert name.encode() in COMMANDS, name
    for flag, names in DATA_COMMANDS.items():
        for name in names.split():
            assert flag in COMMANDS[name.encode()].flags, name


def test_keys_are_uppercase_and_names_lowercase() -> None:
    for key, spec in COMMANDS.items():
        assert key == key.upper()
        assert spec.name == key.decode().lower()


def test_exactly_one_routing_class_per_command() -> None:
    for spec in COMMANDS.values():
        classes = [
            "write" in spec.flags,
            "readonly" in spec.flags,
            bool(spec.flags & {"connection", "admin"}),
        ]
        assert sum(classes) == 1, spec.name


def test_the_one_table_carries_each_data_commands_operation() -> None:
    """A write has an apply operation, a read a read operation, a runtime command neither."""
    for spec in COMMANDS.values():
        assert (spec.apply is not None) == spec.is_write, spec.name
        assert (spec.read is not None) == spec.is_readonly, spec.name
        if not spec.is_write:
            assert spec.rewrite is None and spec.logged_as is None, spec.name
            assert spec.execute is None, spec.name


def test_every_operation_is_reachable_from_the_table() -> None:
    """Each public function of a family module is some command's operation,
    rewrite or log form, and every operation in the table comes from a family."""
    in_table = set()
    for spec in COMMANDS.values():
        in_table.update(
            f for f in (spec.apply, spec.read, spec.rewrite, spec.logged_as, spec.execute) if f
        )
    family_names = {family.__name__ for family in FAMILIES}
    for family in FAMILIES:
        for name, fn in inspect.getmembers(family, inspect.isfunction):
            if fn.__module__ == family.__name__ and not name.startswith("_"):
                assert fn in in_table, f"{family.__name__}.{name} is not reachable from COMMANDS"
    for fn in in_table:
        assert fn.__module__ in family_names or fn is args.needs_clock, fn


def test_a_command_is_declared_once_with_one_route() -> None:
    with pytest.raises(ValueError, match="declared twice"):
        command("get", 2, "readonly fast")(lambda sm, argv, now: None)
    with pytest.raises(ValueError, match="exactly one"):
        command("nosuch", 2, "readonly write")(lambda sm, argv, ctx: None)
    assert b"NOSUCH" not in COMMANDS
    assert COMMANDS[b"GET"].read is not None


@pytest.mark.parametrize("name", [b"set", b"SET", b"SeT"])
def test_lookup_is_case_insensitive(name: bytes) -> None:
    spec = lookup(name)
    assert spec is not None and spec.name == "set"


def test_lookup_unknown() -> None:
    assert lookup(b"nosuchcommand") is None


def test_arity_convention() -> None:
    get = COMMANDS[b"GET"]
    assert get.arity == 2 and get.arity_ok(2) and not get.arity_ok(3) and not get.arity_ok(1)
    set_ = COMMANDS[b"SET"]
    assert set_.arity == -3 and set_.arity_ok(3) and set_.arity_ok(9) and not set_.arity_ok(2)


def test_aliases_of_the_seed_client() -> None:
    assert COMMANDS[b"WRITE"].arity == COMMANDS[b"SET"].arity
    assert COMMANDS[b"WRITE"].is_write
    assert COMMANDS[b"READ"].arity == COMMANDS[b"GET"].arity
    assert COMMANDS[b"READ"].is_readonly


def test_key_positions() -> None:
    assert COMMANDS[b"MSET"].keys([b"MSET", b"a", b"1", b"b", b"2"]) == [b"a", b"b"]
    assert COMMANDS[b"DEL"].keys([b"DEL", b"a", b"b", b"c"]) == [b"a", b"b", b"c"]
    assert COMMANDS[b"GET"].keys([b"GET", b"k"]) == [b"k"]
    assert COMMANDS[b"PING"].keys([b"PING"]) == []
    assert COMMANDS[b"HSET"].keys([b"HSET", b"h", b"f", b"v"]) == [b"h"]


def test_spec_is_frozen() -> None:
    spec = COMMANDS[b"GET"]
    assert isinstance(spec, CommandSpec)
    with pytest.raises(AttributeError):
        spec.arity = 3  # type: ignore[misc]


def test_unknown_command_text_matches_redis() -> None:
    assert unknown_command([b"foo", b"a", b"b"]) == RespError(
        "ERR unknown command 'foo', with args beginning with: 'a' 'b' "
    )
    assert unknown_command([b"foo"]) == RespError(
        "ERR unknown command 'foo', with args beginning with: "
    )


# --- COMMAND -------------------------------------------------------------------


def test_command_info_shape_matches_redis7() -> None:
    (info,) = command_reply([b"COMMAND", b"INFO", b"get"])
    name, arity, flags, first, last, step, cats, tips, key_specs, subs = info
    assert name == b"get" and arity == 2
    assert flags == {"readonly", "fast"}
    assert (first, last, step) == (1, 1, 1)
    assert "@read" in cats
    assert tips == set() and key_specs == [] and subs == []


def test_command_info_unknown_is_null() -> None:
    assert command_reply([b"COMMAND", b"INFO", b"get", b"nope"])[1] is None


def test_command_hides_internal_flags() -> None:
    (info,) = command_reply([b"COMMAND", b"INFO", b"ping"])
    assert "connection" not in info[2]


def test_command_count_and_all() -> None:
    count = command_reply([b"COMMAND", b"COUNT"])
    assert count == len(COMMANDS)
    everything = command_reply([b"COMMAND"])
    assert len(everything) == count
    assert {entry[0] for entry in everything} == {s.name.encode() for s in COMMANDS.values()}


def test_command_docs_is_a_map() -> None:
    docs = command_reply([b"COMMAND", b"DOCS", b"get", b"set"])
    assert docs == {b"get": {}, b"set": {}}
    assert len(command_reply([b"COMMAND", b"DOCS"])) == len(COMMANDS)


def test_command_list_and_getkeys() -> None:
    assert b"get" in command_reply([b"COMMAND", b"LIST"])
    assert command_reply([b"COMMAND", b"GETKEYS", b"MSET", b"a", b"1", b"b", b"2"]) == [b"a", b"b"]
    assert command_reply([b"COMMAND", b"GETKEYS", b"PING"]) == RespError(
        "ERR The command has no key arguments"
    )
    assert command_reply([b"COMMAND", b"GETKEYS", b"NOPE", b"x"]) == RespError(
        "ERR Invalid command specified"
    )


def test_command_errors_match_redis() -> None:
    assert command_reply([b"COMMAND", b"foo"]) == RespError(
        "ERR unknown subcommand 'foo'. Try COMMAND HELP."
    )
    assert command_reply([b"COMMAND", b"COUNT", b"x"]) == RespError(
        "ERR wrong number of arguments for 'command|count' command"
    )
    assert command_reply([b"COMMAND", b"GETKEYS"]) == RespError(
        "ERR wrong number of arguments for 'command|getkeys' command"
    )


def test_command_reply_accepts_args_without_the_name() -> None:
    assert command_reply([b"COUNT"]) == command_reply([b"COMMAND", b"COUNT"])
    assert command_reply([]) == command_reply([b"COMMAND"])
    assert command_reply([b"INFO", b"get"]) == command_reply([b"command", b"INFO", b"get"])


def test_command_help_is_simple_strings() -> None:
    lines = command_reply([b"COMMAND", b"HELP"])
    assert lines and all(isinstance(line, str) for line in lines)


# --- glob ----------------------------------------------------------------------

GLOB_CASES = [
    # pattern, subject, matches (checked against redis-server 7.0 KEYS)
    (b"*", b"anything", True),
    (b"*", b"", False),  # stringmatchlen never matches an empty subject...
    (b"", b"", True),  # ...except with the empty pattern
    (b"h?llo", b"hello", True),
    (b"h?llo", b"hllo", False),
    (b"h*llo", b"hllo", True),
    (b"h*llo", b"heeeello", True),
    (b"h[ae]llo", b"hello", True),
    (b"h[ae]llo", b"hillo", False),
    (b"h[^e]llo", b"hallo", True),
    (b"h[^e]llo", b"hello", False),
    (b"h[a-b]llo", b"hbllo", True),
    (b"h[b-a]llo", b"hallo", True),  # reversed range
    (b"h[a-b]llo", b"hcllo", False),
    (b"h\\*llo", b"h*llo", True),
    (b"h\\*llo", b"hello", False),
    (b"[\\]]", b"]", True),
    (b"[]", b"a", False),
    (b"[^]", b"a", True),
    (b"[abc", b"b", True),  # unterminated class runs to the end
    (b"[a-]", b"]", True),  # 'a-]' is the range ]..a, class unterminated
    (b"a\\", b"a\\", True),  # trailing backslash is literal
    (b"**a", b"ba", True),
    (b"a*", b"a", True),
    (b"a*?", b"a", False),
    (b"?", b"\n", True),  # ? covers any byte
    (b"*", b"\x00\xff", True),
    (b"user:*:name", b"user:42:name", True),
    (b"user:*:name", b"user:42:nam", False),
    (b".", b"a", False),  # regex metacharacters are literal
    (b"a+", b"aa", False),
    (b"(a)", b"(a)", True),
]


@pytest.mark.parametrize(("pattern", "subject", "expected"), GLOB_CASES)
def test_glob_matches_like_redis(pattern: bytes, subject: bytes, expected: bool) -> None:
    assert glob.match(pattern, subject) is expected


def test_glob_matches_all_is_only_star() -> None:
    assert glob.matches_all(b"*")
    assert not glob.matches_all(b"**")
    assert not glob.matches_all(b"a*")


def test_glob_compile_is_cached() -> None:
    assert glob.compile_glob(b"cache:*") is glob.compile_glob(b"cache:*")


def test_docs_commands_lists_every_command() -> None:
    """docs/commands.md names every command of the table (it cannot fall behind)."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "commands.md").read_text()
    words = set(re.findall(r"[A-Z][A-Z_]+", text))
    missing = sorted(name.decode() for name in COMMANDS if name.decode() not in words)
    assert not missing, f"docs/commands.md does not list {missing}"
