"""Single mode: one node, no replication (runtime/single.py).

Every write is acknowledged once it is in the node's WAL (``--fsync`` says
when that reaches the disk); every read level is offered, since the one node
holds every acknowledged write. Added only through the mode contract: this
spec and its runner.
"""

from __future__ import annotations

from replikv.config import AckLevel
from replikv.core.replies import RespError
from replikv.modes import register
from replikv.modes.spec import LEADER_READ_LEVELS, Claim, ModeSpec, strong_claims

NAME = "single"
LOCAL = AckLevel("local")  # the only level: in this node's WAL (waits for no replica)


def _runner() -> type:
    from replikv.runtime.single import SingleRunner
    return SingleRunner


def parse_write(args: list[str], others: int) -> AckLevel:
    if args != ["local"]:
        raise RespError(f"ERR write level '{' '.join(args)}' is not offered in single mode: a write is "
                        "acknowledged once it is in this node's log (use local)")
    return LOCAL


def claims(setting: str, workload: str) -> list[Claim]:
    return strong_claims(workload, "one replica: always converged",
                         "no acknowledged write is lost across a kill (--fsync always)")


SPEC = register(ModeSpec(
    name=NAME,
    summary="one node, no replication: a standalone store",
    runner=_runner,
    read_levels=LEADER_READ_LEVELS,
    write_levels=("local",),
    parse_write=parse_write,
    default_write=lambda opts: LOCAL,
    default_read=lambda opts: "linearizable",
    settings=("local",),
    check_read_level="linearizable",
    claims=claims,
    nemeses=frozenset({"kill", "pause", "clock"}),
    elects_leader=False,
    max_nodes=1,
    check_options=lambda setting, nemeses: {"fsync": "always"},
))
