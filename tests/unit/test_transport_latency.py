"""Injected latency in the peer transport (issue 10, "regions on one machine").

Two PeerTransports on loopback with ``peer_delay_ms``: a frame never arrives
earlier than the delay after it was sent, and jitter never reorders a link.
Only lower bounds on time are asserted (a loaded machine may be slow, never fast).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from replikv.config import ClusterConfig, ConfigError, NodeAddress, NodeOptions, parse_peer_delays
from replikv.runtime.tcp_transport import PeerTransport

from tests.unit.test_tcp_transport import SECRET, free_ports
from tests.unit.test_tcp_transport import until as _until

until = functools.partial(_until, timeout=10.0)  # frames here wait out injected delays


class Node:
    """A transport that records each frame with the monotonic time it arrived."""

    def __init__(self, node_id: str, ports: dict[str, int], **kw: Any) -> None:
        self.frames: list[tuple[str, bytes, float]] = []
        peers = {p: ("127.0.0.1", port) for p, port in ports.items() if p != node_id}
        self.t = PeerTransport(node_id, "127.0.0.1", ports[node_id], peers, SECRET,
                               on_frame=lambda peer, payload: self.frames.append(
                                   (peer, payload, time.monotonic())),
                               on_connected=lambda peer: None, on_disconnected=lambda peer: None, **kw)


def run(coro: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(coro())


async def pair(a_kw: dict[str, Any], b_kw: dict[str, Any]) -> tuple[Node, Node]:
    p1, p2 = free_ports(2)
    ports = {"n1": p1, "n2": p2}
    a, b = Node("n1", ports, **a_kw), Node("n2", ports, **b_kw)
    await a.t.start()
    await b.t.start()
    await until(lambda: a.t.connected("n2") and b.t.connected("n1"), what="both directions")
    return a, b


def test_a_frame_arrives_no_earlier_than_the_delay() -> None:
    async def main() -> None:
        a, b = await pair({"peer_delay_ms": 50}, {})
        sent: list[float] = []
        for i in range(20):
            sent.append(time.monotonic())
            assert a.t.send("n2", b"f%d" % i)
            if i == 0:
                assert a.t.buffered_bytes("n2") > 0  # held back, not yet on the socket
            await asyncio.sleep(0.003)
        await until(lambda: len(b.frames) == 20, what="20 frames")
        assert [f[1] for f in b.frames] == [b"f%d" % i for i in range(20)]
        for t_sent, (_, _, t_arrived) in zip(sent, b.frames):
            assert t_arrived - t_sent >= 0.050
        # the other direction has no delay: the reply path is untouched
        t0 = time.monotonic()
        assert b.t.send("n1", b"back")
        await until(lambda: a.frames, what="the reply")
        assert a.frames[0][1] == b"back" and a.frames[0][2] >= t0
        await a.t.stop()
        await b.t.stop()
    run(main)


def test_jitter_never_reorders_a_link() -> None:
    async def main() -> None:
        a, b = await pair({"peer_delay_ms": 20, "peer_jitter_ms": 20}, {})
        sent: list[float] = []
        n = 300
        for i in range(n):
            sent.append(time.monotonic())
            assert a.t.send("n2", b"%d" % i)
            if i % 10 == 0:
                await asyncio.sleep(0.001)
        await until(lambda: len(b.frames) == n, what=f"{n} frames")
        assert [f[1] for f in b.frames] == [b"%d" % i for i in range(n)]  # FIFO, sealed MACs in order
        for t_sent, (_, _, t_arrived) in zip(sent, b.frames):
            assert t_arrived - t_sent >= 0.0  # delay - jitter is 0 here: only causality holds
        await a.t.stop()
        await b.t.stop()
    run(main)


def test_jitter_keeps_the_lower_bound_of_delay_minus_jitter() -> None:
    async def main() -> None:
        a, b = await pair({"peer_delay_ms": 60, "peer_jitter_ms": 20}, {"peer_delay_ms": 60,
                                                                         "peer_jitter_ms": 20})
        t0 = time.monotonic()
        for i in range(50):
            assert a.t.send("n2", b"%d" % i)
            assert b.t.send("n1", b"%d" % i)
        await until(lambda: len(b.frames) == 50 and len(a.frames) == 50, what="both ways")
        for node in (a, b):
            assert [f[1] for f in node.frames] == [b"%d" % i for i in range(50)]
            assert min(f[2] for f in node.frames) - t0 >= 0.040
        await a.t.stop()
        await b.t.stop()
    run(main)


def test_per_link_override() -> None:
    async def main() -> None:
        a, b = await pair({"peer_delay_ms": 0, "link_delays": {"n2": 70}}, {})
        t0 = time.monotonic()
        assert a.t.send("n2", b"x")
        await until(lambda: b.frames, what="the frame")
        assert b.frames[0][2] - t0 >= 0.070
        await a.t.stop()
        await b.t.stop()
    run(main)


def test_no_delay_sends_at_once_without_a_queue() -> None:
    async def main() -> None:
        a, b = await pair({}, {})
        assert a.t._delayed == {}  # the hot path's only extra cost is one falsy dict check
        assert a.t.send("n2", b"now")
        await until(lambda: b.frames, what="the frame")
        await a.t.stop()
        await b.t.stop()
    run(main)


def test_stop_drops_what_is_still_in_flight() -> None:
    async def main() -> None:
        a, b = await pair({"peer_delay_ms": 200}, {})
        assert a.t.send("n2", b"lost")
        await a.t.stop()
        await asyncio.sleep(0.3)
        assert b.frames == []
        await b.t.stop()
    run(main)


# -- options -----------------------------------------------------------------

def test_options_are_validated() -> None:
    NodeOptions(peer_delay_ms=50, peer_jitter_ms=10).validate()
    for bad in ({"peer_delay_ms": -1}, {"peer_jitter_ms": -5}, {"peer_delay_ms": 10_001},
                {"peer_delay_ms": "50"}, {"peer_delays": "n1-n2"}, {"peer_delays": "n1=5"},
                {"peer_delays": "n1-n1=5"}, {"peer_delays": "n1-n2=-5"}, {"peer_delays": "n1-n2=99999"}):
        with pytest.raises(ConfigError):
            NodeOptions(**bad).validate()


def test_peer_delays_parse_and_apply_to_both_ends() -> None:
    assert parse_peer_delays("n1-n2=80, n3-n1 = 120") == {("n1", "n2"): 80, ("n1", "n3"): 120}
    assert parse_peer_delays("node-1 node-2=5") == {("node-1", "node-2"): 5}
    assert parse_peer_delays("") == {}
    opts = NodeOptions(peer_delays="n1-n2=80,n1-n3=120")
    assert opts.link_delays("n1") == {"n2": 80, "n3": 120}
    assert opts.link_delays("n2") == {"n1": 80}
    assert opts.link_delays("n3") == {"n1": 120}


def test_cluster_toml_round_trip_and_unknown_node(tmp_path: Any) -> None:
    nodes = {n: NodeAddress(n, "127.0.0.1", 7000 + i, 17000 + i, str(tmp_path / n))
             for i, n in enumerate(("n1", "n2", "n3"))}
    config = ClusterConfig("raft", "secret", "n1", nodes,
                           NodeOptions(peer_delay_ms=50, peer_jitter_ms=5, peer_delays="n1-n2=80"))
    path = tmp_path / "cluster.toml"
    config.save(path)
    text = path.read_text()
    assert "peer_delay_ms = 50" in text and "peer_jitter_ms = 5" in text and 'peer_delays = "n1-n2=80"' in text
    loaded = ClusterConfig.load(path)
    assert (loaded.options.peer_delay_ms, loaded.options.peer_jitter_ms) == (50, 5)
    assert loaded.options.link_delays("n2") == {"n1": 80}
    config.options.peer_delays = "n1-n9=80"
    with pytest.raises(ConfigError, match="n9"):
        config.validate()


def test_cli_flags_reach_cluster_toml_and_node_refuses_a_bad_override(tmp_path: Any) -> None:
    from typer.testing import CliRunner

    from replikv import cli

    config, _ = cli.build_cluster_config(data_dir=tmp_path, nodes=3, port=9000, secret="abc",
                                         node_options={"peer_delay_ms": 50, "peer_jitter_ms": 5})
    assert (config.options.peer_delay_ms, config.options.peer_jitter_ms) == (50, 5)
    path = tmp_path / "cluster.toml"
    config.save(path)
    assert "--peer-delay-ms" in cli.node_option_flags().values()
    result = CliRunner().invoke(cli.app, ["node", "--config", str(path), "--id", "n1", "--peer-delay-ms", "-5"])
    assert result.exit_code == 2
    assert "peer_delay_ms must be between 0 and" in result.output
    with pytest.raises(ConfigError, match="n7"):
        cli.build_cluster_config(data_dir=tmp_path / "x", nodes=3, port=9100, secret="abc",
                                 node_options={"peer_delays": "n1-n7=5"})
