"""What the multi-leader replica asks its driver to do, in the order returned.

Durability rule: ``Persist`` is carried out (written and synced) before any
``Send``/``SendState`` returned with or after it reaches the network: an op
is never sent before it is durable, so a restarted node never reuses a seq
another node has seen, and a vv another node learnt from us never goes back.
``Deliver`` applies ops to the store in the order given (causal order).

Effects are slotted dataclasses, not frozen ones (a frozen one costs about twice as much
to build, and the replica builds four per local write), and are never changed once
built: the driver only reads them.
"""

from __future__ import annotations

from dataclasses import dataclass

from replikv.core.multileader.messages import MlMsg, Op

__all__ = ["Deliver", "Effect", "Persist", "Send", "SendState"]


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


Effect = Persist | Deliver | Send | SendState
