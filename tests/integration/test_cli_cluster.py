"""`replikv up` as a user runs it: a real 3-node cluster in subprocesses,
driven with the replikv CLI and redis-cli."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from replikv.ports import free_port_block

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("redis-cli") is None, reason="needs redis-cli (redis-tools)"),
]

START_TIMEOUT_S = 60.0


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_for(predicate, timeout_s: float, what: str, alive=lambda: None):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        problem = alive()
        if problem:
            raise AssertionError(f"{what}: {problem}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(0.1)


def replikv(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "replikv", *args], capture_output=True,
                          text=True, timeout=timeout_s)


def redis_cli(port: int, *args: str) -> str:
    done = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True,
                          timeout=30)
    return done.stdout.strip()


def roles(config: Path) -> dict[str, str]:
    done = replikv("status", "--config", str(config), "--json")
    return {row["id"]: row["role"] for row in json.loads(done.stdout)} if done.stdout else {}


def settled(config: Path, leader: str) -> dict[str, str] | None:
    """The status rows once `leader` leads and every other node follows it with its link up."""
    done = replikv("status", "--config", str(config), "--json")
    if done.returncode != 0 or not done.stdout:
        return None
    rows = json.loads(done.stdout)
    for row in rows:
        if row["id"] == leader:
            if row["role"] != "leader":
                return None
        elif row["role"] != "follower" or row["link"] != "up" or row["leader"] != leader:
            return None
    return {row["id"]: row["role"] for row in rows}


def start_up(tmp_path: Path, mode: str, *extra: str, env: dict[str, str] | None = None,
             ) -> tuple[subprocess.Popen[bytes], int, int, Path, Callable[[], str | None]]:
    """`replikv up --mode <mode> --nodes 3` on free ports: (process, client port base,
    peer port base, its log, a check that it still runs)."""
    base = free_port_block(3)
    peer_base = free_port_block(3)
    up_log = tmp_path / "up.log"
    with open(up_log, "wb") as out:
        up = subprocess.Popen(
            [sys.executable, "-m", "replikv", "up", "--mode", mode, "--nodes", "3",
             "--port", str(base), "--peer-port", str(peer_base), "--data-dir", str(tmp_path / "data"),
             *extra],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})})

    def up_alive() -> str | None:
        if up.poll() is not None:
            return f"`replikv up` exited with {up.returncode}:\n{up_log.read_text()[-3000:]}"
        return None

    return up, base, peer_base, up_log, up_alive


def test_up_status_replicate_failover_and_stop(tmp_path: Path) -> None:
    up, base, peer_base, up_log, up_alive = start_up(tmp_path, "leader-follower")
    ports = {f"n{i + 1}": base + i for i in range(3)}
    all_ports = list(ports.values()) + [peer_base + i for i in range(3)]
    config = tmp_path / "data" / "cluster.toml"

    try:
        wait_for(lambda: "cluster is up" in up_log.read_text(errors="replace"), START_TIMEOUT_S,
                 "`replikv up` to report the cluster up", up_alive)
        assert config.exists()

        # one leader (n1) and two followers
        assert wait_for(lambda: settled(config, "n1"), 30, "n1 leading two followers",
                        up_alive) == {"n1": "leader", "n2": "follower", "n3": "follower"}
        table = replikv("status", "--config", str(config))
        assert table.returncode == 0, table.stdout + table.stderr
        assert table.stdout.count("leader") >= 1 and table.stdout.count("follower") == 2

        # a write on the leader reaches both followers
        assert redis_cli(ports["n1"], "SET", "k", "v") == "OK"
        for follower in ("n2", "n3"):
            wait_for(lambda: redis_cli(ports[follower], "GET", "k") == "v", 30,
                     f"k=v on {follower}", up_alive)

        # failover makes n2 the leader
        done = replikv("failover", "--config", str(config), "--to", "n2")
        assert done.returncode == 0, done.stdout + done.stderr
        assert wait_for(lambda: settled(config, "n2"), 30, "n2 leading", up_alive) == {
            "n1": "follower", "n2": "leader", "n3": "follower"}
        assert redis_cli(ports["n2"], "SET", "k2", "v2") == "OK"
        wait_for(lambda: redis_cli(ports["n1"], "GET", "k2") == "v2", 30, "k2 on n1", up_alive)
        assert up.poll() is None
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
        try:
            code = up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            up.kill()
            code = up.wait()
    assert code == 0, up_log.read_text()[-3000:]
    assert "all nodes stopped" in up_log.read_text()
    wait_for(lambda: not any(listening(p) for p in all_ports), 10, "every node port closed")


def test_up_raft_reports_the_elected_leader_and_its_nodes_die_with_it(tmp_path: Path) -> None:
    """`replikv up --mode raft` says the cluster is up once a leader is elected,
    and the leader it names is the one the nodes report; killed with SIGKILL,
    it takes its nodes with it."""
    up, base, _, up_log, up_alive = start_up(tmp_path, "raft")
    try:
        wait_for(lambda: "forwarded to the leader" in up_log.read_text(errors="replace"),
                 START_TIMEOUT_S, "`replikv up` to report the cluster up", up_alive)
        text = up_log.read_text(errors="replace")
        named = text.split("forwarded to the leader (", 1)[1].split(")", 1)[0]
        current = [n for n, r in roles(tmp_path / "data" / "cluster.toml").items() if r == "leader"]
        assert current == [named], (named, current, text[-2000:])
        assert "│ leader" in text  # the table shows the leader's role, not only followers
        # `up` killed outright: its nodes do not run on as orphans (parent_death.py)
        up.send_signal(signal.SIGKILL)
        up.wait(timeout=10)
        wait_for(lambda: not any(listening(base + i) for i in range(3)), 20,
                 "every node to exit with `replikv up`")
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            try:
                up.wait(timeout=60)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait()


def test_secrets_from_the_environment_and_a_file_stay_out_of_argv(tmp_path: Path) -> None:
    """`ps` shows every local user the command lines: the secret and the password
    given through REPLIKV_SECRET and --requirepass-file must not appear there."""
    password_file = tmp_path / "pass.txt"
    password_file.write_text("hunter2-from-a-file\n")
    up, base, _, up_log, up_alive = start_up(
        tmp_path, "leader-follower", "--requirepass-file", str(password_file),
        env={"REPLIKV_SECRET": "secret-from-the-environment"})
    config = tmp_path / "data" / "cluster.toml"
    try:
        wait_for(lambda: "cluster is up" in up_log.read_text(errors="replace"), START_TIMEOUT_S,
                 "`replikv up` to report the cluster up", up_alive)
        text = config.read_text()
        assert 'secret = "secret-from-the-environment"' in text
        assert 'requirepass = "hunter2-from-a-file"' in text
        assert config.stat().st_mode & 0o777 == 0o600
        assert redis_cli(base, "PING").startswith("NOAUTH")
        assert redis_cli(base, "--no-auth-warning", "-a", "hunter2-from-a-file", "PING") == "PONG"
        for pid in (p for p in os.listdir("/proc") if p.isdigit()):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"replikv" in cmdline:
                assert b"secret-from-the-environment" not in cmdline
                assert b"hunter2-from-a-file" not in cmdline
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(60)
