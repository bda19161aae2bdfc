"""Hostile and careless clients (issue 11, "Stalls and memory, before AUTH"),
each reproduced against a real node over a raw socket or redis-py: the node
answers with an error or closes the connection, and keeps serving others."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
import redis

from tests.integration.cluster import Cluster, limit_peer_frames, read_until_closed, wait_for

pytestmark = pytest.mark.integration


def raw(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    return s


def rss_kb(pid: int) -> int:
    return int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1))  # type: ignore[union-attr]


@pytest.fixture
def node(tmp_path: Path):  # type: ignore[no-untyped-def]
    c = Cluster(tmp_path / "c", 1, requirepass="pw", maxclients=20, timeout=2,
                client_output_buffer_limit=8 * 1024 * 1024)
    c.start()
    yield c
    c.close()


def test_a_billion_element_header_is_refused_before_any_allocation(node: Cluster) -> None:
    before = rss_kb(node.procs["n1"].pid)
    s = raw(node.port("n1"))
    s.sendall(b"*1000000000\r\n")
    reply = read_until_closed(s)
    assert reply.startswith(b"-ERR Protocol error")
    assert rss_kb(node.procs["n1"].pid) < before + 50_000  # no 8 GB list behind the error
    assert node.client("n1").ping() is True


def test_unauthenticated_clients_get_small_limits(node: Cluster) -> None:
    s = raw(node.port("n1"))
    sent = 0
    s.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$104857600\r\n")  # a 100 MB bulk, before AUTH
    try:
        chunk = b"x" * 65536
        while sent < 100 * 1024 * 1024:
            s.sendall(chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    reply = read_until_closed(s)
    assert b"unauthenticated bulk length" in reply or b"Protocol error" in reply
    assert sent < 50 * 1024 * 1024  # the node closed the connection long before the bulk ended
    many = raw(node.port("n1"))
    many.sendall(b"*11\r\n" + b"$1\r\nx\r\n" * 11)
    assert b"Protocol error" in read_until_closed(many)
    # once authenticated, the full limits apply
    r = node.client("n1")
    assert r.set("big", b"v" * 100_000) is True


def test_a_client_that_never_reads_is_disconnected_and_the_node_stays_small(node: Cluster) -> None:
    r = node.client("n1")
    r.set("mb", b"v" * (1024 * 1024))
    pid = node.procs["n1"].pid
    before = rss_kb(pid)
    s = raw(node.port("n1"))
    s.sendall(b"AUTH pw\r\n")
    request = b"*2\r\n$3\r\nGET\r\n$2\r\nmb\r\n" * 64
    closed = False
    try:
        for _ in range(2000):  # up to 128k GETs of 1 MB: 128 GB if nothing pushed back
            s.sendall(request)
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        closed = True
    assert closed or read_until_closed(s) is not None
    assert rss_kb(pid) < before + 200_000
    assert r.ping() is True
    wait_for(lambda: len(r.client_list()) == 1, 10, "the greedy client to be gone")


def test_maxclients_idle_timeout_and_bad_arguments(node: Cluster) -> None:
    conns = [raw(node.port("n1")) for _ in range(20)]
    extra = raw(node.port("n1"))
    assert read_until_closed(extra).startswith(b"-ERR max number of clients reached")
    for c in conns:
        c.close()
    idle = raw(node.port("n1"))
    idle.sendall(b"AUTH pw\r\n")
    assert idle.recv(100) == b"+OK\r\n"
    idle.settimeout(15)
    assert read_until_closed(idle) == b""  # closed by the node after `timeout` seconds
    r = node.client("n1")
    with pytest.raises(redis.ResponseError, match="usage: SESSION"):
        r.execute_command("SESSION", "9" * 5000)
    with pytest.raises(redis.ResponseError, match="usage: CONSISTENCY READ bounded"):
        r.execute_command("CONSISTENCY", "READ", "bounded")


def test_an_http_post_is_never_executed(tmp_path: Path) -> None:
    c = Cluster(tmp_path / "c", 1)  # no password: what a browser could reach
    c.start()
    try:
        s = raw(c.port("n1"))
        s.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 12\r\n\r\nSET pwned 1\r\n")
        assert read_until_closed(s) == b""
        s = raw(c.port("n1"))
        s.sendall(b"Host: 127.0.0.1\r\nSET pwned 1\r\n")
        assert read_until_closed(s) == b""
        r = c.client("n1")
        assert r.get("pwned") is None
        assert "possible SECURITY ATTACK" in c.log_text("n1")
        assert int(r.info("stats")["cross_protocol_attacks"]) == 2
    finally:
        c.close()


def test_wait_forever_is_dropped_when_its_client_goes(tmp_path: Path) -> None:
    c = Cluster(tmp_path / "c", 2)
    c.start()
    try:
        c.wait_streaming()
        c.kill("n2")
        s = raw(c.port("n1"))
        s.sendall(b"SET k v\r\nWAIT 1 0\r\n")
        assert s.recv(100).startswith(b"+OK")
        r = c.client("n1")
        wait_for(lambda: int(r.info("clients")["blocked_clients"]) == 1, 10, "the WAIT to block")
        s.close()
        wait_for(lambda: int(r.info("clients")["blocked_clients"]) == 0, 10, "the waiter to be dropped")
    finally:
        c.close()


def test_client_query_buffer_limit_closes_an_authenticated_client_too(tmp_path: Path) -> None:
    c = Cluster(tmp_path / "c", 1, client_query_buffer_limit=1024 * 1024)
    c.start()
    try:
        r = c.client("n1")
        assert r.config_get("client-query-buffer-limit") == {"client-query-buffer-limit": str(1024 * 1024)}
        s = raw(c.port("n1"))
        s.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3000000\r\n")  # a bulk within max-bulk-len
        try:
            for _ in range(40):
                s.sendall(b"x" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert b"client-query-buffer-limit" in read_until_closed(s)
        assert r.get("k") is None and r.ping() is True
    finally:
        c.close()


MIB = 1024 * 1024


def _limited_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str) -> Cluster:
    """Three nodes of ``mode`` whose peer frames hold at most 3 MiB (``limit_peer_frames``):
    ``max_command_bytes`` is 2 MiB."""
    c = Cluster(tmp_path / "c", 3, max_bulk_len=limit_peer_frames(monkeypatch), election_timeout_ms=300)
    c.config.mode = mode
    c.config.save(c.path)
    return c.start()


def _everywhere(c: Cluster, key: str, value: bytes) -> None:
    """Every node holds ``key`` = ``value`` (read where each node's own copy answers)."""
    for node in c.procs:
        r = c.client(node, timeout=30)
        if c.config.mode == "leaderless":
            r.execute_command("CONSISTENCY", "READ", "one")
        elif c.config.mode != "multi-leader":
            r.execute_command("CONSISTENCY", "READ", "eventual")
        wait_for(lambda: r.get(key) == value, 30, f"{node} to hold {key}")


@pytest.mark.parametrize("mode", ["leader-follower", "raft", "multi-leader", "leaderless"])
def test_a_command_too_large_to_replicate_is_refused_and_replication_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    """Issue 9 (bad input loses nothing): an MSET of 3 MiB and a MULTI block of 3 MiB, each
    above ``max_command_bytes`` (2 MiB here) though every value is within ``max_bulk_len``,
    are refused with an error that says why, in their place in the pipeline; the writes
    around them and a value of ``max_bulk_len`` reach every node. Before, what each mode
    replicated of such a command (a raft entry, a stream record, an op, a delta) was one
    message above the peer frame limit: the link closed at every resend (raft's leader then
    committed nothing more; the other modes stopped replicating to that peer)."""
    c = _limited_cluster(tmp_path, monkeypatch, mode)
    try:
        r = c.client(c.leader(), timeout=60)
        big = {f"b{i}": bytes([65 + i]) * (MIB - 10) for i in range(3)}
        p = r.pipeline(transaction=False)
        p.set("before", "1").mset(big).set("after", b"Z" * MIB)
        replies = p.execute(raise_on_error=False)
        assert replies[0] is True and replies[2] is True, replies
        assert isinstance(replies[1], redis.ResponseError)
        assert re.match(r"command of \d+ bytes is above the largest a node replicates \(2097152 bytes",
                        str(replies[1])), replies[1]
        t = r.pipeline(transaction=True)
        for k, v in big.items():
            t.set(k, v)
        with pytest.raises(redis.exceptions.ExecAbortError, match="Transaction of .* bytes is above"):
            t.execute()
        assert r.exists(*big) == 0
        _everywhere(c, "after", b"Z" * MIB)
        c.assert_no_peer_link_closed()
    finally:
        c.close()


def test_a_leader_follower_script_stops_at_the_write_its_effects_entry_cannot_hold(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The leader-follower leader logs a script's effects as one entry: the write that would
    take them past ``max_command_bytes`` fails in the script (a script error names the limit),
    the writes before it are kept (no rollback, as Redis) and replicated; in a MULTI block the
    limit holds for the block's entry, what its scripts logged before counted."""
    c = _limited_cluster(tmp_path, monkeypatch, "leader-follower")
    try:
        r = c.client(c.leader(), timeout=60)
        script = "for i = 1, 3 do redis.call('SET', 'e' .. i, string.rep('x', 1000000)) end return 1"
        with pytest.raises(redis.ResponseError, match="the script's writes come to more than the 2097152 bytes"):
            r.eval(script, 0)
        assert [r.exists(k) for k in ("e1", "e2", "e3")] == [1, 1, 0]  # two such writes fit 2 MiB, not three
        # A MULTI block of two such scripts, each within the limit alone, together past the
        # peer frame (3 MiB): the block's entry counts them both, the second one fails.
        three = "for i = 1, 3 do redis.call('SET', ARGV[1] .. i, string.rep('y', 650000)) end return 1"
        t = r.pipeline(transaction=True)
        t.eval(three, 0, "a").eval(three, 0, "b").set("after-block", "1")
        replies = t.execute(raise_on_error=False)
        assert replies[0] == 1 and replies[2] is True, replies
        assert "the script's writes come to more than the 2097152 bytes" in str(replies[1]), replies
        _everywhere(c, "e2", b"x" * 1_000_000)
        _everywhere(c, "a3", b"y" * 650_000)
        _everywhere(c, "after-block", b"1")
        assert r.exists("b1") == 0
        c.assert_no_peer_link_closed()
    finally:
        c.close()


def test_proto_max_bulk_len_is_lowered_live_but_not_raised_past_the_peer_frame_limit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CONFIG SET proto-max-bulk-len: the peer links' frame limit was fixed at start from
    cluster.toml's value, so a larger bulk could reach no peer (each resend closing the link):
    it may be lowered live (a larger value is then refused), and raised again up to the start's
    value, not past it."""
    c = _limited_cluster(tmp_path, monkeypatch, "leader-follower")
    try:
        r = c.client(c.leader(), timeout=30)
        assert r.config_set("proto-max-bulk-len", 64 * 1024) is True
        fresh = c.client(c.leader(), timeout=30, single_connection_client=True)  # new connections take it
        with pytest.raises(redis.ResponseError, match="Protocol error: invalid bulk length"):
            fresh.set("k", b"x" * (64 * 1024 + 1))
        assert r.config_set("proto-max-bulk-len", MIB) is True
        assert c.client(c.leader(), timeout=30).set("k", b"x" * MIB) is True
        with pytest.raises(redis.ResponseError, match="proto-max-bulk-len.*between 1024 and 1048576"):
            r.config_set("proto-max-bulk-len", MIB + 1)
        assert r.config_get("proto-max-bulk-len") == {"proto-max-bulk-len": str(MIB)}
    finally:
        c.close()
