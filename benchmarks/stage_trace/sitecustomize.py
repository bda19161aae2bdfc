"""Stage timestamps of forwarded writes in sharded raft nodes, for benchmarks/sharded_stages.py.

Loaded by every Python process that has this directory on ``PYTHONPATH`` (Python imports
``sitecustomize`` at start-up); it does nothing unless ``REPLIKV_STAGE_TRACE`` names a directory.
Then it wraps a few methods of the runtime (no source is changed) so that each node records
``time.monotonic_ns()`` (one clock for every process on the machine) at the stages of a
forwarded write and of its group's round, and appends them once a second to
``<dir>/<node>.ev``, one event per line: ``<ns> <kind> <fields...>``. Kinds:

    fs rid             forwarding node: a command forwarded (Forwarder's request id)
    fr rid conn        forwarding node: its FORWARD_REPLY taken (for client connection ``conn``)
    fw conn            a client connection's replies written
    lr peer frid rid   leader: a forwarded write taken (the forwarder, its id, the leader's id)
    lp g lo hi         a group's entries persisted in a drain (leader or follower)
    la g index rid     leader: entry ``index`` of group g applied, answering request ``rid``
    lrs peer frid      leader: the FORWARD_REPLY sent (held for the drain's write)
    ae g src last      follower: an AppendEntries of group g, entries up to ``last``, taken
    ak g src match     leader: an acknowledgement of group g up to ``match`` taken
    d0 / d1            a drain started / ended (its frames written)
    tw peer            the frames held for ``peer`` written (one writev)
    rx peer            a frame from ``peer`` delivered

A measurement aid: the wrappers cost a few microseconds per event, so CPU figures of a traced
run are not the nodes' own.
"""

from __future__ import annotations

import os

DIRECTORY = os.environ.get("REPLIKV_STAGE_TRACE")


def _install(directory: str) -> None:
    import functools
    import time

    from replikv.core.multiraft.host import GroupHost
    from replikv.core.raft.messages import AppendEntries, AppendEntriesResponse
    from replikv.runtime import forwarding, pending, raft_group, resp_server, sharded_raft, tcp_transport

    events: list[str] = []
    clock = time.monotonic_ns
    node = [str(os.getpid())]
    tags: dict[int, str] = {}  # id(PendingReplies) -> "forward" | "writes"

    def event(*fields: object) -> None:
        events.append(f"{clock()} {' '.join(map(str, fields))}\n")

    def dump() -> None:
        if events:
            with open(os.path.join(directory, f"{node[0]}.ev"), "a") as f:
                f.writelines(events)
            events.clear()

    def wrap(cls: type, name: str, before=None, after=None) -> None:  # type: ignore[no-untyped-def]
        original = getattr(cls, name)

        @functools.wraps(original)
        def wrapper(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            if before is not None:
                before(self, *args, **kwargs)
            result = original(self, *args, **kwargs)
            if after is not None:
                after(self, result, *args, **kwargs)
            return result
        setattr(cls, name, wrapper)

    def runner_made(self, result, *args, **kwargs):  # type: ignore[no-untyped-def]
        node[0] = self.id
        tags[id(self.forwarder.pending)] = "forward"
        tags[id(self.writes)] = "writes"

    def pending_added(self, result, rid, conn, *args, **kwargs):  # type: ignore[no-untyped-def]
        tag = tags.get(id(self))
        if tag == "forward":
            event("fs", rid)
        elif tag == "writes" and isinstance(conn, forwarding.ForwardedCommand):
            event("lr", conn.peer, conn.rid, rid)

    def pending_popped(self, result, rid, *args, **kwargs):  # type: ignore[no-untyped-def]
        if result is not None and tags.get(id(self)) == "forward":
            event("fr", rid, getattr(result.conn, "id", 0))

    def persisted(self, result, p, *args, **kwargs):  # type: ignore[no-untyped-def]
        if p.entries:
            event("lp", self.gid, p.entries[0].index, p.entries[-1].index)

    def applied(self, result, *args, **kwargs):  # type: ignore[no-untyped-def]
        for rid, _result, index in result:
            event("la", self.gid, index, rid)

    def stepped(self, batch, *args, **kwargs):  # type: ignore[no-untyped-def]
        for g, m in batch.msgs:
            if type(m) is AppendEntriesResponse:
                event("ak", g, batch.src, m.match_index)
            elif type(m) is AppendEntries and m.entries:
                event("ae", g, batch.src, m.entries[-1].index)

    def writing(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        for proto in self._holding:
            if proto.held:
                event("tw", proto.peer_id)

    wrap(sharded_raft.ShardedRaftRunner, "__init__", after=runner_made)
    wrap(pending.PendingReplies, "add", after=pending_added)
    wrap(pending.PendingReplies, "pop", after=pending_popped)
    wrap(raft_group.RaftGroup, "persist", after=persisted)
    wrap(raft_group.RaftGroup, "apply", after=applied)
    wrap(GroupHost, "step", before=stepped)
    wrap(sharded_raft.ShardedRaftRunner, "_drain", before=lambda self: event("d0"), after=lambda self, r: event("d1"))
    wrap(sharded_raft.ShardedRaftRunner, "_every_second", after=lambda self, r: dump())
    wrap(forwarding.ForwardedCommand, "send_reply", before=lambda self, data: event("lrs", self.peer, self.rid))
    def flushing(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self.out or (self.queue and self.queue[0].data is not None):
            event("fw", self.id)

    wrap(resp_server.ClientConnection, "flush", before=flushing)
    wrap(tcp_transport.PeerTransport, "write_held", before=writing)
    for proto in (tcp_transport._Inbound, tcp_transport._Outbound):
        wrap(proto, "deliver", before=lambda self, payload: event("rx", self.peer_id))


if DIRECTORY:
    try:
        _install(DIRECTORY)
    except ImportError:
        pass  # a Python process without replikv on its path (redis tools, pip): nothing to trace
