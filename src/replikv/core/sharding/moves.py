"""Moving slots between Raft groups, as pure bookkeeping and a pure decision machine
(docs/design.md, "Moving slots"; issue 13). Driven by the sharded runtime
(runtime/sharded_raft.py, runtime/raft_group.py) and by the simulator
(sim/multiraft_cluster.py) alike: one copy of the rules.

A move is four entries, each applied by every replica of its group:
FREEZE(slots, target) and RELEASE(slots) in the source group, IMPORT(slots, keys) and
ACTIVATE(slots) in the target group, in that order. Invariants the order keeps:
- no acknowledged write lost: a write to a slot commits before FREEZE (and is in the IMPORT,
  dumped from a state where FREEZE applied) or is refused at apply;
- one owner per slot: the source serves a slot until RELEASE, the target only after ACTIVATE,
  and ACTIVATE runs only once RELEASE committed, which runs only once IMPORT committed;
- a crash at any step resumes from the source group's log (``MoveDriver.check``).

``SlotMoves``: which slots one group serves, as its log decided (part of its snapshot).
``MoveDriver``: what a node leading source groups proposes next, given the move entries its
groups applied, its leadership, and the results of the steps it ran in target groups.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgpack

from replikv.core.sharding.slots import SlotMap, key_slot

__all__ = ["SLOT_MOVE", "MoveBusy", "MoveDriver", "MoveStep", "SlotMove", "SlotMoves", "move_entry",
           "parse_move_entry"]

SLOT_MOVE = b"\x00"  # first byte of a slot-move entry's data (a client entry is a msgpack array)


def move_entry(op: str, slots: list[int], target: int, epoch: int, payload: bytes = b"") -> bytes:
    """The log entry of a move step: ``op`` is freeze, import, release or activate."""
    packed: bytes = msgpack.packb([op, slots, target, epoch, payload])
    return SLOT_MOVE + packed


def parse_move_entry(data: bytes) -> tuple[str, list[int], int, int, bytes]:
    op, slots, target, epoch, payload = msgpack.unpackb(data[1:])
    return op, list(slots), target, epoch, payload


class SlotMoves:
    """Which slots a group serves, beyond the initial slot map, as its log decided: slots it
    froze for a move (no write), released (gone) or imported (``pending`` until activated, with
    the move's epoch). Part of the group's snapshot, so every replica agrees."""

    def __init__(self, gid: int, initial: SlotMap) -> None:
        self.gid, self.initial = gid, initial
        self.frozen: dict[int, tuple[int, int]] = {}  # slot -> (target group, epoch)
        self.released: dict[int, tuple[int, int]] = {}  # slot -> (group it went to, epoch)
        self.pending: dict[int, int] = {}  # slot -> epoch of the import
        self.gained: dict[int, int] = {}  # slot -> epoch of the move that brought it (0: unknown, old state)

    @property
    def refusing(self) -> bool:
        return bool(self.frozen or self.released)

    @property
    def moving(self) -> bool:
        return bool(self.frozen or self.released or self.pending)

    def owns(self, slot: int) -> bool:
        if slot in self.released or slot in self.pending:
            return False
        return slot in self.gained or self.initial.group_of(slot) == self.gid

    def writable(self, slot: int) -> bool:
        return self.owns(slot) and slot not in self.frozen

    def serves(self, keys: Iterable[bytes], reading: bool = False) -> bool:
        """Routing: whether the group serves a command on ``keys`` now (a write: not frozen)."""
        return all(self.owns(key_slot(k)) if reading else self.writable(key_slot(k)) for k in keys)

    def refuses(self, keys: Iterable[bytes]) -> bool:
        """A client entry that writes a key of a frozen or released slot (refused at apply)."""
        for key in keys:
            s = key_slot(key)
            if s in self.frozen or s in self.released:
                return True
        return False

    def freeze(self, slots: list[int], target: int, epoch: int) -> list[int]:
        """Freeze the slots this group owns and has not frozen yet; returns them. A FREEZE
        decided on a stale slot map (a slot the group released meanwhile) moves nothing: the
        log, not a node's map, decides what a group owns."""
        done = [s for s in slots if self.writable(s)]
        for s in done:
            self.frozen[s] = (target, epoch)
        return done

    def import_(self, slots: list[int], epoch: int) -> list[int]:
        """Hold the slots' keys, not yet served; returns the slots taken (the caller stores only
        their keys). A repeated IMPORT of a move (a new source leader resumes) is taken again
        while pending; one arriving after the move finished (the group serves the slot, or gave
        it away at this epoch or later) is stale and changes nothing: its keys are older than
        the writes served since (per slot, epochs grow: a move is started by the owner's leader,
        whose node applied the previous one)."""
        done = [s for s in slots if not self.owns(s) and self.released.get(s, (0, -1))[1] < epoch
                and self.pending.get(s, epoch) == epoch]
        for s in done:
            self.pending[s] = epoch
        return done

    def release(self, slots: list[int], target: int, epoch: int) -> list[int]:
        """Give up the slots frozen for this move (target, epoch); returns them (the caller
        drops their keys)."""
        done = [s for s in slots if self.frozen.get(s) == (target, epoch)]
        for s in done:
            self.frozen.pop(s, None)
            self.gained.pop(s, None)
            self.released[s] = (target, epoch)
        return done

    def activate(self, slots: list[int], epoch: int) -> list[int]:
        """Serve the slots imported by the move of ``epoch``; returns those activated. A repeated
        or stale ACTIVATE (a resumed move) changes nothing: only a pending import of the same
        epoch is activated, so a slot that has moved on is never taken back."""
        done = [s for s in slots if self.pending.get(s) in (epoch, 0)]
        for s in done:
            del self.pending[s]
            self.released.pop(s, None)
            self.gained[s] = epoch
        return done

    def owners(self) -> tuple[dict[int, tuple[int, int]], int]:
        """What this group's log says about slot owners beyond the initial map: slot -> (group,
        epoch of the move that decided it), and the highest epoch among them (a restarted node's
        slot map starts from these; of two groups' words on one slot, the later epoch wins)."""
        owners = {s: (t, e) for s, (t, e) in self.released.items()}
        owners.update({s: (self.gid, e) for s, e in self.gained.items()})
        epochs = [e for _, e in self.released.values()] + [e for _, e in self.frozen.values()]
        return owners, max(epochs, default=0)

    def state(self) -> list[Any]:
        if not (self.frozen or self.released or self.pending or self.gained):
            return []
        return [[[s, t, e] for s, (t, e) in sorted(self.frozen.items())],
                [[s, t, e] for s, (t, e) in sorted(self.released.items())],
                [[s, e] for s, e in sorted(self.pending.items())], [[s, e] for s, e in sorted(self.gained.items())]]

    def load(self, state: list[Any]) -> None:
        frozen, released, pending, gained = state if state else ([], [], [], [])
        self.frozen = {s: (t, e) for s, t, e in frozen}
        self.released = {s: (t, e) for s, t, e in released}
        # older snapshots list pending slots without their epoch (0: any ACTIVATE takes them)
        self.pending = dict((p, 0) if isinstance(p, int) else (p[0], p[1]) for p in pending)
        self.gained = dict((g, 0) if isinstance(g, int) else (g[0], g[1]) for g in gained)  # older: no epoch

    def apply(self, op: str, slots: list[int], target: int, epoch: int) -> list[int]:
        """A move entry's bookkeeping; returns the slots it touched (the caller imports the keys of
        an IMPORT, drops those of the slots a RELEASE touched)."""
        if op == "freeze":
            return self.freeze(slots, target, epoch)
        if op == "import":
            return self.import_(slots, epoch)
        if op == "release":
            return self.release(slots, target, epoch)
        elif op == "activate":
            return self.activate(slots, epoch)
        return slots


class MoveBusy(Exception):
    """A group already moving slots: one move per source group at a time."""


@dataclass
class SlotMove:
    """A move a node drives as its source group's leader."""

    slots: list[int]
    target: int
    epoch: int
    client: Any = None  # who asked (None when resumed after a leader change)
    stage: str = "freeze"  # freeze, import, retry, release, activate-retry


@dataclass(frozen=True)
class MoveStep:
    """What to do next: ``freeze`` and ``release`` are proposed in the source group, ``import``
    (with the keys of ``slots`` dumped from the source's applied state) and ``activate`` run in
    the target group; the caller reports an import's or activate's outcome back."""

    op: str
    source: int
    slots: tuple[int, ...]
    target: int
    epoch: int


class MoveDriver:
    """The source leader's decisions, one per node (its state is lost with a crash: the group's
    log, ``SlotMoves``, is what a new leader resumes from).

    Rules: FREEZE applied -> IMPORT in the target (unless ``blocked``: a prepared transaction
    holds a key there; retried by ``check``); IMPORT committed -> RELEASE; RELEASE applied ->
    ACTIVATE in the target; ACTIVATE committed -> done. A failed step is retried by ``check``
    (each step is idempotent). Only a leader of the source drives; a node that is not
    ignores events. A new leader resumes a frozen move (re-import) and re-sends ACTIVATE for
    the slots its group released (harmless when done: ``SlotMoves.activate``). A move this node
    stops driving that a client asked for is put in ``unanswered`` with the reason, for the
    driver to answer the client (it never waits for an answer that will not come)."""

    def __init__(self) -> None:
        self.moves: dict[int, SlotMove] = {}
        self.confirmed: set[tuple[int, int]] = set()  # (source, epoch) whose ACTIVATE committed
        self.unanswered: list[tuple[Any, str]] = []  # (client, why) of moves dropped here

    def _drop(self, g: int, why: str) -> None:
        move = self.moves.pop(g, None)
        if move is not None and move.client is not None:
            self.unanswered.append((move.client, why))

    def start(self, source: int, slots: list[int], target: int, epoch: int, state: SlotMoves,
              client: Any = None) -> MoveStep:
        if source in self.moves or state.frozen:
            raise MoveBusy(f"group {source} is already moving slots; wait for that move to finish")
        self.moves[source] = SlotMove(list(slots), target, epoch, client)
        return MoveStep("freeze", source, tuple(slots), target, epoch)

    def applied(self, g: int, op: str, slots: list[int] | tuple[int, ...], target: int, epoch: int,
                leading: bool, state: SlotMoves, blocked: Callable[[set[int]], bool]) -> MoveStep | None:
        """A move entry group ``g`` applied on this node."""
        if not leading:
            return None
        if op == "freeze":
            move = self.moves.get(g)
            if not slots and move is not None and move.epoch == epoch:
                self._drop(g, f"ERR group {g} no longer owns those slots: nothing was moved")
                return None
            return self.resume(g, state, blocked)
        if op == "release":
            move = self.moves.setdefault(g, SlotMove(list(slots), target, epoch))
            move.stage = "activate"
            return MoveStep("activate", g, tuple(slots), target, epoch)
        return None

    def resume(self, g: int, state: SlotMoves, blocked: Callable[[set[int]], bool]) -> MoveStep | None:
        """FREEZE applied (or a new leader found frozen slots): copy the keys to the target. The
        move driven is the one the step names: IMPORT, RELEASE and ACTIVATE of one (target,
        epoch), never the RELEASE of one move after the IMPORT of another."""
        if not state.frozen:
            return None
        move = self.moves.get(g)
        if move is not None and any(state.frozen.get(s) == (move.target, move.epoch) for s in move.slots):
            target, epoch = move.target, move.epoch
        else:  # two FREEZEs may be in the log (started by two leaders): one move at a time, each whole
            target, epoch = next(iter(state.frozen.values()))
        slots = sorted(s for s, (t, e) in state.frozen.items() if (t, e) == (target, epoch))
        if move is None or (move.target, move.epoch) != (target, epoch):
            if move is not None:
                self._drop(g, f"TRYAGAIN group {g} must first finish a move an earlier leader began; "
                              "ask again once it is done")
            move = self.moves[g] = SlotMove(slots, target, epoch)
        move.slots = slots  # what the log froze: the RELEASE that follows names exactly these
        if blocked(set(slots)):
            move.stage = "retry"
            return None
        move.stage = "import"
        return MoveStep("import", g, tuple(slots), target, epoch)

    def imported(self, g: int, ok: bool, leading: bool) -> MoveStep | None:
        move = self.moves.get(g)
        if move is None or not leading:
            return None
        if not ok:
            move.stage = "retry"  # ``check`` copies again (an import is idempotent)
            return None
        move.stage = "release"
        return MoveStep("release", g, tuple(move.slots), move.target, move.epoch)

    def activated(self, g: int, ok: bool) -> SlotMove | None:
        """The target's ACTIVATE outcome; the finished move when it committed."""
        move = self.moves.get(g)
        if move is None:
            return None
        if not ok:
            move.stage = "activate-retry"
            return None
        del self.moves[g]
        self.confirmed.add((g, move.epoch))
        return move

    def refused(self, g: int) -> None:
        """A FREEZE or RELEASE this node proposed was refused (leadership lost)."""
        if g in self.moves:
            self.moves[g].stage = "retry"

    def check(self, g: int, leading: bool, state: SlotMoves,
              blocked: Callable[[set[int]], bool]) -> MoveStep | None:
        """Periodically, on each group: a stalled move starts again from where the log stands. A
        node that no longer leads the group forgets its move (the new leader resumes it from the
        log), as does one whose FREEZE was refused and never applied (the move never began)."""
        move = self.moves.get(g)
        if not leading:  # the new leader resumes it from the log, if its FREEZE applied
            self._drop(g, f"TRYAGAIN this node no longer leads group {g}: the move goes on if it had begun "
                          "(see replikv status), or ask again")
            return None
        if move is not None and move.stage == "retry" and not state.frozen:
            self._drop(g, f"TRYAGAIN group {g} did not take the move (a leader change); ask again")
            return None
        if state.frozen and (move is None or move.stage == "retry"):
            return self.resume(g, state, blocked)
        if move is not None and move.stage == "activate-retry":
            return MoveStep("activate", g, tuple(move.slots), move.target, move.epoch)
        if move is None and state.released:  # released before this leader: its ACTIVATE may be lost
            for (target, epoch) in sorted(set(state.released.values())):
                if (g, epoch) not in self.confirmed:
                    slots = sorted(s for s, te in state.released.items() if te == (target, epoch))
                    self.moves[g] = SlotMove(slots, target, epoch, stage="activate")
                    return MoveStep("activate", g, tuple(slots), target, epoch)
        return None
