"""Helpers for driving one RaftNode with scripted messages."""

from __future__ import annotations

import random
from typing import Any, TypeVar

from replikv.core.raft.effects import Apply, Effect, Persist, Send
from replikv.core.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    HardState,
    RaftMsg,
    RequestVote,
    RequestVoteResponse,
)
from replikv.core.raft.node import DurableState, RaftNode

T = TypeVar("T")


def make(
    nid: int = 1,
    voters: tuple[int, ...] = (1, 2, 3),
    terms: tuple[int, ...] = (),
    term: int = 0,
    vote: int | None = None,
    commit: int = 0,
    **kw: Any,
) -> RaftNode:
    """A node whose log holds one entry per element of `terms` (index 1..)."""
    entries = tuple(Entry(term=t, index=i + 1, data=b"e%d" % (i + 1)) for i, t in enumerate(terms))
    kw.setdefault("pre_vote", False)
    kw.setdefault("check_quorum", False)
    return RaftNode(
        nid,
        voters=voters,
        storage=DurableState(
            hard_state=HardState(term=term, vote=vote, commit=commit), entries=entries
        ),
        rng=random.Random(nid),
        **kw,
    )


def msgs(effects: list[Effect], kind: type[T] | None = None) -> list[T]:
    out = [e.msg for e in effects if isinstance(e, Send)]
    return [m for m in out if kind is None or isinstance(m, kind)]  # type: ignore[misc]


def persists(effects: list[Effect]) -> list[Persist]:
    return [e for e in effects if isinstance(e, Persist)]


def applied(effects: list[Effect]) -> list[Entry]:
    return [x for e in effects if isinstance(e, Apply) for x in e.entries]


def elapse(node: RaftNode, ticks: int) -> list[Effect]:
    out: list[Effect] = []
    for _ in range(ticks):
        out += node.tick()
    return out


def timeout(node: RaftNode) -> list[Effect]:
    """Tick until the randomized election timeout fires."""
    return elapse(node, node.randomized_timeout_ticks - node.election_elapsed)


def elect(node: RaftNode) -> list[Effect]:
    """Make `node` leader with votes from every other voter; returns all effects."""
    out = node.campaign()
    for v in sorted(node.log.config().voters - {node.id}):
        out += node.step(RequestVoteResponse(term=node.term, src=v, dst=node.id, granted=True))
    return out


def ae(
    term: int,
    prev: tuple[int, int],
    entries: tuple[tuple[int, int], ...] = (),
    commit: int = 0,
    src: int = 2,
    dst: int = 1,
) -> AppendEntries:
    """AppendEntries with entries given as (index, term)."""
    return AppendEntries(
        term=term,
        src=src,
        dst=dst,
        prev_log_index=prev[0],
        prev_log_term=prev[1],
        entries=tuple(Entry(term=t, index=i, data=b"n%d" % i) for i, t in entries),
        leader_commit=commit,
    )


def rv(term: int, last: tuple[int, int], src: int = 2, dst: int = 1, **kw: Any) -> RequestVote:
    return RequestVote(
        term=term, src=src, dst=dst, last_log_index=last[0], last_log_term=last[1], **kw
    )


def resp(effects: list[Effect], kind: type[T]) -> T:
    found = msgs(effects, kind)
    assert len(found) == 1, f"expected one {kind.__name__}, got {found}"
    return found[0]


def step_all(node: RaftNode, ms: list[RaftMsg]) -> list[Effect]:
    out: list[Effect] = []
    for m in ms:
        out += node.step(m)
    return out


__all__ = [
    "AppendEntriesResponse",
    "ae",
    "applied",
    "elapse",
    "elect",
    "make",
    "msgs",
    "persists",
    "resp",
    "rv",
    "step_all",
    "timeout",
]
