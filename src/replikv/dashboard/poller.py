"""The dashboard's view of a cluster: INFO polls, the per-node series and the event timeline.

Every ``interval_s`` the poller asks every node for INFO (server, stats,
replication, commandstats) through ``cli.collect_status`` (the code behind
``replikv status``), and turns the answers into one JSON-ready snapshot:

- per node: state (up / down / error / paused), role, term or epoch, leader,
  log positions (offset, commit, applied), lag, and ops/s and mean latency
  computed from the change of INFO commandstats between two polls (the
  dashboard's own INFO, PING, HELLO, CLIENT, ... are not counted);
- a series of one point per second for the last ``history_s`` seconds;
- mode panels from what each mode's ``info()`` writes: the Raft groups of a
  sharded cluster, the multi-leader version vectors (converged when every node
  has the same one), the leaderless ring (members, vnodes, replicas);
- a bounded timeline of events derived by comparing two polls
  (``derive_events``): a node down or up, a role change, the cluster leader
  changing, a term change, a group leader changing, and the faults the
  playground caused (added by ``note``).

Rules: the poller never writes to the cluster; every buffer is bounded
(``MAX_EVENTS``, ``history_s``); a node that does not answer within
``timeout_s`` is down (refused) or error (accepted but silent: a paused
process), as ``replikv status`` reports it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from replikv import modes
from replikv.cli import NodeStatus, collect_status, parse_kv_list
from replikv.config import ClusterConfig

SECTIONS = ("server", "stats", "replication", "commandstats")
MAX_EVENTS = 500
# connection and introspection commands: the dashboard's own traffic, not the workload's
NOT_COUNTED = frozenset({"info", "ping", "hello", "client", "command", "consistency", "session",
                         "replikv", "config", "select", "auth", "echo", "quit", "role"})


@dataclass
class Event:
    t_ms: int
    kind: str  # down | up | role | leader | term | group | fault | converged | info
    text: str
    node: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"t_ms": self.t_ms, "kind": self.kind, "text": self.text, "node": self.node}


@dataclass
class NodeView:
    """One node as one poll saw it (the fields the page and derive_events use)."""

    id: str
    address: str
    state: str  # up | down | error | paused
    role: str = ""
    epoch: int | None = None
    leader: str = ""
    offset: int | None = None
    commit: int | None = None
    applied: int | None = None
    lag_ops: int | None = None
    lag_ms: int | None = None
    link: str = ""
    pid: int | None = None
    error: str = ""
    calls: int = 0  # counted commands so far (commandstats)
    usec: int = 0
    ops_s: float | None = None
    latency_ms: float | None = None
    followers: list[dict[str, str]] = field(default_factory=list)
    peers: list[dict[str, str]] = field(default_factory=list)
    groups: dict[str, dict[str, str]] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)  # mode fields (replikv_* of INFO replication)

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in (
            "id", "address", "state", "role", "epoch", "leader", "offset", "commit", "applied", "lag_ops",
            "lag_ms", "link", "pid", "error", "ops_s", "latency_ms", "followers", "peers", "groups", "extra")}


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text not in (None, "") else None
    except ValueError:
        return None


def node_view(status: NodeStatus) -> NodeView:
    """A NodeStatus (INFO of SECTIONS) -> NodeView; rates are filled in by the poller."""
    v = NodeView(id=status.id, address=status.address, state=status.state, role=status.role,
                 error=status.error)
    if status.state != "up":
        return v
    info = status.info
    v.epoch = _int(status.epoch)
    v.leader = status.leader
    v.offset = _int(status.offset)
    v.commit = _int(info.get("replikv_commit_index"))
    v.applied = _int(status.applied)
    v.lag_ops = _int(status.lag_ops)
    v.lag_ms = _int(status.lag_ms)
    v.link = status.link
    v.pid = _int(info.get("process_id"))
    v.followers = status.followers
    v.groups = status.groups
    i = 0
    while f"peer{i}" in info:
        v.peers.append(parse_kv_list(info[f"peer{i}"]))
        i += 1
    for key, value in info.items():
        if key.startswith("cmdstat_"):
            if key[8:].split("|")[0] in NOT_COUNTED:
                continue
            row = parse_kv_list(value)
            v.calls += _int(row.get("calls")) or 0
            v.usec += _int(row.get("usec")) or 0
        elif key.startswith("replikv_") and key not in ("replikv_version",):
            v.extra[key[8:]] = value
    return v


def cluster_leader(views: dict[str, NodeView]) -> str:
    """The node that says it leads with the highest term ("" when none does)."""
    best: tuple[int, str] | None = None
    for v in views.values():
        if v.state == "up" and v.role == "leader":
            key = (v.epoch or 0, v.id)
            if best is None or key > best:
                best = key
    return best[1] if best else ""


def converged(views: dict[str, NodeView]) -> bool | None:
    """Multi-leader: every node up and with one version vector (None: not a multi-leader cluster)."""
    if not any("version_vector" in v.extra for v in views.values()):
        return None
    if any(v.state != "up" for v in views.values()):
        return False
    norm = {",".join(sorted(p for p in v.extra.get("version_vector", "").split(",") if p))
            for v in views.values()}
    return len(norm) == 1


def derive_events(prev: dict[str, NodeView], cur: dict[str, NodeView], t_ms: int,
                  single_leader: bool = True) -> list[Event]:
    """What changed between two polls, in the order a reader wants it. ``single_leader``: one
    node leads the cluster (raft, leader-follower); else no leader or term events (every node
    takes writes, or each Raft group has its own leader: group events)."""
    out: list[Event] = []
    for nid, c in cur.items():
        p = prev.get(nid)
        if p is None:
            continue
        if p.state != c.state:
            if c.state == "up":
                out.append(Event(t_ms, "up", f"{nid} is up ({c.role or '?'})", nid))
            elif c.state == "paused":
                out.append(Event(t_ms, "down", f"{nid} is paused (SIGSTOP)", nid))
            elif c.state == "down":
                out.append(Event(t_ms, "down", f"{nid} is down (connection refused)", nid))
            else:
                out.append(Event(t_ms, "down", f"{nid} does not answer ({c.error or 'no reply'})", nid))
        elif c.state == "up" and p.role != c.role and p.role and c.role and single_leader:
            out.append(Event(t_ms, "role", f"{nid}: {p.role} -> {c.role}", nid))
    old, new = (cluster_leader(prev), cluster_leader(cur)) if single_leader else ("", "")
    if old != new:
        term = cur[new].epoch if new else None
        if new:
            out.append(Event(t_ms, "leader", f"leader changed: {old or 'none'} -> {new} (term {term})", new))
        else:
            out.append(Event(t_ms, "leader", f"no leader (was {old})", old))
    old_terms = [v.epoch for v in prev.values() if v.epoch is not None]
    new_terms = [v.epoch for v in cur.values() if v.epoch is not None]
    if single_leader and old_terms and new_terms and max(new_terms) > max(old_terms) and old == new:
        out.append(Event(t_ms, "term", f"term {max(old_terms)} -> {max(new_terms)}"))
    old_groups, new_groups = _group_leaders(prev), _group_leaders(cur)
    for g, leader in sorted(new_groups.items()):
        if g in old_groups and old_groups[g] != leader:
            out.append(Event(t_ms, "group", f"group {g} leader: {old_groups[g] or 'none'} -> {leader or 'none'}",
                             leader))
    was, now = converged(prev), converged(cur)
    if was is not None and now is not None and was != now:
        out.append(Event(t_ms, "converged", "replicas converged (one version vector)" if now
                         else "replicas diverged"))
    return out


def _group_leaders(views: dict[str, NodeView]) -> dict[str, str]:
    """Sharded raft: group -> the leader its own leader reports ("" if no member leads)."""
    out: dict[str, str] = {}
    for v in views.values():
        if v.state != "up":
            continue
        for g, row in v.groups.items():
            out.setdefault(g, "")
            if row.get("role") == "leader":
                out[g] = v.id
    return out


class Poller:
    """Polls a cluster on a thread of the caller's choosing (``poll_once``) and keeps the snapshot."""

    def __init__(self, config: ClusterConfig, *, timeout_s: float = 0.5, history_s: int = 300,
                 netns: Callable[[], contextlib.AbstractContextManager[None]] | None = None,
                 paused: Callable[[], set[str]] | None = None) -> None:
        self.config = config
        # one node leads the whole cluster: not in multi-leader and leaderless modes (every node
        # takes writes), nor in sharded raft (a leader per group)
        self.single_leader = modes.get(config.mode).single_writer and not config.options.shards
        self.timeout_s = timeout_s
        self.history_s = history_s
        self._netns = netns or contextlib.nullcontext
        self._paused = paused or set
        self.views: dict[str, NodeView] = {}
        self.events: deque[Event] = deque(maxlen=MAX_EVENTS)
        self.history: dict[str, deque[dict[str, Any]]] = {n: deque(maxlen=history_s) for n in config.nodes}
        self._last: dict[str, tuple[float, int, int]] = {}  # node -> (time, calls, usec) of the last poll
        self._second: dict[str, dict[str, Any]] = {}
        self.polls = 0
        self._lock = threading.Lock()

    def note(self, kind: str, text: str, node: str = "") -> None:
        """An event the dashboard itself caused (a fault from the playground)."""
        with self._lock:
            self.events.append(Event(int(time.time() * 1000), kind, text, node))

    def poll_once(self) -> dict[str, NodeView]:
        with self._netns():
            statuses = collect_status(self.config, self.timeout_s, SECTIONS)
        now = time.monotonic()
        paused = self._paused()
        views: dict[str, NodeView] = {}
        deltas: dict[str, tuple[float, int, int]] = {}  # node -> (seconds, commands, usec) since the last poll
        for s in statuses:
            v = node_view(s)
            if s.id in paused and v.state != "up":
                v.state, v.role = "paused", "paused"
            elif v.state == "up" and not self.single_leader:
                v.role = (f"leads {v.extra.get('groups_led', '?')}/{v.extra.get('shards', '?')} groups"
                          if "shards" in v.extra else "writer")
            last = self._last.get(s.id)
            if v.state == "up":
                if last is not None and now > last[0] and v.calls >= last[1]:
                    dt = now - last[0]
                    calls = v.calls - last[1]
                    deltas[s.id] = (dt, calls, v.usec - last[2])
                    v.ops_s = round(calls / dt, 1)
                    v.latency_ms = round((v.usec - last[2]) / calls / 1000, 3) if calls else None
                self._last[s.id] = (now, v.calls, v.usec)
            else:
                self._last.pop(s.id, None)
            views[s.id] = v
        t_ms = int(time.time() * 1000)
        with self._lock:
            if self.views:
                self.events.extend(derive_events(self.views, views, t_ms, self.single_leader))
            elif self.single_leader and cluster_leader(views):
                leader = cluster_leader(views)
                self.events.append(Event(t_ms, "leader", f"leader is {leader} (term {views[leader].epoch})",
                                         leader))
            self.views = views
            self.polls += 1
            self._add_history(views, deltas, t_ms)
        return views

    def _add_history(self, views: dict[str, NodeView], deltas: dict[str, tuple[float, int, int]],
                     t_ms: int) -> None:
        """One point per second and node: ops/s and mean latency over every poll of that second
        (so a burst between two polls is not lost), the lag and up/down of its last poll."""
        second = t_ms // 1000
        for nid, v in views.items():
            hist = self.history.setdefault(nid, deque(maxlen=self.history_s))
            acc = self._second.get(nid)
            if acc is None or acc["t"] != second:
                acc = self._second[nid] = {"t": second, "dt": 0.0, "calls": 0, "usec": 0}
            dt, calls, usec = deltas.get(nid, (0.0, 0, 0))
            acc["dt"] += dt
            acc["calls"] += calls
            acc["usec"] += usec
            point = {"t": second,
                     "ops_s": round(acc["calls"] / acc["dt"], 1) if acc["dt"] else None,
                     "latency_ms": round(acc["usec"] / acc["calls"] / 1000, 3) if acc["calls"] else None,
                     "lag_ops": _lag(v), "up": v.state == "up"}
            if hist and hist[-1]["t"] == second:
                hist[-1] = point
            else:
                hist.append(point)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            views = dict(self.views)
            return {
                "mode": self.config.mode,
                "t_ms": int(time.time() * 1000),
                "polls": self.polls,
                "single_leader": self.single_leader,
                "leader": cluster_leader(views) if self.single_leader else "",
                "term": max((v.epoch for v in views.values() if v.epoch is not None), default=None),
                "converged": converged(views),
                "nodes": [views[n].to_json() if n in views else {"id": n, "state": "unknown"}
                          for n in self.config.nodes],
                "groups": groups_view(views),
                "events": [e.to_json() for e in list(self.events)[-100:]],
                "history": {n: list(h) for n, h in self.history.items()},
            }

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with self._lock:
            yield


def _lag(v: NodeView) -> int | None:
    if v.state != "up":
        return None
    if v.role == "leader":
        lags = [_int(f.get("lag_ops")) for f in v.followers]
        return max((lag for lag in lags if lag is not None), default=0)
    if v.peers:
        lags = [_int(p.get("lag_ops")) for p in v.peers]
        return max((lag for lag in lags if lag is not None), default=0)
    return v.lag_ops


def groups_view(views: dict[str, NodeView]) -> list[dict[str, Any]]:
    """Sharded raft: one row per group, its leader's view first (as `replikv status` prints it)."""
    rows: dict[str, list[tuple[str, dict[str, str]]]] = {}
    for v in views.values():
        if v.state != "up":
            continue
        for g, row in v.groups.items():
            rows.setdefault(g, []).append((v.id, row))
    out = []
    for g in sorted(rows, key=int):
        views_g = sorted(rows[g], key=lambda r: (r[1].get("role") != "leader", r[0]))
        best = views_g[0][1]
        out.append({"group": int(g), "slots": best.get("slots", ""), "members": best.get("members", "").split("/"),
                    "leader": views_g[0][0] if best.get("role") == "leader" else "",
                    "term": _int(best.get("term")), "commit": _int(best.get("commit")),
                    "applied": {nid: _int(r.get("applied")) for nid, r in views_g},
                    "keys": _int(best.get("keys"))})
    return out
