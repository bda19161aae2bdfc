"""ACL rules (runtime/acl.py) against Redis 7's grammar and errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from replikv.core.replies import RespError
from replikv.kv.commands import lookup
from replikv.runtime.acl import AccessControl, User


def user(*rules: str) -> User:
    u = User("u")
    u._compile()
    for r in rules:
        u.apply(r)
    return u


def denial(u: User, *argv: bytes) -> str | None:
    spec = lookup(argv[0])
    assert spec is not None
    err = u.denial(spec, list(argv))
    return None if err is None else err.message


def test_a_read_only_user_reads_and_cannot_write() -> None:
    ro = user("on", ">pw", "~*", "+@read")
    assert denial(ro, b"GET", b"k") is None
    assert denial(ro, b"MGET", b"a", b"b") is None
    assert denial(ro, b"SET", b"k", b"v") == "NOPERM User u has no permissions to run the 'set' command"
    assert denial(ro, b"FLUSHALL") is not None
    assert denial(ro, b"AUTH", b"u", b"pw") is None  # always allowed
    assert denial(ro, b"ACL", b"WHOAMI") is None
    assert denial(ro, b"ACL", b"SETUSER", b"x") is not None


def test_rules_apply_in_order_later_ones_win() -> None:
    u = user("on", "nopass", "allkeys", "+@all", "-@dangerous", "+info")
    assert denial(u, b"SET", b"k", b"v") is None
    assert denial(u, b"KEYS", b"*") is not None
    assert denial(u, b"CONFIG", b"GET", b"x") is not None
    assert denial(u, b"FAILOVER", b"TO", b"n2") is not None
    assert denial(u, b"REPLIKV", b"DIGEST") is not None
    assert denial(u, b"INFO") is None  # re-allowed after -@dangerous
    assert not u.unrestricted
    assert user("on", "nopass", "~*", "+@all").unrestricted


def test_key_patterns_check_every_key_a_command_names() -> None:
    u = user("on", "nopass", "~app:*", "~cache:?", "+@all")
    assert denial(u, b"SET", b"app:1", b"v") is None
    assert denial(u, b"GET", b"cache:x") is None
    assert denial(u, b"GET", b"other") == "NOPERM No permissions to access a key"
    assert denial(u, b"MSET", b"app:1", b"v", b"other", b"v") == "NOPERM No permissions to access a key"
    assert denial(u, b"DEL", b"app:1", b"app:2") is None


def test_passwords_are_kept_as_sha256_only() -> None:
    u = user("on", ">secret", "#" + hashlib.sha256(b"other").hexdigest())
    assert u.check_password(b"secret") and u.check_password(b"other")
    assert not u.check_password(b"wrong")
    assert "secret" not in u.describe()
    u.apply("<secret")
    assert not u.check_password(b"secret")
    u.apply("off")
    assert not u.check_password(b"other")  # a disabled user cannot authenticate


@pytest.mark.parametrize("rule, why", [("+nosuchcommand", "Unknown command"), ("+@nosuch", "Unknown command"),
                                       ("#abc", "64 characters"), ("bogus", "Syntax error")])
def test_bad_rules_are_refused_with_redis_wording(rule: str, why: str) -> None:
    with pytest.raises(RespError, match=why):
        user(rule)


def test_setuser_is_all_or_nothing_and_default_follows_requirepass(tmp_path: Path) -> None:
    acl = AccessControl(requirepass="pw", aclfile=None)
    assert acl.authenticate(b"default", b"pw") is acl.default
    assert acl.authenticate(b"default", b"nope") is None
    acl.set_user("ro", ["on", ">x", "~*", "+@read"])
    with pytest.raises(RespError):
        acl.set_user("ro", ["off", "+nosuch"])
    assert acl.users["ro"].enabled  # unchanged by the refused SETUSER
    with pytest.raises(RespError, match="cannot be removed"):
        acl.delete(["default"])
    assert AccessControl(requirepass=None, aclfile=None).default.nopass


def test_save_and_load_round_trip_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "users.acl"
    acl = AccessControl(requirepass=None, aclfile=str(path))
    acl.set_user("ro", ["on", ">x", "~app:*", "+@read", "-keys"])
    acl.save()
    assert path.stat().st_mode & 0o777 == 0o600
    assert "x" not in path.read_text().split()  # only the hash
    again = AccessControl(requirepass=None, aclfile=str(path))
    assert again.users["ro"].describe() == acl.users["ro"].describe()
    assert again.authenticate(b"ro", b"x") is not None
    path.write_text("user bad on +nosuch\n")
    with pytest.raises(RespError, match="users.acl:1"):
        again.load()
    assert "ro" in again.users  # a bad file changes nothing
