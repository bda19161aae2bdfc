"""The coordinator of one cross-group transaction: two-phase commit as a sans-I/O state machine.

The runner (runtime/txn_service.py) feeds it the answers of the groups and the time, and carries
out the steps it returns. Phases (docs/design.md, "Transactions across groups"):

1. ``prepare`` in every participant group (each locks its keys and votes, table.py); with the
   default setting, every participant but the primary.
2. Every vote yes: the decision. Default ("record"): ``commit`` in the primary group, one entry
   that prepares the primary's own commands and records the outcome at once (the "last agent"
   optimization of 2PC: the primary needs no lock, it is decided as it is prepared); whatever
   the record says is the outcome (a recoverer may have aborted it first). ``classic``
   (textbook 2PC): the decision is this coordinator's alone, in memory. A read-only transaction
   needs no decision: its locks held together are its serialization point.
3. ``resolve`` the outcome in every participant (the primary's own intent is resolved by the
   decide entry itself); then ``forget`` the record.

Any vote no (a conflict with an older transaction, wait-die; a WATCHed key that changed; a
slot moving), or no vote by the deadline, aborts: ``resolve`` abort everywhere. No record is
needed for that: only this coordinator's commit entry can record a commit, and it sent none; if
it did send one whose answer was lost before a later attempt was refused, ``decide abort``
first records the abort, so that the lost attempt can never commit when it lands.

A commit whose answer is lost is sent again (idempotent: the record answers) until the
coordinator gives up (``give_up_ms``, four timeouts past the deadline); then the client hears
the outcome is unknown. The primary keeps a decided record at least ``RECORD_KEEP_MS`` past the
deadline (runtime/txn_service.py), far beyond that, so a coordinator never asks about a record
that was forgotten (a forgotten record would read as "never decided").

The client's reply: for the default, as soon as the record says committed (the replies the
participants computed at prepare, under their locks); for classic, once every participant
resolved; an abort is answered once it is definite (recorded or, classic, resolved). When the
record cannot be reached the client hears the outcome is unknown; the recovery of the
participants then finishes the transaction either way.

Invariant: the coordinator sends ``resolve commit`` only after the record said committed (or,
classic, after every vote was yes), and never both outcomes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from replikv.core.txn.table import ABORTED, COMMITTED

__all__ = ["Coordinator", "Outcome", "Step"]

WAIT_RETRY_MS = 5  # a prepare that must wait (wait-die) is tried again this much later, doubling to 80
RESOLVE_TRIES = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """What the runner does next: send ``kind`` (prepare, decide, resolve, forget) to ``group``."""

    kind: str  # prepare, commit (the primary, last agent), decide (abort), resolve, forget
    group: int
    arg: Any = None  # decide: abort; resolve: True (commit) | False


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """The client's reply: ``kind`` commit (``replies``: raw RESP of each command, in MULTI
    order), abort (``reason``), watch (a WATCHed key changed: the null array) or unknown."""

    kind: str
    replies: tuple[bytes, ...] = ()
    reason: str = ""


@dataclass(slots=True, kw_only=True)
class Coordinator:
    txn: bytes
    ts: int
    deadline: int  # wall ms
    primary: int
    positions: dict[int, list[int]]  # group -> the MULTI positions of its commands
    writes: bool  # False: a read-only transaction (no record)
    classic: bool = False
    give_up_ms: int = 0  # wall ms: no step is sent after it (0: four timeouts past the deadline)
    phase: str = "preparing"  # preparing, committing, deciding, resolving, forgetting, done
    votes: dict[int, list[bytes]] = field(default_factory=dict)
    retry_at: dict[int, int] = field(default_factory=dict)  # group -> when to prepare again
    backoff: dict[int, int] = field(default_factory=dict)
    outcome: str = ""  # committed | aborted
    reason: str = ""
    watch_failed: bool = False
    resolved: set[int] = field(default_factory=set)
    resolve_tries: dict[int, int] = field(default_factory=dict)
    answered: bool = False
    commit_lost: bool = False  # a commit attempt got no answer: it may still apply
    recorded: bool = False  # the primary holds a record of it (to forget once all resolved)
    replies: list[Outcome] = field(default_factory=list)  # at most one: taken by the runner

    def __post_init__(self) -> None:
        if not self.give_up_ms:
            self.give_up_ms = self.deadline + 4 * (self.deadline - self.ts)

    @property
    def groups(self) -> list[int]:
        return sorted(self.positions)

    @property
    def last_agent(self) -> bool:
        """The primary is prepared and decided in one entry (the record setting, with writes)."""
        return self.writes and not self.classic

    def start(self) -> list[Step]:
        return [Step(kind="prepare", group=g) for g in self.groups if not (self.last_agent and g == self.primary)]

    # -- phase one -----------------------------------------------------------------------------
    def on_vote(self, group: int, vote: list[Any] | None, now_ms: int) -> list[Step]:
        """A participant's vote (None: no answer, or an error in transit); for the primary under
        ``last_agent``, the answer of its commit entry ("committed" with its replies, or
        "aborted", or a vote that kept it from preparing)."""
        committing = self.last_agent and group == self.primary
        if self.phase != ("committing" if committing else "preparing") or group in self.votes:
            return []
        kind = vote[0] if vote else None
        if committing and kind in ("committed", "aborted"):
            self.recorded = True
        if committing and kind == "committed":
            self.votes[group] = list(vote[1])  # type: ignore[index]
            self.resolved.add(group)
            self._reply_commit()
            return self._resolve(True)
        if committing and kind == "aborted":
            self.resolved.add(group)
            self.reason = self.reason or "its record was aborted by a recovery (the deadline passed)"
            self._reply_abort()
            return self._resolve(False)
        if kind == "yes" and not committing:
            self.votes[group] = list(vote[1])  # type: ignore[index]
            if len(self.votes) < len(self.positions) - int(self.last_agent):
                return []
            return self._all_yes()
        if kind == "watch":
            self.watch_failed = True
            return self._abort("a WATCHed key changed")
        if committing and kind in ("wait", None):  # past the deadline its entry records the abort itself
            self.commit_lost = self.commit_lost or kind is None
            kind = "retry"
        if kind == "retry" or (kind in ("wait", None) and now_ms < self.deadline):
            wait = min(80, self.backoff.get(group, WAIT_RETRY_MS // 2) * 2)
            self.backoff[group] = wait
            self.retry_at[group] = now_ms + wait
            return []
        if kind == "wait":
            return self._abort("timed out waiting for an older transaction holding one of its keys")
        if kind == "die":
            return self._abort("a key is locked by an older transaction (wait-die)")
        if kind is None:
            return self._abort(f"group {group} did not vote before the transaction's deadline")
        return self._abort(str(vote[1]) if vote and len(vote) > 1 else "a participant refused")  # "no"

    def due(self, now_ms: int) -> list[Step]:
        """Prepares (or the commit) to send again now (after a wait vote or a lost answer)."""
        if self.phase not in ("preparing", "committing") or now_ms >= self.give_up_ms:
            self.retry_at.clear()
            return []
        ready = [g for g, t in self.retry_at.items() if t <= now_ms]
        for g in ready:
            del self.retry_at[g]
        return [Step(kind="commit" if self.phase == "committing" else "prepare", group=g) for g in ready]

    def _all_yes(self) -> list[Step]:
        if not self.writes:
            self._reply_commit()
            return self._resolve(True)
        if self.classic:
            return self._resolve(True)
        self.phase = "committing"
        return [Step(kind="commit", group=self.primary)]

    def _abort(self, reason: str) -> list[Step]:
        self.reason = reason
        self.retry_at.clear()
        if self.last_agent:
            self.resolved.add(self.primary)  # never prepared: no lock there
            if self.commit_lost:  # a lost commit attempt may still land: the record must say abort first
                self.phase = "deciding"
                return [Step(kind="decide", group=self.primary, arg="abort")]
        self._reply_abort()
        return self._resolve(False)

    def expire(self, now_ms: int) -> list[Step]:
        """The clock's part: missing votes at the deadline are noes; past ``give_up_ms`` nothing
        more is sent (an undecided outcome is unknown to the client; recovery finishes it)."""
        if self.phase == "preparing" and now_ms >= self.deadline:
            steps: list[Step] = []
            for g in self.groups:
                if g not in self.votes and not (self.last_agent and g == self.primary):
                    steps += self.on_vote(g, None, now_ms)
            return steps
        if self.phase in ("committing", "deciding") and now_ms >= self.give_up_ms:
            self.phase = "done"
            self._answer(Outcome(kind="unknown", reason="the group holding its record did not answer; it may or "
                                                       "may not be applied"))
        elif self.phase in ("resolving", "forgetting") and now_ms >= self.give_up_ms:
            self.phase = "done"  # what is left is the participants' recovery's
            if self.outcome == COMMITTED:
                self._reply_commit()  # classic: every participant did not confirm, but it is decided
        return []

    # -- phase two -----------------------------------------------------------------------------
    def on_decided(self, status: str | None, now_ms: int) -> list[Step]:
        """The record's answer to ``decide abort`` (None: none came)."""
        if self.phase != "deciding":
            return []
        if status == COMMITTED and self.primary not in self.votes:
            # our commit entry applied though its answer was lost: it answers again (idempotent)
            self.phase = "committing"
            return [Step(kind="commit", group=self.primary)]
        if status in (COMMITTED, ABORTED):
            self.recorded = True
            self.resolved.add(self.primary)  # the decide entry resolved the primary's own intent
            if status == COMMITTED:
                self._reply_commit()
                return self._resolve(True)
            if not self.reason:
                self.reason = "its record was aborted by a recovery (the deadline passed)"
            self._reply_abort()  # definite: the record can never say committed
            return self._resolve(False)
        if now_ms < self.give_up_ms:
            return [Step(kind="decide", group=self.primary, arg="abort")]
        return self.expire(now_ms)

    def _resolve(self, commit: bool) -> list[Step]:
        self.outcome = COMMITTED if commit else ABORTED
        self.phase = "resolving"
        return [Step(kind="resolve", group=g, arg=commit) for g in self.groups if g not in self.resolved]

    def on_resolved(self, group: int, ok: bool) -> list[Step]:
        if self.phase != "resolving" or group in self.resolved:
            return []
        if not ok:
            tries = self.resolve_tries.get(group, 0) + 1
            self.resolve_tries[group] = tries
            if tries < RESOLVE_TRIES:
                return [Step(kind="resolve", group=group, arg=self.outcome == COMMITTED)]
            self.resolved.add(group)  # left to that group's recovery (it asks the record)
        else:
            self.resolved.add(group)
        if len(self.resolved) < len(self.positions):
            return []
        if self.outcome == COMMITTED:
            self._reply_commit()  # classic: only now
        if not self.recorded or self.resolve_tries:
            self.phase = "done"  # no record (or a participant still holds it: keep it for recovery)
            return []
        self.phase = "forgetting"
        return [Step(kind="forget", group=self.primary)]

    def on_forgotten(self) -> list[Step]:
        self.phase = "done"
        return []

    # -- the client's reply --------------------------------------------------------------------
    def _reply_commit(self) -> None:
        if self.answered:
            return
        merged: list[bytes] = [b""] * sum(len(p) for p in self.positions.values())
        for g, places in self.positions.items():
            for pos, raw in zip(places, self.votes[g], strict=True):
                merged[pos] = raw
        self._answer(Outcome(kind="commit", replies=tuple(merged)))

    def _reply_abort(self) -> None:
        if self.watch_failed:
            self._answer(Outcome(kind="watch"))
        else:
            self._answer(Outcome(kind="abort", reason=self.reason))

    def _answer(self, outcome: Outcome) -> None:
        if not self.answered:
            self.answered = True
            self.replies.append(outcome)
