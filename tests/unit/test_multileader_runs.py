"""Pipelined runs of plain SETs and INCRs on a multi-leader node (MultiLeaderRunner._write_run):
one operation per run, and everything a client or another node sees is what the commands made
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

import pytest

from replikv.core.crdt.store import CrdtStore
from replikv.runtime.multi_leader import MultiLeaderRunner
from tests.unit.test_pipelined_runs import Client, offline_node

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
    # the runs of 3 SETs, of 5 INCRs (one refused) and of 3 SETs (e, c, f) are an op each
    writes = 2 + sum(1 for c in PIPELINE if c[0] in ("SET", "INCR")) - 1  # INCR b makes no op
    assert alone.node.core.vv["n1"] == writes
    assert piped.node.core.vv["n1"] == writes - 2 - 3 - 2
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
