"""Pipelined runs of plain SETs and INCRs on a multi-leader node (MultiLeaderRunner._write_run),
and the async writes of every connection in one loop iteration: one operation (``_join``), and
everything a client or another node sees is what the commands made
as operations of their own give: replies and their order, the view, the WATCH index, the WAL
(a restart rebuilds the same store) and the state every other node reaches by applying the
node's operations.

A real MultiLeaderRunner in-process, driven through ClientConnection as in
test_pipelined_runs.py (a read is one ``data_received``; the group commit runs when the test
says so).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from replikv.core.crdt.store import CrdtStore
from replikv.core.multileader import codec
from replikv.core.multileader.codec import encode_ops, pack_op
from replikv.core.multileader.messages import Op, Ops, Sync
from replikv.core.resp import encode_command
from replikv.kv.crdt_writes import translate
from replikv.runtime import multi_leader
from replikv.runtime.multi_leader import MultiLeaderRunner
from tests.unit.test_pipelined_runs import Client, FakeLoop, check_watch_index_at_rest, offline_node

PIPELINE = [
    ["SET", "a", "1"], ["SET", "b", "x"], ["SET", "a", "2"],            # a run: a's later SET wins
    ["INCR", "a"], ["INCR", "a"], ["INCR", "b"], ["INCR", "c"],         # a run with an error inside
    ["INCR", "c"],                                                      # (b is not an integer)
    ["GET", "a"],
    ["SET", "d", "4", "EX", "100"], ["SET", "e", "5"],                  # an option: no run of 2
    ["SET", "c", "10"], ["SET", "f", "y"], ["INCR", "c"],
    ["MGET", "a", "b", "c", "d", "e", "f"],
]


@pytest.fixture
def make_node(tmp_path: Path) -> Iterator[Callable[[str], MultiLeaderRunner]]:
    made: list[MultiLeaderRunner] = []

    def make(name: str) -> MultiLeaderRunner:
        node: MultiLeaderRunner = offline_node(MultiLeaderRunner, "multi-leader", tmp_path / name)
        made.append(node)
        return node

    yield make
    for node in made:
        node.wal.close()


def test_a_pipelined_run_is_one_op_and_replies_and_shows_as_one_by_one(make_node) -> None:
    piped, alone = Client(make_node("piped")), Client(make_node("alone"))
    for client in (piped, alone):  # execute_batch knows a spelling for runs once it ran it
        assert client.send(["SET", "w", "0"], ["INCR", "n"]) == ["OK", 1]
    assert piped.send(["WATCH", "z"]) == ["OK"]  # a watched key no run touches: not aborted
    assert piped.send(*PIPELINE) == alone.one_by_one(*PIPELINE)
    assert piped.node.sm.data == alone.node.sm.data
    assert set(piped.node.sm.expires) == set(alone.node.sm.expires) == {b"d"}
    # a read of its own is a loop iteration: its writes are one op (the set-up's two too), so
    # the pipeline's writes, runs and single ones, are one op, and each sent alone its own
    writes = 1 + sum(1 for c in PIPELINE if c[0] in ("SET", "INCR")) - 1  # INCR b makes no op
    assert alone.node.core.vv["n1"] == writes
    assert piped.node.core.vv["n1"] == 2
    assert piped.node.stats["ops_local"] == piped.node.core.vv["n1"] == piped.node.store.vv["n1"]
    # the WATCH index moved for every key written, once per op: a watch taken before aborts
    assert piped.node.applied_index == piped.node.core.vv["n1"]
    assert piped.send(["MULTI"], ["GET", "a"], ["EXEC"]) == ["OK", "QUEUED", [b"4"]]


def test_a_run_op_reaches_other_nodes_and_a_restart_as_the_commands_left_it(make_node) -> None:
    client = Client(make_node("origin"))
    client.send(["SET", "w", "0"], ["INCR", "n"])
    client.send(*PIPELINE)
    assert client.node.core.vv["n1"] < 2 + len(PIPELINE) - 3  # runs were made ops
    node = client.node
    # another node applies the op log whole, op by op, as it would receive it
    remote = CrdtStore()
    for op in node.core.retained():
        remote.apply(op.origin, op.seq, op.hlc, op.deps, op.payload)
    assert remote.digest() == node.store.digest()
    assert remote.visible(b"a") is not None and remote.visible(b"a").value == b"4"
    # a restart replays the WAL into the same store
    node.wal.close()
    again = MultiLeaderRunner(node.config, "n1")
    try:
        assert again.store.digest() == node.store.digest()
        assert again.sm.data == node.sm.data
    finally:
        again.wal.close()


def one_iteration(*reads: tuple[Client, list[list[str]]]) -> list[list[object]]:
    """Each client's commands as one read of its own, all in ONE loop iteration (the group
    commit runs after the last): the replies of each client."""
    for client, commands in reads:
        client.conn.data_received(b"".join(encode_command(c) for c in commands))
    reads[0][0].node.loop.run()  # type: ignore[attr-defined]
    out = []
    for client, commands in reads:
        replies = client.replies()
        assert len(replies) == len(commands)
        out.append(replies)
    return out


def retained_state(node: MultiLeaderRunner) -> CrdtStore:
    """The store another node reaches by applying ``node``'s op log, op by op."""
    remote = CrdtStore()
    for op in node.core.retained():
        remote.apply(op.origin, op.seq, op.hlc, op.deps, op.payload)
    return remote


def test_the_async_writes_of_every_connection_in_a_loop_iteration_are_one_op(make_node) -> None:
    node = make_node("n")
    a, b, c = Client(node), Client(node), Client(node)
    assert one_iteration((a, [["SET", "x", "1"]]), (b, [["INCR", "n"], ["INCR", "n"]]),
                         (c, [["SET", "x", "2"], ["SADD", "s", "m"], ["GET", "x"]])) == [
        ["OK"], [1, 2], ["OK", 1, b"2"]]  # c's read sees the writes before it, c's SET the later
    assert node.core.vv["n1"] == node.store.vv["n1"] == node.stats["ops_local"] == node.applied_index == 1
    (op,) = node.core.retained()
    assert len(op.payload) == 5  # x, n, n, x and s's member, in the order the writes were made
    assert node.wal.written_index == 1  # in the WAL before the replies left
    assert retained_state(node).digest() == node.store.digest()
    node.wal.close()
    again = MultiLeaderRunner(node.config, "n1")
    try:
        assert again.store.digest() == node.store.digest() and again.sm.data == node.sm.data
    finally:
        again.wal.close()


def test_watch_seals_the_open_op_so_its_position_covers_the_writes_before_it(make_node) -> None:
    node = make_node("n")
    a, b = Client(node), Client(node)
    assert one_iteration((a, [["SET", "k", "1"]]), (b, [["WATCH", "k"]])) == [["OK"], ["OK"]]
    assert b.send(["MULTI"], ["GET", "k"], ["EXEC"]) == ["OK", "QUEUED", [b"1"]]  # nothing wrote k since
    assert one_iteration((b, [["WATCH", "k"]]), (a, [["SET", "k", "2"]])) == [["OK"], ["OK"]]
    assert b.send(["MULTI"], ["GET", "k"], ["EXEC"]) == ["OK", "QUEUED", None]  # k written after WATCH


def test_a_peer_frame_seals_the_open_op_before_what_it_delivers(make_node) -> None:
    node = make_node("n")
    a, b = Client(node), Client(node)
    muts, _ = translate(CrdtStore(), [b"SET", b"k", b"remote"], 0, node.rng)
    remote = Op("n2", 1, 1, {"n1": 0, "n2": 0, "n3": 0}, muts)  # concurrent with n1's first op
    a.conn.data_received(encode_command(["SET", "k", "mine"]))
    node._on_frame("n2", encode_ops("n2", [pack_op(remote)]))
    b.conn.data_received(encode_command(["SET", "k", "last"]))
    node.loop.run()  # type: ignore[attr-defined]
    first, second = node.core.retained()[0], node.core.retained()[-1]
    assert (first.seq, first.deps["n2"]) == (1, 0)  # stamped before the frame: n2's op unseen
    assert (second.origin, second.seq, second.deps["n2"]) == ("n1", 2, 1)  # b's write saw it
    assert node.sm.data[b"k"] == b"last"
    assert retained_state(node).digest() == node.store.digest()


def test_an_open_op_is_sealed_at_its_bound(make_node, monkeypatch) -> None:
    monkeypatch.setattr(multi_leader, "OPEN_OP_MAX_MUTS", 3)
    node = make_node("n")
    node.sm.changes.arm()  # as a WATCH held by some client: the index records (kv/watch.py, "At rest")
    a, b = Client(node), Client(node)
    pipeline = [["SET", f"k{i}", str(i)] for i in range(7)]
    assert one_iteration((a, pipeline), (b, [["SET", "k0", "b"], ["INCR", "n"]])) == [["OK"] * 7, ["OK", 1]]
    assert [len(op.payload) for op in node.core.retained()] == [3, 3, 3]
    assert node.applied_index == 3 and node.sm.changes.last[b"k2"] == 1
    assert node.sm.changes.last[b"k6"] == node.sm.changes.last[b"k0"] == 3
    assert node.sm.data[b"k0"] == b"b" and retained_state(node).digest() == node.store.digest()


class Timer:
    """What the runner keeps of a ``call_later``: ``cancel``."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn, self.args, self.cancelled = fn, args, False

    def cancel(self) -> None:
        self.cancelled = True


class TimerLoop(FakeLoop):
    """``FakeLoop`` with ``call_later``: the timers are kept, a test fires them."""

    def __init__(self) -> None:
        super().__init__()
        self.timers: list[Timer] = []

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> Timer:
        self.timers.append(Timer(fn, args))
        return self.timers[-1]

    def fire(self) -> None:
        timers, self.timers = self.timers, []
        for timer in timers:
            if not timer.cancelled:
                timer.fn(*timer.args)
        self.run()


def sent_ops(node: MultiLeaderRunner, to: str) -> list[list[int]]:
    """The seqs of this node's ops in each ``Ops`` frame sent to ``to`` so far."""
    frames = []
    for peer, payload in node.transport.sent:  # type: ignore[attr-defined]
        msg = codec.decode(payload, {})
        if peer == to and isinstance(msg, Ops):
            frames.append([op.seq for op in msg.ops])
    return frames


def test_sends_after_a_send_wait_the_batching_interval_and_leave_as_one_frame(make_node, monkeypatch) -> None:
    """``MultiLeaderRunner._send_peers``' rule: the first ops leave at their flush; those of the
    next flushes within ``PEER_SEND_EVERY_S`` are held, their replies not, and go together when
    the interval's timer fires, one frame per peer, after their WAL commit."""
    monkeypatch.setattr(multi_leader, "PEER_SEND_EVERY_S", 60.0)  # the timer, not the clock, ends it
    node = make_node("n")
    node.loop = TimerLoop()
    for peer in ("n2", "n3"):  # a Sync from each: the replica sends them ops from now on
        node._on_frame(peer, codec.encode(Sync(sender=peer, vv={"n1": 0, "n2": 0, "n3": 0}, matrix={})))
    client = Client(node)
    assert client.send(["SET", "a", "1"]) == ["OK"]
    assert sent_ops(node, "n2") == sent_ops(node, "n3") == [[1]]  # the first send: at once
    assert client.send(["SET", "b", "2"]) == ["OK"] and client.send(["INCR", "n"]) == [1]  # answered
    assert sent_ops(node, "n2") == [[1]] and len(node.loop.timers) == 1  # held, one timer
    assert node.wal.last_index == 3  # in the WAL already: they may leave whenever the timer says
    node.loop.fire()
    assert sent_ops(node, "n2") == sent_ops(node, "n3") == [[1], [2, 3]]
    node.loop.fire()  # nothing more held, nothing sent twice
    assert sent_ops(node, "n2") == [[1], [2, 3]]
    assert client.send(["SET", "c", "3"]) == ["OK"]  # held again ...
    node._on_peer_disconnected("n3")  # ... and n3's link drops: its share goes with it
    node.loop.fire()
    assert sent_ops(node, "n2") == [[1], [2, 3], [4]] and sent_ops(node, "n3") == [[1], [2, 3]]


class ClockLoop(TimerLoop):
    """``TimerLoop`` with a clock of its own: ``advance`` moves it, firing each timer when it is due."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0  # as a monotonic clock: long after 0
        self.due: dict[Timer, float] = {}

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> Timer:
        timer = super().call_later(delay, fn, *args)
        self.due[timer] = self.now + delay
        return timer

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while True:
            due = sorted((at, i) for i, t in enumerate(self.timers) if not t.cancelled
                         for at in [self.due[t]] if at <= end)
            if not due:
                break
            self.now = max(self.now, due[0][0])
            timer = self.timers.pop(due[0][1])
            timer.fn(*timer.args)
            self.run()
        self.now = end


def test_the_send_interval_grows_under_a_steady_stream_of_ops_and_is_the_minimum_again_once_quiet(
        make_node) -> None:
    """``_send_peers``' interval rule: a node making ops faster than ``PEER_SEND_BUSY_OPS`` per
    ``PEER_SEND_EVERY_S`` sends less and less often, doubling the interval up to
    ``PEER_SEND_MAX_S`` (frames carry more ops each); after a quiet spell the first op leaves at
    once and the interval is the minimum again, and a light load keeps it there."""
    loop = ClockLoop()
    node = make_node("n")
    node.loop, node._now = loop, loop.time
    for peer in ("n2", "n3"):
        node._on_frame(peer, codec.encode(Sync(sender=peer, vv={"n1": 0, "n2": 0, "n3": 0}, matrix={})))
    client = Client(node)
    sent_at: list[float] = []  # when each Ops frame to n2 left
    send = node.transport.send

    def timed_send(to: str, payload: bytes) -> bool:
        if to == "n2" and isinstance(codec.decode(payload, {}), Ops):
            sent_at.append(loop.now)
        return send(to, payload)

    node.transport.send = timed_send  # type: ignore[method-assign]

    def write(after: float) -> None:
        loop.advance(after)
        assert client.send(["INCR", "n"])  # answered at its commit, whatever the send waits for

    every = multi_leader.PEER_SEND_EVERY_S
    step = every / (4 * multi_leader.PEER_SEND_BUSY_OPS)  # four times as fast as busy
    for _ in range(400):
        write(step)
    gaps = [round(b - a, 6) for a, b in zip(sent_at, sent_at[1:])]
    assert gaps[0] == pytest.approx(every, abs=step)  # the minimum at first ...
    assert max(gaps) > 2 * every  # ... growing ...
    assert gaps[-3:] == [pytest.approx(multi_leader.PEER_SEND_MAX_S, abs=step)] * 3  # ... to the bound
    assert max(gaps) <= multi_leader.PEER_SEND_MAX_S + step
    assert len(sent_ops(node, "n2")[-1]) >= multi_leader.PEER_SEND_MAX_S / step - 1  # a frame holds them all
    shown = f"replikv_peer_send_interval_ms:{multi_leader.PEER_SEND_MAX_S * 1000:g}\r\n"
    assert shown in node.info(["replication"])  # INFO shows the interval reached
    loop.advance(multi_leader.PEER_SEND_MAX_S)  # the held ops leave at their timer
    assert sum(map(len, sent_ops(node, "n2"))) == 400 and not loop.timers
    sent_at.clear()
    write(10 * multi_leader.PEER_SEND_MAX_S)  # quiet, then a write: it leaves at once,
    assert sent_at == [loop.now]
    for _ in range(5):  # and a light load (one op per 1.5 intervals) keeps the minimum interval:
        write(1.5 * every)  # each op leaves at its commit
    assert len(sent_at) == 6 and sent_ops(node, "n2")[-6:] == [[401 + i] for i in range(6)]
    write(every / 2)  # one within the interval waits for it, no longer
    loop.advance(every)
    assert sent_at[-1] == pytest.approx(sent_at[-2] + every) and len(sent_at) == 7
    assert sum(map(len, sent_ops(node, "n2"))) == 407 and not loop.timers
    assert f"replikv_peer_send_interval_ms:{every * 1000:g}\r\n" in node.info(["replication"])


def sent_kinds(node: MultiLeaderRunner, to: str) -> list[str]:
    """The kinds of the frames sent to ``to`` so far, in order."""
    return [type(codec.decode(payload, {})).__name__ for peer, payload in node.transport.sent  # type: ignore[attr-defined]
            if peer == to]


def test_an_ack_leaves_as_one_sync_built_at_the_send_or_not_at_all_behind_ops_that_say_as_much(make_node,
                                                                                               monkeypatch) -> None:
    """``_send_peers``: the Syncs the replica asks for per received frame (``Ack``) leave as one
    per peer, built as it leaves (covering every frame), and none where the ``Ops`` frame sent
    to that peer ends with our newest op made after all we delivered (``carries_ack``); where
    it does not, the ack waits one batch for ops that do, then leaves as a Sync; a peer sent
    no ops gets its Sync at once; a tick's Sync always leaves."""
    monkeypatch.setattr(multi_leader, "PEER_SEND_EVERY_S", 60.0)
    node = make_node("n")
    node.loop = TimerLoop()
    for peer in ("n2", "n3"):
        node._on_frame(peer, codec.encode(Sync(sender=peer, vv={"n1": 0, "n2": 0, "n3": 0}, matrix={})))
    client = Client(node)
    assert client.send(["SET", "a", "1"]) == ["OK"]  # sent at once: the next sends are held

    def remote(seq: int) -> bytes:
        muts, _ = translate(CrdtStore(), [b"SET", b"r%d" % seq, b"x"], 0, node.rng)
        return encode_ops("n2", [pack_op(Op("n2", seq, seq, {"n1": 0, "n2": seq - 1, "n3": 0}, muts))])

    node._on_frame("n2", remote(1))  # two frames from n2, then a write of ours that saw them
    node._on_frame("n2", remote(2))
    assert client.send(["SET", "b", "2"]) == ["OK"]
    node.loop.fire()
    assert sent_kinds(node, "n2") == ["Ops", "Ops"] and sent_kinds(node, "n3") == ["Ops", "Ops"]
    assert node.stats["peer_acks_in_ops"] == 1
    got = [codec.decode(p, {}) for to, p in node.transport.sent if to == "n2"][-1]  # type: ignore[attr-defined]
    assert got.ops[-1].deps["n2"] == 2  # the frame acks both of n2's ops
    assert client.send(["SET", "c", "3"]) == ["OK"]  # a write of ours, then a frame it did not see
    node._on_frame("n2", remote(3))
    node.loop.fire()
    assert sent_kinds(node, "n2")[2:] == ["Ops"]  # the ack waits a batch for ops that say it ...
    assert client.send(["SET", "d", "4"]) == ["OK"]  # ... and the next one's op does
    node.loop.fire()
    assert sent_kinds(node, "n2")[2:] == ["Ops", "Ops"] and node.stats["peer_acks_in_ops"] == 2
    assert client.send(["SET", "e", "5"]) == ["OK"]  # a write, then frames it did not see,
    node._on_frame("n2", remote(4))
    node.loop.fire()
    node._on_frame("n2", remote(5))
    node.loop.fire()  # and no write of ours in the next batch: the Sync leaves then,
    assert sent_kinds(node, "n2")[4:] == ["Ops", "Sync"]  # one for both frames,
    sync = codec.decode(node.transport.sent[-1][1], {})  # type: ignore[attr-defined]
    assert isinstance(sync, Sync) and sync.vv["n2"] == 5  # built as it left
    node._on_frame("n2", remote(6))
    node.loop.run()  # type: ignore[attr-defined]
    node.loop.fire()  # we sent n2 no ops since: its Sync at the next batch
    assert sent_kinds(node, "n2")[6:] == ["Sync"]
    node._on_frame("n2", remote(7))
    assert client.send(["SET", "f", "6"]) == ["OK"]  # saw it: the Ops frame acks it ...
    node.core.ticks = node.core.sync_every - 1
    node._run(node.core.tick())  # ... but a tick asks for a Sync: it leaves
    node.loop.fire()
    assert sent_kinds(node, "n2")[7:] == ["Ops", "Sync"] and sent_kinds(node, "n3")[-2:] == ["Ops", "Sync"]
    assert not node._committed and not node.loop.timers  # nothing held, no timer left


def test_held_sends_that_would_pass_the_frame_limit_leave_in_several_frames(make_node, monkeypatch) -> None:
    """Issue 9: the ops held for one send (``_send_peers``) leave in frames of at most the
    transport's ``max_frame_bytes``, every op once, in order (one frame would close the link)."""
    monkeypatch.setattr(multi_leader, "PEER_SEND_EVERY_S", 60.0)
    node = make_node("n")
    node.loop = TimerLoop()
    node.transport.max_frame_bytes = 250_000  # type: ignore[attr-defined]
    for peer in ("n2", "n3"):
        node._on_frame(peer, codec.encode(Sync(sender=peer, vv={"n1": 0, "n2": 0, "n3": 0}, matrix={})))
    client = Client(node)
    assert client.send(["SET", "a", "1"]) == ["OK"]  # sent at once; the next ones are held
    for i in range(6):
        assert client.send(["SET", f"k{i}", "x" * 100_000]) == ["OK"]
    node.loop.fire()
    frames = [f for to, f in node.transport.sent if to == "n2"]  # type: ignore[attr-defined]
    assert all(len(f) <= 250_000 for f in frames)
    assert sent_ops(node, "n2") == sent_ops(node, "n3") == [[1], [2, 3], [4, 5], [6, 7]]


def test_the_packed_ops_are_kept_only_while_sends_that_may_use_them_are_held(make_node, monkeypatch) -> None:
    """``_packed`` (an op's bytes, packed once for the WAL and the peers) is emptied at every
    flush that holds no send, as before the batching: with no peer to send to it never grows."""
    monkeypatch.setattr(multi_leader, "PEER_SEND_EVERY_S", 60.0)
    node = make_node("n")
    node.loop = TimerLoop()
    client = Client(node)
    for i in range(3):  # no peer has sent a Sync: the replica sends nothing, nothing is held
        assert client.send(["SET", f"k{i}", "v"]) == ["OK"]
        assert node._packed == {} and node._committed == []
    for peer in ("n2", "n3"):
        node._on_frame(peer, codec.encode(Sync(sender=peer, vv={"n1": 3, "n2": 0, "n3": 0}, matrix={})))
    client.send(["SET", "a", "1"])  # sent at once
    client.send(["SET", "b", "2"])  # held, with its bytes
    assert list(node._packed) == [("n1", 5)]
    node.loop.fire()
    assert node._packed == {} and sent_ops(node, "n2") == [[4], [5]]


def test_the_watch_index_records_changes_only_while_a_position_may_be_read(make_node, monkeypatch) -> None:
    """kv/watch.py "At rest" in multi-leader mode (``check_watch_index_at_rest``), the peer's
    writes arriving as Ops frames."""
    monkeypatch.setattr(multi_leader, "PEER_SEND_EVERY_S", 0)  # sends at each flush: no timer
    node = make_node("n")
    seen_n1 = {1: 1, 2: 2, 3: 2}  # this node's ops the peer's i-th write follows

    def peer_write(i: int, key: bytes, value: bytes) -> None:
        node._on_frame("n2", encode_ops("n2", [pack_op(Op("n2", i, i, {"n1": seen_n1[i], "n2": i - 1, "n3": 0},
                                                          [("put", key, value, None)]))]))

    check_watch_index_at_rest(node, Client(node), Client(node), Client(node), peer_write)
