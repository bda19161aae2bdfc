"""What a replication mode declares: its ``ModeSpec``.

A mode is three things (docs/design.md, "Adding a mode"): a pure core under
``core/<mode>/``, a runner under ``runtime/`` that carries out that core's
effects and implements the runtime contract (``runtime/mode.py``), and a
``ModeSpec`` registered in ``modes/__init__.py``. Everything else (the
command handlers, the CLI, ``replikv check``, the simulator's command line)
asks the spec and never compares a mode's name.

Rules:
- ``read_levels`` / ``write_levels`` are the names ``CONSISTENCY READ|WRITE``
  accepts in this mode; a level another mode offers is refused with an error
  that names the modes offering it (``level_refusal``), never downgraded.
- ``claims(setting, workload)`` is what ``replikv check`` must see hold
  (``required``) or may only measure; ``settings`` are the write settings
  ``--matrix`` sweeps.
- The runner and the simulator are imported lazily: reading the registry
  costs nothing, and no import cycle runs through it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from replikv.config import LEADER_READ_LEVELS, READ_LEVELS  # every read level any mode may offer

__all__ = ["LEADER_READ_LEVELS", "READ_LEVELS", "Claim", "ModeSpec", "set_remove_claims", "strong_claims"]


@dataclass(frozen=True, slots=True)
class Claim:
    """One guarantee ``replikv check`` holds a mode to (``required``), or
    an anomaly it only measures and reports."""

    checker: str
    required: bool
    text: str


def set_remove_claims(convergence: str, durable: bool = True, loses: str = "") -> list[Claim]:
    """The set-rm workload's claims (check/setrm.py): the observed-remove rule. ``durable``:
    nothing acknowledged is lost, so a lost add and a resurrection (an acknowledged remove
    lost, or not applied to what it observed) are bugs; otherwise both are measured, and
    ``loses`` says why the setting allows them. A phantom is never allowed."""
    why = f" (measured: {loses})" if not durable else ""
    return [Claim("convergence", True, convergence),
            Claim("lost adds", durable, "an acknowledged SADD is in the final set unless a remove that may have "
                                        "come after it was attempted" + why),
            Claim("resurrections", durable, "an element a client removed (acknowledged) after its own acknowledged "
                                            "SADD on the same connection stays removed unless added again" + why),
            Claim("phantoms", True, "nothing is in a final set that no SADD may have put there")]


def strong_claims(workload: str, convergence: str, no_loss: str) -> list[Claim]:
    """The claims of a mode whose reads are linearizable (raft, single): nothing
    acknowledged is lost, and the register workload sees no anomaly at all."""
    if workload == "queue":
        return [Claim("convergence", True, convergence),
                Claim("lost writes", True, "no acknowledged XADD is lost: " + no_loss),
                Claim("at-least-once", True, "every acknowledged message is delivered to the group at least "
                                             "once (a consumer's crash before XACK redelivers it)"),
                Claim("acked once", True, "a message whose XACK was acknowledged is never delivered again")]
    if workload == "set-rm":
        return set_remove_claims(convergence)
    if workload == "list-append":
        return [Claim("convergence", True, convergence),
                Claim("serializable", True, "MULTI/EXEC transactions are serializable: no G0, G1 or G2 "
                                            "cycle (check/elle.py)")]
    if workload == "bank":
        return [Claim("convergence", True, convergence),
                Claim("bank reads", True, "every read of all balances (one MULTI) sees the initial total, no "
                                          "negative balance: no transfer is applied in part (check/bank.py)"),
                Claim("bank final", True, "the final balances are the initial ones plus every acknowledged "
                                          "transfer and some of the unknown ones: " + no_loss)]
    out = [Claim("convergence", True, convergence),
           Claim("lost writes" if workload != "counter" else "counter", True, no_loss)]
    if workload == "register":
        out += [Claim("linearizable", True, "register ops are linearizable"),
                Claim("stale reads", True, "no read is stale (linearizable reads)"),
                Claim("read-your-writes", True, "a client sees its own writes"),
                Claim("monotonic reads", True, "a client never sees time go backwards")]
    return out


@dataclass(frozen=True)
class ModeSpec:
    name: str  # --mode NAME
    summary: str  # one line for --help and docs
    runner: Callable[[], type]  # lazy import of the runtime class (runtime/mode.py contract)
    read_levels: tuple[str, ...]  # CONSISTENCY READ names, from READ_LEVELS
    write_levels: tuple[str, ...]  # CONSISTENCY WRITE names (first word)
    # (words after CONSISTENCY WRITE, number of other nodes) -> the level object the runner uses
    parse_write: Callable[[list[str], int], Any]
    default_write: Callable[[Any], Any]  # NodeOptions -> the cluster's default write level
    default_read: Callable[[Any], str]  # NodeOptions -> the default read level of a connection
    settings: tuple[str, ...]  # the write settings `replikv check --matrix` sweeps
    check_read_level: str  # the read level `replikv check` clients use ("": the nodes' default)
    claims: Callable[[str, str], list[Claim]]  # (setting, workload) -> claims
    nemeses: frozenset[str]  # the `replikv check` faults that apply
    elects_leader: bool  # True: no configured initial leader; `up` waits for an election
    # words after CONSISTENCY READ -> the connection's read level, for a mode whose levels are not
    # all names in READ_LEVELS (leaderless: a number of replicas); None: read_levels names only
    parse_read: Callable[[list[str]], str] | None = None
    single_writer: bool = True  # one node (the leader) orders every write; False: every node takes writes
    membership: bool = False  # `replikv cluster add/remove` is supported
    admin: tuple[str, ...] = ()  # REPLIKV subcommands only this mode has (runner.admin)
    min_nodes: int = 1
    max_nodes: int | None = None
    sim: Callable[[], Callable[..., Any]] | None = None  # lazy: its simulator driver class (sim/engine.py)
    # (setting, active nemeses) -> node options `replikv check` starts the cluster with
    check_options: Callable[[str, set[str]], dict[str, Any]] = lambda setting, nemeses: {}
    # NodeOptions -> the line `replikv up` prints about where writes go, for a mode without one leader
    up_note: Callable[[Any], str | None] | None = None  # what `replikv up` says (None: the default)
    notes: tuple[str, ...] = field(default=())  # what docs/consistency.md says about its read level
    # the `replikv check` workloads the mode can run (None: all); one whose commands the mode refuses
    # (streams in multi-leader mode) is skipped by --matrix
    workloads: tuple[str, ...] | None = None
