"""RaftGroup: one Raft group's replica on a sharded node (runtime/sharded_raft.py).

A group replica owns what a whole raft node owns in the unsharded mode
(runtime/raft_runner.py), under ``<data_dir>/groups/g<k>/``: its core (a
``RaftNode``, driven by the node's ``GroupHost``), its own kv
``StateMachine`` and exactly-once session table (runtime/raft_app.py), its
log and hard state (term, vote, commit) and its snapshots. The log and hard
state are the group's share of the node log (storage/node_log.py: one fsync
per loop iteration for all groups); the unsharded node, the group of one,
keeps its own WAL and meta file. Its own state
machine, not a share of one node-wide machine: the WATCH change index
(kv/watch.py) forgets by count and must evolve identically on every replica
of the group, and the group's snapshots, InstallSnapshot and expiry stay
exactly the unsharded mode's, which the simulator checks.

Rules (as the unsharded runner's, Raft Figure 2 "Persistent state"):
- Recovery: the newest snapshot, then the WAL after it, then the hard state;
  a recorded commit index past the end of the log is a refusal (committed
  entries missing), never silently lowered.
- ``persist``: hard state first (a node never holds data without the term and
  vote that came with it), then a snapshot (which compacts or resets the WAL),
  then entries (a rewrite of the suffix truncates first). The caller commits
  the WAL (one write, fsync by policy) before any message that depends on it.
- ``apply``: committed entries in index order, each exactly once per (client
  id, seq) through the session table; returns the waiting requests' results.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Generator, Iterable
from pathlib import Path
from typing import Any

import msgpack

from replikv.config import NodeOptions
from replikv.core.raft import codec
from replikv.core.raft.effects import Apply, Persist
from replikv.core.raft.messages import Config, Entry, EntryKind, HardState, Snapshot
from replikv.core.raft.node import DurableState, RaftNode
from replikv.core.raft.sessions import SessionTable
from replikv.core.raft.errors import NotLeader, RaftError
from replikv.core.replies import OK, RespError
from replikv.core.sharding import SlotMap, key_slot
from replikv.core.sharding.moves import SLOT_MOVE, SlotMoves, move_entry, parse_move_entry
from replikv.core.sharding.placement import PREFER_ENTRY, parse_prefer_entry
from replikv.core.txn import TxnTable
from replikv.kv.commands import lookup
from replikv.kv.state_machine import StateMachine
from replikv.runtime.raft_app import (app_snapshot, apply_normal, restore_app, restore_app_steps, split_stored,
                                      stored_head, unpack_app)
from replikv.runtime.txn_entries import TXN_ENTRY, apply_txn
from replikv.storage.errors import StorageError, WalBlockedError
from replikv.storage.files import private_dir
from replikv.storage.meta import MetaStore
from replikv.storage.node_log import GroupLog, NodeLog
from replikv.storage.recovery import open_snapshot, open_storage, require_meta
from replikv.storage.snapshot import SnapshotWriter, map_snapshot_file, release_pages, releasing_pages, write_snapshot
from replikv.storage.wal import WriteAheadLog

__all__ = ["SLOT_MOVE", "RaftGroup", "SlotMoves", "core_reply_error", "entry_keys", "move_entry"]

log = logging.getLogger("replikv.raft")

# InstallSnapshot chunk size: one chunk is sent at a time and acknowledged (Figure 13), so
# the transfer costs a round trip of two busy event loops per chunk; at 8 MiB a 640 MB
# snapshot takes 80 of them, not 10,000 (64 KiB: under sustained 64 KiB writes it never
# finished). A chunk is one peer frame, far under max_frame_bytes; sealing it takes ~10 ms.
SNAPSHOT_CHUNK_BYTES = 8 * 1024 * 1024


def core_reply_error(result: object, not_leader: str) -> RespError | None:
    """What a client gets when the core answered its request itself (``Reply``): None for
    done, TRYAGAIN for what a retry may fix (``not_leader`` names where to go), else ERR."""
    if result is None:
        return None
    if isinstance(result, NotLeader):
        return RespError(f"TRYAGAIN {not_leader}; retry")
    if isinstance(result, RaftError):
        return RespError(f"TRYAGAIN {type(result).__name__}: {result}")
    return RespError(f"ERR {result}")


def entry_keys(data: bytes) -> list[bytes]:
    """The keys a client entry's commands name."""
    _now, _txn, items, *_ = msgpack.unpackb(data)
    keys: list[bytes] = []
    for item in items:
        if not isinstance(item, str):
            spec = lookup(item[0])
            if spec is not None:
                keys.extend(spec.keys(item))
    return keys


class RaftGroup:
    def __init__(self, gid: int, directory: Path, opts: NodeOptions, raft_id: int, voters: tuple[int, ...],
                 election_ticks: int, heartbeat_ticks: int, *, async_persist: bool = False,
                 on_config: Callable[[Entry], None] | None = None, slot_map: SlotMap | None = None,
                 disk_errors: list[WalBlockedError] | None = None, node_log: NodeLog | None = None,
                 lazy_follower_rounds: int = 0, lock_watch: Callable[[], None] | None = None) -> None:
        """Recover the group's replica from ``directory`` (the unsharded raft node is the group
        of one: its data directory). ``voters``: the bootstrap configuration, used only when
        nothing stored names one. ``on_config``: told each CONFIG entry as it applies.
        ``disk_errors``: where the snapshot sink reports a failed write, for the runner's disk
        guard (a list the runner shares among its groups; the group's own by default). ``node_log``:
        a sharded node's log, which holds the group's entries and hard state (else the group has a
        WAL and a meta file of its own in ``directory``). ``lock_watch``: called when the group's
        lock table changes, whatever state machine holds it (``LockTable.watch``)."""
        self.gid = gid
        self.lock_watch = lock_watch
        fresh = not directory.exists()
        self.dir = private_dir(directory)
        self.snapshot_dir = private_dir(self.dir / "snapshots", narrow=True)
        self.meta: MetaStore | GroupLog
        self.wal: WriteAheadLog | GroupLog
        wire: Iterable[Any]
        if node_log is None:  # the unsharded node: a WAL and a meta file of its own
            opened = open_storage(self.dir, self.snapshot_dir, fsync=opts.fsync, segment_bytes=opts.segment_bytes,
                                  mapped_snapshot=True)  # the core keeps it for InstallSnapshot: not on the heap
            self.meta, self.wal, meta, stored = opened.meta_store, opened.wal, opened.meta, opened.snapshot
            wire = (e for _first, batch in opened.records for e in batch)
        else:  # a sharded node's group: its share of the node log (storage/node_log.py)
            stored = open_snapshot(self.snapshot_dir, mapped=True)
            self.wal, meta, wire = node_log.open_group(gid, stored.index if stored else 0, fresh)
            self.meta = self.wal
            require_meta(meta, stored is not None or bool(wire), f"group {gid}'s hard state",
                         f"{self.dir} and {self.wal.path}")
        self.sm = StateMachine()
        self.sm.locks.watch = lock_watch
        self.sessions = SessionTable()
        self.slots = SlotMoves(gid, slot_map) if slot_map is not None else None
        self.txns = TxnTable()  # cross-group transactions: intents and records (core/txn/table.py)
        self.txns_released = False  # a transaction entry applied: requests parked on its keys may go on
        self.preferred: int | None = None  # the preferred leader as the log says (PREFER_ENTRY), if it says
        self.preferred_changed = False  # a PREFER entry applied: the runner's placement record follows
        self.proposing: dict[bytes, tuple[bytes, int]] = {}  # leader: key -> (txn, deadline) of a prepare in flight
        snap: Snapshot | None = None
        if stored is not None:
            members, learners, app = split_stored(stored.data)
            snap = Snapshot(index=stored.index, term=stored.epoch,
                            config=Config(voters=frozenset(members), learners=frozenset(learners)), data=app)
            self.restore_state(app, stored.index)
            release_pages(app)  # read once to restore: the heap holds the state, not the file's pages
        base = snap.index if snap else 0
        entries = [codec.entry_from_wire(e) for e in wire]
        if entries and entries[0].index != base + 1:
            raise StorageError(f"the WAL in {self.dir} starts at {entries[0].index}, expected {base + 1} after "
                               "the snapshot")
        if not entries and self.wal.last_index < base:
            self.wal.reset(base + 1)
        hs = HardState(term=int(meta.get("term", 0)), vote=meta.get("vote"), commit=int(meta.get("commit", 0)))
        last = entries[-1].index if entries else base
        if hs.commit > last:  # the core would lower its commit index to the log's end: never silently
            raise StorageError(f"{self.meta.path} records commit index {hs.commit} but the snapshot and WAL in "
                               f"{self.dir} end at index {last}: committed entries are missing")
        self.saved_tv: tuple[int, int | None] = (hs.term, hs.vote)
        self.saved_commit = hs.commit
        self._meta_lock = threading.Lock()  # the meta writes: the loop's and record_commit's thread
        self.applied = base
        self.wal_after_snapshot = self.wal.size_bytes
        self.snapshot_on_disk = base  # a snapshot already on disk (the child wrote it): persist only compacts
        self.expiry_inflight = False
        self.exactly_once_hits = 0  # retried exactly-once writes answered from the session table
        self.move_events: list[tuple[str, tuple[int, ...], int, int]] = []  # applied slot moves, for the runner
        self.on_config = on_config
        self.recovered_entries = len(entries)
        self.disk_errors = disk_errors if disk_errors is not None else []
        self.core = RaftNode(raft_id, voters=voters, storage=DurableState(hard_state=hs, snapshot=snap,
                                                                         entries=tuple(entries)),
                             rng=random.Random(), election_timeout_ticks=election_ticks,
                             heartbeat_ticks=heartbeat_ticks, lease_reads=True, async_persist=async_persist,
                             snapshot_chunk_bytes=SNAPSHOT_CHUNK_BYTES, lazy_follower_rounds=lazy_follower_rounds,
                             snapshot_sink=lambda index, term, config: _FileSink(self, index, term, config))

    # -- storage -------------------------------------------------------------------------------
    def persist(self, p: Persist) -> None:
        wal = self.wal
        hs = p.hard_state
        if hs is not None and (hs.term, hs.vote) != self.saved_tv:
            self.save_hard_state(hs)
        if p.snapshot is not None:
            snap = p.snapshot
            c = snap.config
            if snap.index != self.snapshot_on_disk:
                path = write_snapshot(self.snapshot_dir, snap.index, snap.term,
                                      msgpack.packb([sorted(c.voters), sorted(c.learners), snap.data]))
                self.snapshot_on_disk = snap.index
                # one this node took on its loop (a sharded group): the core keeps the file
                # mapped, not its copy (one received from the leader is on disk already: _FileSink)
                mapped = map_snapshot_file(path, just_written=True)
                self.core.snapshot_stored(snap.index, split_stored(mapped.data)[2])
            if p.discard_log or snap.index > wal.last_index:
                wal.reset(snap.index + 1)
            else:
                wal.drop_before(snap.index)
            self.wal_after_snapshot = wal.size_bytes
        if p.entries:
            first = p.entries[0].index
            if first <= wal.last_index:
                wal.truncate_after(first - 1)
            wal.append_entries(first, [codec.entry_to_wire(e) for e in p.entries])

    def save_hard_state(self, hs: HardState) -> None:
        """Term and vote, and the commit index only as far as the WAL holds it on disk. Under
        the meta lock: a commit record written on another thread (``record_commit``) never
        lands after this save with an older term and vote."""
        with self._meta_lock:
            commit = max(min(hs.commit, self.wal.durable_index), self.saved_commit)
            self.meta.save({"term": hs.term, "vote": hs.vote, "commit": commit})
            self.saved_tv, self.saved_commit = (hs.term, hs.vote), commit

    def commit_to_record(self) -> int | None:
        """The commit index ``record_commit`` would save now: what the WAL holds durably of the
        committed log (a restart's refusal check); None if the saved one is as far."""
        commit = min(self.core.log.commit, self.wal.durable_index)
        return commit if commit > self.saved_commit else None

    def record_commit(self, commit: int | None = None) -> None:
        """Save ``commit`` (``commit_to_record``'s, taken on the loop) with the term and vote
        saved last. May run on a thread of its own (the unsharded runner's: the atomic meta
        write's fsyncs held its loop, issue 15): under the meta lock, so it writes the newest
        term and vote and a later ``save_hard_state`` waits for it; a record no further than
        the saved one is skipped."""
        if commit is None:
            commit = self.commit_to_record()
            if commit is None:
                return
        with self._meta_lock:
            if commit <= self.saved_commit:
                return
            term, vote = self.saved_tv
            self.meta.save({"term": term, "vote": vote, "commit": commit})
            self.saved_commit = commit

    def snapshot_due(self, snapshot_bytes: int) -> bool:
        return self.wal.size_bytes - self.wal_after_snapshot > snapshot_bytes

    def take_snapshot(self) -> list[Any]:
        """The applied state as the core's snapshot (on the loop: a group holds a share of
        the node's data); the core's effects compact the log."""
        return self.core.compact(self.applied, self.state_blob())

    def state_blob(self) -> bytes:
        """The application snapshot, with the group's slot-move state as a fourth element and its
        transactions (core/txn/table.py) as a fifth and its preferred leader (PREFER_ENTRY) as a
        sixth (``restore_app`` reads the first three, so the unsharded format is unchanged)."""
        data = app_snapshot(self.sm, self.sessions.to_state())
        moves = self.slots.state() if self.slots is not None else []
        if not moves and not self.txns and self.preferred is None:
            return data
        fields = msgpack.unpackb(data)
        extra: list[Any] = [moves]
        if self.txns or self.preferred is not None:
            extra.append(self.txns.to_state())
        if self.preferred is not None:
            extra.append(self.preferred)
        out: bytes = msgpack.packb([*fields[:3], *extra])
        return out

    def restore_state(self, app: bytes | memoryview, index: int) -> None:
        fields = unpack_app(app)  # once, the dump (most of it) decoded from ``app`` itself, not a copy
        self._set_state(fields, *restore_app(fields, index))

    def _set_state(self, fields: list[Any], sm: StateMachine, sessions: SessionTable) -> None:
        """The state an app snapshot's ``fields`` hold: the state machine and session table
        (decoded), the slot moves, transactions and preferred leader (fields 3-5, if any)."""
        self.sm, self.sessions = sm, sessions
        sm.locks.watch = self.lock_watch
        if self.lock_watch is not None:
            self.lock_watch()  # the new state's locks (if any) are counted down from the next tick
        if self.slots is not None:
            self.slots.load(fields[3] if len(fields) > 3 else [])
        self.txns = TxnTable.from_state(fields[4] if len(fields) > 4 else None)
        self.preferred = fields[5] if len(fields) > 5 else None
        self.preferred_changed = True
        self.txns_released = True

    # -- apply ---------------------------------------------------------------------------------
    def apply(self, effect: Apply) -> list[tuple[object, Any, int]]:
        """Apply committed entries; (request id, result, index) for each local waiter."""
        waiters = dict(effect.waiters)
        out: list[tuple[object, Any, int]] = []
        for entry in effect.entries:
            if entry.index <= self.applied:
                continue
            result: Any = OK
            if entry.kind is EntryKind.NORMAL and entry.data:
                if entry.data[:1] == SLOT_MOVE and self.slots is not None:
                    result = self._apply_move(entry)
                elif entry.data[:1] == TXN_ENTRY:
                    result = self._apply_txn(entry)
                elif entry.data[:1] == PREFER_ENTRY:
                    result = self._apply_prefer(entry)
                else:
                    result = self.sessions.apply(entry, self._apply_normal)
                if entry.client_id is not None and self._last_applied != entry.index:
                    self.exactly_once_hits += 1  # a retry: the cached result, not applied again
            elif entry.kind is EntryKind.CONFIG and self.on_config is not None:
                self.on_config(entry)
            self.applied = entry.index
            rid = waiters.get(entry.index)
            if rid is not None:
                out.append((rid, result, entry.index))
        return out

    _last_applied = 0

    def _apply_normal(self, entry: Entry) -> Any:
        self._last_applied = entry.index
        slots = self.slots
        if slots is not None and slots.refusing and slots.refuses(entry_keys(entry.data)):
            return RespError("TRYAGAIN the key's slot is moving to another group (or has moved); retry")
        if self.txns.locks:
            holder = self.txns.locked(entry_keys(entry.data))
            if holder is not None:  # proposed before the prepare applied (a new leader's, or a race)
                return RespError(f"TRYAGAIN a key is locked by transaction {holder.decode(errors='replace')} "
                                 "being committed; retry")
        return apply_normal(self.sm, entry)

    def _apply_txn(self, entry: Entry) -> Any:
        """A transaction step (runtime/txn_entries.py). Its leader checked it before proposing
        it; one that is malformed all the same is refused alike by every replica, never half
        applied (apply checks before it changes anything)."""
        self.txns_released = True
        try:
            return apply_txn(self.txns, self.sm, entry.data, entry.index, self._moving_keys, self.proposing)
        except (ValueError, TypeError, KeyError, IndexError) as e:
            log.error("group %d: malformed transaction entry at index %d refused: %r", self.gid, entry.index, e)
            return RespError(f"ERR malformed transaction entry: {e}")

    def _apply_prefer(self, entry: Entry) -> Any:
        """The group's preferred leader (core/sharding/placement.py ``PREFER_ENTRY``)."""
        try:
            self.preferred = parse_prefer_entry(entry.data)
        except ValueError as e:
            return RespError(f"ERR {e}")
        self.preferred_changed = True
        return OK

    def blocked(self, keys: list[bytes], now_ms: int) -> bytes | None:
        """The transaction whose lock (or prepare in flight, on the leader) holds one of ``keys``."""
        holder = self.txns.locked(keys)
        if holder is None and self.proposing:
            for k in keys:
                p = self.proposing.get(k)
                if p is not None:
                    if p[1] >= now_ms:
                        return p[0]
                    del self.proposing[k]
        return holder

    def _moving_keys(self, keys: list[bytes]) -> bool:
        moves = self.slots
        return moves is not None and moves.refusing and any(not moves.writable(key_slot(k)) for k in keys)

    def _apply_move(self, entry: Entry) -> Any:
        """A slot-move step (docs/design.md, "moving slots"), applied alike by every replica."""
        assert self.slots is not None
        op, slots, target, epoch, payload = parse_move_entry(entry.data)
        slots = self.slots.apply(op, slots, target, epoch)
        if op == "import" and slots:
            taken = set(slots)  # a stale IMPORT takes nothing (core/sharding/moves.py)
            self.sm.import_keys(payload, entry.index, keep=lambda key: key_slot(key) in taken)
        elif op == "release":
            gone = set(slots)
            self.sm.drop_keys([k for k in self.sm.data if key_slot(k) in gone], entry.index,
                              [n for n in self.sm.locks.locks if key_slot(n) in gone])
        self.move_events.append((op, tuple(slots), target, epoch))
        return OK

    def restore(self, snap: Snapshot) -> None:
        """InstallSnapshot from the leader: the group's state machine replaced (Figure 13 rule 8).
        The old data set is let go first (the snapshot is already on disk): decoding the new
        one beside it held both at once, a third copy of the data set on a follower."""
        self.sm.clear()
        self.restore_state(snap.data, snap.index)
        release_pages(snap.data)  # the file read once to decode: its pages no longer in the RSS
        self.applied = snap.index

    def restore_steps(self, snap: Snapshot) -> Generator[None, None, None]:
        """``restore`` in steps (``restore_app_steps``), for a node that goes on serving while
        it decodes: the old data set is let go at once, the new one is in place (``sm``,
        ``applied``) only when the generator ends, and the pages of the file read in a step
        are released before the next (the file is read once, in order)."""
        self.sm.clear()
        fields = unpack_app(snap.data)
        sm, sessions = yield from releasing_pages(restore_app_steps(fields, snap.index), snap.data)
        self._set_state(fields, sm, sessions)
        self.applied = snap.index


class _FileSink:
    """A follower's InstallSnapshot chunks streamed into the group's snapshot file as they
    arrive (the core's ``SnapshotSink``; storage/snapshot.py ``SnapshotWriter``), stored as
    ``[voters, learners]`` followed by the app part (``split_stored``). ``finish`` installs
    the file, fsynced, and returns its app part mapped: a follower holds no copy of a large
    snapshot on its heap, where the chunks, then their encoding for the file, had each cost
    the snapshot's size (issue 15). A disk failure goes to the runner's disk guard
    (``group.disk_errors``), and the sink answers False / None, as the core's protocol asks."""

    __slots__ = ("group", "index", "writer")

    def __init__(self, group: RaftGroup, index: int, term: int, config: Config) -> None:
        self.group, self.index = group, index
        self.writer: SnapshotWriter | None = SnapshotWriter(group.snapshot_dir)
        try:
            self.writer.begin(index, term)
            self.writer.write(stored_head(config))
        except OSError as exc:
            self._failed(exc)

    def write(self, data: bytes | memoryview) -> bool:
        if self.writer is None:
            return False
        try:
            self.writer.write(data)
            return True
        except OSError as exc:
            self._failed(exc)
            return False

    def finish(self) -> memoryview | None:
        if self.writer is None:
            return None
        try:
            path = self.writer.finish()
            app = split_stored(map_snapshot_file(path, just_written=True).data)[2]
        except OSError as exc:
            self._failed(exc)
            return None
        self.writer = None
        self.group.snapshot_on_disk = self.index  # persist() only compacts the WAL for it
        return app

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()
            self.writer = None

    def _failed(self, exc: OSError) -> None:
        """Nothing of the transfer is left on disk (the partial file is removed): the disk
        guard retries as after a WAL write rolled back (blocked, not failed)."""
        self.abort()
        blocked = WalBlockedError(f"the snapshot being received from the leader could not be written: {exc}")
        blocked.__cause__ = exc  # the disk guard reports the OS error's reason
        self.group.disk_errors.append(blocked)
