"""ShardedRaftRunner: a raft node hosting replicas of many Raft groups (``--shards K``).

The keyspace is Redis Cluster's 16,384 hash slots (CRC16 of the key, hash tags
honoured, core/sharding/); every slot belongs to one of K Raft groups, each
replicated on ``--replicas`` of the cluster's nodes with the preferred
leaders spread over the nodes. One node process hosts its replicas in a
``GroupHost`` (core/multiraft/host.py): one batch frame per peer per loop
iteration carries every group's messages, empty batches are the node-level
liveness pings, idle groups quiesce, and a dead node's groups re-elect
within about one election timeout. Each replica is a ``RaftGroup``
(runtime/raft_group.py) with its own state machine, WAL and snapshots.

Routing a client command (rules Redis Cluster users expect):
- Its keys' slots name one group; keys in two groups get ``-CROSSSLOT``, except a MULTI/EXEC
  block, which runs as a distributed transaction (runtime/txn_service.py).
- This node leads the group: a write is proposed to it; a linearizable (or
  lease) read takes the group's ReadIndex round; other read levels are
  served from the local replica.
- Otherwise: a cluster-aware connection (it asked ``CLUSTER SLOTS``,
  ``SHARDS`` or ``NODES``, or sent ``READONLY``/``ASKING``) gets
  ``-MOVED <slot> <host>:<port>`` naming the group's leader; any other client
  is served by forwarding the command to that leader (runtime/forwarding.py),
  as in the unsharded mode, so a client that knows nothing of slots works
  (``--redirect``: every client gets the MOVED).
- Leaders spread: each group's preferred leader is the first node of its
  placement; a leader hands a group back to its preferred leader once that
  node is live and caught up (``_hand_back_leadership``).
- Which node leads a group this node does not host: each node announces the
  groups it leads to every peer once a second and at every change (a
  ``LEADERS`` frame); before any announcement the preferred leader is assumed.

Placement (docs/design.md, "Placement and rebalancing"): a hosted group's members are those of its
own Raft configuration; the node keeps a placement record (group -> members, preferred leader
first; tombstones of groups it was removed from) in its meta file: at first start the founders'
placement (cluster.toml's ``bootstrap``, else its nodes), afterwards the record, updated by each
membership change a hosted group applies. A node added with ``replikv cluster add`` hosts no group
until ``replikv rebalance`` drives ``REPLIKV GROUP <g> ADD|PROMOTE|PREFER|TRANSFER|REMOVE`` on the
groups' leaders and ``DROP`` on removed nodes; a leader's message for a group not hosted here
creates the replica, unless it predates this node's removal (tombstone; core/multiraft/host.py
``creates_replica``). A removed node that missed its removal learns it from the other members
(MEMBER_CHECK, GONE: ``_check_membership``).

Persistence: one node log holds every group's entries and hard state
(storage/node_log.py); what a loop iteration logged is committed (one write,
one fsync by the policy, forced for a changed term or vote) before any batch
leaves, so a vote or an acknowledgement never leaves ahead of what it stands
for (the host's ordering contract). Every frame a drain sends to a peer
leaves in one write at its end (the transport's coalescing,
runtime/tcp_transport.py). Snapshots are per group, taken on the loop when
the group logged ``--snapshot-bytes`` since its last one (a group holds a share
of the node's data); once a second the log's segments no group needs go, after
the groups that pin old ones are carried forward (``LOG_SEGMENTS_KEPT``).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgpack

from replikv.config import ClusterConfig, ConfigError
from replikv.core.multiraft import codec as batch_codec
from replikv.core.multiraft.host import GroupHost, creates_replica
from replikv.core.raft.effects import Apply, Persist, ReadReady, Reply, RestoreSnapshot
from replikv.core.raft import codec
from replikv.core.raft.errors import RaftError
from replikv.core.raft.node import RaftNode, Role
from replikv.core.replies import NULL_ARRAY, OK, RespError
from replikv.core.resp import encode_reply
from replikv.core.sharding import (ClusterView, SlotMap, cluster_info, cluster_nodes, cluster_shards,
                                   cluster_slots, encode_placement, format_ranges, initial_placement, key_slot,
                                   node_id, parse_ranges, ranges_to_slots, slots_to_ranges)
from replikv.core.sharding.placement import PlacementError, prefer_entry
from replikv.kv.commands import lookup
from replikv.kv.lua import with_bodies
from replikv.kv.state_machine import EXPIRE_DUE, StateMachine
from replikv.runtime.base import BaseRunner, wall_ms
from replikv.runtime.info import render as render_info, shown as shown_info
from replikv.runtime.locks import LockService
from replikv.runtime.peer_features import PeerFeatures
from replikv.runtime.pending import PendingReplies
from replikv.runtime.raft_app import encode_write, split_stored, stored_head
from replikv.core.sharding.moves import MoveBusy, MoveDriver, MoveStep, move_entry
from replikv.runtime.memory import return_freed_memory
from replikv.runtime.raft_group import RaftGroup, core_reply_error
from replikv.runtime.raft_runner import raft_id
from replikv.runtime.resp_server import ClientConnection
from replikv.runtime.snapshotter import SNAPSHOT_RUNNING, read_back
from replikv.runtime.txn_service import InternalCall, TxnService, command_keys
from replikv.storage.errors import WalBlockedError, WalFailedError
from replikv.storage.meta import META_FILE, MetaStore
from replikv.storage.node_log import GroupLog, NodeLog

log = logging.getLogger("replikv.sharded")

BATCH = b"B"  # a GroupHost batch (core/multiraft/codec.py)
LEADERS = b"L"  # msgpack [groups this node leads, moved slots as [first, last, group, epoch] runs]
MEMBER_CHECK = b"M"  # msgpack [[group, the sender's last config index], ...]: "am I still a member?"
GONE = b"X"  # msgpack [[group, config index], ...]: "a committed configuration at that index excludes you"
FEATURES = b"V"  # msgpack [[feature, ...], ask]: what this node's version reads (runtime/peer_features.py)
MEMBER_CHECK_S = 10.0  # how often a node asks the other members of the groups it follows

# the node log's segments kept before the groups that pin older ones are carried forward
# (storage/node_log.py): at the default 64 MiB a segment, 256 MiB of log
LOG_SEGMENTS_KEPT = 4

# A group leader of three voters sends each round to one follower at once and to the other every
# this many rounds and at every tick (RaftNode's lazy_follower_rounds, core/raft/node.py; 0: every
# follower every round). A send policy only: the followers' code is the same, so no wire change.
LAZY_FOLLOWER_ROUNDS = int(os.environ.get("REPLIKV_LAZY_FOLLOWER_ROUNDS", 3))

# command name (as the client sent it) -> is its one key its first argument (SET, GET, INCR...)?
# _route's short way; filled as names are seen, bounded since clients choose the names
_ONE_KEY: dict[bytes, bool] = {}
_ONE_KEY_NAMES = 4096


def _one_key(name: bytes) -> bool:
    spec = lookup(name)
    one = spec is not None and spec.first_key == 1 and spec.last_key == 1 and spec.find_keys is None
    if spec is not None and len(_ONE_KEY) < _ONE_KEY_NAMES:
        _ONE_KEY[name] = one
    return one


_KEYLESS_READS = frozenset({b"DBSIZE", b"KEYS", b"RANDOMKEY", b"SCAN"})
_KEYLESS_WRITES = frozenset({b"FLUSHALL", b"FLUSHDB"})
_WRITE_EXPIRED = ("TRYAGAIN the write was not committed in time (group leader cut off from its majority?); it "
                  "may or may not be applied")


class ShardedRaftRunner(BaseRunner):
    coalesce_peer_frames = True  # every group's batches and forwarded commands to a peer: one write
    def __init__(self, config: ClusterConfig, node_id: str) -> None:
        super().__init__(config, node_id)
        opts = self.options
        self.raft_id = raft_id(node_id)
        self.names = {raft_id(name): name for name in config.nodes}
        self.peer_ids = [p for p in config.nodes if p != node_id]
        self.tick_s = opts.tick_ms / 1000
        self.election_ticks = max(2, opts.election_timeout_ms // opts.tick_ms)
        hb_ticks = max(1, min(self.election_ticks // 5, opts.heartbeat_ms // opts.tick_ms))
        self.node_meta = MetaStore(self.data_dir)
        state = self.node_meta.load()
        # group -> member raft ids, the preferred leader first: the node's stored placement record,
        # else the founders' placement (core/sharding/placement.py, initial_placement); the hosted
        # groups' own Raft configurations then say who their members are (_sync_members)
        try:
            named = initial_placement(state.get("placement"), config.bootstrap or list(config.nodes),
                                      opts.shards, opts.replicas)
        except PlacementError as e:
            raise ConfigError(f"node {node_id}: {e}") from None
        self.placement = {g: tuple(raft_id(n) for n in members) for g, members in named.items()}
        self.slot_map = SlotMap.even(opts.shards)
        self.slot_group = self.slot_map.groups  # slot -> group
        incarnation = int(state.get("incarnation", 0)) + 1
        self.node_state = {**state, "incarnation": incarnation, "placement": encode_placement(named)}
        self.node_meta.save(self.node_state)
        self.host = GroupHost(self.raft_id, heartbeat_ticks=hb_ticks, election_timeout_ticks=self.election_ticks,
                              incarnation=incarnation)
        # which peers take batches with embedded messages (a rolling upgrade: older nodes refuse them)
        self.peer_features = PeerFeatures((batch_codec.FEATURE_EMBEDDED,))
        self.groups: dict[int, RaftGroup] = {}
        self._lock_active: set[int] = set()  # the groups the lock service looks at (lock_groups)
        self.hb_ticks = hb_ticks
        self.tombstones = {int(g): int(i) for g, i in state.get("tombstones", {}).items()}  # _drop_group
        self.index_replies: set[object] = set()  # REPLIKV GROUP REMOVE: answered with the change's index
        self.disk_errors: list[WalBlockedError] = []  # a group's snapshot sink could not write (raft_group.py)
        self.node_log = NodeLog(self.data_dir / "wal", fsync=opts.fsync, segment_bytes=opts.segment_bytes,
                                start=int(state.get("log_start", 1)), save_start=self._save_log_start)
        self.node_log.recover()
        legacy = self._adopt_legacy_wals()
        for g, members in self.placement.items():
            if self.raft_id in members or (self.data_dir / "groups" / f"g{g}").is_dir():
                grp = self._open_group(g, members if self.raft_id in members else ())
                self.groups[g] = grp
                self.host.add_group(g, grp.core)
        self.node_log.commit()  # what opening the groups logged (resets, drops)
        self._remove_legacy_wals(legacy)
        for g in self.groups:
            self._sync_members(g)
        self.slot_epochs = [0] * len(self.slot_group)  # slot -> epoch of the move its owner came from
        for grp in self.groups.values():  # slots moved before a restart, as the groups' logs say
            assert grp.slots is not None
            owners, _epoch = grp.slots.owners()
            for slot, (owner, epoch) in owners.items():
                self._adopt([slot], owner, epoch)
        self.mover = MoveDriver()  # the moves of source groups led here (core/sharding/moves.py)
        self.sm = StateMachine()  # the node's own script cache (EVALSHA forwarding); data lives in groups
        self.leader_hint: dict[int, int] = {g: m[0] for g, m in self.placement.items()}
        self._announced: frozenset[int] = frozenset()  # the groups led at the last announcement
        self._announced_count = -1  # the number of groups hosted at the last announcement
        self._rids = itertools.count(1)
        self.pending: dict[int, list[tuple[bytes, object, int | None, int | None]]] = {}
        self.pending_reads: dict[int, list[tuple[object, bool]]] = {}
        self.writes = PendingReplies()
        self.reads = PendingReplies()  # payload: (group, argv, transaction, watch)
        self.ready_reads: list[tuple[int, int, Any, Any]] = []  # (group, index, slot, payload)
        self.fanouts: dict[object, _FanOut] = {}  # a keyless write's proposal in one group -> the write
        self.txn = TxnService(self, incarnation)  # MULTI/EXEC across groups (runtime/txn_service.py)
        self.parked: dict[int, list[tuple[float, list[bytes], _Held, Callable[[_Held], None]]]] = {}
        self.lock_service = LockService(self)  # leases and LOCK ... WAIT (runtime/locks.py)
        self.stats.update({"snapshots_taken": 0, "snapshots_installed": 0, "moved_replies": 0,
                           "tick_stalls": 0, "drains": 0})
        log.info("node %s hosts %d of %d groups (%s)", node_id, len(self.groups), opts.shards,
                 ",".join(str(g) for g in sorted(self.groups)))

    # -- placement (core/sharding/placement.py; docs/design.md, "placement") -----------------------
    def _sync_members(self, g: int) -> None:
        """A hosted group's members are those of its own Raft configuration (voters and learners),
        its preferred leader kept first while it is a voter; the node's placement record follows."""
        cfg = self.groups[g].core.log.config()
        if not cfg.members:
            return  # nothing stored or received yet: the bootstrap placement stands
        old = self.placement.get(g, ())
        voters = sorted(cfg.voters)
        preferred = self.groups[g].preferred  # as the group's log says (PREFER_ENTRY), when it says
        first = (preferred if preferred in cfg.voters else old[0] if old and old[0] in cfg.voters
                 else voters[0] if voters else sorted(cfg.members)[0])
        members = (first, *sorted(m for m in cfg.members if m != first))
        if members != old:
            self.placement[g] = members
            self._save_placement()

    def _save_log_start(self, lsn: int) -> None:
        """The node log's first LSN, durable before its older segments go (storage/node_log.py)."""
        self.node_state = {**self.node_state, "log_start": lsn}
        self.node_meta.save(self.node_state)

    def _adopt_legacy_wals(self) -> list[Any]:
        """Groups written by a replikv before the node log (a WAL and a meta file per group) are
        logged in the node log, which is then fsynced; ``_remove_legacy_wals`` deletes the old
        files only after that (a crash in between adopts them again, from scratch)."""
        groups_dir = self.data_dir / "groups"
        legacy = sorted(d for d in groups_dir.glob("g*") if (d / "wal").is_dir()) if groups_dir.is_dir() else []
        for d in legacy:
            self.node_log.adopt_legacy(int(d.name[1:]), d, self.options.segment_bytes)
        if legacy:
            self.node_log.commit()
            self.node_log.fsync_now()
        return legacy

    def _remove_legacy_wals(self, legacy: list[Any]) -> None:
        for d in legacy:
            shutil.rmtree(d / "wal")  # the WAL first: a meta file without it is ignored, not adopted
            (d / META_FILE).unlink(missing_ok=True)
        if legacy:
            log.info("node %s: the per-group logs of %d groups moved into the node log %s", self.id,
                     len(legacy), self.node_log.wal.directory)

    def _save_placement(self) -> None:
        named = {g: tuple(self.names.get(i, str(i)) for i in m) for g, m in self.placement.items()}
        self.node_state = {**self.node_state, "placement": encode_placement(named)}
        self.node_meta.save(self.node_state)

    def _config_applied(self, g: int, entry: Any) -> None:
        assert entry.config is not None
        log.info("node %s: group %d membership is now %s (index %d)", self.id, g, entry.config.describe(),
                 entry.index)
        if any(i not in self.names for i in entry.config.members):
            self._learn_addresses()
        if g in self.groups:
            self._sync_members(g)

    # -- life ------------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.start_io(self._on_peer_connected, [self._tick_loop])
        for g, members in self.placement.items():  # the preferred leader campaigns at once
            grp = self.groups.get(g)
            if grp is not None and members[0] == self.raft_id and grp.core.term == 0:
                self.host.call(g, grp.core.campaign())
        self._schedule()
        log.info("node %s serving RESP on %s:%d (raft, %d shards)", self.id, self.address.host,
                 self.address.port, self.options.shards)

    async def stop(self) -> None:
        await self.stop_io()
        self.snapshotter.stop()
        self.node_log.close()

    def lock_tables(self) -> list[Any]:
        return [g.sm.locks for g in self.groups.values()]

    @property
    def wal(self) -> Any:  # BaseRunner's fsync loop, disk guard and INFO: the node log
        return self.node_log

    # -- levels ----------------------------------------------------------------------------------
    def ack_replicas(self, level: Any) -> int:
        return 0

    @property
    def is_leader(self) -> bool:
        """True when this node leads a group (the admission rules of BaseRunner ask it)."""
        return any(g.core.role is Role.LEADER for g in self.groups.values())

    def leads(self, g: int) -> bool:
        grp = self.groups.get(g)
        return grp is not None and grp.core.role is Role.LEADER

    def leader_of(self, g: int) -> str:
        grp = self.groups.get(g)
        if grp is not None:
            leader = grp.core.leader
            return self.names.get(leader, "") if leader is not None else ""
        return self.names.get(self.leader_hint.get(g, 0), "")

    # -- routing ---------------------------------------------------------------------------------
    def _route(self, commands: list[list[bytes]]) -> tuple[int, int] | RespError:
        """(slot, group) of the commands' keys, or the error why they have none.

        One command whose one key is its first argument (SET, GET, INCR...: nearly every
        client command) is routed by that key without building the key list (the loop
        below gives the same answer for it)."""
        if len(commands) == 1:
            argv = commands[0]
            one = _ONE_KEY.get(argv[0])
            if one is None:
                one = _one_key(argv[0])
            if one and len(argv) > 1:
                slot = key_slot(argv[1])
                return slot, self.slot_group[slot]
        slot = -1
        for argv in commands:
            spec = lookup(argv[0])
            keys = spec.keys(argv) if spec is not None else []
            for key in keys:
                s = key_slot(key)
                if slot < 0:
                    slot = s
                elif self.slot_group[s] != self.slot_group[slot]:
                    return RespError("CROSSSLOT Keys in request don't hash to the same slot")
        if slot < 0:
            name = commands[0][0].decode(errors="replace").upper()
            return RespError(f"ERR {name} names no key: a sharded cluster runs keyless commands per group "
                             "(not offered yet); name a key, or use CLUSTER commands")
        return slot, self.slot_group[slot]

    def _elsewhere(self, conn: Any, slot: int, g: int, commands: list[list[bytes]], transaction: bool,
                   client: tuple[int, int] | None = None) -> None:
        """The group is led by another node: MOVED for a cluster-aware client, else forward."""
        leader = self.leader_of(g)
        addr = self.config.nodes.get(leader) if leader else None
        if (conn.cluster_aware or self.options.redirect) and addr is not None:
            self.stats["moved_replies"] += 1
            conn.reply(RespError(f"MOVED {slot} {addr.host}:{addr.port}"))
            return
        self.forwarder.forward(conn, leader, commands, transaction, client=client)

    # -- writes ----------------------------------------------------------------------------------
    def _write_one(self, conn: ClientConnection, argv: list[bytes]) -> None:
        self.write(conn, [argv], transaction=False)

    def write(self, conn: Any, commands: list[list[bytes]], transaction: bool,
              client: tuple[int, int] | None = None) -> None:
        if self.disk_error is not None:
            conn.reply(self.disk_refusal())
            return
        route = self._route(commands)
        if isinstance(route, RespError):  # no key: FLUSHALL / FLUSHDB run in every group
            if not transaction and commands[0][0].upper() in _KEYLESS_WRITES:
                self._keyless_write(conn, commands[0])
            else:
                self._unroutable(conn, route, commands, transaction)
            return
        slot, g = route
        grp = self.groups.get(g)
        if grp is None or grp.core.role is not Role.LEADER:  # not self.leads(g)
            self._elsewhere(conn, slot, g, commands, transaction, client)
            return
        commands = with_bodies(self.sm, commands)  # the node's SCRIPT LOAD cache
        if (grp.txns.locks or grp.proposing) and self._park(
                g, conn, command_keys(commands),
                lambda held: self.write(held, commands, transaction, client) if self.leads(g) else held.reply(
                    RespError(f"TRYAGAIN {self.id} is no longer the leader of group {g}; retry"))):
            return
        if self._moving(grp, commands):
            conn.reply(RespError("TRYAGAIN the key's slot is moving to another group; retry"))
            return
        err, data = encode_write(grp.sm, commands, transaction, wall_ms(), self.id,
                                 conn.watch if transaction else None)
        if err is not None:
            conn.reply(err)
            return
        rid = next(self._rids)
        self.writes.add(rid, conn, time.monotonic() + 2 * self.options.ack_timeout_ms / 1000, _WRITE_EXPIRED)
        cid, seq = client if client else (None, None)
        self.pending.setdefault(g, []).append((data, rid, cid, seq))
        self._schedule()

    def _unroutable(self, conn: Any, error: RespError, commands: list[list[bytes]], transaction: bool) -> None:
        """A MULTI block whose keys span groups by this node's slot map (a node with an older map
        forwarded it here, or a slot moved meanwhile) is a distributed transaction, never
        CROSSSLOT; anything else gets the routing error."""
        if transaction and error.message.startswith("CROSSSLOT"):
            self.txn.begin(conn, commands, lambda key: self.slot_group[key_slot(key)])
        else:
            conn.reply(error)

    def exec_transaction(self, conn: Any, queued: list[list[bytes]]) -> None:
        groups = {self.slot_group[key_slot(k)] for k in command_keys(queued)}
        if len(groups) > 1:  # one distributed transaction (runtime/txn_service.py)
            if self.disk_error is not None:
                conn.reply(self.disk_refusal())
                return
            self.txn.begin(conn, queued, lambda key: self.slot_group[key_slot(key)])
            return
        if any("write" in lookup(a[0]).flags for a in queued):  # type: ignore[union-attr]
            self.write(conn, queued, transaction=True)
        else:
            self._read(conn, queued, transaction=True)

    def run_forwarded(self, proxy: Any, commands: list[list[bytes]], transaction: bool,
                      client: tuple[int, int] | None) -> None:
        """A peer's client command, run here as if local (it is never forwarded again)."""
        spec = lookup(commands[0][0])
        if transaction or (spec is not None and "write" in spec.flags):
            self.write(proxy, commands, transaction, client)
        else:
            self._read(proxy, commands[0])

    def watch_position(self, key: bytes | None = None) -> int:
        """WATCH key: the applied index of the key's group here (positions are per group; the
        EXEC is decided at apply on the group's own change index). A group this node does not
        host: 0, so the EXEC aborts if the key ever changed (EXEC may always fail and be retried)."""
        grp = self.groups.get(self.slot_group[key_slot(key)]) if key is not None else None
        return grp.applied if grp is not None else 0

    blocking_offered = False  # BLPOP & co wait on one node-wide change index (runtime/blocking.py)
    maxmemory_offered = False  # eviction samples one node-wide data set (runtime/memory.py)

    # -- reads -----------------------------------------------------------------------------------
    def _read(self, conn: Any, argv: Any, transaction: bool = False) -> None:
        if not transaction and argv[0].upper() in _KEYLESS_READS:
            conn.reply(self._keyless_read(argv))
            return
        commands = argv if transaction else [argv]
        route = self._route(commands)
        if isinstance(route, RespError):
            self._unroutable(conn, route, commands, transaction)
            return
        slot, g = route
        grp = self.groups.get(g)
        level = conn.read_level
        strong = level in ("linearizable", "lease", "session", "bounded")
        if grp is None or (strong and not self.leads(g) and conn.cluster_aware and not conn.readonly):
            self._elsewhere(conn, slot, g, commands, transaction)
            return
        what = (g, argv, transaction, conn.watch if transaction else None)
        if grp.txns.locks and not strong and self._park(
                g, conn, command_keys(commands), lambda held: held.reply(self._serve(*what))):
            return
        if strong:  # session and bounded need positions of one log: a sharded node takes the ReadIndex
            rid = next(self._rids)
            self.reads.add(rid, conn, time.monotonic() + self.options.ack_timeout_ms / 1000,
                           "TRYAGAIN the read index was not confirmed in time (no leader or no quorum)", what)
            self.pending_reads.setdefault(g, []).append((rid, level == "lease"))
            self._schedule()
            return
        conn.reply(self._serve(*what))

    def _serve(self, g: int, argv: Any, transaction: bool, watch: dict[bytes, int] | None = None) -> Any:
        grp = self.groups[g]
        if self._moving(grp, argv if transaction else [argv], reading=True):
            return RespError("TRYAGAIN the key's slot moved to another group while this read waited; retry")
        sm = grp.sm
        now = wall_ms()
        if watch and sm.changes.any_changed(watch.items()):
            return NULL_ARRAY
        if transaction:
            return [sm.read(a, now) for a in argv]
        return sm.read(argv, now)

    def _serve_ready_reads(self) -> None:
        keep = []
        for g, index, slot, what in self.ready_reads:
            if index <= self.groups[g].applied:
                grp = self.groups[g]
                if grp.txns.locks:
                    held = _Held(slot.conn, slot)
                    keys = command_keys(what[1] if what[2] else [what[1]])
                    if self._park(g, held, keys, lambda h, what=what: h.reply(self._serve(*what))):
                        continue
                slot.resolve(encode_reply(self._serve(*what), slot.conn.resp3))
            else:
                keep.append((g, index, slot, what))
        self.ready_reads = keep

    # -- requests waiting for a transaction's locks ----------------------------------------------
    def _park(self, g: int, conn: Any, keys: list[bytes], retry: Callable[["_Held"], None]) -> bool:
        """A request on keys a transaction holds waits (parked) until the group applies a resolve
        (``_unpark``) or its deadline passes (TRYAGAIN); False when no key is held."""
        holder = self.groups[g].blocked(keys, wall_ms())
        if holder is None:
            return False
        held = conn if isinstance(conn, _Held) else _Held(conn, conn.slot())
        deadline = time.monotonic() + self.options.ack_timeout_ms / 1000
        self.parked.setdefault(g, []).append((deadline, keys, held, retry))
        return True

    def _unpark(self, g: int) -> None:
        parked = self.parked.pop(g, [])
        now = wall_ms()
        for deadline, keys, held, retry in parked:
            if self.groups[g].blocked(keys, now) is not None:
                self.parked.setdefault(g, []).append((deadline, keys, held, retry))
            else:
                retry(held)

    @staticmethod
    def _moving(grp: RaftGroup, commands: list[list[bytes]], reading: bool = False) -> bool:
        """A command on a slot the group does not serve now (frozen for a write, released or
        imported but not yet active): refused with TRYAGAIN, the client retries."""
        moves = grp.slots
        if moves is None or not moves.moving:
            return False
        for argv in commands:
            spec = lookup(argv[0])
            for key in spec.keys(argv) if spec is not None else ():
                slot = key_slot(key)
                if not (moves.owns(slot) if reading else moves.writable(slot)):
                    return True
        return False

    # -- moving slots (docs/design.md, "moving slots") --------------------------------------------
    def _adopt(self, slots: Iterable[int], group: int, epoch: int) -> None:
        """The node's slot map takes what a group's log decided about ``slots`` at ``epoch``,
        slot by slot unless it knows of a later move of that slot (per slot, move epochs grow:
        groups' logs read in any order, after a restart, give the same map)."""
        groups = list(self.slot_map.groups)
        known = self.slot_epochs
        changed = False
        for slot in slots:
            if epoch >= known[slot] and (groups[slot], known[slot]) != (group, epoch):
                groups[slot], known[slot], changed = group, epoch, True
        if changed or epoch > self.slot_map.epoch:
            self.slot_map = SlotMap(groups=tuple(groups), epoch=max(epoch, self.slot_map.epoch))
            self.slot_group = self.slot_map.groups
            self._moved = None

    def admin(self, conn: Any, argv: list[bytes]) -> None:
        """REPLIKV RESHARD <slots> <group> (move slots to a group; run on the source group's
        leader, forwarded there from any node); REPLIKV IMPORT and ACTIVATE are its steps in the
        target group, sent by the source leader."""
        sub = argv[1].upper()
        if sub in (b"TXN", b"FAILPOINT"):
            self.txn.admin(conn, argv)
        elif sub == b"GROUP" and len(argv) >= 4:
            self._group_admin(conn, argv)
        elif sub == b"PLACEMENT" and len(argv) == 2:
            conn.reply(self._placement_reply())
        elif sub == b"CLUSTER" and len(argv) == 4 and argv[2].upper() == b"ADD":
            self._learn_addresses()  # the node joins hosting no group: replikv rebalance gives it some
            name = argv[3].decode(errors="replace")
            if name not in self.config.nodes:
                raise RespError(f"ERR {name} is not in {self.config.source or 'cluster.toml'}")
            conn.reply(OK)
        elif sub == b"RESHARD" and len(argv) == 4:
            self._reshard(conn, argv)
        elif sub in (b"IMPORT", b"ACTIVATE") and len(argv) == (7 if sub == b"IMPORT" else 6):
            g, epoch = int(argv[2]), int(argv[3])
            if g not in self.placement:
                raise RespError(f"ERR no group {g}")
            if not self.leads(g):
                self.forwarder.forward(conn, self.leader_of(g), [argv], False, admin=True)
                return
            slots = list(ranges_to_slots(parse_ranges(argv[4].decode())))
            op = "import" if sub == b"IMPORT" else "activate"
            rid = next(self._rids)
            self.writes.add(rid, conn, time.monotonic() + self.options.ack_timeout_ms / 1000,
                            f"TRYAGAIN group {g} did not commit the {op} in time")
            payload = argv[6] if sub == b"IMPORT" else b""
            self.pending.setdefault(g, []).append((move_entry(op, slots, int(argv[5]), epoch, payload), rid,
                                                   None, None))
            self._schedule()
        else:
            raise RespError("ERR usage: REPLIKV RESHARD <slots, e.g. 0-1000,2000> <target group> | REPLIKV GROUP "
                            "<g> ADD|PROMOTE|REMOVE|TRANSFER|PREFER <node> | REPLIKV GROUP <g> DROP <index> | "
                            "REPLIKV PLACEMENT | REPLIKV CLUSTER ADD <node>")

    # -- group membership (replikv rebalance; docs/design.md, "placement") -------------------------
    def _placement_reply(self) -> list[Any]:
        """REPLIKV PLACEMENT: per group [group, members (preferred leader first), leader, hosted
        here, leading here]; a hosted group's members come from its own Raft configuration."""
        out: list[Any] = []
        for g in sorted(self.placement):
            out.append([g, [self.names.get(i, str(i)).encode() for i in self.placement[g]],
                        self.leader_of(g).encode(), int(g in self.groups), int(self.leads(g))])
        return out

    def _group_admin(self, conn: Any, argv: list[bytes]) -> None:
        """REPLIKV GROUP <g> ADD|PROMOTE|REMOVE <node>: one membership change of group g (thesis
        §4.1), run on its leader (forwarded there); REMOVE answers the index of the change.
        TRANSFER <node>: leadership to a voter. PREFER <node>: g's preferred leader, an entry of
        g's log (core/sharding/placement.py ``PREFER_ENTRY``), answered once committed. DROP
        <index>: this node was removed from g by the change at <index>: its replica and data go,
        and Raft messages of g older than that change no longer recreate it."""
        if not argv[2].isdigit() or int(argv[2]) not in self.placement:
            raise RespError(f"ERR no group {argv[2].decode(errors='replace')}")
        g, action, arg = int(argv[2]), argv[3].upper(), argv[4].decode(errors="replace") if len(argv) > 4 else ""
        if len(argv) != 5:
            raise RespError("ERR usage: REPLIKV GROUP <g> ADD|PROMOTE|REMOVE|TRANSFER|PREFER <node> | DROP <index>")
        if action == b"DROP":
            if not arg.isdigit():
                raise RespError("ERR usage: REPLIKV GROUP <g> DROP <index>")
            self._drop_group(g, int(arg))
            conn.reply(OK)
            return
        if arg not in self.config.nodes:
            self._learn_addresses()
        if arg not in self.config.nodes:
            raise RespError(f"ERR unknown node {arg}")
        tid = raft_id(arg)
        if action not in (b"ADD", b"PROMOTE", b"REMOVE", b"TRANSFER", b"PREFER"):
            raise RespError("ERR usage: REPLIKV GROUP <g> ADD|PROMOTE|REMOVE|TRANSFER|PREFER <node> | DROP <index>")
        if not self.leads(g):
            leader = self.leader_of(g)
            if not leader or leader == self.id:
                raise RespError(f"TRYAGAIN group {g} has no known leader; retry")
            self.forwarder.forward(conn, leader, [argv], False, admin=True)
            return
        core = self.groups[g].core
        if action == b"PREFER":  # an entry of g's log: every replica takes it (raft_group._apply_prefer)
            if tid not in core.log.config().members:
                raise RespError(f"ERR {arg} is not a member of group {g}")
            rid = next(self._rids)
            self.writes.add(rid, conn, time.monotonic() + self.options.ack_timeout_ms / 1000,
                            f"TRYAGAIN group {g}'s preferred leader change did not commit in time")
            self.pending.setdefault(g, []).append((prefer_entry(tid), rid, None, None))
            self._schedule()
            return
        if action == b"TRANSFER":
            try:
                self.host.call(g, core.transfer_leadership(tid))
            except RaftError as e:
                raise RespError(f"TRYAGAIN {type(e).__name__}: {e}") from None
            self._schedule()
            conn.reply(OK)  # started: the caller waits until the node reports the leadership
            return
        rid = next(self._rids)
        self.writes.add(rid, conn, time.monotonic() + self.options.ack_timeout_ms / 1000,
                        f"TRYAGAIN group {g}'s membership change did not commit in time")
        if action == b"ADD":
            self.host.call(g, core.add_learner(tid, rid))
        elif action == b"PROMOTE":
            self.host.call(g, core.promote(tid, rid))
        else:
            self.index_replies.add(rid)
            self.host.call(g, core.remove(tid, rid))
        self._schedule()

    def _drop_group(self, g: int, index: int) -> None:
        """This node's replica of g goes (it was removed from g at ``index``), data included."""
        self.tombstones[g] = max(index, self.tombstones.get(g, 0))
        self.placement[g] = tuple(m for m in self.placement[g] if m != self.raft_id) or self.placement[g]
        if g in self.groups:
            self._drain()  # what the group produced so far is carried out before it goes
        grp = self.groups.pop(g, None)
        self.node_state = {**self.node_state, "tombstones": {str(k): v for k, v in self.tombstones.items()}}
        self._save_placement()
        if grp is None:
            return
        self.host.remove_group(g)
        self.ready_reads = [r for r in self.ready_reads if r[0] != g]
        self.parked.pop(g, None)
        shutil.rmtree(grp.dir, ignore_errors=True)
        self.node_log.drop_group(g)  # after the directory: a replica never opens without its log
        try:
            self.node_log.commit()
        except (WalFailedError, OSError) as exc:
            self._disk_failed(exc)
        log.info("node %s no longer hosts group %d (removed at index %d): replica dropped", self.id, g, index)

    def _drop_removed(self) -> None:
        """Once a second: a hosted group whose committed configuration no longer names this node
        (it applied its own removal, maybe before a crash) drops its replica, as DROP would."""
        for g, grp in list(self.groups.items()):
            log_ = grp.core.log
            if self.raft_id not in log_.config().members and log_.config().members \
                    and log_.commit >= log_.last_config_index():
                self._drop_group(g, log_.last_config_index())

    def _create_on_demand(self, batch: Any) -> None:
        """A leader's message for a group this node does not host makes the replica (empty: the
        leader sends it a snapshot or its log), unless it predates this node's removal from the
        group (tombstone): core/multiraft/host.py ``creates_replica``."""
        for g, msg in batch.msgs:
            if g in self.groups or g not in self.placement or not creates_replica(msg, self.tombstones.get(g, 0)):
                continue
            self.groups[g] = self._open_group(g, ())
            self.host.add_group(g, self.groups[g].core)
            log.info("node %s hosts a new replica of group %d (a message from %s)", self.id, g,
                     self.names.get(msg.src, msg.src))

    def _open_group(self, g: int, members: tuple[int, ...]) -> RaftGroup:
        return RaftGroup(g, self.data_dir / "groups" / f"g{g}", self.options, self.raft_id, members,
                         self.election_ticks, self.hb_ticks, slot_map=SlotMap.even(self.options.shards),  # the
                         # initial map: the group's log (SlotMoves) records the moves beyond it
                         disk_errors=self.disk_errors, node_log=self.node_log,
                         on_config=functools.partial(self._config_applied, g),
                         lazy_follower_rounds=LAZY_FOLLOWER_ROUNDS,
                         lock_watch=functools.partial(self._lock_active.add, g))  # lock_groups

    def _address_learned(self, name: str) -> None:
        self.names[raft_id(name)] = name

    def _reshard(self, conn: Any, argv: list[bytes]) -> None:
        try:
            slots = list(ranges_to_slots(parse_ranges(argv[2].decode())))
        except ValueError as e:
            raise RespError(f"ERR {e}") from None
        if not argv[3].isdigit() or int(argv[3]) not in self.placement:
            raise RespError(f"ERR no group {argv[3].decode(errors='replace')} (groups 0-{len(self.placement) - 1})")
        target = int(argv[3])
        sources = {self.slot_group[s] for s in slots}
        if len(sources) != 1:
            raise RespError("ERR the slots belong to several groups: move one group's slots at a time")
        source = sources.pop()
        if source == target:
            raise RespError(f"ERR the slots already belong to group {target}")
        if not self.leads(source):
            self.forwarder.forward(conn, self.leader_of(source), [argv], False, admin=True)
            return
        grp = self.groups[source]
        assert grp.slots is not None
        try:
            step = self.mover.start(source, slots, target, self.slot_map.epoch + 1, grp.slots, conn.slot())
        except MoveBusy as e:
            raise RespError(f"ERR {e}") from None
        self._run_step(step)

    def _blocked(self, g: int) -> Callable[[set[int]], bool]:
        """A prepared transaction holds a key of the slots: copy them once it is resolved."""
        grp = self.groups[g]
        return lambda wanted: any(key_slot(k) in wanted for k in grp.txns.locks)

    def _run_step(self, step: MoveStep | None) -> None:
        """Carry out the mover's decision (core/sharding/moves.py): FREEZE and RELEASE proposed in
        the source group led here, IMPORT and ACTIVATE sent to the target group's leader; the
        clients of moves it stopped driving get their answer."""
        if self.mover.unanswered:
            dropped, self.mover.unanswered = self.mover.unanswered, []
            for client, why in dropped:
                client.resolve(encode_reply(RespError(why), client.conn.resp3))
        if step is None:
            return
        g, slots = step.source, list(step.slots)
        if step.op in ("freeze", "release"):
            self.pending.setdefault(g, []).append((move_entry(step.op, slots, step.target, step.epoch),
                                                   ("move", g), None, None))
            self._schedule()
            return
        argv = [b"REPLIKV", step.op.upper().encode(), str(step.target).encode(), str(step.epoch).encode(),
                format_ranges(slots_to_ranges(slots)).encode(), str(g).encode()]
        if step.op == "import":
            grp = self.groups[g]
            wanted = set(slots)
            argv.append(grp.sm.export_keys([k for k in grp.sm.data if key_slot(k) in wanted],
                                           [n for n in grp.sm.locks.locks if key_slot(n) in wanted]))
            self._send_step(step.target, argv, lambda ok, g=g: self._run_step(self.mover.imported(g, ok,
                                                                                                  self.leads(g))))
        else:
            self._send_step(step.target, argv, lambda ok, g=g: self._activated(g, ok))

    def _on_move_events(self, g: int, grp: RaftGroup) -> None:
        """Each replica updates its slot map; the source leader drives the next step."""
        events, grp.move_events = grp.move_events, []
        assert grp.slots is not None
        for op, slots, target, epoch in events:
            if op == "release":  # the source gave them to ``target``
                self._adopt(slots, target, epoch)
            elif op == "activate":  # this group (the target) serves them now
                self._adopt(slots, g, epoch)
            self._run_step(self.mover.applied(g, op, slots, target, epoch, self.leads(g), grp.slots,
                                              self._blocked(g)))

    def _activated(self, g: int, ok: bool) -> None:
        move = self.mover.activated(g, ok)
        if move is None:
            return
        log.info("node %s: slots %s moved from group %d to group %d (epoch %d)", self.id,
                 format_ranges(slots_to_ranges(move.slots)), g, move.target, move.epoch)
        if move.client is not None:
            move.client.resolve(encode_reply(OK, move.client.conn.resp3))

    def propose_step(self, g: int, data: bytes, conn: Any) -> None:
        """Propose an internal entry (a transaction step) to group ``g``, led here; ``conn`` gets
        the entry's result once it applied."""
        rid = next(self._rids)
        self.writes.add(rid, conn, time.monotonic() + self.options.ack_timeout_ms / 1000,
                        f"TRYAGAIN group {g} did not commit the transaction step in time")
        self.pending.setdefault(g, []).append((data, rid, None, None))
        self._schedule()

    def _send_step(self, target: int, argv: list[bytes], done: Callable[[bool], None]) -> None:
        """Run a move step in the target group (locally, or on its leader's node)."""
        conn = InternalCall(lambda payload: done(payload == b"OK"))
        if self.leads(target):
            self.admin(conn, argv)
        else:
            self.forwarder.forward(conn, self.leader_of(target), [argv], False, admin=True)

    def _check_moves(self) -> None:
        """Once a second: a leader holding frozen slots whose move stalled (a lost step, a new
        leader after a crash) starts it again from where its group's log stands."""
        for g, grp in self.groups.items():
            if grp.slots is not None:
                self._run_step(self.mover.check(g, self.leads(g), grp.slots, self._blocked(g)))

    # -- keyless commands: this node's share, as a Redis Cluster node answers for its own slots ---
    def _led(self) -> list[int]:
        return sorted(g for g in self.groups if self.leads(g))

    def _keyless_read(self, argv: list[bytes]) -> Any:
        """DBSIZE, KEYS, RANDOMKEY and SCAN over the groups this node leads (a cluster-aware
        client asks every node and merges, as with Redis Cluster). A SCAN cursor is
        ``inner * shards + group``: the group's own cursor and where the scan stands."""
        name, now, led = argv[0].upper(), wall_ms(), self._led()
        if name == b"SCAN":
            if not argv[1].isdigit() or len(argv[1]) > 19:
                return RespError("ERR invalid cursor")
            shards = len(self.placement)
            cursor = int(argv[1])
            g, inner = cursor % shards, cursor // shards
            ahead = [x for x in led if x >= g]
            if not ahead:
                return [b"0", []]
            if ahead[0] != g:
                g, inner = ahead[0], 0
            reply = self.groups[g].sm.read([argv[0], str(inner).encode(), *argv[2:]], now)
            if isinstance(reply, RespError):
                return reply
            nxt = int(reply[0])
            if nxt:
                return [str(nxt * shards + g).encode(), reply[1]]
            later = [x for x in led if x > g]
            return [str(later[0]).encode() if later else b"0", reply[1]]
        replies = [self.groups[g].sm.read(argv, now) for g in led]
        for r in replies:
            if isinstance(r, RespError):
                return r
        if name == b"DBSIZE":
            return sum(replies)
        if name == b"KEYS":
            return [k for r in replies for k in r]
        return next((r for r in replies if r is not None), None)  # RANDOMKEY

    def _keyless_write(self, conn: Any, argv: list[bytes]) -> None:
        """FLUSHALL / FLUSHDB: proposed to every group this node leads; OK once all applied."""
        led = self._led()
        if not led:
            conn.reply(RespError(f"ERR {self.id} leads no group right now: nothing of its own to flush"))
            return
        fan = _FanOut(conn.slot(), len(led), time.monotonic() + 2 * self.options.ack_timeout_ms / 1000)
        for g in led:
            err, data = encode_write(self.groups[g].sm, [argv], False, wall_ms(), self.id)
            if err is not None:
                conn.reply(err)
                return
            rid = next(self._rids)
            self.fanouts[rid] = fan
            self.pending.setdefault(g, []).append((data, rid, None, None))
        self._schedule()

    # -- the loop --------------------------------------------------------------------------------
    def _drain(self) -> None:
        """Host inputs of this iteration, then its Ready: every Persist, each written WAL committed,
        then applies and replies, and only then the batches (core/multiraft/host.py contract).

        Client replies that were ready before the drain (a forwarded write's reply taken from a
        peer in this iteration) are written first, not after its Raft work; and the drain's peer
        frames (AppendEntries, acknowledgements, forwarded commands' replies) are written before
        its client replies, so the other nodes' part of a round starts while this node writes to
        its clients. Neither reply depends on this drain's persist (a forwarded reply is the
        leader's, after its commit; a client's reply is resolved by an apply), and the loop
        already allowed both orders (``flush_clients_soon`` and the transport's own
        ``write_held`` run at the end of the iteration, before or after a drain); a peer frame
        still leaves only after the persist it may depend on (BENCHMARKS.md, session 21: the
        stages of a forwarded write)."""
        self._drain_scheduled = False
        if self.dirty_clients:
            self._flush_clients()
        host = self.host
        if self.disk_error is None:
            pending, self.pending = self.pending, {}
            for g, items in pending.items():
                host.propose(g, items)
            reads, self.pending_reads = self.pending_reads, {}
            for g, rs in reads.items():
                host.read(g, rs)
        ready = host.ready()
        if ready.groups or ready.batches:
            self.stats["drains"] += 1  # a loop iteration with Raft work: INFO stats, per SET in BENCHMARKS.md
        written: set[int] = set()
        try:
            if self.disk_errors:
                raise self.disk_errors.pop()
            for g, effects in ready.groups:
                for e in effects:
                    if type(e) is Persist:
                        self.groups[g].persist(e)
                        written.add(g)
            if self.disk_error is None and self.node_log.pending:
                self.node_log.commit()  # every group's records: one write, one fsync (storage/node_log.py)
        except (WalFailedError, OSError) as exc:
            self._disk_failed(exc)  # the WALs keep what they could not write; retried (runtime/base.py)
        for g, effects in ready.groups:
            grp = self.groups[g]
            for e in effects:
                kind = type(e)
                if kind is Apply:
                    for rid, result, index in grp.apply(e):
                        self._resolve_write(g, rid, result, index)
                elif kind is RestoreSnapshot:
                    grp.restore(e.snapshot)
                    self.stats["snapshots_installed"] += 1
                elif kind is ReadReady:
                    entry = self.reads.pop(e.request_id)
                    if entry is not None:
                        self.ready_reads.append((g, e.index, entry.slot, entry.payload))
                elif kind is Reply:
                    self._on_reply(g, e.request_id, e.result)
        # a role changes only with its group's effects, and a group hosted or dropped changes the
        # count: the LEADERS announcement is rebuilt only then (work per group with effects)
        announced = self._announced
        role_changed = self._announced_count != len(self.groups)
        for g, _effects in ready.groups:
            grp = self.groups[g]
            if (grp.core.role is Role.LEADER) != (g in announced):
                role_changed = True
            if grp.move_events:
                self._on_move_events(g, grp)
            if grp.preferred_changed:
                grp.preferred_changed = False
                self._sync_members(g)
            if grp.txns_released:
                grp.txns_released = False
                if g in self.parked:
                    self._unpark(g)
        if self.disk_error is None:
            send = self.transport.send
            features = self.peer_features
            for b in ready.batches:
                name = self.names.get(b.dst)
                if name is not None:
                    send(name, BATCH + batch_codec.encode(
                        b, embedded=features.has(name, batch_codec.FEATURE_EMBEDDED)))
        if self.ready_reads:
            self._serve_ready_reads()
        if role_changed:
            self._announce()
        self.transport.write_held()  # this drain's frames (batches, forwarded replies) leave now,
        self._flush_clients()  # then its client replies (docstring)
        for g in written:
            grp = self.groups[g]
            if grp.snapshot_due(self.options.snapshot_bytes) and self.disk_error is None:
                self._snapshot_in_background(g)

    def _resolve_write(self, g: int, rid: object, result: Any, index: int) -> None:
        if type(rid) is tuple:  # ("expiry", g): the group's EXPIREDUE applied; ("move", g): a step
            if rid[0] == "expiry":
                self.groups[g].expiry_inflight = False
            return
        fan = self.fanouts.pop(rid, None)
        if fan is not None:
            fan.done(None)
            return
        waiting = self.writes.pop(rid)
        if rid in self.index_replies:
            self.index_replies.discard(rid)
            result = index
        if waiting is not None:
            waiting.slot.resolve(encode_reply(result, waiting.conn.resp3))

    def _on_reply(self, g: int, rid: object, result: object) -> None:
        self.index_replies.discard(rid)
        if type(rid) is tuple:
            if rid[0] == "expiry":
                self.groups[g].expiry_inflight = False
            elif rid[0] == "move":  # a move step refused (leadership lost): the new leader resumes it
                self.mover.refused(g)
            return
        err = core_reply_error(result, f"{self.id} is not the leader of group {g}")
        fan = self.fanouts.pop(rid, None)
        if fan is not None:
            fan.done(err or RespError("TRYAGAIN a group did not take the write"))
            return
        target = self.writes.pop(rid) or self.reads.pop(rid)
        if target is not None:
            target.slot.resolve(encode_reply(err or OK, target.conn.resp3))

    def _snapshot(self, grp: RaftGroup) -> None:
        """Snapshot the group's applied state now, on the loop (SAVE)."""
        self._compact(grp, grp.applied, grp.state_blob())

    def _compact(self, grp: RaftGroup, index: int, app: Any) -> None:
        """Compact the group's log to the snapshot of its state ``app`` at ``index``: the core's
        Persist effects (the snapshot file, unless ``snapshot_on_disk`` says a child wrote it; the
        log's truncation), one node-log commit, the segments reclaimed, then the freed heap handed
        back (runtime/memory.py). A disk failure goes to the disk guard, retried as any refused
        write."""
        try:
            for e in grp.core.compact(index, app):
                if isinstance(e, Persist):
                    grp.persist(e)
            self.node_log.commit()
            self.node_log.reclaim()
        except (WalFailedError, OSError) as exc:
            self._disk_failed(exc)
            return
        self.stats["snapshots_taken"] += 1
        return_freed_memory()

    def take_snapshot(self) -> int:
        """REPLIKV SNAPSHOT / SAVE: every hosted group now, on the loop (Redis's SAVE); returns the
        number of groups."""
        if self.snapshotter.running or self._reading_back is not None:
            raise RespError(SNAPSHOT_RUNNING)
        self._drain()
        for grp in self.groups.values():
            self._snapshot(grp)
        return len(self.groups)

    def background_snapshot(self) -> bool:
        """BGSAVE: the group holding the most log since its snapshot, in a forked child; False if
        none can start (one running, nothing applied since, the disk refusing). The others follow
        as the node log's bound asks for them (``_bound_node_log``)."""
        sizes = self._logged_since_snapshot()
        return any(self._snapshot_in_background(g) for g in sorted(sizes, key=sizes.__getitem__, reverse=True))

    def _logged_since_snapshot(self) -> dict[int, int]:
        """The bytes each hosted group logged since its last snapshot (what compacting it frees)."""
        return {g: grp.wal.size_bytes - grp.wal_after_snapshot for g, grp in self.groups.items()}

    # a snapshot child's file being read back (``_snapshot_written``): no other starts meanwhile
    _reading_back: threading.Thread | None = None

    def _snapshot_in_background(self, g: int) -> bool:
        """Snapshot group ``g``'s applied state in a forked child (runtime/snapshotter.py, one child
        per node at a time), as the unsharded runner does: on the loop, a group of ~100 MB held
        its node's loop 0.8-0.9 s, three of them 1.5 s, past an election timeout as the data grows
        (BENCHMARKS.md, session 31). The child serializes the group as it was at the fork (its
        ``applied`` index); once the file is durable and read back, the core compacts to it.
        False when none starts (a child or a read-back running, nothing applied since the
        group's last snapshot, the disk refusing)."""
        grp = self.groups.get(g)
        if grp is None or self.disk_error is not None or self._reading_back is not None or self.snapshotter.running:
            return False
        core_log = grp.core.log
        index = grp.applied
        if index <= core_log.snapshot.index:
            return False
        term, config = int(core_log.term(index) or 0), core_log.config_at(index)
        return self.snapshotter.start(index, term, lambda: [stored_head(config), grp.state_blob()],
                                      lambda i: self._snapshot_written(g, grp, i), grp.snapshot_dir)

    def _snapshot_written(self, g: int, grp: RaftGroup, index: int) -> None:
        """The child's snapshot of group ``g`` is durable: read it back off the loop (no snapshot
        starts while that runs), then compact."""
        self._reading_back = read_back(grp.snapshot_dir, index,
                                       lambda stored: self._install_written(g, grp, index, stored))

    def _install_written(self, g: int, grp: RaftGroup, index: int, stored: Any) -> None:
        """Compact group ``g`` to the snapshot its child wrote, unless the group is gone (dropped
        or reopened meanwhile) or already holds a snapshot as new (one from its leader)."""
        self._reading_back = None
        if self.groups.get(g) is not grp or stored is None or index <= grp.core.log.snapshot.index:
            return
        _voters, _learners, app = split_stored(stored.data)
        grp.snapshot_on_disk = index  # persist keeps the file the child wrote, not a copy of it
        self._compact(grp, index, app)

    # -- peers -----------------------------------------------------------------------------------
    def _on_frame(self, peer: str, payload: bytes) -> None:
        self.frames_in += 1
        if self.service_frame(peer, payload):
            return
        kind, body = payload[:1], payload[1:]
        try:
            if kind == BATCH:
                if self.disk_error is not None:
                    return  # frozen: a silent node to the cluster
                batch = batch_codec.decode(body)
                if self.names.get(batch.src) != peer or batch.dst != self.raft_id:
                    log.warning("peer %s sent a batch from %d to %d; dropped", peer, batch.src, batch.dst)
                    return
                if any(g not in self.groups for g, _m in batch.msgs):
                    self._create_on_demand(batch)
                self.host.step(batch)
                self._schedule()
            elif kind == LEADERS:
                parts = msgpack.unpackb(body)
                if not isinstance(parts, list) or len(parts) != 2:
                    raise ValueError("a LEADERS frame is [groups led, moved slots]")
                led, moved = parts
                if not isinstance(led, list) or not all(type(g) is int for g in led):
                    raise ValueError("a LEADERS frame names the groups its node leads")
                if not isinstance(moved, list) or not all(
                        isinstance(r, list) and len(r) == 4 and all(type(x) is int for x in r)
                        and 0 <= r[0] <= r[1] < len(self.slot_group) and r[2] in self.placement and r[3] > 0
                        for r in moved):
                    raise ValueError("a LEADERS frame's moved slots are [first, last, group, epoch] runs")
                for first, last, g, epoch in moved:  # slot by slot: a later move wins (_adopt)
                    self._adopt(range(first, last + 1), g, epoch)
                src = next((i for i, n in self.names.items() if n == peer), None)
                for g in led:
                    if g in self.placement and src is not None and g not in self.groups:
                        self.leader_hint[g] = src
            elif kind == FEATURES:
                reply = self.peer_features.received(peer, body)
                if reply is not None:
                    self.transport.send(peer, FEATURES + reply)
            elif kind in (MEMBER_CHECK, GONE):
                pairs = msgpack.unpackb(body)
                if not isinstance(pairs, list) or not all(
                        isinstance(p, list) and len(p) == 2 and all(type(x) is int for x in p) for p in pairs):
                    raise ValueError("a membership frame is a list of [group, config index] pairs")
                if kind == MEMBER_CHECK:
                    self._answer_member_check(peer, pairs)
                else:
                    self._on_gone(peer, pairs)
            else:
                raise ValueError(f"unknown frame kind {kind!r}")
        except (ValueError, TypeError) as e:
            log.warning("dropping a bad frame from peer %s: %s", peer, e)

    # -- stale replicas (a removed node that missed its removal) ---------------------------------
    def _check_membership(self) -> None:
        """Every ``MEMBER_CHECK_S``: ask the other members of each group this node hosts and does
        not lead whether they know a committed configuration that leaves it out. A node removed
        from a group while it was down or cut off never applies its removal, and the group's
        leader no longer writes to it (a quiesced replica does not even campaign): without the
        question it would keep a stale replica for good (CockroachDB's replica GC queue asks the
        range descriptor the same question)."""
        asks: dict[str, list[list[int]]] = {}
        for g, grp in self.groups.items():
            log_ = grp.core.log
            if grp.core.role is Role.LEADER or self.raft_id not in log_.config().members:
                continue
            for m in log_.config().members:
                name = self.names.get(m)
                if m != self.raft_id and name is not None:
                    asks.setdefault(name, []).append([g, log_.last_config_index()])
        for name, pairs in asks.items():
            self.transport.send(name, MEMBER_CHECK + msgpack.packb(pairs))

    def _answer_member_check(self, peer: str, pairs: list[list[int]]) -> None:
        """GONE for the groups whose configuration here is committed, newer than the asker's and
        leaves the asker out."""
        src = next((i for i, n in self.names.items() if n == peer), None)
        gone = []
        for g, index in pairs:
            grp = self.groups.get(g)
            if grp is None or src is None:
                continue
            log_ = grp.core.log
            at = log_.last_config_index()
            if index < at <= log_.commit and src not in log_.config().members:
                gone.append([g, at])
        if gone:
            self.transport.send(peer, GONE + msgpack.packb(gone))

    def _on_gone(self, peer: str, pairs: list[list[int]]) -> None:
        """Drop the replica of each group a peer knows this node was removed from, at a config
        index above any this replica knows (Raft §4.2.2: a server not in the committed
        configuration is no longer a member; one the group adds again comes back as a learner
        and catches up, created on demand). A teller that knows less than this replica (a new
        member it has not heard of yet) is ignored."""
        for g, index in pairs:
            grp = self.groups.get(g)
            if grp is not None and index > grp.core.log.last_config_index():
                log.info("node %s: %s knows a committed configuration of group %d (index %d) without this "
                         "node, which missed its removal", self.id, peer, g, index)
                self._drop_group(g, index)

    def _announce(self, force: bool = False) -> None:
        led = frozenset(g for g, grp in self.groups.items() if grp.core.role is Role.LEADER)
        if (led != self._announced or force) and hasattr(self, "transport"):
            self._announced = led
            frame = LEADERS + msgpack.packb([sorted(led), self._moved_runs()])
            for p in self.peer_ids:
                self.transport.send(p, frame)
        self._announced_count = len(self.groups)

    _moved: list[list[int]] | None = None

    def _moved_runs(self) -> list[list[int]]:
        """The slots moved since the initial map, as ``[first, last, group, epoch]`` runs (what a
        LEADERS frame tells peers; kept until the map changes)."""
        if self._moved is None:
            runs: list[list[int]] = []
            groups = self.slot_group
            for slot, epoch in enumerate(self.slot_epochs):
                if epoch:
                    g = groups[slot]
                    last = runs[-1] if runs else None
                    if last is not None and last[1] == slot - 1 and last[2] == g and last[3] == epoch:
                        last[1] = slot
                    else:
                        runs.append([slot, slot, g, epoch])
            self._moved = runs
        return self._moved

    def _on_peer_connected(self, peer: str) -> None:
        self._announce(force=True)
        self.transport.send(peer, FEATURES + self.peer_features.hello())

    def _on_peer_disconnected(self, peer: str) -> None:
        self.peer_features.forget(peer)  # it may come back as another version
        if any(self.leader_of(g) == peer for g in self.placement):
            self.forwarder.leader_lost()

    # -- timers ----------------------------------------------------------------------------------
    async def _tick_loop(self) -> None:
        next_second = time.monotonic() + 1
        next_expiry = 0.0
        async for now in self.ticks(self.tick_s):
            self._expire_waiters(now)
            if self.disk_error is not None:
                continue
            self.host.tick()
            self.txn.tick()
            self.lock_service.tick()
            if now >= next_expiry:
                next_expiry = now + 0.1
                self._expire_keys()
            if now >= next_second:
                next_second = now + 1
                self._announce(force=True)
                self._hand_back_leadership()
                self._check_moves()
                self._drop_removed()
            self._drain()

    def _hand_back_leadership(self) -> None:
        """Leaders spread: a group led here whose preferred leader (the first of its placement)
        is live and holds the whole log gets its leadership back (thesis §3.10 transfer), as
        after a node restart the groups it led would otherwise stay with the others."""
        for g, grp in self.groups.items():
            core = grp.core
            preferred = self.placement[g][0]
            if core.role is not Role.LEADER or preferred == self.raft_id or preferred in self.host.dead:
                continue
            pr = core.progress.get(preferred)
            if pr is not None and pr.match == core.log.last_index and core.lead_transferee is None:
                try:
                    self.host.call(g, core.transfer_leadership(preferred))
                except RaftError:
                    continue

    _member_check_at = 0.0

    def _every_second(self) -> None:
        """The groups' commit indexes recorded; groups pinning old segments of the node log
        carried forward, and the segments no group needs deleted (storage/node_log.py); every
        ``MEMBER_CHECK_S``, the membership check of followed groups."""
        now = time.monotonic()
        if now >= self._member_check_at:
            self._member_check_at = now + MEMBER_CHECK_S
            self._check_membership()
        node_log = self.node_log
        for grp in self.groups.values():
            grp.record_commit()
        self._bound_node_log()
        boundary, pinning = node_log.pinning(LOG_SEGMENTS_KEPT)
        if pinning:
            self._drain()  # every Persist carried out: the cores' logs are what the node log holds
        for g in pinning:
            hosted = self.groups.get(g)  # (the drain may have dropped it)
            if hosted is not None and self.disk_error is None and isinstance(hosted.wal, GroupLog):
                entries = hosted.core.log.slice
                hosted.wal.carry_forward(boundary,
                                         lambda lo, hi: [codec.entry_to_wire(e) for e in entries(lo, hi + 1)])
        try:
            node_log.commit()
            node_log.reclaim()
        except (WalFailedError, OSError) as exc:
            self._disk_failed(exc)

    def _bound_node_log(self) -> None:
        """``--snapshot-bytes`` bounds the entries the node logs after its groups' snapshots, all
        groups together, as it bounds the one group's of an unsharded node: while they exceed it,
        the group holding the most is snapshotted (its log compacted, in memory and on disk), in
        a forked child (``_snapshot_in_background``; one at a time, the next a second later).
        The drain's check of each group that wrote (``RaftGroup.snapshot_due``) alone let a node
        of K busy groups hold K times the bound, in its WAL and in the cores' logs in memory
        (session 30: 3 groups, 134 MB of WAL and no snapshot, the nodes' RSS twice an unsharded
        node's and their CPU per write rising with it)."""
        sizes = self._logged_since_snapshot()
        total = sum(sizes.values())
        if total <= self.options.snapshot_bytes or self.disk_error is not None:
            return
        self._drain()  # every Persist carried out: a snapshot covers what the group applied
        for g in sorted(sizes, key=sizes.__getitem__, reverse=True):
            if self._snapshot_in_background(g):  # one child at a time: the next one a second later
                break

    def _expire_keys(self) -> None:
        """Active expiry: each group this node leads proposes EXPIREDUE for its due keys."""
        now = wall_ms()
        for g, grp in self.groups.items():
            if grp.expiry_inflight:
                if grp.core.role is not Role.LEADER:
                    grp.expiry_inflight = False  # the next leader proposes its own
                continue
            if not grp.sm.expires or grp.core.role is not Role.LEADER:  # a group with no TTL: two tests
                continue
            keys = grp.sm.expired_keys(now, 200)
            if keys and grp.txns.locks:  # a key a transaction holds expires once it is resolved
                keys = [k for k in keys if grp.txns.holder(k) is None]
            if keys:
                grp.expiry_inflight = True
                data = msgpack.packb([now, False, [[EXPIRE_DUE, *keys]]])
                self.pending.setdefault(g, []).append((data, ("expiry", g), None, None))
                self._schedule()

    def lock_groups(self) -> Iterator[tuple[int, StateMachine, int, bool]]:
        """The lock service's view (runtime/locks.py): the hosted groups with locks held or changed.

        Only the groups in ``_lock_active`` are looked at: a group enters it when its lock table
        changes or is replaced by a snapshot's (``LockTable.watch``, ``RaftGroup.lock_watch``),
        and leaves it once its table has no change left to observe and no lease counting down.
        A node of 1,000 idle groups looked at every one of them 20 times a second (~1 % of a
        core, BENCHMARKS.md, session 32)."""
        active = self._lock_active
        for g in list(active):
            grp = self.groups.get(g)
            if grp is not None:
                table = grp.sm.locks
                if table.changed or table.clock.deadlines:
                    yield g, grp.sm, grp.core.term, grp.core.role is Role.LEADER
                    continue
            active.discard(g)

    def propose_internal(self, g: int, cmds: list[list[bytes]], rid: object) -> None:
        """Propose the group leader's own commands (LOCKEXPIRE) as one entry; ``rid`` a tuple."""
        self.pending.setdefault(g, []).append((msgpack.packb([wall_ms(), False, cmds]), rid, None, None))
        self._schedule()

    def _expire_waiters(self, now: float) -> None:
        expired = self.reads.expire(now)
        expired = self.writes.expire(now) or expired
        expired = self.forwarder.expire(now) or expired
        for g, parked in list(self.parked.items()):
            if any(p[0] <= now for p in parked):
                self.parked[g] = [p for p in parked if p[0] > now]
                for p in parked:
                    if p[0] <= now:
                        p[2].reply(RespError("TRYAGAIN a key stayed locked by a transaction being committed; "
                                             "retry"))
                expired = True
        for rid, fan in list(self.fanouts.items()):
            if fan.deadline < now:
                del self.fanouts[rid]
                fan.expire()
                expired = True
        if expired:
            self._flush_clients()

    # -- the disk guard --------------------------------------------------------------------------
    def _on_disk_blocked(self) -> None:
        refused = self.disk_refusal()
        self.writes.fail_all(lambda rid, _: self.disk_inflight_error())
        self.reads.fail_all(refused)
        self.pending, self.pending_reads = {}, {}
        self._flush_clients()

    def _on_disk_resumed(self) -> None:
        self._schedule()

    def digest(self) -> bytes:
        """REPLIKV DIGEST: the groups this node hosts, each by its state machine's digest (equal on
        nodes hosting the same groups once converged)."""
        h = hashlib.sha256()
        for g in sorted(self.groups):
            h.update(g.to_bytes(4, "big") + self.groups[g].sm.digest())
        return h.digest()

    def digest_parts(self) -> list[tuple[str, tuple[str, ...], bytes]]:
        """REPLIKV DIGESTS: one part per group this node hosts, held by its placement's nodes."""
        names = self.names
        return [(f"group {g}", tuple(sorted(names.get(i, str(i)) for i in self.placement.get(g, ()))),
                 self.groups[g].sm.digest()) for g in sorted(self.groups)]

    # -- Redis Cluster's view (core/sharding/cluster_replies.py) ---------------------------------
    def cluster_view(self) -> ClusterView:
        names = self.names
        nodes = self.config.nodes
        cluster = ",".join(f"{n}@{a.host}:{a.port}" for n, a in sorted(nodes.items()))  # the same on every node
        return ClusterView(
            slot_map=self.slot_map,
            placement={g: tuple(names.get(i, str(i)) for i in m) for g, m in self.placement.items()},
            leaders={g: self.leader_of(g) or None for g in self.placement},
            addresses={n: (a.host, a.port) for n, a in nodes.items()},
            node_ids={n: node_id(cluster, n) for n in nodes},
            myself=self.id,
            bus_ports={n: a.peer_port for n, a in nodes.items()},
            failed=frozenset(names[p] for p in self.host.dead if p in names),
            offsets={(g, self.id): grp.applied for g, grp in self.groups.items()})

    def cluster_command(self, conn: ClientConnection, argv: list[bytes]) -> None:
        """CLUSTER SLOTS lists each group's slots with its leader only (redis-py types a node by
        its first appearance: listing followers would hide leaders from its all-primaries
        commands). Asking SLOTS, SHARDS or NODES makes the connection cluster-aware (MOVED)."""
        sub = argv[1].upper()
        if sub in (b"SLOTS", b"SHARDS", b"NODES"):
            conn.cluster_aware = True
            view = self.cluster_view()
            reply = (cluster_slots(view, followers=False) if sub == b"SLOTS" else
                     cluster_shards(view) if sub == b"SHARDS" else cluster_nodes(view))
            conn.reply(reply)
        elif sub == b"INFO":
            conn.reply(cluster_info(self.cluster_view()))
        elif sub == b"MYID":
            conn.reply(self.cluster_view().node_ids[self.id].encode())
        elif sub == b"KEYSLOT" and len(argv) == 3:
            conn.reply(key_slot(argv[2]))
        elif sub in (b"COUNTKEYSINSLOT", b"GETKEYSINSLOT") and len(argv) == (3 if sub == b"COUNTKEYSINSLOT" else 4):
            if not argv[2].isdigit() or int(argv[2]) >= len(self.slot_group):
                raise RespError("ERR Invalid slot")
            slot = int(argv[2])
            grp = self.groups.get(self.slot_group[slot])
            keys = [k for k in grp.sm.data if key_slot(k) == slot] if grp is not None else []
            if sub == b"COUNTKEYSINSLOT":
                conn.reply(len(keys))
            else:
                if not argv[3].isdigit():
                    raise RespError("ERR Invalid number of keys")
                conn.reply(keys[:int(argv[3])])
        else:
            raise RespError(f"ERR unknown subcommand or wrong number of arguments for 'CLUSTER|"
                            f"{sub.decode(errors='replace')}'. Offered: SLOTS SHARDS NODES INFO MYID KEYSLOT "
                            "COUNTKEYSINSLOT GETKEYSINSLOT")

    # -- what the mode contract also asks --------------------------------------------------------
    def failover(self, conn: Any, target: str, force: bool) -> None:
        conn.reply(RespError("ERR FAILOVER moves one group's leader: not offered in a sharded cluster yet"))

    def wait_replicas(self, conn: Any, numreplicas: int, timeout_ms: int) -> None:
        conn.reply(0)  # a raft write is answered once a majority of its group holds it

    def waiting_clients(self) -> int:
        return len(self.writes) + len(self.reads)

    def evict(self, keys: list[bytes]) -> None:
        pass  # maxmemory eviction is per group: not offered in a sharded cluster yet (admission refuses)

    def role_reply(self) -> list[Any]:
        led = sum(1 for g in self.groups.values() if g.core.role is Role.LEADER)
        return [b"leader" if led else b"follower", 0, b"", led]

    def info(self, wanted: list[str]) -> str:
        sections = self.info_sections()
        sections["persistence"] = self.persistence_info(0)
        # the host's counters (core/multiraft/host.py): Raft messages and batches per write
        sections["stats"] += [f"replikv_raft_{k}:{v}" for k, v in self.host.stats.items()]
        led = sorted(g for g, grp in self.groups.items() if grp.core.role is Role.LEADER)
        rep = [f"role:{'master' if led else 'slave'}", f"replikv_node:{self.id}",
               f"replikv_shards:{self.options.shards}", f"replikv_groups_hosted:{len(self.groups)}",
               f"replikv_groups_led:{len(led)}", f"replikv_groups_quiesced:{len(self.groups) - len(self.host.awake)}",
               f"replikv_peers_dead:{','.join(self.names.get(p, str(p)) for p in sorted(self.host.dead))}",
               # connected peers sent batches in the older form: they did not announce the embedded
               # one (a rolling upgrade in progress, runtime/peer_features.py)
               "replikv_peers_older_form:" + ",".join(
                   p for p in self.peer_ids if self.transport.connected(p)
                   and not self.peer_features.has(p, batch_codec.FEATURE_EMBEDDED))]
        # a line per hosted group, only when the section is shown: with 1,000 groups every INFO
        # built them, each scanning the slot map (0.65 s of the node's loop, BENCHMARKS.md, session 32)
        if shown_info(wanted, "replication"):
            by_group = self.slot_map.ranges_by_group()
            for g in sorted(self.groups):
                grp = self.groups[g]
                core = grp.core
                members = "/".join(self.names.get(i, str(i)) for i in self.placement[g])
                slots = format_ranges(by_group.get(g, []), sep="/")
                rep.append(f"group{g}:role={core.role.value},term={core.term},leader={self.leader_of(g)},"
                           f"members={members},slots={slots},commit={core.log.commit},applied={grp.applied},"
                           f"keys={grp.sm.dbsize},quiesced={int(self.host.is_quiesced(g))}"
                           + self._lazy_info(core))
        sections["replication"] = rep
        dbsize = sum(self.groups[g].sm.dbsize for g in led)
        sections["keyspace"] = [f"db0:keys={dbsize},expires=0,avg_ttl=0"] if dbsize else []
        return render_info(sections, wanted)

    def _lazy_info(self, core: RaftNode) -> str:
        """A group leader's lazy third replica (core/raft/node.py): the follower sent each round
        at once, how often the roles swapped, and the rounds held for the lazy follower."""
        if core.role is not Role.LEADER or core.eager_follower is None:
            return ""
        return (f",eager={self.names.get(core.eager_follower, core.eager_follower)},"
                f"lazy_swaps={core.lazy_swaps},lazy_rounds_held={core.lazy_rounds_held}")


class _Held:
    """A client request parked on a transaction's locks: its reply position, taken when it was
    parked, so pipelined replies stay in order; everything else is the connection's."""

    def __init__(self, conn: Any, slot: Any) -> None:
        self._conn, self._slot = conn, slot
        self.watch = dict(conn.watch)  # EXEC clears the connection's WATCH as soon as it returns

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def slot(self) -> Any:
        return self._slot

    def reply(self, value: Any) -> None:
        self._slot.resolve(encode_reply(value, self._conn.resp3))

    def reply_bytes(self, data: bytes) -> None:
        self._slot.resolve(data)


class _FanOut:
    """One keyless write proposed to several groups: one reply once every group answered
    (the first error wins)."""

    def __init__(self, slot: Any, count: int, deadline: float) -> None:
        self.slot, self.left, self.deadline = slot, count, deadline
        self.error: RespError | None = None

    def done(self, error: RespError | None) -> None:
        self.error = self.error or error
        self.left -= 1
        if self.left == 0:
            self.slot.resolve(encode_reply(self.error or OK, self.slot.conn.resp3))

    def expire(self) -> None:
        if self.left > 0:
            self.left = 0
            self.slot.resolve(encode_reply(RespError(_WRITE_EXPIRED), self.slot.conn.resp3))


__all__ = ["ShardedRaftRunner"]
