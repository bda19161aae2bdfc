"""What the shipping core asks its driver to do, in the order returned.

Durability rule: the driver carries out ``PersistEntries`` / ``TruncateLog``
/ ``PersistMeta`` before any ``Send`` returned with or after them reaches the
network (a follower acks only what is in its WAL; a leader ships only what it
has logged).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from replikv.core.shipping.messages import ShippingMsg


@dataclass(frozen=True, slots=True, kw_only=True)
class PersistEntries:
    """Append entries ``first_index .. first_index + count - 1`` to the WAL."""

    first_index: int
    count: int
    packed: bytes  # msgpack list of [epoch, cmds]


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplyEntries:
    """Apply these entries, in order, to the state machine (followers)."""

    first_index: int
    entries: list[list[Any]]


@dataclass(frozen=True, slots=True, kw_only=True)
class TruncateLog:
    """Drop entries after ``to_index`` from WAL and state (roll back).

    ``discarded`` entries are lost; ``discarded_own`` of them were written
    while this node led, and ``discarded_acked`` of those may have been
    acknowledged to a client: an async write is acknowledged once in the
    leader's WAL; a write that waited for k replicas was not acknowledged
    if k was every follower (the new leader lacks it), and may have been
    otherwise.
    """

    to_index: int
    discarded: int
    discarded_own: int
    discarded_acked: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PersistMeta:
    """Durably record epoch, leader and the epochs this node led."""

    epoch: int
    leader: str
    led_epochs: list[int]


@dataclass(frozen=True, slots=True, kw_only=True)
class Send:
    to: str
    msg: ShippingMsg


@dataclass(frozen=True, slots=True, kw_only=True)
class SendSnapshot:
    """Stream a snapshot to ``to`` (full resync): the latest one (at the log's
    ``snapshot_index``) if it covers ``min_index``, else a new one of the whole log.

    ``min_index`` is where the follower's log matches the leader's: the
    follower holds every entry up to there durably, so a snapshot older than
    that would take it back past entries it held, among them acknowledged
    writes a forced failover to it would then lose (found by sim/).
    """

    to: str
    min_index: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RoleChanged:
    role: str  # "leader" | "follower"
    epoch: int
    leader: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HandOverDone:
    """The failover target may now promote itself (or the hand-over failed)."""

    ok: bool
    reason: str


Effect = (
    PersistEntries | ApplyEntries | TruncateLog | PersistMeta | Send | SendSnapshot
    | RoleChanged | HandOverDone
)
