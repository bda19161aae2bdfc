"""Multi-leader mode: every node takes writes; replicas converge without
coordination (Redis Active-Active, CouchDB): core/crdt, core/multileader,
runtime/multi_leader.py; the conflict rules are in docs/multi-leader.md.

Write levels: ``local`` (the default: the write is in this node's WAL) or
``<n>`` (n other nodes hold it too; ``all``: every other node). Reads are
served by the node that receives them, at ``session`` (a client's own
writes, and a SESSION token's, are visible: the node waits, bounded, until
it has applied them) or ``eventual``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from replikv.core.replies import RespError
from replikv.modes import register
from replikv.modes.spec import Claim, ModeSpec, set_remove_claims

NAME = "multi-leader"


class NodesAck(NamedTuple):
    """A multi-leader write level: acknowledged once ``n`` other nodes hold the write (0: ``local``)."""

    n: int

    def __str__(self) -> str:
        return "local" if self.n == 0 else str(self.n)


LOCAL = NodesAck(0)


def _runner() -> type:
    from replikv.runtime.multi_leader import MultiLeaderRunner
    return MultiLeaderRunner


def _sim() -> Callable[..., Any]:
    from replikv.sim.multileader_driver import MultiLeaderDriver
    return MultiLeaderDriver


def parse_write(args: list[str], others: int) -> NodesAck:
    text = " ".join(args)
    if args == ["local"]:
        return LOCAL
    if args == ["all"]:
        return NodesAck(others)
    if len(args) == 1 and args[0].isdigit() and len(args[0]) < 6:
        n = int(args[0])
        if n > others:
            raise RespError(f"ERR write level {n} needs {n} other nodes; this cluster has {others}")
        return NodesAck(n)
    raise RespError(f"ERR write level '{text}' is not offered in multi-leader mode: use local (this node's "
                    "log) or <n> / all (that many other nodes hold the write)")


def claims(setting: str, workload: str) -> list[Claim]:
    converge = "after heal every replica holds the same state (CRDT merge)"
    if workload == "set-rm":  # OR-sets: a remove removes what its node had observed; add wins over the rest
        return set_remove_claims(converge)
    out = [Claim("convergence", True, converge)]
    if workload == "counter":
        return out + [Claim("counter", True, "no acknowledged increment is lost: counters are PN-counters "
                                             "merged per node, concurrent increments add up")]
    if workload == "set":
        return out + [Claim("lost writes", True, "every acknowledged SADD is in the final set (OR-set: add wins "
                                                 "over a concurrent remove; this workload never removes: set-rm "
                                                 "does)")]
    if workload == "register":
        return out + [
            Claim("read-your-writes", True, "session reads: a client reads its own writes on its node (or a "
                                            "later write, or a concurrent one of another node that won by "
                                            "last-writer-wins)"),
            Claim("lww overwrites", False, "last-writer-wins: of two concurrent SETs one silently replaces the "
                                           "other (counted)"),
            Claim("lost writes", False, "the final value is a write that completed before an acknowledged one "
                                        "began: last-writer-wins by a hybrid clock that is behind (counted)"),
            Claim("stale reads", False, "reads are local: another node's recent writes may not be there yet "
                                        "(measured)"),
            Claim("linearizable", False, "not claimed: every node takes writes without coordination"),
        ]
    return out


SPEC = register(ModeSpec(
    name=NAME,
    summary="every node takes writes; CRDT merge, version vectors, causal delivery (mesh, star or ring)",
    runner=_runner,
    read_levels=("session", "eventual"),
    write_levels=("local", "all"),
    parse_write=parse_write,
    default_write=lambda opts: LOCAL,
    default_read=lambda opts: "session",
    settings=("local",),
    check_read_level="session",
    claims=claims,
    nemeses=frozenset({"kill", "pause", "partition", "clock"}),
    elects_leader=False,
    single_writer=False,
    min_nodes=1,
    sim=_sim,
    check_options=lambda setting, nemeses: {"fsync": "always"},
    workloads=("register", "counter", "set", "set-rm"),
    up_note=lambda opts: (f"Every node takes writes (multi-leader, topology {opts.topology}, conflicts "
                          f"{opts.conflicts}); reads are served where they land."),
))
