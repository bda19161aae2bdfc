"""The lock table: named locks with leases and fencing tokens (pure: no clock, no I/O).

Part of the replicated state machine (``StateMachine.locks``), NOT of its key
space: DEL, KEYS, DBSIZE and SCAN never see a lock. Every change is a Raft
log entry applied identically by every replica; nothing here reads a clock.
The commands are in ``kv/types/locks.py``, the design in docs/design.md
("Locks").

Rules (Chubby's sequencers and Kleppmann's fencing tokens, "How to do
distributed locking", 2016; etcd's lessor for the lease countdown):

- Grant (``LOCK``): only when the lock has no holder. The fencing token is
  the log index of the granting entry, but never below ``last_token + 1``,
  so tokens strictly increase per lock name, also after a slot move into a
  group whose log indexes are lower.
- A holder is known by its token. ``RENEW`` (same token, a new ttl) and
  ``UNLOCK`` act only for the current holder's token.
- Expiry is an entry too: ``LOCKEXPIRE name token lease_index`` frees the
  lock iff that token still holds it AND its lease was last granted or
  renewed at ``lease_index``. So a renewal that applies after the leader
  decided "expired" but before its LOCKEXPIRE wins: the client that was
  told OK keeps the lock.
- Fencing: a write fenced by ``(name, token)`` is refused iff a token
  higher than ``token`` was ever granted for ``name`` (``last_token >
  token``); ``last_token`` is kept after a release for exactly this.
- Invariant: ``holder is None or holder == last_token`` (a grant sets both;
  only the holder renews or releases).

The lease countdown is not replicated: :class:`LeaseClock` (one per table, on
every replica) restarts a lock's countdown at full ttl when this replica sees
its grant or renewal apply, and every held lock's countdown when the term
changes (a new leader never shortens a lease: etcd's lessor ``Promote``).
Only the leader acts on it, by proposing LOCKEXPIRE; the driver feeds it a
monotonic clock in ms.

Snapshot state (``state()``): ``[[name, holder | None, ttl_ms, last_token,
lease_index], ...]`` sorted by name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any

from replikv.core.invariant import invariant
from replikv.core.replies import SYNTAX_ERROR, RespError
from replikv.kv.args import parse_int

__all__ = ["LOCK_EXPIRE", "TTL_MAX_MS", "LeaseClock", "LockState", "LockTable", "lock_wait_ms", "parse_ttl"]

LOCK_EXPIRE = b"LOCKEXPIRE"  # the leader's expiry entry (refused from clients)
# A leader that proposed a LOCKEXPIRE proposes it again after this long if it
# has not applied (the entry may have been dropped by a leadership change).
EXPIRE_RETRY_MS = 1000
TTL_MAX_MS = 1 << 40  # about 35 years: a bound so a countdown stays an ordinary integer


def parse_ttl(arg: bytes) -> int:
    """A lease ttl in ms: 1 .. TTL_MAX_MS."""
    try:
        ttl = parse_int(arg)
    except RespError:
        raise RespError("ERR ttl-ms is not an integer or out of range") from None
    if not 0 < ttl <= TTL_MAX_MS:
        raise RespError(f"ERR ttl-ms must be a positive number of milliseconds (at most {TTL_MAX_MS})")
    return ttl


def lock_wait_ms(argv: list[bytes]) -> int:
    """Check ``LOCK name ttl-ms [WAIT ms]``; the WAIT in ms (0: answer at once)."""
    parse_ttl(argv[2])
    if len(argv) == 3:
        return 0
    if len(argv) != 5 or argv[3].upper() != b"WAIT":
        raise SYNTAX_ERROR
    try:
        wait = parse_int(argv[4])
    except RespError:
        raise RespError("ERR WAIT is not an integer or out of range") from None
    if wait < 0:
        raise RespError("ERR WAIT must not be negative")
    return wait


@dataclass(slots=True)
class LockState:
    """One lock name. ``holder``: the fencing token holding it, or None."""

    last_token: int
    holder: int | None = None
    ttl_ms: int = 0  # the lease last granted or renewed
    lease_index: int = 0  # log index of that grant or renewal (LOCKEXPIRE names it)

    def row(self, name: bytes) -> list[Any]:
        return [name, self.holder, self.ttl_ms, self.last_token, self.lease_index]


class LockTable:
    """name -> :class:`LockState`; see the module docstring for the rules."""

    __slots__ = ("changed", "clock", "counts", "locks", "watch")

    def __init__(self) -> None:
        self.locks: dict[bytes, LockState] = {}
        # locks granted, released, expired as this replica applied them (INFO, /metrics; not replicated)
        self.counts = [0, 0, 0]
        # names whose holder or lease changed since the lease clock last looked (not replicated)
        self.changed: set[bytes] = set()
        self.clock = LeaseClock()  # this replica's countdown (not replicated)
        # called at each change: a node of many tables looks only at those that changed or count
        # a lease down, not at every idle one each tick (runtime/sharded_raft.py ``lock_groups``)
        self.watch: Callable[[], None] | None = None

    def __len__(self) -> int:
        return len(self.locks)

    def _changed(self, name: bytes) -> None:
        self.changed.add(name)
        if self.watch is not None:
            self.watch()

    # -- the operations (called at apply, deterministic) ------------------------------------
    def grant(self, name: bytes, ttl_ms: int, index: int) -> int | None:
        """The new holder's fencing token, or None when the lock is held."""
        st = self.locks.get(name)
        if st is not None and st.holder is not None:
            return None
        token = max(index, (st.last_token if st is not None else 0) + 1)
        self.locks[name] = LockState(last_token=token, holder=token, ttl_ms=ttl_ms, lease_index=index)
        self._changed(name)
        self.counts[0] += 1
        return token

    def holds(self, name: bytes, token: int) -> bool:
        st = self.locks.get(name)
        return st is not None and st.holder == token

    def renew(self, name: bytes, token: int, ttl_ms: int, index: int) -> bool:
        """Give the holder ``token`` a fresh lease of ``ttl_ms``; False if it does not hold."""
        st = self.locks.get(name)
        if st is None or st.holder != token:
            return False
        st.ttl_ms, st.lease_index = ttl_ms, index
        self._changed(name)
        return True

    def release(self, name: bytes, token: int) -> bool:
        """UNLOCK: free the lock if ``token`` holds it."""
        st = self.locks.get(name)
        if st is None or st.holder != token:
            return False
        st.holder = None
        self._changed(name)
        self.counts[1] += 1
        return True

    def expire(self, name: bytes, token: int, lease_index: int) -> bool:
        """LOCKEXPIRE: free the lock iff ``token`` holds it under the lease granted at ``lease_index``."""
        st = self.locks.get(name)
        if st is None or st.holder != token or st.lease_index != lease_index:
            return False
        st.holder = None
        self._changed(name)
        self.counts[2] += 1
        return True

    def fenced(self, name: bytes, token: int) -> int | None:
        """The higher token granted for ``name`` that fences ``token`` out, or None."""
        st = self.locks.get(name)
        if st is not None and st.last_token > token:
            return st.last_token
        return None

    def get(self, name: bytes) -> LockState | None:
        return self.locks.get(name)

    # -- snapshot, digest, slot moves -------------------------------------------------------
    def state(self, names: Iterable[bytes] | None = None) -> list[list[Any]]:
        """The snapshot rows (of ``names`` only, for a slot move), sorted by name."""
        locks = self.locks
        wanted = sorted(locks) if names is None else sorted(n for n in names if n in locks)
        return [locks[n].row(n) for n in wanted]

    def load(self, rows: list[list[Any]]) -> None:
        """Take every row of a :meth:`state` (a restore: the table was empty; an import:
        a row replaces the name's state unless this table has a later token for it)."""
        for name, holder, ttl_ms, last_token, lease_index in rows:
            invariant(holder is None or holder == last_token, "a lock's holder is its last token")
            old = self.locks.get(name)
            if old is not None and old.last_token > last_token:
                continue  # this table saw a later grant: the row is older than what it has
            self.locks[name] = LockState(last_token=last_token, holder=holder, ttl_ms=ttl_ms,
                                         lease_index=lease_index)
            self._changed(name)

    def drop(self, names: Iterable[bytes]) -> int:
        """Forget these locks (their slot moved to another group); how many there were."""
        n = 0
        for name in list(names):
            if self.locks.pop(name, None) is not None:
                self._changed(name)
                n += 1
        return n

    def digest(self) -> int:
        """Order-independent sum of one blake2b per lock (0 for an empty table)."""
        total = 0
        for name, st in self.locks.items():
            h = blake2b(digest_size=32)
            h.update(b"lock%d:" % len(name))
            h.update(name)
            h.update(b"%d/%d/%d/%d" % (-1 if st.holder is None else st.holder, st.ttl_ms, st.last_token,
                                        st.lease_index))
            total += int.from_bytes(h.digest(), "little")
        return total


class LeaseClock:
    """One replica's lease countdowns (not replicated; the driver's monotonic ms).

    ``deadlines[name] = (deadline_ms, token, lease_index)`` for each held lock.
    A countdown starts at full ttl when the replica first sees the grant or
    renewal (``observe`` after the apply: later than the leader's own apply
    on a follower, never earlier on the leader), and every countdown restarts
    at full ttl when the term changes or the table was replaced (a snapshot):
    a new leader never shortens a lease. ``expiring`` remembers the
    LOCKEXPIRE this replica proposed as leader, re-proposed only after
    ``EXPIRE_RETRY_MS``.
    """

    __slots__ = ("deadlines", "expiring", "now_ms", "term")

    def __init__(self) -> None:
        self.deadlines: dict[bytes, tuple[int, int, int]] = {}
        self.expiring: dict[bytes, int] = {}  # name -> when its LOCKEXPIRE was proposed
        self.term: int | None = None
        self.now_ms = 0

    def observe(self, table: LockTable, now_ms: int, term: int, leading: bool) -> list[list[bytes]]:
        """Bring the countdowns up to date at ``now_ms``; as leader, the LOCKEXPIRE commands to propose."""
        invariant(now_ms >= self.now_ms, "the lease clock is monotonic")
        self.now_ms = now_ms
        deadlines = self.deadlines
        if term != self.term:  # a new term (or a fresh table): every held lease starts again in full
            self.term = term
            table.changed.clear()
            deadlines.clear()
            self.expiring.clear()
            for name, st in table.locks.items():
                if st.holder is not None:
                    deadlines[name] = (now_ms + st.ttl_ms, st.holder, st.lease_index)
        elif table.changed:
            for name in table.changed:
                changed = table.locks.get(name)
                self.expiring.pop(name, None)
                if changed is None or changed.holder is None:
                    deadlines.pop(name, None)
                else:
                    deadlines[name] = (now_ms + changed.ttl_ms, changed.holder, changed.lease_index)
            table.changed.clear()
        if not leading:
            self.expiring.clear()
            return []
        out: list[list[bytes]] = []
        for name, (deadline, token, lease_index) in deadlines.items():
            if deadline > now_ms:
                continue
            proposed = self.expiring.get(name)
            if proposed is not None and now_ms - proposed < EXPIRE_RETRY_MS:
                continue
            self.expiring[name] = now_ms
            out.append([LOCK_EXPIRE, name, b"%d" % token, b"%d" % lease_index])
        return out

    def remaining_ms(self, name: bytes) -> int | None:
        """This replica's view of the lease left on ``name`` (None: not counting down here)."""
        entry = self.deadlines.get(name)
        if entry is None:
            return None
        return max(0, entry[0] - self.now_ms)
