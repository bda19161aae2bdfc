"""Leader-follower (master-slave) mode: one leader orders every write in its
log and ships it to the followers (core/shipping, runtime/leader_follower.py).

Write levels are ack levels: ``async`` (the leader's own log), ``semi-sync
K`` (K followers have it durable), ``sync`` (every follower). Reads are
served by the node that receives them, at ``eventual``, ``prefix``,
``bounded <ms>`` or ``session``; linearizable reads need consensus.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from replikv.config import AckLevel, ConfigError
from replikv.core.replies import RespError
from replikv.modes import register
from replikv.modes.spec import Claim, ModeSpec, set_remove_claims

NAME = "leader-follower"


def _runner() -> type:
    from replikv.runtime.leader_follower import LeaderFollowerRunner
    return LeaderFollowerRunner


def _sim() -> Callable[..., Any]:
    from replikv.sim.shipping_driver import ShippingDriver
    return ShippingDriver


def parse_write(args: list[str], followers: int) -> AckLevel:
    try:
        level = AckLevel.parse(" ".join(args))
    except ConfigError as e:
        raise RespError(f"ERR {e}") from None
    if level.kind == "semi-sync" and level.replicas > followers:
        raise RespError(f"ERR semi-sync {level.replicas} needs more followers than the {followers} "
                        "this cluster has")
    return level


def claims(setting: str, workload: str) -> list[Claim]:
    loss = "lost writes" if workload != "counter" else "counter"
    out = [Claim("convergence", True, "after heal every replica holds the same state")]
    if workload == "set-rm":
        return set_remove_claims(
            "after heal every replica holds the same state", durable=setting == "sync",
            loses=f"{setting} acks: a failover may discard an acknowledged SADD, or an acknowledged SREM "
                  "whose SADD the new leader has")
    if workload == "list-append":
        return out + [Claim("serializable", False, "not claimed: a failover with async or semi-sync acks "
                                                   "discards writes transactions had already read (an "
                                                   "incompatible order); a follower's read-only MULTI/EXEC "
                                                   "sees a past prefix, not the present (measured)")]
    if workload == "queue":
        durable = setting == "sync"
        why = ("sync acks: an acknowledged XADD or XACK survives a failover" if durable else
               f"{setting} acks: a failover may discard an acknowledged XADD or XACK (counted)")
        return out + [Claim("lost writes", durable, why),
                      Claim("at-least-once", durable, "every acknowledged message is delivered at least once"
                            + ("" if durable else " unless its XADD was lost")),
                      Claim("acked once", durable, "no delivery after an acknowledged XACK"
                            + ("" if durable else " unless a failover discarded the XACK"))]
    if setting == "sync":
        out.append(Claim(loss, True, "sync acks: no acknowledged write is lost, even across a forced failover"))
    elif setting.startswith("semi-sync"):
        out.append(Claim(loss, False, "semi-sync acks: an acknowledged write may be lost when the leader "
                                      "fails over to a follower that had not acked it (counted)"))
    else:
        out.append(Claim(loss, False, "async acks: acknowledged writes may be lost on failover (counted)"))
    if workload == "register":
        out += [
            Claim("read-your-writes", setting == "sync",
                  "session reads: a client sees its own acknowledged writes" +
                  ("" if setting == "sync" else " unless a failover discards them")),
            Claim("monotonic reads", False, "not claimed across failover: a follower may show a write the "
                                            "new leader never had, then discard it"),
            Claim("stale reads", False, "followers serve session reads: other clients' writes may be missed "
                                        "(measured)"),
            Claim("linearizable", False, "not claimed: reads are served by followers, and a cut-off leader "
                                         "keeps serving until it learns of the failover"),
        ]
    return out


def _default_write(opts: Any) -> AckLevel:
    return AckLevel.parse(opts.ack)


SPEC = register(ModeSpec(
    name=NAME,
    summary="one leader ships its log to followers; async, semi-sync or sync acks; manual failover",
    runner=_runner,
    read_levels=("bounded", "session", "prefix", "eventual"),
    write_levels=("async", "semi-sync", "sync"),
    parse_write=parse_write,
    default_write=_default_write,
    default_read=lambda opts: opts.read_default,
    settings=("async", "semi-sync 1", "sync"),
    check_read_level="session",
    claims=claims,
    nemeses=frozenset({"kill", "pause", "partition", "clock", "fsync-lie", "failover"}),
    elects_leader=False,
    sim=_sim,
    check_options=lambda setting, nemeses: {"ack": setting,
                                            "fsync": "no" if "fsync-lie" in nemeses else "always"},
))
