"""The lock workload's client process (check/lock_client.py): its report lines, its loop against a
stand-in server, and where the client-pause nemesis applies."""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis

from replikv.check import lock_client
from replikv.check.history import HistoryFormatError, Op
from replikv.check.lock_client import parse_report, report_line
from replikv.check.nemesis import nemesis_available


def test_a_report_line_parses_back_to_its_op_and_error() -> None:
    acquire = Op(4, "acquire", "lock1", "17", None, True, 1_000, 2_500)
    assert parse_report(report_line(acquire)) == (acquire, None)
    refused = Op(4, "write", "lock1", "17:4-3", None, False, 3_000, 3_900)
    error = ("FENCED", "FENCED token 17 of lock 'lock1' is stale: token 19 has been granted since")
    assert parse_report(report_line(refused, error)) == (refused, error)
    unknown = Op(8, "release", "lock1", "17", None, None, 4_000, None)
    assert parse_report(report_line(unknown, ("TimeoutError", "Timeout reading from socket")))[0] == unknown


@pytest.mark.parametrize("line", [
    "not json",
    '{"error": null}',
    '[1, 2]',
    '{"op": {"process": 1, "op": "write", "key": "lock0", "value": "1:1-1", "ok": true, "call": 5, "return": null}}',
    '{"op": {"process": 1, "op": "write", "key": "lock0", "value": "1:1-1", "ok": true, "call": 5, "return": 6},'
    ' "error": "FENCED"}',
])
def test_a_malformed_report_is_refused_with_a_reason(line: str) -> None:
    with pytest.raises(HistoryFormatError):
        parse_report(line)


class FakeLockServer:
    """Grants tokens 1, 2, 3 ...; a FENCED write of a token below the last granted one is refused
    (as the store refuses it), and an UNLOCK of such a token answers 0."""

    def __init__(self, stale_tokens: set[int]) -> None:
        self.token = 0
        self.stale = stale_tokens  # tokens whose lease "ran out" before their write
        self.log: list[str] = []

    def execute_command(self, *args: Any) -> Any:
        name = args[0]
        if name == "LOCK":
            self.token += 1
            return self.token
        if name == "FENCED":
            token = int(args[2])
            if token in self.stale:
                raise redis.ResponseError(f"FENCED token {token} of lock '{args[1]}' is stale: token "
                                          f"{token + 1} has been granted since: it was not applied")
            self.log.append(str(args[5]))
            return len(self.log)
        if name == "UNLOCK":
            return 0 if int(args[2]) in self.stale else 1
        raise AssertionError(f"unexpected command {args}")

    def rpush(self, key: str, value: str) -> int:
        self.log.append(value)
        return len(self.log)

    def close(self) -> None:
        pass


def run_cycles(monkeypatch: pytest.MonkeyPatch, server: FakeLockServer, cycles: int, unfenced: bool) -> list[
        tuple[Op, tuple[str, str] | None]]:
    monkeypatch.setattr(lock_client, "_connect", lambda args: server)
    monkeypatch.setattr(lock_client, "WORK_MS", (0, 0))
    args = argparse.Namespace(worker=1, clients=4, locks="lock0", ttl_ms=600, wait_ms=1000, origin_ns=0,
                              unfenced=unfenced, seed=3, timeout_s=2.0, read_level=None, gate=None)
    out = io.StringIO()
    rounds = iter(range(cycles + 1))
    lock_client.run_client(args, out, lambda: next(rounds) >= cycles)
    return [parse_report(line) for line in out.getvalue().splitlines()]


def test_the_client_loop_reports_acquire_write_release_and_a_fenced_out_write(
        monkeypatch: pytest.MonkeyPatch) -> None:
    server = FakeLockServer(stale_tokens={2})
    reports = run_cycles(monkeypatch, server, 3, unfenced=False)
    ops = [(op.process, op.op, op.value, op.ok) for op, _ in reports]
    assert ops == [
        (1, "acquire", "1", True), (1, "write", "1:1-1", True), (1, "release", "1", True),
        (1, "acquire", "2", True), (1, "write", "2:1-2", False), (1, "release", "2", False),
        (1, "acquire", "3", True), (1, "write", "3:1-3", True), (1, "release", "3", True),
    ]
    assert all(op.ret is not None and op.ret >= op.call for op, _ in reports)
    errors = [e for _, e in reports if e is not None]
    assert len(errors) == 1 and errors[0][0] == "FENCED"  # the refusal is counted; a lost lease is not an error
    assert server.log == ["1:1-1", "3:1-3"]


def test_the_unfenced_client_writes_with_a_plain_rpush(monkeypatch: pytest.MonkeyPatch) -> None:
    server = FakeLockServer(stale_tokens={2})
    reports = run_cycles(monkeypatch, server, 2, unfenced=True)
    assert [(op.op, op.ok) for op, _ in reports] == [("acquire", True), ("write", True), ("release", True),
                                                     ("acquire", True), ("write", True), ("release", False)]
    assert server.log == ["1:1-1", "2:1-2"]  # the stale holder's write landed


def test_an_unknown_outcome_starts_a_new_process(monkeypatch: pytest.MonkeyPatch) -> None:
    class Flaky(FakeLockServer):
        def rpush(self, key: str, value: str) -> int:
            if self.token == 1:
                raise redis.TimeoutError("Timeout reading from socket")
            return super().rpush(key, value)

    reports = run_cycles(monkeypatch, Flaky(set()), 2, unfenced=True)
    assert [(op.process, op.op, op.ok) for op, _ in reports] == [
        (1, "acquire", True), (1, "write", None), (5, "acquire", True), (5, "write", True), (5, "release", True)]
    assert reports[1][1] == ("TimeoutError", "Timeout reading from socket")


def test_client_pause_runs_only_with_the_lock_workloads() -> None:
    assert nemesis_available("client-pause", "raft", None, "lock") == (True, "")
    assert nemesis_available("client-pause", "raft", None, "lock-unfenced") == (True, "")
    ok, why = nemesis_available("client-pause", "raft", None, "register")
    assert not ok and "lock" in why


class FakeProc:
    """A lock client process as LockClientPool sees it: its report lines, and the signals sent."""

    def __init__(self, lines: list[str], pid: int = 4242) -> None:
        self.stdout = io.StringIO("".join(line + "\n" for line in lines))
        self.pid = pid
        self.signals: list[int] = []

    def poll(self) -> int | None:
        return None

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)


def test_the_pool_reads_reports_into_the_history_and_tracks_holders(tmp_path: Path) -> None:
    import signal
    grant = Op(2, "acquire", "lock0", "7", None, True, 10, 20)
    pool = lock_client.LockClientPool(harness=SimpleNamespace(root=tmp_path), workload=None, clients=4, seed=1,
                                      start_ns=0)
    proc = FakeProc([report_line(grant), "garbage"])
    pool._procs[2] = proc  # type: ignore[assignment]
    pool._read(2, proc)  # type: ignore[arg-type]
    assert pool.history == [grant] and pool.ops == 1 and len(pool.malformed) == 1
    holder = lock_client.Holder(worker=2, pid=4242, process=2, lock="lock0", token=7)
    assert pool.holders() == [holder]
    assert pool.pause(holder) and proc.signals == [signal.SIGSTOP]
    assert pool.holders() == []  # stopped
    pool.resume(2)
    assert proc.signals == [signal.SIGSTOP, signal.SIGCONT]
    assert pool.holders() == []  # woken, still holding: not stopped a second time for the same grant
    refused = Op(2, "write", "lock0", "7:2-1", None, False, 30, 40)
    proc2 = FakeProc([report_line(refused, ("FENCED", "FENCED token 7 ... it was not applied"))])
    pool._read(2, proc2)  # type: ignore[arg-type]
    assert pool.history == [grant, refused] and pool.errors.counts == {"FENCED": 1}
    assert not pool.pause(holder)  # no longer holding: nothing is stopped


def test_the_write_gate_stops_a_holder_only_before_its_write(tmp_path: Path) -> None:
    """A holder whose write is in flight has no report yet; the gate is what tells the pool."""
    import signal
    pool = lock_client.LockClientPool(harness=SimpleNamespace(root=tmp_path), workload=None, clients=4, seed=1,
                                      start_ns=0)
    grant = Op(2, "acquire", "lock0", "7", None, True, 10, 20)
    proc = FakeProc([report_line(grant)])
    pool._procs[2] = proc  # type: ignore[assignment]
    pool._read(2, proc)  # type: ignore[arg-type]
    holder = lock_client.Holder(worker=2, pid=4242, process=2, lock="lock0", token=7)
    assert pool.holders() == [holder]
    pool.gate(2).writing("7")  # the client is about to send the write of token 7's hold
    assert not pool.pause(holder) and proc.signals == []  # too late: not stopped
    pool.gate(2).writing("6")  # an earlier hold's write: token 7's has not begun
    assert pool.pause(holder) and proc.signals == [signal.SIGSTOP]


def test_the_client_marks_the_gate_before_it_writes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    gate = lock_client.WriteGate(tmp_path / "gate")
    seen: list[bytes] = []

    class Watching(FakeLockServer):
        def execute_command(self, *args: Any) -> Any:
            if args[0] == "FENCED":
                seen.append(gate.path.read_bytes())  # the gate names the token when the write is sent
            return super().execute_command(*args)

    monkeypatch.setattr(lock_client, "_connect", lambda args: Watching(set()))
    monkeypatch.setattr(lock_client, "WORK_MS", (0, 0))
    args = argparse.Namespace(worker=1, clients=4, locks="lock0", ttl_ms=600, wait_ms=1000, origin_ns=0,
                              unfenced=False, seed=3, timeout_s=2.0, read_level=None, gate=str(gate.path))
    rounds = iter(range(3))
    lock_client.run_client(args, io.StringIO(), lambda: next(rounds) >= 2)
    assert seen == [b"1", b"2"]
