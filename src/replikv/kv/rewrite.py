"""The leader's deterministic rewrite of a client write (the ONE rewrite path).

A write must give the same state on every replica that applies it from the
log, so the node that accepts it from a client rewrites what depends on its
clock or its state before logging it:

- a relative TTL becomes absolute at ``now_ms``: ``SET k v EX 10`` ->
  ``SET k v PXAT t``, ``EXPIRE k 10`` -> ``PEXPIREAT k t``,
  ``SETEX``/``PSETEX`` -> ``SET k v PXAT t`` (each command's ``rewrite`` in
  the table, declared next to its operation in ``kv/types/``);
- ``exact=True`` (the commands are applied to THIS state right away:
  leader-follower): every key the command touches that is expired at
  ``now_ms`` gets a ``DEL`` logged before it, and an EXPIRE whose time is
  already due on a live key becomes ``DEL`` (as Redis replicates it);
- ``exact=False`` (raft: other entries may apply between the rewrite and
  this entry): nothing depends on the current state; the entry carries its
  time and ``apply`` decides expiry then, identically everywhere;
- a command deterministic as sent is returned as the very ``argv`` list
  (no copy), so the runtime can log the client's bytes (``cmds[-1] is argv``).

Errors (arity, syntax, an invalid TTL) are found here, before anything
changed, and nothing is logged for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from replikv.core.replies import RespError, wrong_arity
from replikv.kv.args import NEVER
from replikv.kv.commands import CommandSpec

if TYPE_CHECKING:
    from replikv.kv.state_machine import StateMachine

__all__ = ["prepare"]

Cmds = list[list[bytes]]
_DEL = b"DEL"


def prepare(
    sm: StateMachine, spec: CommandSpec, argv: list[bytes], now_ms: int, exact: bool
) -> tuple[RespError | None, Cmds | None]:
    """``(error, None)`` if ``argv`` (a write, ``spec`` its entry) is refused,
    else ``(None, cmds)``: the deterministic commands to log, ``argv``'s last."""
    arity = spec.arity
    argc = len(argv)
    if (argc != arity) if arity > 0 else (argc < -arity):
        return wrong_arity(spec.name), None
    rewrite = spec.rewrite
    if rewrite is None:
        cmd = argv
    else:
        try:
            cmd = rewrite(sm, argv, now_ms, exact)
        except RespError as err:
            return err, None
    if exact and sm.expires and spec.has_keys:
        expires = sm.expires
        pre = [[_DEL, k] for k in spec.keys(argv) if expires.get(k, NEVER) <= now_ms]
        if pre:
            pre.append(cmd)
            return None, pre
    return None, [cmd]
