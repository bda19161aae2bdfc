"""Redis Cluster replies built from groups (core/sharding/cluster_replies.py).

Besides the shapes, the replies are fed, encoded by our RESP encoder, to the
real clients: redis-py's ``RedisCluster`` and ``redis-benchmark --cluster``
talk to small fake nodes (threads on 127.0.0.1) that answer the topology
commands with these replies and answer a keyed command only on the node that
leads the key's group (MOVED elsewhere); the tests check that each client
sends every key to that node.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import hiredis
import pytest
from redis._parsers.helpers import parse_cluster_info, parse_cluster_nodes
from redis.cluster import RedisCluster, parse_cluster_shards
from redis.exceptions import AskError, MovedError

from replikv.core.replies import RespError
from replikv.core.resp import RequestParser, encode_reply
from replikv.core.sharding import (
    CROSSSLOT,
    SLOT_COUNT,
    ClusterView,
    SlotMap,
    ask_error,
    cluster_info,
    cluster_nodes,
    cluster_shards,
    cluster_slots,
    key_slot,
    moved_error,
    node_id,
    place_groups,
)

NODES = ["n1", "n2", "n3"]


def make_view(
    *,
    leaders: Mapping[int, str | None] | None = None,
    myself: str = "n1",
    ports: Mapping[str, int] | None = None,
    slot_map: SlotMap | None = None,
    failed: frozenset[str] = frozenset(),
    nodes: Sequence[str] = NODES,
    shards: int = 3,
) -> ClusterView:
    placement = place_groups(nodes, shards, 3)
    ports = ports or {n: 7000 + i for i, n in enumerate(nodes)}
    return ClusterView(
        slot_map=slot_map or SlotMap.even(shards),
        placement=placement,
        leaders=dict(leaders) if leaders is not None else {g: m[0] for g, m in placement.items()},
        addresses={n: ("127.0.0.1", ports[n]) for n in nodes},
        node_ids={n: node_id("test", n) for n in nodes},
        myself=myself,
        bus_ports={n: ports[n] + 10000 for n in nodes},
        failed=failed,
        offsets={(0, "n1"): 42},
    )


def nid(n: str) -> bytes:
    return node_id("test", n).encode()


def test_node_id_is_stable_40_hex_and_distinct() -> None:
    assert re.fullmatch(r"[0-9a-f]{40}", node_id("c", "n1"))
    assert node_id("c", "n1") == node_id("c", "n1") != node_id("c", "n2") != node_id("d", "n2")


def test_redirect_texts() -> None:
    assert moved_error(3999, "127.0.0.1", 6381) == RespError("MOVED 3999 127.0.0.1:6381")
    assert ask_error(3999, "127.0.0.1", 6381) == RespError("ASK 3999 127.0.0.1:6381")
    assert encode_reply(moved_error(3999, "127.0.0.1", 6381)) == b"-MOVED 3999 127.0.0.1:6381\r\n"
    assert CROSSSLOT.message.startswith("CROSSSLOT ")
    # redis-py reads them as its MovedError / AskError with the same slot and address.
    for cls, err in (
        (MovedError, moved_error(3999, "10.0.0.2", 6381)),
        (AskError, ask_error(7, "10.0.0.2", 6381)),
    ):
        parsed = cls(err.message.split(" ", 1)[1])
        assert (parsed.slot_id, parsed.host, parsed.port) == (
            int(err.message.split()[1]),
            "10.0.0.2",
            6381,
        )


def test_view_redirects_to_the_leader_of_the_slots_group() -> None:
    view = make_view(leaders={0: "n3", 1: "n2", 2: "n1"})
    assert view.slot_address(0) == ("127.0.0.1", 7002)
    assert view.moved(16383) == RespError("MOVED 16383 127.0.0.1:7000")


def test_cluster_slots_lists_leader_first_then_live_followers() -> None:
    view = make_view(leaders={0: "n2", 1: "n2", 2: "n3"}, failed=frozenset({"n1"}))
    reply = cluster_slots(view)
    assert reply == [
        [0, 5460, [b"127.0.0.1", 7001, nid("n2"), {}], [b"127.0.0.1", 7002, nid("n3"), {}]],
        [5461, 10922, [b"127.0.0.1", 7001, nid("n2"), {}], [b"127.0.0.1", 7002, nid("n3"), {}]],
        [10923, 16383, [b"127.0.0.1", 7002, nid("n3"), {}], [b"127.0.0.1", 7001, nid("n2"), {}]],
    ]
    assert [len(e) for e in cluster_slots(view, followers=False)] == [3, 3, 3]
    assert encode_reply(reply).startswith(
        b"*3\r\n*4\r\n:0\r\n:5460\r\n*4\r\n$9\r\n127.0.0.1\r\n:7001\r\n$40\r\n"
    )


def test_a_group_without_a_leader_is_shown_with_a_stand_in() -> None:
    view = make_view(leaders={0: None, 1: "n2", 2: "n3"})
    assert view.serving_node(0) == "n1"  # its preferred leader
    assert cluster_slots(view)[0][2][0:2] == [b"127.0.0.1", 7000]
    info = parse_cluster_info(cluster_info(view))
    assert info["cluster_state"] == "fail"
    assert info["cluster_slots_fail"] == "5461" and info["cluster_slots_ok"] == str(
        SLOT_COUNT - 5461
    )
    down = make_view(leaders={0: None, 1: "n2", 2: "n3"}, failed=frozenset({"n1"}))
    assert down.serving_node(0) == "n2"  # its first member that is not down


def test_cluster_info_of_a_healthy_cluster() -> None:
    info = parse_cluster_info(cluster_info(make_view(slot_map=SlotMap.even(3).with_slots([0], 1))))
    assert info["cluster_enabled"] == "1" and info["cluster_state"] == "ok"
    assert info["cluster_slots_assigned"] == info["cluster_slots_ok"] == "16384"
    assert info["cluster_known_nodes"] == "3" and info["cluster_size"] == "3"
    assert info["cluster_current_epoch"] == "1" and info["cluster_groups"] == "3"
    assert cluster_info(make_view()).endswith(b"\r\n")


def test_cluster_nodes_text() -> None:
    view = make_view(
        leaders={0: "n1", 1: "n1", 2: "n3"},
        myself="n2",
        slot_map=SlotMap.even(3).with_slots([0], 2),
    )
    lines = cluster_nodes(view).decode().split("\n")
    assert lines[-1] == ""  # every line ends with \n (redis-benchmark needs it)
    assert lines[:-1] == [
        f"{nid('n1').decode()} 127.0.0.1:7000@17000 master - 0 0 1 connected 1-10922",
        f"{nid('n2').decode()} 127.0.0.1:7001@17001 myself,slave {nid('n1').decode()} 0 0 1 connected",
        f"{nid('n3').decode()} 127.0.0.1:7002@17002 master - 0 0 1 connected 0 10923-16383",
    ]
    parsed = parse_cluster_nodes(cluster_nodes(view))
    assert parsed["127.0.0.1:7000"]["slots"] == [["1", "10922"]]
    assert parsed["127.0.0.1:7002"]["slots"] == [["0"], ["10923", "16383"]]
    assert parsed["127.0.0.1:7001"]["flags"] == "myself,slave"


def test_cluster_nodes_marks_failed_nodes() -> None:
    view = make_view(leaders={0: "n2", 1: "n2", 2: "n3"}, failed=frozenset({"n1"}), myself="n2")
    line = cluster_nodes(view).decode().splitlines()[0]
    assert " slave,fail " in line and line.endswith(" disconnected")


def test_cluster_nodes_shows_slots_in_flight() -> None:
    base = make_view(leaders={0: "n1", 1: "n2", 2: "n3"})
    view = ClusterView(
        slot_map=base.slot_map,
        placement=base.placement,
        leaders=base.leaders,
        addresses=base.addresses,
        node_ids=base.node_ids,
        myself="n1",
        migrating={7: 2, 8: 2},
    )
    lines = cluster_nodes(view).decode().splitlines()
    assert lines[0].endswith(f" 0-5460 [7->-{nid('n3').decode()}] [8->-{nid('n3').decode()}]")
    assert lines[2].endswith(f" 10923-16383 [7-<-{nid('n1').decode()}] [8-<-{nid('n1').decode()}]")
    assert view.ask(7) == RespError("ASK 7 127.0.0.1:7002")
    parsed = parse_cluster_nodes(cluster_nodes(view))
    assert parsed["127.0.0.1:7000"]["slots"] == [["0", "5460"]]
    assert parsed["127.0.0.1:7000"]["migrations"][0] == {
        "slot": "7",
        "node_id": nid("n3").decode(),
        "state": "migrating",
    }
    assert parsed["127.0.0.1:7002"]["migrations"][1]["state"] == "importing"


def test_cluster_shards_one_shard_per_group() -> None:
    view = make_view(leaders={0: "n2", 1: "n2", 2: "n3"}, failed=frozenset({"n1"}))
    shards = cluster_shards(view)
    assert [s[b"slots"] for s in shards] == [[0, 5460], [5461, 10922], [10923, 16383]]
    first = shards[0][b"nodes"]
    assert isinstance(first, list)
    assert [(n[b"id"], n[b"role"], n[b"health"]) for n in first] == [
        (nid("n2"), b"master", b"online"),
        (nid("n1"), b"replica", b"failed"),
        (nid("n3"), b"replica", b"online"),
    ]
    assert first[1][b"replication-offset"] == 42
    # RESP2 through hiredis, then redis-py's own parser.
    reader = hiredis.Reader()
    reader.feed(encode_reply(shards))
    parsed = parse_cluster_shards(reader.gets())
    assert parsed[2]["slots"] == [(10923, 16383)]
    assert parsed[2]["nodes"][0][b"port"] == 7002 and parsed[2]["nodes"][0][b"role"] == b"master"
    # RESP3: maps.
    reader3 = hiredis.Reader()
    reader3.feed(encode_reply(shards, resp3=True))
    as_maps = reader3.gets()
    assert as_maps[1][b"slots"] == [5461, 10922] and as_maps[1][b"nodes"][0][b"id"] == nid("n2")


# --- the real clients against fake nodes ------------------------------------

# COMMAND entries as Redis 7 writes them: name, arity, flags, first/last key,
# step, ACL categories, tips, key specs, subcommands.
COMMANDS = [
    [b"get", 2, [b"readonly", b"fast"], 1, 1, 1, [b"@read"], [], [], []],
    [b"set", -3, [b"write", b"denyoom"], 1, 1, 1, [b"@write"], [], [], []],
]


class FakeCluster:
    """One listening socket and thread per node; each answers with the replies
    of the current ``view`` (replaceable), and serves GET/SET only for keys
    whose group it serves, replying MOVED for the others."""

    def __init__(self, nodes: Sequence[str]) -> None:
        self.sockets = {n: socket.create_server(("127.0.0.1", 0)) for n in nodes}
        self.ports = {n: s.getsockname()[1] for n, s in self.sockets.items()}
        self.views: dict[str, ClusterView] = {}
        self.served: dict[str, list[bytes]] = {n: [] for n in nodes}
        self.moved: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        self.closing = False

    def set_leaders(self, leaders: Mapping[int, str | None], **kw: object) -> None:
        for n in self.sockets:
            self.views[n] = make_view(leaders=leaders, myself=n, ports=self.ports, **kw)  # type: ignore[arg-type]

    def start(self) -> None:
        for n, s in self.sockets.items():
            t = threading.Thread(target=self._accept, args=(n, s), daemon=True)
            t.start()
            self.threads.append(t)

    def close(self) -> None:
        self.closing = True
        for s in self.sockets.values():
            s.close()

    def _accept(self, node: str, server: socket.socket) -> None:
        while not self.closing:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(node, conn), daemon=True).start()

    def _serve(self, node: str, conn: socket.socket) -> None:
        parser = RequestParser()
        resp3 = False
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                parser.feed(data)
                out = []
                for argv in parser.commands():
                    if argv[0].upper() == b"HELLO":
                        resp3 = len(argv) > 1 and argv[1] == b"3"
                        reply: object = {
                            b"server": b"redis",
                            b"version": b"7.0.0",
                            b"proto": 3 if resp3 else 2,
                            b"id": 1,
                            b"mode": b"cluster",
                            b"role": b"master",
                            b"modules": [],
                        }
                    else:
                        reply = self._answer(node, argv)
                    out.append(encode_reply(reply, resp3=resp3))
                conn.sendall(b"".join(out))

    def _answer(self, node: str, argv: list[bytes]) -> object:
        view = self.views[node]
        name = argv[0].upper()
        sub = argv[1].upper() if len(argv) > 1 else b""
        if name == b"CLUSTER":
            return {
                b"SLOTS": lambda: cluster_slots(view),
                b"NODES": lambda: cluster_nodes(view),
                b"SHARDS": lambda: cluster_shards(view),
                b"INFO": lambda: cluster_info(view),
            }[sub]()
        if name == b"COMMAND":
            return COMMANDS
        if name == b"CONFIG":
            return [argv[2], b"no" if argv[2] == b"appendonly" else b""]
        if name in (b"GET", b"SET"):
            key = argv[1]
            slot = key_slot(key)
            if view.serving_node(view.slot_map.group_of(slot)) != node:
                with self.lock:
                    self.moved.append((node, key))
                return view.moved(slot)
            with self.lock:
                self.served[node].append(key)
            return node.encode() if name == b"GET" else "OK"
        if name == b"PING":
            return "PONG"
        return "OK"


@contextmanager
def fake_cluster(leaders: Mapping[int, str | None]) -> Iterator[FakeCluster]:
    cluster = FakeCluster(NODES)
    cluster.set_leaders(leaders)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.close()


def group_leader(cluster: FakeCluster, key: bytes) -> str:
    view = cluster.views["n1"]
    return view.serving_node(view.slot_map.group_of(key_slot(key)))


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_routes_every_key_to_its_groups_leader(protocol: int) -> None:
    # n2 leads two groups and n1 none, so node roles and slot owners differ.
    with fake_cluster({0: "n2", 1: "n2", 2: "n3"}) as cluster:
        rc = RedisCluster(host="127.0.0.1", port=cluster.ports["n1"], protocol=protocol)
        try:
            keys = [f"key:{i}".encode() for i in range(300)] + [b"{user1}.a", b"{user1}.b"]
            for key in keys:
                assert rc.set(key, b"v")
                assert rc.get(key) == group_leader(cluster, key).encode()
            assert cluster.moved == []  # the map it built was right from the start
            # redis-py's slot table matches the slot map.
            for slot in (0, 5460, 5461, 10922, 10923, 16383):
                host, port = cluster.views["n1"].slot_address(slot)
                node = rc.nodes_manager.get_node_from_slot(slot)
                assert (node.host, node.port) == (host, port)
        finally:
            rc.close()


def test_redis_py_follows_moved_after_a_leader_change() -> None:
    with fake_cluster({0: "n1", 1: "n2", 2: "n3"}) as cluster:
        rc = RedisCluster(host="127.0.0.1", port=cluster.ports["n2"])
        try:
            key = next(k for k in (f"k{i}".encode() for i in range(100)) if key_slot(k) <= 5460)
            assert rc.get(key) == b"n1"
            assert cluster.moved == []
            cluster.set_leaders({0: "n3", 1: "n2", 2: "n3"})  # group 0's leadership moved to n3
            assert rc.get(key) == b"n3"
            assert cluster.moved == [("n1", key)]
            assert rc.get(key) == b"n3" and len(cluster.moved) == 1  # it remembered
        finally:
            rc.close()


def test_redis_py_node_roles_with_and_without_followers() -> None:
    """The caveat in the module docstring: with followers listed, redis-py types
    a node by its first appearance, so only some leaders count as primaries;
    without followers every leader is a primary."""
    with fake_cluster({0: "n1", 1: "n2", 2: "n3"}) as cluster:
        rc = RedisCluster(host="127.0.0.1", port=cluster.ports["n1"])
        try:
            assert {n.port for n in rc.get_primaries()} == {cluster.ports["n1"]}
        finally:
            rc.close()
        only_leaders = {
            n: make_view(leaders={0: "n1", 1: "n2", 2: "n3"}, myself=n, ports=cluster.ports)
            for n in NODES
        }
        original = FakeCluster._answer

        def leaders_only(self: FakeCluster, node: str, argv: list[bytes]) -> object:
            if argv[:2] == [b"CLUSTER", b"SLOTS"]:
                return cluster_slots(only_leaders[node], followers=False)
            return original(self, node, argv)

        cluster._answer = leaders_only.__get__(cluster)  # type: ignore[method-assign]
        rc = RedisCluster(host="127.0.0.1", port=cluster.ports["n1"])
        try:
            assert {n.port for n in rc.get_primaries()} == set(cluster.ports.values())
            assert rc.get(b"x") == group_leader(cluster, b"x").encode()
        finally:
            rc.close()


@pytest.mark.skipif(
    shutil.which("redis-benchmark") is None, reason="redis-benchmark is not installed"
)
def test_redis_benchmark_cluster_sends_each_key_to_its_groups_leader() -> None:
    with fake_cluster({0: "n1", 1: "n2", 2: "n3"}) as cluster:
        run = subprocess.run(
            [
                "redis-benchmark",
                "--cluster",
                "-h",
                "127.0.0.1",
                "-p",
                str(cluster.ports["n2"]),
                "-n",
                "600",
                "-c",
                "6",
                "-t",
                "set,get",
                "-r",
                "1000",
                "-q",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert "Invalid cluster" not in run.stdout + run.stderr
        assert cluster.moved == []
        for node, keys in cluster.served.items():
            assert keys, f"{node} got no keys"
            assert all(group_leader(cluster, k) == node for k in keys), node
        assert sum(len(k) for k in cluster.served.values()) == 1200
