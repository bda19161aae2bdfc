"""What the multi-leader replica asks its driver to do, in the order returned.

Durability rule: ``Persist`` is carried out (written and synced) before any
``Send``/``SendState`` returned with or after it reaches the network: an op
is never sent before it is durable, so a restarted node never reuses a seq
another node has seen, and a vv another node learnt from us never goes back.
``Deliver`` applies ops to the store in the order given (causal order).

An ``Ack(to)`` asks for a Sync to ``to`` built when it leaves (``Replica.sync_for``), not
when it was asked for: a driver that sends at most one Sync per peer per batch (the newest)
builds only that one, and a Sync built later only says more (its vv and matrix only grow;
everything the replica's vv covers is durable by the time a send leaves).

Effects are slotted dataclasses, not frozen ones (a frozen one costs about twice as much
to build, and the replica builds four per local write), and are never changed once
built: the driver only reads them.
"""

from __future__ import annotations

from dataclasses import dataclass

from replikv.core.multileader.messages import MlMsg, Op

__all__ = ["Ack", "Deliver", "Effect", "Persist", "Send", "SendState"]


@dataclass(slots=True, kw_only=True)
class Persist:
    """Append these ops (any origin, in delivery order) to the WAL."""

    ops: tuple[Op, ...]


@dataclass(slots=True, kw_only=True)
class Deliver:
    """Apply these ops to the store, in order (each one's deps are covered)."""

    ops: tuple[Op, ...]


@dataclass(slots=True, kw_only=True)
class Send:
    to: str
    msg: MlMsg


@dataclass(slots=True, kw_only=True)
class SendState:
    """Send ``to`` a full-state transfer: ``State(sender, replica.vv, store snapshot)``.
    The store must hold exactly the ops ``replica.vv`` covers, all durable."""

    to: str


@dataclass(slots=True, kw_only=True)
class Ack:
    """Send ``to`` a Sync (``Replica.sync_for(to)``), built when it leaves: an ack of the ops
    just received from it (rule 3)."""

    to: str


Effect = Persist | Deliver | Send | SendState | Ack
