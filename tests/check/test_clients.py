"""How client errors are named and classified: by the RESP error code, as the server sent it."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import redis
from redis.connection import DefaultParser

from replikv.check.clients import ClientPool, ErrorKinds, classify_error, error_kind, error_text
from replikv.check.history import Op
from replikv.check.workloads import CasFailed, make_workload


def server_error(line: str) -> Exception:
    """The exception redis-py raises for the RESP error `-<line>` (its own parser)."""
    return DefaultParser.parse_error(line)  # type: ignore[no-any-return]


def test_error_kind_is_the_resp_code_even_where_redis_py_strips_it() -> None:
    cases = {
        "TRYAGAIN n4 is not the leader (leader: n2); retry": "TRYAGAIN",
        "MOVED 0 127.0.0.1:7002": "MOVED",
        "NOREPLICAS write logged at index 9 reached 0 of 1 required replicas": "NOREPLICAS",
        "ERR unknown command 'CAS'": "ERR",
        "CLUSTERDOWN no quorum": "CLUSTERDOWN",
        "WRONGTYPE Operation against a key holding the wrong kind of value": "WRONGTYPE",
    }
    for line, kind in cases.items():
        e = server_error(line)
        assert error_kind(e) == kind, (line, type(e), str(e))
        assert error_text(e) == line
    assert error_kind(redis.TimeoutError("Timeout reading from socket")) == "TimeoutError"
    assert error_kind(redis.ConnectionError("Connection refused")) == "ConnectionError"


def test_definite_write_refusals_are_false_and_the_rest_unknown() -> None:
    for line in ("TRYAGAIN writes are paused while leadership is handed over",
                 "TRYAGAIN no reachable leader to forward to (leader: unknown); retry",
                 "MOVED 0 127.0.0.1:7002", "ERR unknown command 'CAS'", "CLUSTERDOWN no quorum",
                 "UNAVAILABLE write at quorum needs 2 of 3 replicas; 1 reachable; nothing was written",
                 "NOREPLICAS paxos prepare reached 1 of 2 replicas within 1000 ms; it was not applied",
                 "TRYAGAIN gave up after 50 contended Paxos rounds; it was not applied"):
        assert classify_error("write", server_error(line)) is False, line
    for line in ("TRYAGAIN the write was not committed in time (leader cut off from its majority?)",
                 "NOREPLICAS write logged at index 9 reached 0 of 1 required replicas",
                 "TRYAGAIN a concurrent Paxos round preempted this one after 1 replicas accepted it; "
                 "it may still be applied",
                 "NOREPLICAS paxos propose reached 0 of 2 replicas within 1000 ms; it may still be applied"):
        assert classify_error("write", server_error(line)) is None, line
    assert classify_error("write", redis.TimeoutError("timeout")) is None
    assert classify_error("read", redis.TimeoutError("timeout")) is False
    assert classify_error("cas", CasFailed()) is False


def test_error_summary_groups_by_kind_with_one_example_each() -> None:
    kinds = ErrorKinds()
    for line in ["TRYAGAIN n4 is not the leader (leader: n2); retry"] * 3 + [
            "TRYAGAIN no reachable leader to forward to (leader: unknown); retry",
            "ERR no such key"]:
        kinds.add(server_error(line))
    kinds.add(redis.TimeoutError("Timeout reading from socket"))
    assert kinds.counts == {"TRYAGAIN": 4, "ERR": 1, "TimeoutError": 1}
    assert kinds.summary() == ("TRYAGAIN x4 (e.g. 'TRYAGAIN n4 is not the leader (leader: n2); retry'), "
                               "ERR x1 (e.g. 'ERR no such key'), "
                               "TimeoutError x1 (e.g. 'Timeout reading from socket')")


class _FakeRedis:
    """A redis-py stand-in holding counters: ``execute_command`` and a ``pipeline`` of them; the
    ``fail`` pipelines-th pipeline (counting from 1) raises ConnectionError instead of running."""

    def __init__(self, shared: dict[str, Any]) -> None:
        self.shared = shared

    def execute_command(self, name: str, key: str) -> Any:
        data = self.shared["data"]
        if name == "INCR":
            data[key] = data.get(key, 0) + 1
            return data[key]
        return None if key not in data else str(data[key])

    def pipeline(self, transaction: bool = True) -> "_FakePipe":
        assert transaction is False  # --pipeline sends plain commands, no MULTI
        return _FakePipe(self)

    def close(self) -> None:
        pass


class _FakePipe:
    def __init__(self, client: _FakeRedis) -> None:
        self.client, self.cmds = client, []

    def execute_command(self, *cmd: str) -> None:
        self.cmds.append(cmd)

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        with self.client.shared["lock"]:
            return self._execute()

    def _execute(self) -> list[Any]:
        shared = self.client.shared
        shared["pipelines"] += 1
        shared["sizes"].append(len(self.cmds))
        if shared["pipelines"] == shared["fail"]:
            raise redis.ConnectionError("connection reset by peer")
        if shared["pipelines"] >= 30:
            shared["stop"].set()
        return [self.client.execute_command(*cmd) for cmd in self.cmds]


class _FakeHarness:
    ids = ["n1", "n2"]

    def __init__(self, shared: dict[str, Any]) -> None:
        self.shared = shared

    def netns(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def client(self, node: str, timeout_s: float) -> _FakeRedis:
        return _FakeRedis(self.shared)


def test_a_pipelining_client_keeps_each_history_process_sequential_and_on_its_worker() -> None:
    """--pipeline 4 with 2 clients: each pipeline carries 4 ops, one per slot process; a process
    never has two ops in flight, its id is its worker modulo the clients (its node), and the
    pipeline whose connection failed leaves its 4 ops unknown and its slots' processes retired."""
    shared: dict[str, Any] = {"data": {}, "pipelines": 0, "sizes": [], "fail": 5,
                              "lock": threading.Lock()}
    pool = ClientPool(_FakeHarness(shared), make_workload("counter"), clients=2, seed=1,  # type: ignore[arg-type]
                      start_ns=time.monotonic_ns(), pipeline=4)
    shared["stop"] = pool.stop
    pool.start()
    pool.join(10)
    assert set(shared["sizes"]) == {4} and len(pool.history) == 4 * shared["pipelines"]
    by_process: dict[int, list[Op]] = {}
    for op in pool.history:
        by_process.setdefault(op.process, []).append(op)
    for ops in by_process.values():
        ops.sort(key=lambda o: o.call)
        for a, b in zip(ops, ops[1:]):
            assert a.ret is not None and a.ret <= b.call  # one op in flight per process
    failed = [op for op in pool.history if op.ok is not True]  # the failed pipeline's: nothing else fails
    assert len(failed) == 4 and len({op.call for op in failed}) == 1 and len({op.process for op in failed}) == 4
    for op in failed:  # incrs unknown, reads (which change nothing) failed; the slot is retired
        assert op.ok is (None if op.op == "incr" else False), op
        assert by_process[op.process][-1] is op
    assert all(p >= 0 for p in by_process)
    acked = sum(1 for op in pool.history if op.op == "incr" and op.ok)
    assert sum(shared["data"].values()) == acked  # the failed pipeline ran nothing


def test_the_pipelined_workloads_are_those_whose_reads_and_writes_are_plain_commands() -> None:
    import random

    from replikv.check.workloads import PIPELINED_WORKLOADS, WORKLOADS, Invocation, pipeline_refusal

    rng = random.Random(1)
    for name in WORKLOADS:
        wl = make_workload(name)
        invs = [wl.next(rng, 0, i) for i in range(50)] if name not in ("lock", "lock-unfenced") else []
        plain = bool(invs) and all(wl.command(inv) is not None for inv in invs if inv.op != "cas")
        assert plain == (name in PIPELINED_WORKLOADS), name
        assert (pipeline_refusal(name, 8) is None) == (name in PIPELINED_WORKLOADS)
        assert pipeline_refusal(name, 1) is None
    assert make_workload("register", cas=True).command(Invocation("cas", "r0", "1", "0")) is None


def test_pipeline_with_a_workload_it_cannot_pipeline_is_refused_before_anything_starts(tmp_path) -> None:
    import pytest
    from typer.testing import CliRunner

    from replikv import cli
    from replikv.check.runner import run_check

    result = CliRunner().invoke(cli.app, ["check", "--workload", "queue", "--pipeline", "4",
                                          "--store", str(tmp_path)])
    assert result.exit_code == 2 and "--pipeline needs one of the workloads" in result.output
    with pytest.raises(ValueError, match="register, counter, set"):
        run_check(mode="raft", workload="bank", nemeses=[], time_s=1, clients=1, seed=1, store=tmp_path,
                  pipeline=2)
    assert list(tmp_path.iterdir()) == []  # no run directory, no cluster
