"""Raft mode: an elected leader, majority commit, automatic failover,
linearizable reads (core/raft, runtime/raft_runner.py).

The one write level is ``majority``; every read level is offered
(``linearizable`` through ReadIndex, ``lease`` through leader leases).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from replikv.core.replies import RespError
from replikv.modes import register
from replikv.modes.spec import LEADER_READ_LEVELS, Claim, ModeSpec, strong_claims

NAME = "raft"
MAJORITY = "majority"


def _runner() -> Callable[..., Any]:
    from replikv.runtime.raft_runner import RaftRunner

    def make(config: Any, node_id: str) -> Any:
        if config.options.shards:  # hash slots over many Raft groups (runtime/sharded_raft.py)
            from replikv.runtime.sharded_raft import ShardedRaftRunner
            return ShardedRaftRunner(config, node_id)
        return RaftRunner(config, node_id)
    return make


def _sim() -> Callable[..., Any]:
    from replikv.sim.raft_driver import RaftDriver
    return RaftDriver


SHARDED = "shards 3"  # a check setting: the same claims over three Raft groups (runtime/sharded_raft.py)


def check_options(setting: str, nemeses: set[str]) -> dict[str, Any]:
    return {"shards": int(setting.split()[1])} if setting.startswith("shards") else {}


def parse_write(args: list[str], followers: int) -> str:
    if args != [MAJORITY]:
        raise RespError(f"ERR write level '{' '.join(args)}' is not offered in raft mode: every write is "
                        "committed by a majority of voters before it is acknowledged (use majority)")
    return MAJORITY


def claims(setting: str, workload: str) -> list[Claim]:
    if workload in ("lock", "lock-unfenced"):  # the lock service (docs/design.md "Locks"; check/locks.py)
        fenced = workload == "lock"
        return [Claim("convergence", True, "after heal every replica holds the same state"),
                Claim("lock exclusion", True, "at most one holder at a time by the service's view: a grant "
                                              "follows the previous holder's UNLOCK or a full ttl after its LOCK"),
                Claim("stale writes", fenced,
                      "no fenced write of a holder paused past its lease is applied (FENCED)" if fenced else
                      "unfenced writes of a holder paused past its lease land after the next holder's (measured)")]
    return strong_claims(workload, "after heal every replica holds the same state",
                         "no acknowledged write is lost under any nemesis (majority commit)")


SPEC = register(ModeSpec(
    name=NAME,
    summary="Raft consensus: an elected leader, majority commit, linearizable reads, automatic failover",
    runner=_runner,
    read_levels=LEADER_READ_LEVELS,
    write_levels=(MAJORITY,),
    parse_write=parse_write,
    default_write=lambda opts: MAJORITY,
    default_read=lambda opts: "linearizable",
    settings=(MAJORITY, SHARDED),
    check_read_level="linearizable",
    claims=claims,
    nemeses=frozenset({"kill", "pause", "partition", "clock", "fsync-lie"}),
    elects_leader=True,
    membership=True,
    admin=("EXEC", "CLUSTER", "RESHARD", "IMPORT", "ACTIVATE", "TXN", "FAILPOINT", "GROUP", "PLACEMENT"),
    sim=_sim,
    check_options=check_options,
    up_note=lambda opts: (
        f"Keys are spread over {opts.shards} Raft groups by hash slot, each on "
        f"{opts.replicas} nodes; any node serves any key (forwarding to the group's leader), and "
        "cluster-aware clients (redis-cli -c, redis-py RedisCluster) route by slot themselves."
        if opts.shards else None),
))
