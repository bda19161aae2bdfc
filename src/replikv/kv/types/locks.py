"""Lock commands: LOCK, RENEW, UNLOCK, LOCKINFO, the leader's LOCKEXPIRE, and FENCED.

The lock name is the commands' key (argv[1]), so it routes like a key in a
sharded cluster (its CRC16 slot, hash tags honoured), but the lock lives in
``sm.locks`` (``kv/locks.py``), not in the key space. Rules, as applied from
the log on every replica (docs/design.md, "Locks"):

- ``LOCK name ttl-ms [WAIT ms]``: the fencing token (the entry's log index,
  never below the last token + 1), or nil when the lock is held. WAIT is the
  runtime's (``runtime/locks.py`` parks the client and tries again); the
  leader logs ``LOCK name ttl-ms``.
- ``RENEW name token ttl-ms``: OK, or ``-NOTHOLDER`` when ``token`` does not
  hold the lock (it expired, was released, or never held it).
- ``UNLOCK name token``: 1 when ``token`` held the lock and released it, 0 otherwise.
- ``LOCKINFO name``: ``holder <token|nil> ttl-ms <left|nil> lease-ms <granted|nil>
  last-token <n>``: ``ttl-ms`` is the countdown of the serving replica
  (``LeaseClock``; on the leader, the countdown that expires it).
- ``LOCKEXPIRE name token lease-index``: proposed by the group's leader when a
  lease ran out on its clock; frees the lock iff that token holds it under that
  very grant or renewal. Refused from clients (``runtime/locks.py``).
- ``FENCED name token command [arg ...]``: runs the write ``command`` unless a
  token higher than ``token`` has been granted for lock ``name``, in which case
  nothing is applied and the reply is ``-FENCED ...``. The lock name and the
  command's keys are its keys, so in a sharded cluster they must be in one
  group (else CROSSSLOT: use a hash tag). Works inside MULTI/EXEC (each
  command of the block is checked at apply).

Every command needs the log index of its entry (``ctx.log_index``): a mode
that applies writes without one (leader-follower) refuses them; the
multi-leader and leaderless modes have no lock service (``kv/crdt_writes.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from replikv.core.replies import OK, RespError
from replikv.kv.args import parse_int
from replikv.kv.commands import command, lookup
from replikv.kv.locks import LOCK_EXPIRE, lock_wait_ms, parse_ttl

if TYPE_CHECKING:
    from replikv.kv.context import ApplyContext
    from replikv.kv.state_machine import StateMachine

__all__ = ["LOCK_COMMANDS"]

Reply = Any
# commands FENCED cannot wrap: the lock commands themselves
LOCK_COMMANDS = frozenset({b"LOCK", b"RENEW", b"UNLOCK", b"LOCKINFO", LOCK_EXPIRE, b"FENCED"})


def _raft_only(name: str, ctx: ApplyContext) -> None:
    if ctx.log_index <= 0:
        raise RespError(f"ERR {name} is offered in raft mode only: its fencing token is the Raft log index "
                        "of the entry that applies it")


def _token(arg: bytes) -> int:
    try:
        token = parse_int(arg)
    except RespError:
        raise RespError("ERR the fencing token is not an integer") from None
    if token < 0:
        raise RespError("ERR the fencing token is not an integer")
    return token


def _rewrite_lock(sm: StateMachine, argv: list[bytes], now_ms: int, exact: bool) -> list[bytes]:
    """The log form: ``LOCK name ttl-ms`` (the waiting is the runtime's)."""
    lock_wait_ms(argv)
    return argv if len(argv) == 3 else [b"LOCK", argv[1], argv[2]]


@command("lock", -3, "write noscript fast", rewrite=_rewrite_lock)
def lock(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    lock_wait_ms(argv)
    _raft_only("LOCK", ctx)
    return sm.locks.grant(argv[1], parse_ttl(argv[2]), ctx.log_index)


def _check_renew(sm: StateMachine, argv: list[bytes], now_ms: int, exact: bool) -> list[bytes]:
    _token(argv[2])
    parse_ttl(argv[3])
    return argv


def _check_token(sm: StateMachine, argv: list[bytes], now_ms: int, exact: bool) -> list[bytes]:
    for arg in argv[2:]:
        _token(arg)
    return argv


@command("renew", 4, "write noscript fast", rewrite=_check_renew)
def renew(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    token, ttl = _token(argv[2]), parse_ttl(argv[3])
    _raft_only("RENEW", ctx)
    if sm.locks.renew(argv[1], token, ttl, ctx.log_index):
        return OK
    raise RespError(_not_holder(sm, argv[1], token))


def _not_holder(sm: StateMachine, name: bytes, token: int) -> str:
    st = sm.locks.get(name)
    holder = "nobody" if st is None or st.holder is None else f"token {st.holder}"
    return (f"NOTHOLDER token {token} does not hold lock '{name.decode('utf-8', 'replace')}' (it expired, was "
            f"released or never held it; holder now: {holder})")


@command("unlock", 3, "write noscript fast", rewrite=_check_token)
def unlock(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    token = _token(argv[2])
    _raft_only("UNLOCK", ctx)
    return 1 if sm.locks.release(argv[1], token) else 0


@command("lockexpire", 4, "write noscript fast", rewrite=_check_token)
def lockexpire(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    token, lease_index = _token(argv[2]), _token(argv[3])
    _raft_only("LOCKEXPIRE", ctx)
    return 1 if sm.locks.expire(argv[1], token, lease_index) else 0


@command("lockinfo", 2, "readonly noscript fast")
def lockinfo(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    table = sm.locks
    st = table.get(argv[1])
    if st is None:
        return [b"holder", None, b"ttl-ms", None, b"lease-ms", None, b"last-token", 0]
    if st.holder is None:
        return [b"holder", None, b"ttl-ms", None, b"lease-ms", None, b"last-token", st.last_token]
    left = table.clock.remaining_ms(argv[1])
    if left is None or argv[1] in table.changed:  # granted or renewed since the clock looked: all of it
        left = st.ttl_ms
    return [b"holder", st.holder, b"ttl-ms", left, b"lease-ms", st.ttl_ms, b"last-token", st.last_token]


# --- FENCED name token command [arg ...] -------------------------------------------------------


def _fenced_keys(argv: list[bytes]) -> list[bytes]:
    """The lock name and the wrapped command's keys ([] when malformed)."""
    if len(argv) < 4:
        return []
    spec = lookup(argv[3])
    inner = argv[3:]
    if spec is None or not spec.arity_ok(len(inner)):
        return [argv[1]]
    return [argv[1], *spec.keys(inner)]


def _inner(argv: list[bytes]) -> tuple[Any, list[bytes]]:
    """The wrapped write's spec and argv, checked."""
    inner = argv[3:]
    spec = lookup(inner[0])
    if spec is None:
        raise RespError(f"ERR FENCED wraps a write command: unknown command '{inner[0].decode('utf-8', 'replace')}'")
    if spec.apply is None or spec.execute is not None or spec.name.upper().encode() in LOCK_COMMANDS:
        raise RespError(f"ERR FENCED wraps a data write command (SET, INCR, HSET, ...), not '{spec.name}'")
    if not spec.arity_ok(len(inner)):
        raise RespError(f"ERR wrong number of arguments for '{spec.name}' command")
    return spec, inner


def _rewrite_fenced(sm: StateMachine, argv: list[bytes], now_ms: int, exact: bool) -> list[bytes]:
    """The wrapped command's own deterministic form, still fenced."""
    _token(argv[2])
    spec, inner = _inner(argv)
    if spec.rewrite is None:
        return argv
    return [argv[0], argv[1], argv[2], *spec.rewrite(sm, inner, now_ms, exact)]


@command("fenced", -4, "write noscript", keys=(0, 0, 0), find_keys=_fenced_keys, rewrite=_rewrite_fenced)
def fenced(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    token = _token(argv[2])
    spec, inner = _inner(argv)
    _raft_only("FENCED", ctx)
    newer = sm.locks.fenced(argv[1], token)
    if newer is not None:
        raise RespError(f"FENCED token {token} of lock '{argv[1].decode('utf-8', 'replace')}' is stale: token "
                        f"{newer} has been granted since: it was not applied")
    return spec.apply(sm, inner, ctx)
