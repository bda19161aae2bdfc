"""RaftGroup: one Raft group's replica on a sharded node (runtime/sharded_raft.py).

A group replica owns what a whole raft node owns in the unsharded mode
(runtime/raft_runner.py), under ``<data_dir>/groups/g<k>/``: its core (a
``RaftNode``, driven by the node's ``GroupHost``), its own kv
``StateMachine`` and exactly-once session table (runtime/raft_app.py), its
WAL, its meta file (term, vote, commit) and its snapshots. Its own state
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
from collections.abc import Callable
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
from replikv.kv.state_machine import StateMachine
from replikv.runtime.raft_app import app_snapshot, apply_normal, restore_app
from replikv.storage.errors import StorageError
from replikv.storage.files import private_dir
from replikv.storage.recovery import open_storage
from replikv.storage.snapshot import write_snapshot

__all__ = ["RaftGroup", "core_reply_error"]

log = logging.getLogger("replikv.raft")


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


class RaftGroup:
    def __init__(self, gid: int, directory: Path, opts: NodeOptions, raft_id: int, voters: tuple[int, ...],
                 election_ticks: int, heartbeat_ticks: int, *, async_persist: bool = False,
                 on_config: Callable[[Entry], None] | None = None) -> None:
        """Recover the group's replica from ``directory`` (the unsharded raft node is the group
        of one: its data directory). ``voters``: the bootstrap configuration, used only when
        nothing stored names one. ``on_config``: told each CONFIG entry as it applies."""
        self.gid = gid
        self.dir = private_dir(directory)
        self.snapshot_dir = private_dir(self.dir / "snapshots", narrow=True)
        opened = open_storage(self.dir, self.snapshot_dir, fsync=opts.fsync, segment_bytes=opts.segment_bytes)
        self.meta, self.wal, meta, stored = opened.meta_store, opened.wal, opened.meta, opened.snapshot
        self.sm = StateMachine()
        self.sessions = SessionTable()
        snap: Snapshot | None = None
        if stored is not None:
            members, learners, app = msgpack.unpackb(stored.data)
            snap = Snapshot(index=stored.index, term=stored.epoch,
                            config=Config(voters=frozenset(members), learners=frozenset(learners)), data=app)
            self.sm, self.sessions = restore_app(app, stored.index)
        base = snap.index if snap else 0
        entries: list[Entry] = []
        for _first, batch in opened.records:
            entries.extend(codec.entry_from_wire(e) for e in batch)
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
        self.applied = base
        self.wal_after_snapshot = self.wal.size_bytes
        self.snapshot_on_disk = base  # a snapshot already on disk (the child wrote it): persist only compacts
        self.expiry_inflight = False
        self.exactly_once_hits = 0  # retried exactly-once writes answered from the session table
        self.on_config = on_config
        self.recovered_entries = len(entries)
        self.core = RaftNode(raft_id, voters=voters, storage=DurableState(hard_state=hs, snapshot=snap,
                                                                         entries=tuple(entries)),
                             rng=random.Random(), election_timeout_ticks=election_ticks,
                             heartbeat_ticks=heartbeat_ticks, lease_reads=True, async_persist=async_persist)

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
                write_snapshot(self.snapshot_dir, snap.index, snap.term,
                               msgpack.packb([sorted(c.voters), sorted(c.learners), snap.data]))
                self.snapshot_on_disk = snap.index
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
        """Term and vote, and the commit index only as far as the WAL holds it on disk."""
        commit = max(min(hs.commit, self.wal.durable_index), self.saved_commit)
        self.meta.save({"term": hs.term, "vote": hs.vote, "commit": commit})
        self.saved_tv, self.saved_commit = (hs.term, hs.vote), commit

    def record_commit(self) -> None:
        """Once a second: the commit index the WAL holds durably (a restart's refusal check)."""
        if min(self.core.log.commit, self.wal.durable_index) > self.saved_commit:
            self.save_hard_state(self.core.hard_state())

    def snapshot_due(self, snapshot_bytes: int) -> bool:
        return self.wal.size_bytes - self.wal_after_snapshot > snapshot_bytes

    def take_snapshot(self) -> list[Any]:
        """The applied state as the core's snapshot (on the loop: a group holds a share of
        the node's data); the core's effects compact the log."""
        data = app_snapshot(self.sm, self.sessions.to_state())
        return self.core.compact(self.applied, data)

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
        return apply_normal(self.sm, entry)

    def restore(self, snap: Snapshot) -> None:
        """InstallSnapshot from the leader: the group's state machine replaced (Figure 13 rule 8)."""
        self.sm, self.sessions = restore_app(snap.data, snap.index)
        self.applied = snap.index
