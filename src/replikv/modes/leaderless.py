"""Leaderless mode (Dynamo, Cassandra, Riak): no leader; any node
coordinates any request; each key lives on ``--replicas`` nodes of a
consistent-hash ring and the client chooses per request how many of them
must answer: core/dynamo, core/crdt (keyed.py), runtime/leaderless.py; the
rules are in docs/leaderless.md.

Levels (Cassandra's names): ``CONSISTENCY WRITE one|quorum|all|<n>|serial`` and
``CONSISTENCY READ one|quorum|all|<n>|serial``; the defaults come from
``--write-consistency`` / ``--read-consistency`` (quorum / quorum). SERIAL
runs SET and GET through Paxos (CAS and SET NX|XX always do); other
commands at SERIAL run at QUORUM, as Cassandra's serial consistency applies
to lightweight transactions only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from replikv.core.replies import RespError
from replikv.modes import register
from replikv.modes.spec import Claim, ModeSpec, set_remove_claims

NAME = "leaderless"
LEVEL_WORDS = ("one", "quorum", "all", "serial")


class ReplicasAck(NamedTuple):
    """A leaderless level: ``one``, ``quorum``, ``all`` or a number of replicas (as text)."""

    level: str

    def __str__(self) -> str:
        return self.level


def _runner() -> type:
    from replikv.runtime.leaderless import LeaderlessRunner
    return LeaderlessRunner


def _level(args: list[str], kind: str) -> str:
    if len(args) == 1:
        word = args[0].lower()
        if word in LEVEL_WORDS:
            return word
        if word.isdigit() and len(word) < 4 and int(word) > 0:
            return str(int(word))
    raise RespError(f"ERR {kind} level '{' '.join(args)}' is not offered in leaderless mode: use one, quorum, "
                    "all, serial (Paxos) or a number of replicas")


def _sim() -> Callable[..., Any]:
    from replikv.sim.leaderless_driver import LeaderlessDriver
    return LeaderlessDriver


def parse_write(args: list[str], others: int) -> ReplicasAck:
    return ReplicasAck(_level(args, "write"))


def parse_read(args: list[str]) -> str:
    return _level(args, "read")


def claims(setting: str, workload: str) -> list[Claim]:
    converge = "after heal every replica holds the same state (read repair, hints, CRDT merge)"
    if workload == "set-rm":  # OR-sets: the coordinator's replica applies a write first, so a client's
        return set_remove_claims(converge)  # remove on its node observed its own acknowledged add
    out = [Claim("convergence", True, converge)]
    if workload == "counter":
        return out + [Claim("counter", True, "no acknowledged increment is lost: counters are PN-counters "
                                             "merged per coordinator")]
    if workload == "set":
        return out + [Claim("lost writes", True, "every acknowledged SADD is in the final set (OR-set)")]
    if setting == "serial":
        return out + [
            Claim("linearizable", True, "SET, GET and CAS at SERIAL are single-decree Paxos rounds per key: "
                                        "linearizable under any minority of faults"),
            Claim("stale reads", True, "no read is stale (linearizable reads)"),
            Claim("lww overwrites", False, "counted: a SERIAL SET replaces what it read, in Paxos order"),
        ]
    strict = setting == "quorum"
    return out + [
        Claim("lww overwrites", False, "last-writer-wins: of two concurrent SETs one silently replaces the other "
                                       "(counted)"),
        Claim("stale reads", False,
              "R + W > N: every read's replicas overlap every acknowledged write's (the simulator checks it by "
              "causal context), but a SET made on a replica that had not seen an earlier one is concurrent "
              "with it and may lose to it by last-writer-wins clock (measured)" if strict else
              "reads at ONE may miss an acknowledged write until repair reaches their replica (measured)"),
        Claim("linearizable", False, "not claimed for plain reads and writes: concurrent writes are merged, "
                                     "not ordered (Paxos CAS is)"),
    ]


SPEC = register(ModeSpec(
    name=NAME,
    summary="no leader: a consistent-hash ring, per-request quorums, versions and siblings, read repair, hints",
    runner=_runner,
    read_levels=LEVEL_WORDS,
    write_levels=LEVEL_WORDS,
    parse_write=parse_write,
    parse_read=parse_read,
    default_write=lambda opts: ReplicasAck(opts.write_consistency),
    default_read=lambda opts: opts.read_consistency,
    settings=("quorum", "one", "serial"),
    check_read_level="",  # the nodes' default, which check_options sets to the setting
    claims=claims,
    nemeses=frozenset({"kill", "pause", "partition"}),
    elects_leader=False,
    single_writer=False,
    min_nodes=1,
    membership=True,  # replikv cluster add|remove: ring epochs and range streaming (core/dynamo/membership.py)
    admin=("CLUSTER",),
    sim=_sim,
    check_options=lambda setting, nemeses: {"fsync": "always", "read_consistency": setting,
                                            "write_consistency": setting},
    workloads=("register", "counter", "set", "set-rm"),
    up_note=lambda opts: (f"Every node coordinates (leaderless, {opts.replicas} replicas per key, conflicts "
                          f"{opts.conflicts}); writes at {opts.write_consistency} and reads at "
                          f"{opts.read_consistency} unless a connection says CONSISTENCY WRITE|READ "
                          "one|quorum|all|<n>."),
))
