"""The replikv CLI without the node runtime: help, cluster.toml building,
option errors, status of a cluster that is not running, and the supervisor
driven with redis-server standing in for a node."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from replikv import __version__, cli
from replikv.ports import free_port
from replikv.config import ClusterConfig, ConfigError, NodeAddress, NodeOptions

runner = CliRunner()
COMMANDS = ["up", "node", "status", "failover", "sim", "version"]




def port_closed(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return False
    except OSError:
        return True


def wait_for(predicate, timeout_s: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def config_for(tmp_path: Path, ports: list[int], **options) -> ClusterConfig:
    nodes = {
        f"n{i + 1}": NodeAddress(f"n{i + 1}", "127.0.0.1", p, free_port(), str(tmp_path / f"n{i + 1}"))
        for i, p in enumerate(ports)
    }
    return ClusterConfig(mode="leader-follower", secret="s3cret", initial_leader="n1", nodes=nodes,
                         options=NodeOptions(**options))


# -- help ---------------------------------------------------------------------

def test_every_command_is_listed_and_has_help():
    top = runner.invoke(cli.app, ["--help"])
    assert top.exit_code == 0, top.output
    for command in COMMANDS:
        assert command in top.output
        result = runner.invoke(cli.app, [command, "--help"])
        assert result.exit_code == 0, (command, result.output)
        assert "Usage" in result.output


def test_up_has_a_flag_for_every_node_option():
    group = typer.main.get_command(cli.app)
    up = group.commands["up"]  # type: ignore[attr-defined]
    flags = {opt for param in up.params for opt in param.opts + param.secondary_opts}
    for f in dataclasses.fields(NodeOptions):
        assert "--" + f.name.replace("_", "-") in flags, f.name
    assert "--no-redirect" in flags


def test_version():
    result = runner.invoke(cli.app, ["version"])
    assert result.exit_code == 0
    assert __version__ in result.output


# -- building cluster.toml ---------------------------------------------------------

def test_build_config_lays_out_nodes(tmp_path):
    config, notes = cli.build_cluster_config(data_dir=tmp_path / "d", nodes=3, port=7001)
    assert list(config.nodes) == ["n1", "n2", "n3"]
    assert [n.port for n in config.nodes.values()] == [7001, 7002, 7003]
    assert [n.peer_port for n in config.nodes.values()] == [17001, 17002, 17003]
    assert all(n.host == "127.0.0.1" for n in config.nodes.values())
    assert [n.data_dir for n in config.nodes.values()] == [
        str((tmp_path / "d" / f"n{i}").resolve()) for i in (1, 2, 3)]
    assert config.initial_leader == "n1"
    assert config.mode == "leader-follower"
    assert re.fullmatch(r"[0-9a-f]{32}", config.secret)
    assert any("secret" in note for note in notes)
    # every option at its default, except the ACL file, which `up` keeps beside cluster.toml
    assert config.options == NodeOptions(aclfile=str((tmp_path / "d" / "users.acl").resolve()))
    other, _ = cli.build_cluster_config(data_dir=tmp_path / "d")
    assert other.secret != config.secret  # random each time


def test_build_config_applies_every_option_and_round_trips(tmp_path):
    given = {"fsync": "always", "ack": "semi-sync=1", "ack_timeout_ms": 250, "requirepass": "pw",
             "redirect": True, "read_default": "session", "session_timeout_ms": 77,
             "max_bulk_len": 1024, "max_args": 64, "snapshot_bytes": 4096, "repl_backlog_bytes": 8192,
             "repl_max_lag_bytes": 4096, "max_log_bytes": 16384, "repl_lag_stall_ms": 400,
             "segment_bytes": 2048,
             "heartbeat_ms": 20, "log_level": "DEBUG", "log_format": "json", "tick_ms": 5, "election_timeout_ms": 100,
             "tls_cert_file": "/c.pem", "tls_key_file": "/k.pem", "tls_ca_cert_file": "/ca.pem",
             "tls_auth_clients": "optional", "tls_replication": True, "aclfile": "/users.acl",
             "maxclients": 50, "timeout": 30, "client_query_buffer_limit": 1 << 20,
             "client_output_buffer_limit": 1 << 20, "topology": "ring", "hub": "n2", "conflicts": "siblings", "oplog_retain_ops": 500,
             "peer_delay_ms": 50, "peer_jitter_ms": 5,
             "peer_delays": "n1-n2=80", "replicas": 2, "read_consistency": "one", "write_consistency": "all",
             "sloppy_quorum": True, "vnodes": 16, "tombstone_grace_s": 60, "read_repair_pct": 0,
             "anti_entropy_ms": 50, "shards": 4, "txn": "classic", "txn_timeout_ms": 300}
    assert set(given) == {f.name for f in dataclasses.fields(NodeOptions)}
    config, _ = cli.build_cluster_config(data_dir=tmp_path, mode="raft", nodes=2, port=9000, peer_port=9100,
                                         secret="abc", node_options=given)
    assert config.secret == "abc"
    assert [n.peer_port for n in config.nodes.values()] == [9100, 9101]
    assert config.options.ack == "semi-sync 1"
    assert config.options.log_level == "debug"
    assert config.options.redirect is True
    path = tmp_path / "cluster.toml"
    config.save(path)
    assert ClusterConfig.load(path) == config


def test_build_config_reuses_existing_cluster(tmp_path):
    first, _ = cli.build_cluster_config(data_dir=tmp_path, nodes=3, port=7001)
    again, notes = cli.build_cluster_config(data_dir=tmp_path, nodes=3, port=7001,
                                            node_options={"fsync": "always"}, existing=first)
    assert again.secret == first.secret
    assert again.nodes == first.nodes
    assert again.options.fsync == "always"
    assert any("reusing" in n and "--fsync" in n for n in notes)
    with pytest.raises(ConfigError, match="--nodes 5"):
        cli.build_cluster_config(data_dir=tmp_path, nodes=5, existing=first)
    with pytest.raises(ConfigError, match="--port 8000"):
        cli.build_cluster_config(data_dir=tmp_path, port=8000, existing=first)


@pytest.mark.parametrize("kwargs, message", [
    ({"node_options": {"fsync": "sometimes"}}, "fsync must be one of"),
    ({"node_options": {"ack": "quorum"}}, "unknown ack level"),
    ({"node_options": {"ack": "semi-sync 3"}}, "needs at least 3 followers"),
    ({"node_options": {"log_level": "loud"}}, "--log-level"),
    ({"node_options": {"read_default": "linearizable"}}, "read_default"),
    ({"node_options": {"heartbeat_ms": 0}}, "heartbeat_ms"),
    ({"node_options": {"repl_max_lag_bytes": -1}}, "repl_max_lag_bytes must be 0 (no back-pressure)"),
    ({"node_options": {"repl_lag_stall_ms": 0}}, "repl_lag_stall_ms must be a positive integer"),
    ({"node_options": {"max_log_bytes": -1}}, "max_log_bytes must be 0 (no bound)"),
    ({"node_options": {"snapshot_bytes": 4096, "repl_backlog_bytes": 4096, "max_log_bytes": 8192}},
     "more than snapshot_bytes + repl_backlog_bytes (8192)"),
    ({"nodes": 0}, "at least 1"),
    ({"port": 60000}, "peer port 70000"),
    ({"host": "10.1.2.3"}, "protected mode"),
    ({"mode": "chaos"}, "unknown mode 'chaos'; choose from leader-follower, leaderless, multi-leader, raft"),
])
def test_build_config_rejects_bad_input(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        cli.build_cluster_config(data_dir=tmp_path, **kwargs)


def test_non_loopback_host_is_allowed_with_requirepass(tmp_path):
    config, _ = cli.build_cluster_config(data_dir=tmp_path, host="10.1.2.3",
                                         node_options={"requirepass": "pw"})
    assert all(n.host == "10.1.2.3" for n in config.nodes.values())


# -- bad options on the command line: a clear error and exit 2 -------------------------

@pytest.mark.parametrize("args, message", [
    (["--fsync", "sometimes"], "fsync must be one of"),
    (["--ack", "semi-sync 9"], "needs at least 9 followers"),
    (["--host", "0.0.0.0"], "protected mode"),
    (["--nodes", "0"], "--nodes"),
    (["--port", "abc"], "--port"),
    (["--heartbeat-ms", "-5"], "heartbeat_ms"),
    (["--mode", "raftish"], "unknown mode 'raftish'; choose from"),
    (["--bogus"], "--bogus"),
])
def test_up_rejects_bad_options(tmp_path, args, message):
    result = runner.invoke(cli.app, ["up", "--data-dir", str(tmp_path / "d"), *args])
    assert result.exit_code == 2, result.output
    assert message in one_line(result.output)
    assert not (tmp_path / "d" / "cluster.toml").exists()


def test_up_refuses_to_change_an_existing_cluster_layout(tmp_path):
    config, _ = cli.build_cluster_config(data_dir=tmp_path, nodes=3, port=7001)
    config.save(tmp_path / "cluster.toml")
    result = runner.invoke(cli.app, ["up", "--data-dir", str(tmp_path), "--nodes", "5"])
    assert result.exit_code == 2
    assert "already describes a cluster" in one_line(result.output)


def test_up_refuses_busy_ports(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        result = runner.invoke(cli.app, ["up", "--data-dir", str(tmp_path), "--nodes", "1",
                                         "--port", str(busy), "--peer-port", str(free_port())])
    assert result.exit_code == 2
    assert "already in use" in one_line(result.output)


def test_commands_reject_a_missing_or_bad_config(tmp_path):
    missing = str(tmp_path / "nope.toml")
    for args in (["status", "--config", missing], ["node", "--config", missing, "--id", "n1"],
                 ["failover", "--config", missing, "--to", "n2"]):
        result = runner.invoke(cli.app, args)
        assert result.exit_code == 2, (args, result.output)
        assert "not found" in result.output
    bad = tmp_path / "bad.toml"
    bad.write_text("[cluster\n")
    result = runner.invoke(cli.app, ["status", "--config", str(bad)])
    assert result.exit_code == 2
    assert "not valid TOML" in result.output


def test_unknown_node_id_is_a_usage_error(tmp_path):
    path = tmp_path / "cluster.toml"
    config_for(tmp_path, [free_port()]).save(path)
    for args in (["node", "--config", str(path), "--id", "n9"],
                 ["failover", "--config", str(path), "--to", "n9"]):
        result = runner.invoke(cli.app, args)
        assert result.exit_code == 2, result.output
        assert "no node 'n9'" in result.output


def test_missing_required_option_is_exit_2():
    assert runner.invoke(cli.app, ["status"]).exit_code == 2
    assert runner.invoke(cli.app, ["failover", "--config", "x"]).exit_code == 2


# -- status / failover against nodes that are not running -----------------------------

def test_status_shows_down_for_nodes_not_running(tmp_path):
    path = tmp_path / "cluster.toml"
    config_for(tmp_path, [free_port(), free_port(), free_port()]).save(path)
    started = time.monotonic()
    result = runner.invoke(cli.app, ["status", "--config", str(path)])
    assert result.exit_code == 1, result.output
    assert result.output.count("down") >= 3
    assert time.monotonic() - started < 5  # short timeouts, asked in parallel
    as_json = runner.invoke(cli.app, ["status", "--config", str(path), "--json"])
    rows = json.loads(as_json.stdout)
    assert [r["id"] for r in rows] == ["n1", "n2", "n3"]
    assert all(r["state"] == "down" and r["role"] == "down" for r in rows)


def test_failover_to_a_down_node_fails_clearly(tmp_path):
    path = tmp_path / "cluster.toml"
    config_for(tmp_path, [free_port(), free_port()]).save(path)
    result = runner.invoke(cli.app, ["failover", "--config", str(path), "--to", "n2",
                                     "--timeout", "0.5"])
    assert result.exit_code == 1
    assert "did not answer" in one_line(result.output)


def test_sim_without_simulator_is_exit_2(monkeypatch):
    monkeypatch.setattr(cli.importlib.util, "find_spec", lambda name: None)
    result = runner.invoke(cli.app, ["sim", "--seeds", "10"])
    assert result.exit_code == 2
    assert "not available" in result.output


def test_info_parsing():
    text = ("# Replication\r\nrole:slave\r\nreplikv_leader:\r\nmaster_repl_offset:42\r\n"
            "slave0:ip=127.0.0.1,port=7002,state=online,offset=40,lag=0,id=n2,lag_ops=2,lag_ms=3\r\n")
    info = cli.parse_info(text)
    assert info["role"] == "slave" and info["replikv_leader"] == "" and info["master_repl_offset"] == "42"
    assert cli.parse_kv_list(info["slave0"])["id"] == "n2"


# -- the supervisor, with redis-server standing in for a node -------------------------

needs_redis = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")


@needs_redis
@pytest.mark.integration  # starts processes
def test_supervisor_starts_reports_and_stops(tmp_path):
    ports = [free_port(), free_port()]
    config = config_for(tmp_path, ports)
    leader_port = ports[0]

    def fake_node(node: NodeAddress) -> list[str]:
        args = ["redis-server", "--port", str(node.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", node.data_dir, "--repl-diskless-sync-delay", "0"]
        if node.port != leader_port:
            args += ["--replicaof", "127.0.0.1", str(leader_port)]
        return args

    sup = cli.Supervisor(config, tmp_path / "cluster.toml", echo=False, node_command=fake_node)
    stop = cli.threading.Event()
    try:
        sup.start()
        ok, why = sup.wait_ready(time.monotonic() + 10, stop)
        assert ok, why
        # status reads Redis's own INFO replication: master -> leader, slave -> follower
        statuses = wait_for(
            lambda: (s := cli.collect_status(config)) and s[1].link == "up" and s,
            what="replica link up")
        assert [s.role for s in statuses] == ["leader", "follower"]
        assert statuses[0].followers and statuses[0].followers[0]["port"] == str(ports[1])
        table = cli.status_table(statuses)
        assert table.row_count == 2
        # a node that dies is reported once, with its exit code
        sup.children["n2"].proc.kill()
        exited = wait_for(sup.newly_exited, what="n2 exit")
        assert exited == [("n2", -9)]
        assert sup.newly_exited() == []
        assert sup.running() == ["n1"]
        assert cli.collect_status(config)[1].state == "down"
    finally:
        killed = sup.stop(timeout_s=10)
    assert killed == []
    assert all(port_closed(p) for p in ports)
    assert all(c.proc.returncode is not None for c in sup.children.values())
    assert "starting n1" in (tmp_path / "n1" / "node.log").read_text()


@pytest.mark.integration  # starts processes
def test_python_dash_m_replikv_is_the_cli():
    out = subprocess.run([sys.executable, "-m", "replikv", "version"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0
    assert out.stdout.strip() == f"replikv {__version__}"


@pytest.mark.integration  # starts processes
def test_sim_passes_its_arguments_through():
    if cli.importlib.util.find_spec("replikv.sim.__main__") is None:
        pytest.skip("replikv.sim has no __main__ yet")
    out = subprocess.run([sys.executable, "-m", "replikv", "sim", "--", "--help"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "replikv.sim" in out.stdout  # the simulator's own usage line, not the wrapper's


def test_a_cluster_toml_that_is_not_utf8_is_a_config_error(tmp_path):
    """Found by the config fuzz target (tests/fuzz): tomllib raised UnicodeDecodeError."""
    from replikv.config import ClusterConfig, ConfigError

    path = tmp_path / "cluster.toml"
    path.write_bytes(b'[cluster]\nsecret = "\xff"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        ClusterConfig.load(path)


@pytest.mark.parametrize("line, message", [("ack = 4", "ack must be a string"),
                                           ("redirect = 1", "redirect must be true or false"),
                                           ("max_args = true", "max_args must be an integer"),
                                           ("requirepass = 5", "requirepass must be a string")])
def test_an_option_of_the_wrong_type_is_a_config_error(tmp_path, line, message):
    """Found by the config fuzz target (tests/fuzz): `ack = 4` raised AttributeError."""
    from replikv.config import ClusterConfig, ConfigError

    path = tmp_path / "cluster.toml"
    path.write_text(f'[cluster]\nsecret = "s"\n[options]\n{line}\n[nodes.n1]\nport = 7001\ndata_dir = "/d"\n')
    with pytest.raises(ConfigError, match=message):
        ClusterConfig.load(path)


def test_control_characters_survive_the_toml_round_trip(tmp_path):
    """Issue 11: the TOML writer did not escape control characters."""
    config, _ = cli.build_cluster_config(data_dir=tmp_path, nodes=1, secret='s"\\\n\t\x01\x7f',
                                         node_options={"requirepass": "p\r\nq"})
    path = tmp_path / "cluster.toml"
    config.save(path)
    again = ClusterConfig.load(path)
    assert again.secret == 's"\\\n\t\x01\x7f' and again.options.requirepass == "p\r\nq"
    assert path.stat().st_mode & 0o777 == 0o600
