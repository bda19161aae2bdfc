"""A scripted cluster of RaftNode cores for data-driven scenario tests.

Modelled on etcd-io/raft's `rafttest` InteractionEnv: a text command drives
the cluster one explicit step at a time and returns what happened as text,
which a scenario file compares against its golden output. Nothing here is
random except each node's election jitter, seeded by its id, so a scenario
is reproducible byte for byte.

Commands (arguments `key=value`, lists `(1,2,3)`):
  add-nodes N [voters=(..)] [learners=(..)] [index=I] [prevote=bool]
            [checkquorum=bool] [lease=bool] [election=T] [heartbeat=H] [chunk=B]
  campaign ID | tick ID [N] | tick-election ID | tick-heartbeat ID
  propose ID DATA [client=C seq=S] | read-index ID RID [lease]
  add-learner ID NODE | promote ID NODE | remove ID NODE
  transfer-leadership from=ID to=ID | compact ID INDEX
  deliver [ID..] [drop=(..)] | stabilize [ID..] [drop=(..)]
  partition (..) (..) | heal | crash ID | restart ID
  status [ID..] | raft-log ID | state-machine ID | log-level none|info|debug
Messages queued in the network are delivered only by deliver/stabilize;
Persist effects are synced at once (the durability rule holds trivially).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from replikv.core.raft.effects import (
    Apply,
    Effect,
    Persist,
    ReadReady,
    Reply,
    RestoreSnapshot,
    Send,
)
from replikv.core.raft.errors import RaftError
from replikv.core.raft.messages import Entry, EntryKind, HardState, RaftMsg, Snapshot
from replikv.core.raft.node import DurableState, RaftNode, Role
from replikv.sim.fmt import fmt_effect, fmt_entry, fmt_msg

__all__ = ["InteractionEnv", "MemoryDisk"]

_LEVELS = {"none": 0, "info": 1, "debug": 2}


class MemoryDisk:
    """Stable storage for a scripted node: a Persist is durable as soon as it is
    written (the durability rule holds trivially), applied as documented in
    core/raft/effects.py: snapshot first (dropping the covered prefix, or the
    whole log with discard_log), then entries replace the stored suffix from
    their first index, then the hard state. (The random simulator keeps the
    real WAL format instead: sim/disk.py.)"""

    def __init__(self) -> None:
        self.hard_state = HardState()
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []  # contiguous after snapshot.index

    def write(self, p: Persist) -> None:
        if p.snapshot is not None:
            s = p.snapshot
            self.entries = [] if p.discard_log else [e for e in self.entries if e.index > s.index]
            if self.entries and self.entries[0].index != s.index + 1:
                self.entries = []
            self.snapshot = s
        if p.entries:
            first = p.entries[0].index
            self.entries = [e for e in self.entries if e.index < first]
            self.entries.extend(p.entries)
        if p.hard_state is not None:
            self.hard_state = p.hard_state

    def load(self) -> DurableState:
        return DurableState(hard_state=self.hard_state, snapshot=self.snapshot, entries=tuple(self.entries))


@dataclass
class _Node:
    node: RaftNode
    disk: MemoryDisk
    opts: dict[str, object]
    applied: list[str] = field(default_factory=list)
    up: bool = True


def _ids(s: str) -> list[int]:
    s = s.strip().strip("()")
    return [int(x) for x in re.split(r"[ ,]+", s) if x]


class InteractionEnv:
    def __init__(self) -> None:
        self.nodes: dict[int, _Node] = {}
        self.queue: list[RaftMsg] = []
        self.groups: list[set[int]] | None = None
        self.level = 1
        self.out: list[str] = []

    # ------------------------------------------------------------ driver
    def run(self, line: str) -> str:
        self.out = []
        words = line.split()
        cmd, rest = words[0], words[1:]
        pos = [w for w in rest if "=" not in w]
        kw = dict(w.split("=", 1) for w in rest if "=" in w)
        try:
            getattr(self, "cmd_" + cmd.replace("-", "_"))(pos, kw)
        except RaftError as e:
            self.out.append(f"error: {e!r}")
        return "\n".join(self.out)

    def _log(self, level: int, s: str) -> None:
        if self.level >= level:
            self.out.append(s)

    def _handle(self, nid: int, fn: object) -> None:
        """Run one call on a node, carry out its effects, print them."""
        n = self.nodes[nid]
        before = (n.node.role, n.node.term)
        effects: list[Effect] = fn()  # type: ignore[operator]
        after = (n.node.role, n.node.term)
        if before != after:
            self._log(1, f"  INFO {nid} is {after[0].value} at term {after[1]}")
        for e in effects:
            self._carry_out(nid, e)

    def _carry_out(self, nid: int, e: Effect) -> None:
        n = self.nodes[nid]
        match e:
            case Persist():
                n.disk.write(e)
                self._log(2, "  " + fmt_effect(e))
            case Send():
                self.queue.append(e.msg)
                self._log(1, "  " + fmt_effect(e))
            case Apply():
                for entry in e.entries:
                    if entry.kind is EntryKind.NORMAL:
                        n.applied.append(entry.data.decode())
                self._log(2, "  " + fmt_effect(e))
                for idx, rid in e.waiters:
                    self._log(1, f"  reply rid={rid} applied at {idx}")
            case RestoreSnapshot():
                data = bytes(e.snapshot.data).decode()
                n.applied = data.split(",") if data else []
                self._log(1, "  " + fmt_effect(e))
            case Reply() | ReadReady():
                self._log(1, "  " + fmt_effect(e))

    def _make(
        self,
        nid: int,
        opts: dict[str, object],
        disk: MemoryDisk,
        voters: list[int],
        learners: list[int],
    ) -> RaftNode:
        return RaftNode(
            nid,
            voters=voters,
            learners=learners,
            storage=disk.load(),
            rng=random.Random(nid),
            election_timeout_ticks=int(str(opts.get("election", 10))),
            heartbeat_ticks=int(str(opts.get("heartbeat", 1))),
            pre_vote=opts.get("prevote", "false") == "true",
            check_quorum=opts.get("checkquorum", "false") == "true",
            lease_reads=opts.get("lease", "false") == "true",
            snapshot_chunk_bytes=int(str(opts.get("chunk", 65536))),
            max_msg_bytes=int(str(opts.get("maxmsg", 65536))),
            max_inflight_msgs=int(str(opts.get("inflight", 64))),
        )

    # ---------------------------------------------------------- commands
    def cmd_add_nodes(self, pos: list[str], kw: dict[str, str]) -> None:
        count = int(pos[0])
        voters = _ids(kw.get("voters", ""))
        learners = _ids(kw.get("learners", ""))
        index = int(kw.get("index", 0))
        start = max(self.nodes, default=0) + 1
        for nid in range(start, start + count):
            disk = MemoryDisk()
            if index > 0 and (voters or learners):
                from replikv.core.raft.messages import Config

                cfg = Config(voters=frozenset(voters), learners=frozenset(learners))
                disk.snapshot = Snapshot(index=index, term=1, config=cfg, data=b"")
                disk.hard_state = HardState(term=1, vote=None, commit=index)
            opts: dict[str, object] = dict(kw)
            self.nodes[nid] = _Node(self._make(nid, opts, disk, voters, learners), disk, opts)
            self.out.append(
                f"INFO {nid} added: {self.nodes[nid].node.log.config().describe()}"
                f" first={self.nodes[nid].node.log.first_index}"
            )

    def cmd_campaign(self, pos: list[str], kw: dict[str, str]) -> None:
        nid = int(pos[0])
        self._handle(nid, self.nodes[nid].node.campaign)

    def cmd_tick(self, pos: list[str], kw: dict[str, str]) -> None:
        nid = int(pos[0])
        for _ in range(int(pos[1]) if len(pos) > 1 else 1):
            self._handle(nid, self.nodes[nid].node.tick)

    def cmd_tick_election(self, pos: list[str], kw: dict[str, str]) -> None:
        nid = int(pos[0])
        node = self.nodes[nid].node
        n = (
            node.randomized_timeout_ticks
            if node.role is not Role.LEADER
            else node.election_timeout_ticks
        )
        for _ in range(n - node.election_elapsed):
            self._handle(nid, node.tick)

    def cmd_tick_heartbeat(self, pos: list[str], kw: dict[str, str]) -> None:
        nid = int(pos[0])
        node = self.nodes[nid].node
        for _ in range(node.heartbeat_ticks - node.heartbeat_elapsed):
            self._handle(nid, node.tick)

    def cmd_propose(self, pos: list[str], kw: dict[str, str]) -> None:
        nid, data = int(pos[0]), pos[1]
        client = int(kw["client"]) if "client" in kw else None
        seq = int(kw["seq"]) if "seq" in kw else None
        node = self.nodes[nid].node
        self._handle(
            nid, lambda: node.propose(data.encode(), f"p:{data}", client_id=client, seq=seq)
        )

    def cmd_read_index(self, pos: list[str], kw: dict[str, str]) -> None:
        nid, rid = int(pos[0]), pos[1]
        node = self.nodes[nid].node
        self._handle(nid, lambda: node.read_index(rid, lease="lease" in pos[2:]))

    def cmd_add_learner(self, pos: list[str], kw: dict[str, str]) -> None:
        nid, target = int(pos[0]), int(pos[1])
        node = self.nodes[nid].node
        self._handle(nid, lambda: node.add_learner(target, f"add-learner:{target}"))

    def cmd_promote(self, pos: list[str], kw: dict[str, str]) -> None:
        nid, target = int(pos[0]), int(pos[1])
        node = self.nodes[nid].node
        self._handle(nid, lambda: node.promote(target, f"promote:{target}"))

    def cmd_remove(self, pos: list[str], kw: dict[str, str]) -> None:
        nid, target = int(pos[0]), int(pos[1])
        node = self.nodes[nid].node
        self._handle(nid, lambda: node.remove(target, f"remove:{target}"))

    def cmd_transfer_leadership(self, pos: list[str], kw: dict[str, str]) -> None:
        src, dst = int(kw["from"]), int(kw["to"])
        node = self.nodes[src].node
        self._handle(src, lambda: node.transfer_leadership(dst))

    def cmd_compact(self, pos: list[str], kw: dict[str, str]) -> None:
        nid, index = int(pos[0]), int(pos[1])
        n = self.nodes[nid]
        # The env's state machine is the list of applied commands: the
        # snapshot at `index` drops those applied after it.
        log = n.node.log
        later = [e for e in log.slice(index + 1, log.applied + 1) if e.kind is EntryKind.NORMAL]
        keep = len(n.applied) - len(later)
        data = ",".join(n.applied[:keep]).encode()
        self._handle(nid, lambda: n.node.compact(index, data))
        self.out.append(f"INFO {nid} compacted to {index}: first={n.node.log.first_index}")

    def _cut(self, m: RaftMsg, drop: set[int]) -> bool:
        if m.dst in drop or not self.nodes[m.dst].up or not self.nodes[m.src].up:
            return True
        if self.groups is not None:
            return not any(m.src in g and m.dst in g for g in self.groups)
        return False

    def _deliver_round(self, only: list[int], drop: set[int]) -> int:
        """Deliver the messages queued now (not those their handling sends)."""
        batch, self.queue = self.queue, []
        delivered = 0
        for m in batch:
            if only and m.dst not in only:
                self.queue.append(m)
                continue
            if self._cut(m, drop):
                self._log(1, f"{fmt_msg(m)} DROPPED")
                continue
            self._log(1, fmt_msg(m))
            node = self.nodes[m.dst].node
            self._handle(m.dst, lambda m=m, node=node: node.step(m))
            delivered += 1
        return delivered

    def cmd_deliver(self, pos: list[str], kw: dict[str, str]) -> None:
        self._deliver_round([int(p) for p in pos], set(_ids(kw.get("drop", ""))))

    def cmd_stabilize(self, pos: list[str], kw: dict[str, str]) -> None:
        only, drop = [int(p) for p in pos], set(_ids(kw.get("drop", "")))
        for _ in range(1000):
            if not any(not only or m.dst in only for m in self.queue):
                return
            self._deliver_round(only, drop)
        raise RuntimeError("stabilize did not settle in 1000 rounds")

    def cmd_partition(self, pos: list[str], kw: dict[str, str]) -> None:
        text = " ".join(pos)
        self.groups = [set(_ids(g)) for g in re.findall(r"\(([^)]*)\)", text)]
        self.out.append("INFO partition " + " ".join(str(sorted(g)) for g in self.groups))

    def cmd_heal(self, pos: list[str], kw: dict[str, str]) -> None:
        self.groups = None
        self.out.append("INFO healed")

    def cmd_crash(self, pos: list[str], kw: dict[str, str]) -> None:
        nid = int(pos[0])
        n = self.nodes[nid]
        n.up = False
        self.out.append(f"INFO {nid} crashed")

    def cmd_restart(self, pos: list[str], kw: dict[str, str]) -> None:
        nid = int(pos[0])
        n = self.nodes[nid]
        snap = n.disk.snapshot
        n.applied = bytes(snap.data).decode().split(",") if snap and snap.data else []
        cfg = n.node.log.config()
        n.node = self._make(nid, n.opts, n.disk, sorted(cfg.voters), sorted(cfg.learners))
        n.up = True
        self.out.append(f"INFO {nid} restarted at term {n.node.term} commit {n.node.log.commit}")
        self._handle(nid, n.node.start)

    def cmd_log_level(self, pos: list[str], kw: dict[str, str]) -> None:
        self.level = _LEVELS[pos[0]]

    def cmd_status(self, pos: list[str], kw: dict[str, str]) -> None:
        for nid in [int(p) for p in pos] or sorted(self.nodes):
            n = self.nodes[nid]
            s = n.node.status()
            down = " (down)" if not n.up else ""
            self.out.append(
                f"{nid}: {s.role.value} term={s.term} vote={s.vote if s.vote is not None else '-'}"
                f" lead={s.leader if s.leader is not None else '-'} commit={s.commit}"
                f" applied={s.applied} first={s.first_index} last={s.last_index}"
                f" {s.config.describe()}{down}"
            )
            for pid, p in s.progress.items():
                self.out.append(f"  {pid}: {p}")

    def cmd_raft_log(self, pos: list[str], kw: dict[str, str]) -> None:
        node = self.nodes[int(pos[0])].node
        snap = node.log.snapshot
        if snap.index:
            self.out.append(f"snapshot ({snap.index},{snap.term}) {snap.config.describe()}")
        entries = node.log.entries
        if not entries:
            self.out.append("log is empty")
        for e in entries:
            self.out.append(fmt_entry(e))

    def cmd_state_machine(self, pos: list[str], kw: dict[str, str]) -> None:
        n = self.nodes[int(pos[0])]
        self.out.append("applied: " + (" ".join(n.applied) if n.applied else "(none)"))
