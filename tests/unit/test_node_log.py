"""The node log (storage/node_log.py): every group's entries and hard state in one WAL, one commit
per loop iteration, reclaim of the segments no group needs, recovery of each group's share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from replikv.storage.errors import CorruptLogError
from replikv.storage.node_log import GroupLog, NodeLog
from replikv.storage.wal import WriteAheadLog


def entry(index: int, term: int = 1, payload: bytes = b"x") -> list[Any]:
    return [term, index, 0, payload, None, None, None]


def opened(directory: Path, segment_bytes: int = 1 << 20, fsync: str = "always",
           start: int = 1) -> NodeLog:
    nl = NodeLog(directory, fsync=fsync, segment_bytes=segment_bytes, start=start)
    nl.recover()
    return nl


def hard(term: int, vote: int | None, commit: int) -> dict[str, Any]:
    return {"term": term, "vote": vote, "commit": commit}


def test_groups_share_one_record_and_one_fsync_per_commit(tmp_path: Path) -> None:
    nl = opened(tmp_path / "wal")
    logs = [nl.open_group(g, 0, fresh=True)[0] for g in range(5)]
    nl.commit()
    before_fsyncs, before_records = nl.fsyncs, nl.records
    for g, gl in enumerate(logs):
        gl.append_entries(1, [entry(1), entry(2, payload=bytes([g]))])
    nl.commit()
    assert nl.fsyncs - before_fsyncs == 1
    assert nl.records - before_records == 1
    assert all(gl.durable_index == 2 for gl in logs)
    nl.close()
    again = opened(tmp_path / "wal")
    for g in range(5):
        _gl, meta, entries = again.open_group(g, 0, fresh=False)
        assert entries == [entry(1), entry(2, payload=bytes([g]))]
        assert meta == {}


def test_a_changed_vote_is_fsynced_whatever_the_policy_and_a_commit_index_is_not(tmp_path: Path) -> None:
    nl = opened(tmp_path / "wal", fsync="everysec")
    gl = nl.open_group(0, 0, fresh=True)[0]
    gl.append_entries(1, [entry(1)])
    nl.commit()
    assert nl.wal.durable_index < nl.wal.written_index  # everysec: written, not yet fsynced
    assert gl.durable_index == 0
    gl.save(hard(2, 7, 0))
    nl.commit()
    assert nl.wal.durable_index == nl.wal.written_index  # the vote forced it
    assert gl.durable_index == 1
    fsyncs = nl.fsyncs
    gl.save(hard(2, 7, 1))  # the same term and vote: only the commit index moved
    nl.commit()
    assert nl.fsyncs == fsyncs
    nl.close()
    assert opened(tmp_path / "wal").open_group(0, 0, fresh=False)[1] == hard(2, 7, 1)


def test_a_rewritten_suffix_truncation_and_reset_recover_as_they_were_left(tmp_path: Path) -> None:
    nl = opened(tmp_path / "wal")
    a, b = (nl.open_group(g, 0, fresh=True)[0] for g in (1, 2))
    a.append_entries(1, [entry(i) for i in range(1, 6)])
    b.append_entries(1, [entry(i) for i in range(1, 4)])
    nl.commit()
    a.append_entries(4, [entry(4, term=2), entry(5, term=2), entry(6, term=2)])  # Raft §5.3: 4.. replaced
    b.truncate_after(1)
    nl.commit()
    assert a.durable_index == 6 and b.durable_index == 1
    a.reset(11)  # a snapshot at 10 installed over the log
    a.append_entries(11, [entry(11, term=3)])
    nl.commit()
    nl.close()
    again = opened(tmp_path / "wal")
    assert again.open_group(1, 10, fresh=False)[2] == [entry(11, term=3)]
    assert again.open_group(2, 0, fresh=False)[2] == [entry(1)]


def test_an_entries_item_past_the_end_is_damage(tmp_path: Path) -> None:
    nl = opened(tmp_path / "wal")
    nl.open_group(0, 0, fresh=True)[0].append_entries(1, [entry(1)])
    nl.add([0, 0, 5, b"\x91\x01"])  # a gap: index 2..4 missing (written behind GroupLog's back)
    nl.commit()
    nl.close()
    with pytest.raises(CorruptLogError, match="jump from index 1 to 5"):
        opened(tmp_path / "wal")


def test_an_unsharded_nodes_wal_is_refused(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path / "wal", fsync="always")
    list(wal.recover())
    wal.append_entries(1, [entry(1), entry(2)])  # a raft node's log: entries, not items
    wal.close()
    with pytest.raises(CorruptLogError, match="not a node-log item"):
        opened(tmp_path / "wal")


def test_a_dropped_group_and_a_new_replica_of_its_number_start_empty(tmp_path: Path) -> None:
    nl = opened(tmp_path / "wal")
    for g in (0, 1):
        gl = nl.open_group(g, 0, fresh=True)[0]
        gl.save(hard(1, 1, 0))
        gl.append_entries(1, [entry(1)])
    nl.commit()
    nl.drop_group(0)
    nl.commit()
    nl.close()
    again = opened(tmp_path / "wal")
    assert again.open_group(0, 0, fresh=False)[1:] == ({}, [])  # dropped: forgotten
    # group 1's directory was deleted before its DROP was logged (a crash): a fresh replica of 1
    # must not take the old replica's log and vote
    assert again.open_group(1, 0, fresh=True)[1:] == ({}, [])
    again.commit()
    again.close()
    assert opened(tmp_path / "wal").open_group(1, 0, fresh=False)[1:] == ({}, [])


def _segments(nl: NodeLog) -> int:
    return len(nl.wal.segment_starts)


def test_segments_go_once_no_group_needs_them_and_a_quiet_group_is_carried_forward(tmp_path: Path) -> None:
    saved: list[int] = []
    nl = NodeLog(tmp_path / "wal", fsync="always", segment_bytes=2048, save_start=saved.append)
    nl.recover()
    busy, quiet = (nl.open_group(g, 0, fresh=True)[0] for g in (0, 1))
    quiet.save(hard(1, 1, 1))
    quiet.append_entries(1, [entry(1, payload=b"quiet")])
    nl.commit()
    index = 0
    for _ in range(40):  # the busy group writes ~10 KB and compacts all it wrote
        busy.append_entries(index + 1, [entry(index + 1, payload=b"b" * 200)])
        index += 1
        nl.commit()
        busy.drop_before(index)
    assert _segments(nl) > 4
    assert nl.reclaim() == 0  # the quiet group's entry and hard state pin the first segment
    boundary, pinning = nl.pinning(2)
    assert pinning == [1]
    quiet.carry_forward(boundary, lambda lo, hi: [entry(i, payload=b"quiet") for i in range(lo, hi + 1)])
    nl.commit()
    assert nl.reclaim() > 0
    assert saved and saved[-1] == nl.start == nl.wal.segment_starts[0]
    assert _segments(nl) <= 2
    nl.close()
    again = NodeLog(tmp_path / "wal", fsync="always", segment_bytes=2048, start=saved[-1])
    again.recover()
    assert again.open_group(1, 0, fresh=False)[1:] == (hard(1, 1, 1), [entry(1, payload=b"quiet")])
    assert again.open_group(0, index, fresh=False)[2] == []


def test_a_log_that_lost_its_head_segment_is_refused(tmp_path: Path) -> None:
    nl = NodeLog(tmp_path / "wal", fsync="always", segment_bytes=512)
    nl.recover()
    gl = nl.open_group(0, 0, fresh=True)[0]
    for i in range(1, 20):
        gl.append_entries(i, [entry(i, payload=b"p" * 100)])
        nl.commit()
    nl.close()
    first = sorted((tmp_path / "wal").glob("wal-*.log"))[0]
    first.unlink()
    with pytest.raises(CorruptLogError):
        opened(tmp_path / "wal", segment_bytes=512)  # start 1: the log must begin at LSN 1


# -- a model check: any sequence of group operations, then a recovery, gives each group its state --

_OPS = st.lists(st.tuples(st.integers(0, 2), st.sampled_from(["append", "rewrite", "truncate", "reset", "compact",
                                                              "hard", "commit", "carry", "reclaim", "restart"]),
                          st.integers(0, 5)), min_size=10, max_size=80)


class _Model:
    def __init__(self) -> None:
        self.entries: dict[int, list[Any]] = {}
        self.snap = 0
        self.last = 0
        self.hard: dict[str, Any] = {}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_OPS)
def test_any_sequence_of_operations_recovers_to_the_groups_state(tmp_path_factory: Any, ops: list[Any]) -> None:
    directory = tmp_path_factory.mktemp("nodelog") / "wal"
    starts = [1]
    reclaimed = [0]
    models = {g: _Model() for g in range(3)}

    def reopen() -> tuple[NodeLog, dict[int, GroupLog]]:
        nl = NodeLog(directory, fsync="always", segment_bytes=400, start=starts[-1], save_start=starts.append)
        nl.recover()
        logs = {}
        for g, m in models.items():
            gl, meta, entries = nl.open_group(g, m.snap, fresh=False)
            assert meta == m.hard
            assert entries == [m.entries[i] for i in range(m.snap + 1, m.last + 1)]
            logs[g] = gl
        nl.commit()
        return nl, logs

    nl, logs = reopen()
    term = 1
    for g, op, n in ops:
        m, gl = models[g], logs[g]
        term += 1
        if op == "append" or (op == "rewrite" and m.last <= m.snap):
            new = [entry(i, term, b"v" * 60) for i in range(m.last + 1, m.last + 2 + n)]
            gl.append_entries(m.last + 1, new)
        elif op == "rewrite":  # Raft §5.3: a suffix above the snapshot replaced
            at = max(m.snap + 1, m.last - n)
            new = [entry(i, term, b"w" * 60) for i in range(at, at + n + 1)]
            gl.append_entries(at, new)
            for i in range(at, m.last + 1):
                m.entries.pop(i, None)
            m.last = at - 1
        elif op == "truncate":
            at = max(m.snap, m.last - n)
            gl.truncate_after(at)
            m.last = at
            continue
        elif op == "reset":  # a snapshot installed beyond the log
            m.snap = m.last + n + 1
            m.last = m.snap
            gl.reset(m.snap + 1)
            continue
        elif op == "compact":  # a snapshot taken, then the log compacted up to it
            m.snap = max(m.snap, min(m.last, m.snap + n))
            gl.drop_before(m.snap)
            continue
        elif op == "hard":
            m.hard = hard(term // 3, g if n % 2 else None, m.snap)
            gl.save(dict(m.hard))
            continue
        elif op == "commit":
            nl.commit()
            continue
        elif op == "carry":  # what the sharded runner does once a second
            boundary, pinning = nl.pinning(1 + n % 2)
            for p in pinning:
                pm = models[p]
                logs[p].carry_forward(boundary, lambda lo, hi, pm=pm: [pm.entries[i] for i in range(lo, hi + 1)])
            nl.commit()
            reclaimed[0] += nl.reclaim()
            continue
        elif op == "reclaim":
            nl.commit()
            reclaimed[0] += nl.reclaim()
            continue
        else:
            nl.close()
            nl, logs = reopen()
            continue
        for e in new:
            m.entries[e[1]] = e
        m.last = new[-1][1]
    nl.close()
    reopen()[0].close()
    event(f"segments reclaimed: {min(reclaimed[0], 3)}")


def test_closing_while_the_disk_refuses_writes_neither_raises_nor_loses_what_was_committed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import os

    nl = opened(tmp_path / "wal")
    gl = nl.open_group(0, 0, fresh=True)[0]
    gl.append_entries(1, [entry(1)])
    nl.commit()
    gl.append_entries(2, [entry(2)])
    real_write = os.write

    def full(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    nl.close()  # logs; the WAL keeps the record it could not write
    monkeypatch.setattr(os, "write", real_write)
    assert opened(tmp_path / "wal").open_group(0, 0, fresh=False)[2] == [entry(1)]
