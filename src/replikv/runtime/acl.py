"""Users and what they may do: Redis's ACLs for what replikv offers.

Rules (Redis 7's ``ACL SETUSER`` grammar, the subset replikv implements):

- ``on`` / ``off``: an ``off`` user cannot authenticate.
- ``>password`` adds a password, ``<password`` removes one, ``#<sha256>``
  adds one by its hash, ``nopass`` lets any password in, ``resetpass``
  forgets every password and ``nopass``. Passwords are kept only as SHA-256
  hashes (in memory and in the ACL file), as Redis does.
- ``~pattern`` allows the keys matching a glob (kv/glob.py), ``allkeys`` is
  ``~*``, ``resetkeys`` forgets every pattern. A command runs only if every
  key it names (kv/commands.py key positions) matches one pattern.
- ``+command`` / ``-command`` allow or deny one command, ``+@category`` /
  ``-@category`` a category, ``allcommands`` is ``+@all``, ``nocommands``
  is ``-@all``. Rules apply in order, later ones win, as in Redis.
- ``reset``: off, no passwords, no keys, no commands.

Categories: ``@read``, ``@write``, ``@fast``, ``@slow``, ``@connection``,
``@admin`` (kv/commands.py derives them from each command's flags),
``@dangerous`` (admin commands and those that touch the whole keyspace or
the node: FLUSHALL, FLUSHDB, KEYS, CONFIG, FAILOVER, REPLIKV, ACL, INFO, CLIENT,
CLUSTER), ``@keyspace`` and ``@all``. replikv's own commands are in
``@admin`` (REPLIKV, FAILOVER) or ``@connection`` (CONSISTENCY, SESSION).
Every user may run ``AUTH``, ``HELLO``, ``QUIT``, ``ACL WHOAMI`` and
``ACL CAT`` (Redis lets them through too).

The ``default`` user is the one a connection starts as: ``on nopass ~*
+@all`` without ``--requirepass``, ``on >requirepass ~* +@all`` with it,
unless the ACL file says otherwise.

The ACL file (``aclfile``, Redis's format: one ``user <name> <rules...>``
line per user) is read at start and by ``ACL LOAD``, written by ``ACL
SAVE`` (atomically, 0600). ``ACL SETUSER`` changes only the node it is sent
to until ``ACL SAVE``; the other nodes read the saved file at their next
start or ``ACL LOAD`` (Redis Cluster asks the same of its operators).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from pathlib import Path

from replikv.core.replies import RespError
from replikv.kv.commands import COMMANDS, CommandSpec, command_categories
from replikv.kv.glob import compile_glob
from replikv.storage.files import atomic_write_file

DANGEROUS = frozenset({"flushall", "flushdb", "keys", "config", "failover", "replikv", "acl", "info",
                       "client", "cluster"})
KEYSPACE = frozenset({"del", "unlink", "exists", "type", "expire", "pexpire", "expireat", "pexpireat",
                      "persist", "ttl", "pttl", "expiretime", "pexpiretime", "keys", "scan", "dbsize",
                      "flushall", "flushdb", "rename", "renamenx", "copy", "touch", "randomkey",
                      "object"})
ALWAYS_ALLOWED = frozenset({"auth", "hello", "quit"})


def categories(spec: CommandSpec) -> set[str]:
    cats = command_categories(spec) | {"@all"}
    if spec.name in DANGEROUS:
        cats |= {"@dangerous", "@admin"} if spec.name != "info" and spec.name != "client" else {"@dangerous"}
    if spec.name in KEYSPACE:
        cats.add("@keyspace")
    return cats


def all_categories() -> list[str]:
    return sorted({c[1:] for spec in COMMANDS.values() for c in categories(spec)})


def _hash(password: bytes) -> str:
    return hashlib.sha256(password).hexdigest()


@dataclass
class User:
    name: str
    enabled: bool = False
    nopass: bool = False
    passwords: list[str] = field(default_factory=list)  # SHA-256 hex
    key_patterns: list[bytes] = field(default_factory=list)
    command_rules: list[str] = field(default_factory=list)  # as given, in order: +@read, -set, ...
    allowed: frozenset[str] = frozenset()  # command names (lowercase) the rules allow
    unrestricted: bool = False  # +@all and ~*: no per-command check needed (the fast path)
    _key_matchers: list[object] = field(default_factory=list, repr=False)

    def apply(self, rule: str) -> None:
        """One SETUSER rule; ``RespError`` (Redis's wording) for a bad one."""
        low = rule.lower()
        if low == "on":
            self.enabled = True
        elif low == "off":
            self.enabled = False
        elif low == "nopass":
            self.nopass, self.passwords = True, []
        elif low == "resetpass":
            self.nopass, self.passwords = False, []
        elif rule.startswith(">"):
            digest = _hash(rule[1:].encode())
            if digest not in self.passwords:
                self.passwords.append(digest)
            self.nopass = False
        elif rule.startswith("<"):
            digest = _hash(rule[1:].encode())
            if digest not in self.passwords:
                raise RespError(f"ERR Error in ACL SETUSER modifier '{rule[:1]}...': no such password")
            self.passwords.remove(digest)
        elif rule.startswith("#"):
            digest = rule[1:].lower()
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise RespError("ERR Error in ACL SETUSER modifier '#...': The password hash must be exactly "
                                "64 characters and contain only lowercase hexadecimal characters")
            if digest not in self.passwords:
                self.passwords.append(digest)
            self.nopass = False
        elif low in ("allkeys", "~*"):
            self.key_patterns = [b"*"]
        elif low == "resetkeys":
            self.key_patterns = []
        elif rule.startswith("~"):
            if self.key_patterns != [b"*"]:
                self.key_patterns.append(rule[1:].encode())
        elif low in ("allcommands", "+@all"):
            self.command_rules = ["+@all"]
        elif low in ("nocommands", "-@all"):
            self.command_rules = ["-@all"]
        elif rule[:1] in "+-" and len(rule) > 1:
            target = low[1:]
            if target.startswith("@"):
                if target[1:] not in all_categories():
                    raise RespError(f"ERR Error in ACL SETUSER modifier '{rule}': Unknown command or category name in ACL")
            elif target.split("|")[0].upper().encode() not in COMMANDS:
                raise RespError(f"ERR Error in ACL SETUSER modifier '{rule}': Unknown command or category name in ACL")
            self.command_rules.append(rule[0] + target)
        elif low == "reset":
            self.enabled, self.nopass, self.passwords = False, False, []
            self.key_patterns, self.command_rules = [], []
        else:
            raise RespError(f"ERR Error in ACL SETUSER modifier '{rule}': Syntax error")
        self._compile()

    def _compile(self) -> None:
        allowed: set[str] = set()
        for rule in self.command_rules:
            sign, target = rule[0], rule[1:]
            if target.startswith("@"):
                names = {s.name for s in COMMANDS.values() if target in categories(s)}
            else:
                names = {target.split("|")[0]}
            allowed = allowed | names if sign == "+" else allowed - names
        self.allowed = frozenset(allowed)
        everything = {s.name for s in COMMANDS.values()}
        self.unrestricted = self.allowed >= everything and self.key_patterns == [b"*"]
        self._key_matchers = [compile_glob(p) for p in self.key_patterns]

    def check_password(self, password: bytes) -> bool:
        if not self.enabled:
            return False
        if self.nopass:
            return True
        digest = _hash(password)
        return any(hmac.compare_digest(digest, p) for p in self.passwords)

    def allows_everywhere(self, spec: CommandSpec) -> bool:
        """Whether ``denial`` is None for every ``argv`` of ``spec`` (the command allowed, on
        any key): one check for a pipelined run of it (runtime/base.py ``_execute_run``)."""
        return self.unrestricted or (
            (spec.name in ALWAYS_ALLOWED or spec.name in self.allowed) and self.key_patterns == [b"*"])

    def denial(self, spec: CommandSpec, argv: list[bytes]) -> RespError | None:
        """Why this user may not run ``argv`` (Redis's NOPERM errors), or None."""
        name = spec.name
        if name in ALWAYS_ALLOWED or (name == "acl" and len(argv) > 1 and argv[1].lower() in (b"whoami", b"cat")):
            return None
        if name not in self.allowed:
            return RespError(f"NOPERM User {self.name} has no permissions to run the '{name}' command")
        if self.key_patterns != [b"*"]:
            for key in spec.keys(argv):
                if not any(m(key) for m in self._key_matchers):  # type: ignore[operator]
                    return RespError("NOPERM No permissions to access a key")
        return None

    def describe(self) -> str:
        """The user as one ACL LIST / ACL file line."""
        parts = ["user", self.name, "on" if self.enabled else "off"]
        parts += ["nopass"] if self.nopass else [f"#{p}" for p in self.passwords]
        if self.key_patterns == [b"*"]:
            parts.append("~*")
        else:
            parts += ["~" + p.decode("utf-8", "replace") for p in self.key_patterns]
        parts += self.command_rules or ["-@all"]
        return " ".join(parts)


class AccessControl:
    """The node's users; ``default`` always exists."""

    def __init__(self, requirepass: str | None, aclfile: str | None) -> None:
        self.requirepass = requirepass
        self.aclfile = Path(aclfile) if aclfile else None
        self.users: dict[str, User] = {}
        self.users["default"] = self._default_user()
        if self.aclfile is not None and self.aclfile.exists():
            self.load()

    def _default_user(self) -> User:
        user = User("default")
        for rule in ("on", f">{self.requirepass}" if self.requirepass else "nopass", "~*", "+@all"):
            user.apply(rule)
        return user

    @property
    def default(self) -> User:
        return self.users["default"]

    def authenticate(self, name: bytes, password: bytes) -> User | None:
        user = self.users.get(name.decode("utf-8", "replace"))
        return user if user is not None and user.check_password(password) else None

    def set_user(self, name: str, rules: list[str]) -> None:
        """ACL SETUSER: all rules or none (a bad rule leaves the user as it was)."""
        current = self.users.get(name)
        user = User(name) if current is None else User(
            name, current.enabled, current.nopass, list(current.passwords), list(current.key_patterns),
            list(current.command_rules))
        user._compile()
        for rule in rules:
            user.apply(rule)
        self.users[name] = user

    def delete(self, names: list[str]) -> int:
        if "default" in names:
            raise RespError("ERR The 'default' user cannot be removed")
        return sum(1 for n in names if self.users.pop(n, None) is not None)

    # -- the ACL file ------------------------------------------------------------
    def parse(self, text: str) -> dict[str, User]:
        users: dict[str, User] = {}
        for number, line in enumerate(text.splitlines(), 1):
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            if words[0] != "user" or len(words) < 2:
                raise RespError(f"ERR {self.aclfile}:{number}: should start with 'user <name>'")
            user = User(words[1])
            user._compile()
            try:
                for rule in words[2:]:
                    user.apply(rule)
            except RespError as e:
                raise RespError(f"ERR {self.aclfile}:{number}: {e.message.removeprefix('ERR ')}") from None
            users[user.name] = user
        return users

    def load(self) -> None:
        """ACL LOAD: replace every user with the file's (all or nothing)."""
        if self.aclfile is None:
            raise RespError("ERR This Redis instance is not configured to use an ACL file. You may want to "
                            "specify users via the ACL SETUSER command and then issue a CONFIG REWRITE "
                            "(assuming you have a Redis configuration file set) in order to store users "
                            "in the Redis configuration.")
        try:
            text = self.aclfile.read_text()
        except OSError as e:
            raise RespError(f"ERR cannot read the ACL file {self.aclfile}: {e.strerror or e}") from None
        users = self.parse(text)
        users.setdefault("default", self._default_user())
        self.users = users

    def save(self) -> None:
        if self.aclfile is None:
            self.load()  # raises the "not configured" error
            return
        text = "".join(u.describe() + "\n" for u in self.users.values())
        try:
            atomic_write_file(self.aclfile, text.encode())
        except OSError as e:
            raise RespError(f"ERR There was an error trying to save the ACLs: {e.strerror or e}") from None
