"""The leaderless runtime's held sends (``LeaderlessRunner._ship``, issue 9): the sends of writes
whose level is met (ONE) are held for the send interval (runtime/send_interval.py, multi-leader's
rule) and leave together, one frame per replica; anything that may be waited for leaves at once,
with the held writes ahead of it; acks leave at once without them.

A real LeaderlessRunner in-process (test_pipelined_runs.offline_node), on a loop whose clock a test
moves (test_multileader_runs.ClockLoop).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from replikv.core.dynamo import messages as dm
from replikv.runtime import leaderless
from replikv.runtime.leaderless import LeaderlessRunner
from replikv.runtime.send_interval import SendInterval
from tests.unit.test_multileader_runs import ClockLoop
from tests.unit.test_pipelined_runs import Client, offline_node


class Handle:
    def cancel(self) -> None:
        pass


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[[str], Client]]:
    made: list[LeaderlessRunner] = []
    node: LeaderlessRunner | None = None

    def make(level: str) -> Client:
        nonlocal node
        if node is None:
            node = offline_node(LeaderlessRunner, "leaderless", tmp_path / "c")
            made.append(node)
            loop = ClockLoop()
            node.loop, node._now = loop, loop.time  # type: ignore[assignment]
            loop.call_at = lambda at, fn: Handle()  # type: ignore[attr-defined]  # the request timer
        client = Client(node)
        assert client.send(["CONSISTENCY", "WRITE", level]) == ["OK"]
        return client

    yield make
    for n in made:
        n.wal.close()


def sent_writes(node: LeaderlessRunner, to: str) -> list[list[int]]:
    """The requests of the writes in each frame sent to ``to`` so far (a frame without any: [])."""
    frames = []
    for peer, payload in node.transport.sent:  # type: ignore[attr-defined]
        if peer != to:
            continue
        msg = dm.decode(payload)
        reqs: list[int] = []
        for m in msg.msgs if isinstance(msg, dm.Batch) else (msg,):
            if isinstance(m, dm.Puts):
                reqs.extend(req for req, _ in m.writes)
            elif isinstance(m, dm.Put) and m.delta:
                reqs.append(m.req)
        frames.append(reqs)
    return frames


def timers(node: LeaderlessRunner) -> int:
    return sum(1 for t in node.loop.timers if not t.cancelled)  # type: ignore[attr-defined]


def test_writes_at_one_after_a_send_are_held_for_the_interval_and_leave_as_one_frame(make_client) -> None:
    """The first ONE write leaves at its flush; the next ones within the interval are answered at
    their WAL commit and held, one timer, and leave together when it fires, one frame per replica
    with every write in order; after a quiet spell a lone write leaves at once again."""
    one = make_client("one")
    node = one.node
    every = leaderless.PEER_SEND_EVERY_S
    assert one.send(["SET", "a", "1"]) == ["OK"]
    first = sent_writes(node, "n2")
    assert len(first) == 1 and len(first[0]) == 1 and sent_writes(node, "n3") == first  # at once
    assert one.send(["SET", "b", "2"]) == ["OK"] and one.send(["INCR", "n"]) == [1]  # answered ...
    assert sent_writes(node, "n2") == first and timers(node) == 1  # ... and held
    assert node.wal.last_index >= 3  # in the WAL already (persist before send)
    node.loop.advance(every)  # type: ignore[attr-defined]
    frames = sent_writes(node, "n2")
    assert len(frames) == 2 and len(frames[1]) == 2 and frames[1][0] < frames[1][1]  # one frame, in order
    assert sent_writes(node, "n3") == frames and not node._held and timers(node) == 0
    node.loop.advance(10 * leaderless.PEER_SEND_MAX_S)  # type: ignore[attr-defined]  # quiet
    assert one.send(["SET", "c", "3"]) == ["OK"]
    assert len(sent_writes(node, "n2")) == 3 and timers(node) == 0  # a lone write: at once


def test_a_quorum_write_leaves_at_once_with_the_held_writes_ahead_of_it(make_client) -> None:
    """A write whose reply waits for replicas (QUORUM) is never held: it leaves at its flush, and
    the ONE writes held for its replicas go in the same frame, ahead of it (the writes keep their
    order); its reply still waits for an ack."""
    one, quorum = make_client("one"), make_client("quorum")
    node = one.node
    assert one.send(["SET", "a", "1"]) == ["OK"]  # at once; the next is held
    assert one.send(["SET", "b", "2"]) == ["OK"]
    held = [s.msg.req for s in node._held if s.to == "n2"]  # type: ignore[attr-defined]
    assert len(held) == 1 and len(sent_writes(node, "n2")) == 1
    quorum.conn.data_received(b"*3\r\n$3\r\nSET\r\n$1\r\nq\r\n$1\r\n1\r\n")
    node.loop.run()  # type: ignore[attr-defined]
    assert quorum.transport.written == []  # waits for a replica
    frames = sent_writes(node, "n2")
    assert len(frames) == 2 and frames[1][0] == held[0] and len(frames[1]) == 2  # held one first
    assert sent_writes(node, "n3") == frames and not node._held and timers(node) == 0
    node._on_frame("n2", dm.encode(dm.PutAck(req=frames[1][1], ok=True)))
    assert quorum.replies() == ["OK"]


def test_an_ack_leaves_at_once_without_the_held_writes(make_client) -> None:
    """This node as a replica acks a peer's write at once (the peer may wait for it: QUORUM), in a
    frame of its own: the ONE writes held for that peer stay held (an ack carrying them would
    make the peer's ack carry its own, at every frame), and leave at their timer."""
    one = make_client("one")
    node = one.node
    assert one.send(["SET", "a", "1"]) == ["OK"]
    assert one.send(["SET", "b", "2"]) == ["OK"]  # held
    before = len(node.transport.sent)  # type: ignore[attr-defined]
    node._on_frame("n2", dm.encode(dm.Put(req=77, states=())))  # a peer's write (nothing to join)
    node.loop.run()  # type: ignore[attr-defined]
    out = node.transport.sent[before:]  # type: ignore[attr-defined]
    assert [to for to, _ in out] == ["n2"]
    ack = dm.decode(out[0][1])
    acks = [m for m in (ack.msgs if isinstance(ack, dm.Batch) else (ack,))]
    assert all(isinstance(m, (dm.PutAck, dm.PutAcks)) for m in acks)  # the ack alone
    assert len(node._held) == 2 and timers(node) == 1  # still held, for both replicas
    node.loop.advance(leaderless.PEER_SEND_MAX_S)  # type: ignore[attr-defined]
    assert not node._held and [len(f) for f in sent_writes(node, "n3")] == [1, 1]


def test_the_interval_grows_under_load_and_info_shows_it(make_client) -> None:
    """Under a steady stream of ONE writes (four times the busy rate) the held sends leave less and
    less often, up to ``PEER_SEND_MAX_S`` apart (the interval rule, runtime/send_interval.py), each
    frame holding the writes made since; INFO replication shows the interval."""
    one = make_client("one")
    node = one.node
    loop: Any = node.loop
    every, most = leaderless.PEER_SEND_EVERY_S, leaderless.PEER_SEND_MAX_S
    step = every / 8
    for i in range(300):
        loop.advance(step)
        assert one.send(["SET", f"k{i}", "v"]) == ["OK"]
    loop.advance(most)
    frames = sent_writes(node, "n2")
    assert sum(map(len, frames)) == 300 and not node._held  # every write, once
    assert len(frames[-2]) >= most / step - 1  # a frame holds an interval's writes at the bound
    (info,) = one.send(["INFO", "replication"])
    assert f"replikv_peer_send_interval_ms:{most * 1000:g}\r\n" in info.decode()


def test_send_interval_rule() -> None:
    """``SendInterval``: the first send and one after a quiet spell leave at once and set the
    least interval; held sends of busy frames double it up to the bound, light ones halve it."""
    iv = SendInterval(0.002, 0.005)
    assert iv.wait(100.0) <= 0
    iv.sent(100.0, False, 1)
    assert iv.every == 0.002 and iv.wait(100.001) == pytest.approx(0.001)
    iv.sent(100.002, True, 4)  # 4 writes in one least interval: busy
    assert iv.every == 0.004
    iv.sent(100.006, True, 8)
    assert iv.every == 0.005  # the bound
    iv.sent(100.011, True, 1)  # light
    assert iv.every == 0.0025
    iv.sent(200.0, False, 1)
    assert iv.every == 0.002


def test_the_acks_of_a_peers_held_writes_are_held_and_leave_with_ours(make_client) -> None:
    """A peer's ``Puts`` of writes nobody waits for (``unawaited``) is acked by an unawaited
    ``PutAcks``: held with this node's held writes, and they leave together, one frame."""
    from tests.unit.dynamo.test_batched_writes import frames_to, replica, write

    one = make_client("one")
    node = one.node
    assert one.send(["SET", "a", "1"]) == ["OK"]
    assert one.send(["SET", "b", "2"]) == ["OK"]  # held
    n2 = replica("n2")
    n2.step("n1", dm.Hello(features=dm.FEATURES), 0, 0)
    [[puts]] = frames_to(n2, write(n2, 5, 10, b"SET", b"x", b"y", needed=1), "n1")
    assert isinstance(puts, dm.Puts) and puts.unawaited
    before = len(node.transport.sent)  # type: ignore[attr-defined]
    node._on_frame("n2", dm.encode(puts))
    node.loop.run()  # type: ignore[attr-defined]
    assert len(node.transport.sent) == before and len(node._held) == 3  # the ack is held too
    node.loop.advance(leaderless.PEER_SEND_MAX_S)  # type: ignore[attr-defined]
    [(to, frame)] = [(to, f) for to, f in node.transport.sent[before:] if to == "n2"]  # type: ignore[attr-defined]
    msgs = dm.decode(frame).msgs
    assert any(isinstance(m, dm.PutAcks) and m.ok == (5,) for m in msgs)
    assert any(isinstance(m, dm.Puts) for m in msgs) or any(isinstance(m, dm.Put) and m.delta for m in msgs)
