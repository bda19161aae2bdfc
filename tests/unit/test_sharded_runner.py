"""A sharded raft node built in process (no sockets; a one-node cluster with 3 groups), issue 13.

- The node log: one ``_drain`` that persists a write in every group fsyncs once, whatever the
  number of groups (with a WAL per group it fsynced 3 times); restart; adoption of the per-group
  logs an older replikv wrote, also after a crash halfway through.
- A stale replica dropped on a peer's GONE; the preferred leader as an entry of the group's log.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import shutil

import msgpack
import pytest

from replikv.config import ClusterConfig, NodeAddress, NodeOptions
from replikv.core.multiraft.messages import Batch
from replikv.core.raft.messages import AppendEntries
from replikv.core.raft.node import Role
from replikv.core.sharding import SlotMap
from replikv.core.sharding.slots import key_slot
from replikv.core.sharding.placement import parse_prefer_entry, prefer_entry
from replikv.runtime.raft_group import RaftGroup
from replikv.runtime.resp_server import Slot
from replikv.runtime import sharded_raft
from replikv.runtime.raft_app import stored_head
from replikv.runtime.sharded_raft import ShardedRaftRunner
from replikv.storage.meta import META_FILE
from replikv.storage.snapshot import load_latest_snapshot, write_snapshot


class _NoTransport:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def send(self, name: str, frame: bytes) -> None:
        self.sent.append((name, frame))

    def write_held(self) -> None:
        """Frames are recorded as sent: nothing is held."""

    def connected(self, name: str) -> bool:
        return False


def _runner(directory: Path, cls: type[ShardedRaftRunner] | None = None, elect: bool = True,
            **options: Any) -> ShardedRaftRunner:
    node = NodeAddress(id="n1", host="127.0.0.1", port=1, peer_port=2, data_dir=str(directory))
    cfg = ClusterConfig(mode="raft", secret="s", initial_leader="n1", nodes={"n1": node},
                        options=NodeOptions(shards=3, fsync="always", **options))
    r = (cls or ShardedRaftRunner)(cfg, "n1")
    r.transport = _NoTransport()
    if not elect:
        return r
    for g, grp in r.groups.items():
        if grp.core.role is not Role.LEADER:
            r.host.call(g, grp.core.campaign())
    r._drain()  # a single voter: every group elects itself at once
    assert [grp.core.role for grp in r.groups.values()] == [Role.LEADER] * 3
    return r


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[ShardedRaftRunner]:
    r = _runner(tmp_path / "n1")
    yield r
    r.node_log.close()


def _propose_everywhere(r: ShardedRaftRunner, key: bytes = b"k") -> None:
    entry: Any = msgpack.packb([0, False, [[b"SET", key, b"v"]]])
    for g in r.groups:
        r.pending.setdefault(g, []).append((entry, None, None, None))


def _keys(r: ShardedRaftRunner) -> dict[int, list[bytes]]:
    return {g: sorted(grp.sm.data) for g, grp in r.groups.items()}


def test_a_drain_persisting_in_three_groups_makes_every_group_durable(runner: ShardedRaftRunner) -> None:
    _propose_everywhere(runner)
    runner._drain()
    for grp in runner.groups.values():
        assert grp.wal.durable_index == grp.wal.last_index >= 2  # the election's entry, then the write


def test_a_drain_persisting_in_three_groups_fsyncs_once(runner: ShardedRaftRunner) -> None:
    before = runner.wal.fsyncs
    _propose_everywhere(runner)
    runner._drain()
    assert runner.wal.fsyncs - before == 1


def test_a_restarted_node_finds_every_groups_entries_and_vote(tmp_path: Path) -> None:
    r = _runner(tmp_path / "n1")
    _propose_everywhere(r, b"a")
    _propose_everywhere(r, b"b")
    r._drain()
    terms = {g: grp.core.term for g, grp in r.groups.items()}
    r.node_log.close()
    again = _runner(tmp_path / "n1")
    assert _keys(again) == {0: [b"a", b"b"], 1: [b"a", b"b"], 2: [b"a", b"b"]}
    assert {g: grp.core.hard_state().vote for g, grp in again.groups.items()} == {g: again.raft_id for g in terms}
    assert all(again.groups[g].core.term >= t for g, t in terms.items())
    again.node_log.close()


class _PerGroupWals(ShardedRaftRunner):
    """The layout a replikv before the node log wrote: a WAL and a meta file in each group's
    directory (the same files, written by the same RaftGroup code, without the node log)."""

    def _open_group(self, g: int, members: tuple[int, ...]) -> RaftGroup:
        return RaftGroup(g, self.data_dir / "groups" / f"g{g}", self.options, self.raft_id, members,
                         self.election_ticks, self.hb_ticks, slot_map=SlotMap.even(self.options.shards))

    def _drain(self) -> None:
        super()._drain()
        for grp in self.groups.values():
            grp.wal.commit()  # type: ignore[union-attr]


def _legacy_node(directory: Path) -> dict[int, int]:
    old = _runner(directory, _PerGroupWals)
    _propose_everywhere(old, b"old")
    old._drain()
    last = {g: grp.core.log.last_index for g, grp in old.groups.items()}
    for grp in old.groups.values():
        grp.wal.close()
    old.node_log.close()
    shutil.rmtree(directory / "wal")  # that replikv had no node log
    assert all((directory / "groups" / f"g{g}" / "wal").is_dir() for g in last)
    return last


def test_per_group_wals_of_an_older_replikv_move_into_the_node_log(tmp_path: Path) -> None:
    last = _legacy_node(tmp_path / "n1")
    r = _runner(tmp_path / "n1")
    assert _keys(r) == {0: [b"old"], 1: [b"old"], 2: [b"old"]}
    assert all(r.groups[g].core.log.last_index >= n for g, n in last.items())
    assert not any((tmp_path / "n1" / "groups" / f"g{g}" / "wal").exists() for g in last)
    assert not any((tmp_path / "n1" / "groups" / f"g{g}" / META_FILE).exists() for g in last)
    _propose_everywhere(r, b"new")
    r._drain()
    r.node_log.close()
    again = _runner(tmp_path / "n1")
    assert _keys(again) == {0: [b"new", b"old"], 1: [b"new", b"old"], 2: [b"new", b"old"]}
    again.node_log.close()


class _CrashBeforeRemoving(ShardedRaftRunner):
    def _remove_legacy_wals(self, legacy: list[Any]) -> None:
        assert legacy  # adopted and fsynced; the old files stay, as a crash would leave them


def test_a_crash_after_adopting_before_removing_the_old_wals_adopts_them_again_once(tmp_path: Path) -> None:
    last = _legacy_node(tmp_path / "n1")
    _runner(tmp_path / "n1", _CrashBeforeRemoving, elect=False).node_log.close()
    r = _runner(tmp_path / "n1")  # elected again: one entry of the new term after the old ones
    assert _keys(r) == {0: [b"old"], 1: [b"old"], 2: [b"old"]}
    assert {g: r.groups[g].core.log.last_index for g in last} == {g: n + 1 for g, n in last.items()}
    r.node_log.close()


def test_a_gone_from_a_peer_that_knows_no_newer_configuration_is_ignored(runner: ShardedRaftRunner) -> None:
    """``_on_gone`` (a stale replica's drop): only a configuration newer than any this replica
    knows counts; a teller that knows less (a member that has not yet heard of this node's
    addition) is ignored. The drop is durable: the group's directory and its log go."""
    known = runner.groups[0].core.log.last_config_index()
    runner._on_gone("n2", [[0, known]])
    assert 0 in runner.groups
    runner._on_gone("n2", [[0, known + 5]])
    assert 0 not in runner.groups and runner.tombstones[0] == known + 5
    assert not (runner.data_dir / "groups" / "g0").exists()
    assert 0 not in runner.node_log.groups


def test_a_preferred_leader_entry_applies_and_survives_a_snapshot(runner: ShardedRaftRunner) -> None:
    """PREFER is an entry of the group's log (core/sharding/placement.py): applied, it sets the
    group's preferred leader and the node's placement record; a snapshot carries it (a replica
    that installs the snapshot learns it too)."""
    grp = runner.groups[1]
    assert grp.preferred is None
    runner.pending.setdefault(1, []).append((prefer_entry(runner.raft_id), None, None, None))
    runner._drain()
    assert grp.preferred == runner.raft_id and runner.placement[1][0] == runner.raft_id
    runner._snapshot(grp)
    blob = grp.state_blob()
    grp.preferred = None
    grp.restore_state(blob, grp.applied)
    assert grp.preferred == runner.raft_id
    with pytest.raises(ValueError):
        parse_prefer_entry(b"\x02" + msgpack.packb("n1"))


def test_a_groups_compaction_hands_the_freed_heap_back(runner: ShardedRaftRunner,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """After a group compacts, on the loop (SAVE) or to the file its snapshot child wrote, the
    node returns the freed heap pages to the kernel (runtime/memory.py), as the unsharded node
    does: without it a sharded node held ~100 MB more RSS after 1.2 GB of 50 KB overwrites
    (BENCHMARKS.md, session 32)."""
    trims: list[int] = []
    monkeypatch.setattr(sharded_raft, "return_freed_memory", lambda: trims.append(1))
    grp = runner.groups[0]
    runner.pending.setdefault(0, []).append((msgpack.packb([0, False, [[b"SET", b"a", b"1"]]]), None, None, None))
    runner._drain()
    runner._snapshot(grp)
    assert len(trims) == 1 and grp.core.log.snapshot.index == grp.applied
    runner.pending.setdefault(0, []).append((msgpack.packb([0, False, [[b"SET", b"b", b"2"]]]), None, None, None))
    runner._drain()
    index = grp.applied
    core_log = grp.core.log
    write_snapshot(grp.snapshot_dir, index, int(core_log.term(index) or 0),
                   [stored_head(core_log.config_at(index)), grp.state_blob()])  # what the child writes
    runner._install_written(0, grp, index, load_latest_snapshot(grp.snapshot_dir, mapped=True))
    assert len(trims) == 2 and grp.core.log.snapshot.index == index


def test_the_lock_service_looks_only_at_groups_whose_locks_changed_or_count_down(
        runner: ShardedRaftRunner) -> None:
    """``lock_groups`` (runtime/locks.py's view) yields the groups whose lock table changed or
    holds a lease, not every hosted group each tick: a group enters through its table's watch
    (a grant, a release, a snapshot's locks) and leaves once nothing is left to count down."""
    def entry(*argv: bytes) -> Any:
        return msgpack.packb([0, False, [list(argv)]])

    def looked_at() -> list[int]:
        return [g for g, *_ in runner.lock_groups()]

    assert looked_at() == [] and not runner._lock_active
    g = runner.slot_group[key_slot(b"L")]
    grp = runner.groups[g]
    runner.pending.setdefault(g, []).append((entry(b"LOCK", b"L", b"60000"), None, None, None))
    runner._drain()
    token = grp.sm.locks.get(b"L").holder  # type: ignore[union-attr]
    assert token is not None and looked_at() == [g]
    runner.lock_service.next_tick = 0.0
    runner.lock_service.tick()  # observed: the lease counts down, the group stays
    assert not grp.sm.locks.changed and grp.sm.locks.clock.deadlines and looked_at() == [g]
    blob = grp.state_blob()
    runner.pending.setdefault(g, []).append((entry(b"UNLOCK", b"L", b"%d" % token), None, None, None))
    runner._drain()
    runner.lock_service.next_tick = 0.0
    runner.lock_service.tick()
    assert looked_at() == [] and g not in runner._lock_active
    grp.restore_state(blob, grp.applied)  # a snapshot holding the lock: its table is new, its watch kept
    assert looked_at() == [g]


def test_info_builds_the_group_lines_only_for_the_replication_section(
        runner: ShardedRaftRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    """INFO's line per hosted group (its slot ranges from one pass over the slot map) is built
    when the replication section is shown: INFO stats on a node of 1,000 groups took 0.65 s of
    its loop, each group's line scanning the whole map (BENCHMARKS.md, session 32)."""
    passes: list[int] = []
    whole_map = SlotMap.ranges
    monkeypatch.setattr(SlotMap, "ranges", lambda self: passes.append(1) or whole_map(self))
    runner.info(["stats"])
    assert passes == []
    runner.info(["replication"])
    assert passes == [1]  # one pass for every group's line
    ranges = {0: "0-5460", 1: "5461-10922", 2: "10923-16383"}
    for wanted in ([], ["replication"], ["default"], ["all"], ["everything"], ["server", "Replication"]):
        text = runner.info(wanted)
        for g, slots in ranges.items():
            assert f"group{g}:role=leader," in text and f",slots={slots}," in text, wanted
    for wanted in (["stats"], ["server", "memory"], ["commandstats"]):
        assert "group0:" not in runner.info(wanted)
    assert "replikv_groups_hosted:3" in runner.info(["replication"])


def test_a_busy_group_does_not_keep_the_quiet_groups_log_forever(tmp_path: Path) -> None:
    """Group 0 writes and snapshots; groups 1 and 2 wrote once and stay quiet, pinning the node
    log's first segment: once a second their entries and hard state are carried forward, so
    the old segments go (storage/node_log.py), and a restart still finds every group's data."""
    r = _runner(tmp_path / "n1", segment_bytes=4096)
    _propose_everywhere(r, b"quiet")
    r._drain()
    value = b"v" * 300
    for i in range(200):
        r.pending.setdefault(0, []).append((msgpack.packb([0, False, [[b"SET", b"busy%d" % (i % 5), value]]]),
                                            None, None, None))
        r._drain()
        if i % 20 == 19:  # group 0's snapshots, on the loop (a node takes them in a child, with a loop)
            r._snapshot(r.groups[0])
    assert r.stats["snapshots_taken"] > 5
    assert len(r.node_log.wal.segment_starts) > 10  # groups 1 and 2 pin the first segment
    r._every_second()
    assert len(r.node_log.wal.segment_starts) <= 5  # LOG_SEGMENTS_KEPT, and the one being written
    assert r.node_state["log_start"] == r.node_log.wal.segment_starts[0]
    r.node_log.close()
    again = _runner(tmp_path / "n1", segment_bytes=4096)
    assert _keys(again)[1] == _keys(again)[2] == [b"quiet"]
    assert b"busy4" in _keys(again)[0]
    again.node_log.close()


def test_info_stats_count_the_drains_that_had_raft_work(runner: ShardedRaftRunner) -> None:
    """``drains`` (INFO stats): loop iterations whose Ready carried effects or batches, the
    figure BENCHMARKS.md divides by the SETs; a drain with nothing to do is not one."""
    before = runner.stats["drains"]
    runner._drain()  # nothing gathered
    assert runner.stats["drains"] == before
    _propose_everywhere(runner)
    runner._drain()
    assert runner.stats["drains"] == before + 1


def test_the_leaders_announcement_is_rebuilt_only_when_a_groups_role_changed(
        runner: ShardedRaftRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    """A drain whose groups kept their roles does not rebuild the LEADERS announcement (it looked
    at every hosted group on every drain with effects); one where a group stepped down does, and
    the announcement drops that group."""
    calls: list[frozenset[int]] = []
    announce = runner._announce

    def counted(force: bool = False) -> None:
        announce(force)
        calls.append(runner._announced)
    monkeypatch.setattr(runner, "_announce", counted)
    _propose_everywhere(runner)
    runner._drain()
    assert calls == []  # three groups' writes, no role changed
    g = min(runner.groups)
    core = runner.groups[g].core
    stepdown = AppendEntries(term=core.term + 1, src=2, dst=runner.raft_id, prev_log_index=0, prev_log_term=0,
                             entries=(), leader_commit=0)
    runner.host.step(Batch(src=2, dst=runner.raft_id, msgs=((g, stepdown),)))
    runner._drain()
    assert core.role is Role.FOLLOWER
    assert calls and g not in calls[-1] and set(calls[-1]) == set(runner.groups) - {g}


class _Client:
    """A client connection that records when its replies are written."""

    resp3 = False
    cluster_aware = False
    watch: dict[bytes, int] = {}

    def __init__(self, node: ShardedRaftRunner, log: list[str]) -> None:
        self.node, self.log = node, log
        self.slots: list[Slot] = []

    def slot(self) -> Slot:
        s = Slot(self)  # type: ignore[arg-type]
        self.slots.append(s)
        return s

    def slot_ready(self) -> None:
        self.node.dirty_clients.add(self)  # type: ignore[arg-type]

    def flush(self) -> None:
        self.log.append("client replies")


def test_a_drain_writes_its_peer_frames_before_its_client_replies(
        runner: ShardedRaftRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write applied in a drain: the drain's peer frames (its AppendEntries, acknowledgements,
    forwarded replies) are written before the client's reply, so the peers' part of the next
    round does not wait for this node's client writes (before: client replies first)."""
    log: list[str] = []
    monkeypatch.setattr(runner.transport, "write_held", lambda: log.append("peer frames"))
    client = _Client(runner, log)
    runner.write(client, [[b"SET", b"k", b"v"]], transaction=False)
    runner._drain()
    assert client.slots and client.slots[0].data == b"+OK\r\n"  # applied and answered in this drain
    assert log == ["peer frames", "client replies"]


def test_replies_ready_before_a_drain_are_written_before_its_raft_work(
        runner: ShardedRaftRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    """A forwarded write's reply taken in this loop iteration (its slot resolved before the drain)
    leaves before the drain's Raft work, not after its persists and applies (before: after)."""
    log: list[str] = []
    ready = runner.host.ready

    def logged_ready() -> Any:
        log.append("raft work")
        return ready()
    monkeypatch.setattr(runner.host, "ready", logged_ready)
    client = _Client(runner, log)
    client.slot().resolve(b"+OK\r\n")  # what Forwarder.on_reply does with a FORWARD_REPLY
    _propose_everywhere(runner)
    runner._drain()
    assert log[:2] == ["client replies", "raft work"]


def test_a_command_routes_by_its_one_key_as_by_its_key_list(runner: ShardedRaftRunner) -> None:
    """``_route``'s short way (one command, its one key the first argument) names the slot and
    group the key list gives: every command of the table, keys that hash alike only by their
    hash tag, a command whose key list is longer (MSET, CROSSSLOT) or empty (no key)."""
    from replikv.core.replies import RespError
    from replikv.core.sharding import key_slot
    from replikv.kv.commands import COMMANDS

    keys = [b"k", b"user:{42}:name", b"{42}", b"x" * 300, b"{}a", b"", b"a{b", b"}{x}"]
    for upper, spec in COMMANDS.items():
        for name in (upper, upper.lower(), upper.lower(), upper):  # each spelling twice: the cache's
            for key in keys:
                argv = [name, key, b"v", b"w"][:max(2, abs(spec.arity))]
                listed = spec.keys(argv)
                expected = ((key_slot(listed[0]), runner.slot_group[key_slot(listed[0])]) if listed
                            else None)
                routed = runner._route([argv])
                assert routed == runner._route([argv, argv])  # two commands: the key list's way
                if expected is not None and all(runner.slot_group[key_slot(k)] == expected[1] for k in listed):
                    assert routed == expected, name
    home = runner.slot_group[key_slot(b"k")]
    far = next(k for k in (b"a%d" % i for i in range(100)) if runner.slot_group[key_slot(k)] != home)
    crossed = runner._route([[b"MSET", b"k", b"1", far, b"2"]])
    assert isinstance(crossed, RespError) and crossed.message.startswith("CROSSSLOT")
    assert isinstance(runner._route([[b"PING"]]), RespError)


def test_flushall_still_runs_in_every_group_the_node_leads(runner: ShardedRaftRunner) -> None:
    """FLUSHALL names no key: the write path routes it (an error for a keyless command), then
    runs it in every group this node leads, answered once all have applied."""
    for key in (b"a", b"b", b"c", b"d", b"e", b"f"):
        runner.write(_Client(runner, []), [[b"SET", key, b"v"]], transaction=False)
    runner._drain()
    assert all(_keys(runner)[g] for g in runner.groups if any(runner.slot_group[s] == g for s in range(16384)))
    client = _Client(runner, [])
    runner.write(client, [[b"FLUSHALL"]], transaction=False)
    runner._drain()
    assert client.slots and client.slots[0].data == b"+OK\r\n"
    assert _keys(runner) == {g: [] for g in runner.groups}
