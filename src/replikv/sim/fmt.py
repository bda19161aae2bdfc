"""One-line text forms of Raft messages, entries and effects (scenario goldens, sim traces)."""

from __future__ import annotations

from replikv.core.raft.effects import (
    Apply,
    Effect,
    Persist,
    ReadReady,
    Reply,
    RestoreSnapshot,
    Send,
)
from replikv.core.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryKind,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    RaftMsg,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)

__all__ = ["fmt_effect", "fmt_entries", "fmt_entry", "fmt_hs", "fmt_msg"]


def fmt_entry(e: Entry) -> str:
    if e.kind is EntryKind.NOOP:
        body = "noop"
    elif e.kind is EntryKind.CONFIG:
        body = "config " + (e.config.describe() if e.config else "?")
    else:
        body = repr(e.data.decode(errors="replace")).replace("'", '"')
        if e.client_id is not None:
            body += f" c{e.client_id}#{e.seq}"
    return f"{e.term}/{e.index} {body}"


def fmt_entries(es: tuple[Entry, ...] | list[Entry]) -> str:
    return "[" + ", ".join(fmt_entry(e) for e in es) + "]"


def fmt_hs(hs: HardState) -> str:
    return f"term={hs.term} vote={hs.vote if hs.vote is not None else '-'} commit={hs.commit}"


def fmt_msg(m: RaftMsg) -> str:
    head = f"{m.src}->{m.dst} "
    match m:
        case RequestVote():
            kind = "MsgPreVote" if m.pre_vote else "MsgVote"
            extra = " transfer" if m.transfer else ""
            return head + f"{kind} term={m.term} last=({m.last_log_index},{m.last_log_term}){extra}"
        case RequestVoteResponse():
            kind = "MsgPreVoteResp" if m.pre_vote else "MsgVoteResp"
            return head + f"{kind} term={m.term} {'granted' if m.granted else 'rejected'}"
        case AppendEntries():
            es = f" entries={fmt_entries(m.entries)}" if m.entries else ""
            return (
                head + f"MsgApp term={m.term} prev=({m.prev_log_index},{m.prev_log_term})"
                f" commit={m.leader_commit}{es}"
            )
        case AppendEntriesResponse():
            if m.success:
                return head + f"MsgAppResp term={m.term} match={m.match_index}"
            return (
                head + f"MsgAppResp term={m.term} reject={m.reject_index}"
                f" hint=(term={m.conflict_term},index={m.conflict_index})"
            )
        case Heartbeat():
            return head + f"MsgHeartbeat term={m.term} commit={m.commit} ctx={m.ctx}"
        case HeartbeatResponse():
            lost = f" lost(last={m.last_index})" if m.lost else ""
            return head + f"MsgHeartbeatResp term={m.term} ctx={m.ctx}{lost}"
        case InstallSnapshot():
            done = " done" if m.done else ""
            return (
                head
                + f"MsgSnap term={m.term} snap=({m.last_included_index},{m.last_included_term})"
                f" offset={m.offset} len={len(m.data)}{done} {m.config.describe()}"
            )
        case InstallSnapshotResponse():
            if m.done:
                return (
                    head
                    + f"MsgSnapResp term={m.term} snap={m.last_included_index} done match={m.match_index}"
                )
            return (
                head
                + f"MsgSnapResp term={m.term} snap={m.last_included_index} next={m.next_offset}"
            )
        case TimeoutNow():
            return head + f"MsgTimeoutNow term={m.term}"
        case ReadIndexRequest():
            return (
                head
                + f"MsgReadIndex term={m.term} rid={m.request_id}"
                + (" lease" if m.lease else "")
            )
        case ReadIndexResponse():
            res = f"index={m.index}" if m.ok else "rejected"
            return head + f"MsgReadIndexResp term={m.term} rid={m.request_id} {res}"
    return head + repr(m)


def fmt_effect(e: Effect) -> str:
    match e:
        case Send():
            return fmt_msg(e.msg)
        case Persist():
            parts = []
            if e.hard_state is not None:
                parts.append(f"hs=({fmt_hs(e.hard_state)})")
            if e.snapshot is not None:
                parts.append(f"snap=({e.snapshot.index},{e.snapshot.term})")
                if e.discard_log:
                    parts.append("discard-log")
            if e.entries:
                parts.append(f"entries={fmt_entries(e.entries)}")
            return "persist " + " ".join(parts)
        case Apply():
            w = f" waiters={[i for i, _ in e.waiters]}" if e.waiters else ""
            return f"apply {fmt_entries(e.entries)}{w}"
        case RestoreSnapshot():
            return f"restore snap=({e.snapshot.index},{e.snapshot.term}) {e.snapshot.config.describe()}"
        case Reply():
            return f"reply rid={e.request_id} {e.result!r}"
        case ReadReady():
            return f"read-ready rid={e.request_id} index={e.index}"
    return repr(e)
