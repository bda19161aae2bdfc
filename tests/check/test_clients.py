"""How client errors are named and classified: by the RESP error code, as the server sent it."""

from __future__ import annotations

import redis
from redis.connection import DefaultParser

from replikv.check.clients import ErrorKinds, classify_error, error_kind, error_text
from replikv.check.workloads import CasFailed


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
