"""The dashboard's JSON and WebSocket API against real 3-node clusters (replikv.dashboard).

Each test starts a cluster with the `replikv check` harness and the dashboard
on its own thread, then talks to it as the page does: GET /api/state, the
/ws stream, POST /api/action and /api/read-everywhere.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

aiohttp = pytest.importorskip("aiohttp", reason="the dashboard needs aiohttp (pip install aiohttp)")

from replikv.check.harness import Harness, can_partition, wait_for
from replikv.dashboard.actions import AttachedController, Controller, HarnessController
from replikv.dashboard.server import Dashboard, DashboardThread

pytestmark = pytest.mark.integration
T = TypeVar("T")


class Board:
    def __init__(self, harness: Harness, controller: Controller) -> None:
        self.harness = harness
        self.dashboard = Dashboard(harness.config, controller, interval_s=0.2)
        self.thread = DashboardThread(self.dashboard, 0).start()
        self.url = self.thread.url

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        async def go() -> tuple[int, Any]:
            async with aiohttp.ClientSession() as s:
                async with s.request(method, self.url + path.lstrip("/"), json=body) as r:
                    return r.status, await r.json()
        return asyncio.run(go())

    def state(self) -> dict[str, Any]:
        status, body = self.call("GET", "/api/state")
        assert status == 200
        return body

    def until(self, cond: Callable[[dict[str, Any]], T], what: str, timeout_s: float = 20.0) -> T:
        return wait_for(lambda: cond(self.state()), timeout_s, what)

    def close(self) -> None:
        self.thread.stop()


@pytest.fixture
def board_of(tmp_path: Path) -> Iterator[Callable[..., Board]]:
    made: list[tuple[Harness, Board]] = []

    def make(mode: str = "raft", attached: bool = False, use_netns: bool = False, **options: Any) -> Board:
        h = Harness(tmp_path / f"c{len(made)}", mode, 3, use_netns=use_netns, election_timeout_ms=300, **options)
        h.start()
        controller: Controller = AttachedController(h.config, lambda n: None) if attached else HarnessController(h)
        b = Board(h, controller)
        made.append((h, b))
        b.until(lambda s: all(n["state"] == "up" for n in s["nodes"]) and s["polls"] >= 2, "first polls")
        return b

    yield make
    for h, b in made:
        b.close()
        b.dashboard.controller.close()
        h.close()


def events(state: dict[str, Any]) -> list[str]:
    return [e["text"] for e in state["events"]]


def test_state_websocket_and_traffic(board_of: Callable[..., Board]) -> None:
    b = board_of("raft")
    s = b.state()
    assert s["mode"] == "raft" and s["read_levels"][0] == "linearizable"
    leader = b.until(lambda s: s["leader"], "a leader")
    by_id = {n["id"]: n for n in s["nodes"]}
    assert set(by_id) == {"n1", "n2", "n3"}
    assert s["term"] is not None and s["term"] >= 1
    assert [n["id"] for n in s["nodes"] if n["role"] == "leader"] == [leader]

    # 300 writes on the leader: its ops/s moves, and the WebSocket pushes states as polls happen
    c = b.harness.client(leader)
    try:
        for i in range(300):
            c.set(f"k{i}", i)
    finally:
        c.close()
    b.until(lambda s: any((p["ops_s"] or 0) > 0 for p in s["history"][leader]), "ops/s of the writes")
    after = b.until(lambda s: next(n for n in s["nodes"] if n["id"] == leader)["offset"] >= 300 or None,
                    "the leader's log offset to pass the writes")
    assert after

    async def two_pushes() -> list[dict[str, Any]]:
        async with aiohttp.ClientSession() as s, s.ws_connect(b.url + "ws") as ws:
            got = [json.loads((await ws.receive(timeout=10)).data) for _ in range(2)]
            return got
    pushes = asyncio.run(two_pushes())
    assert all(p["type"] == "state" and len(p["nodes"]) == 3 for p in pushes)
    assert pushes[1]["polls"] >= pushes[0]["polls"]


def test_kill_leader_then_restart(board_of: Callable[..., Board]) -> None:
    b = board_of("raft")
    old = b.until(lambda s: s["leader"], "a leader")
    status, body = b.call("POST", "/api/action", {"action": "kill", "node": old})
    assert status == 200 and body == {"ok": True, "message": f"{old} killed (SIGKILL)"}
    new = b.until(lambda s: s["leader"] not in ("", old) and s["leader"], "a new leader")
    s = b.until(lambda s: any(t.startswith("leader changed") for t in events(s)) and s, "the leader event")
    texts = events(s)
    assert f"{old} killed (SIGKILL)" in texts
    assert any(t.startswith(f"{old} is down") for t in texts)
    assert any(t == f"leader changed: {old} -> {new} (term {s['term']})" or
               t.startswith("leader changed: none -> " + new) for t in texts), texts
    assert next(n for n in s["nodes"] if n["id"] == old)["state"] == "down"

    status, body = b.call("POST", "/api/action", {"action": "kill", "node": old})
    assert status == 409 and body["error"] == f"{old} is not running"
    status, body = b.call("POST", "/api/action", {"action": "restart", "node": old})
    assert status == 200 and body["message"] == f"{old} restarted"
    b.until(lambda s: f"{old} is up (follower)" in events(s) or f"{old} is up (leader)" in events(s),
            "the restarted node up again")


def test_pause_resume_and_lag(board_of: Callable[..., Board]) -> None:
    b = board_of("raft")
    leader = b.until(lambda s: s["leader"], "a leader")
    follower = next(n for n in b.harness.ids if n != leader)
    assert b.call("POST", "/api/action", {"action": "pause", "node": follower})[0] == 200
    s = b.until(lambda s: next(n for n in s["nodes"] if n["id"] == follower)["state"] == "paused" and s,
                "the follower shown paused")
    assert s["playground"]["paused"] == [follower]
    c = b.harness.client(leader)
    try:
        for i in range(50):
            c.set(f"p{i}", i)
    finally:
        c.close()
    b.until(lambda s: (s["history"][leader][-1]["lag_ops"] or 0) >= 50, "the leader's lag on the paused follower")
    # the paused follower refuses what a live one answers: the probe shows it cell by cell
    status, r = b.call("POST", "/api/read-everywhere", {"key": "probe", "value": "v1"})
    assert status == 200 and r["write"]["ok"] and r["via"] == leader
    assert r["reads"][leader]["linearizable"] == {**r["reads"][leader]["linearizable"], "ok": True,
                                                  "value": "v1", "fresh": True}
    assert all(not cell["ok"] for cell in r["reads"][follower].values())
    assert b.call("POST", "/api/action", {"action": "resume", "node": follower})[0] == 200
    b.until(lambda s: f"{follower} is up (follower)" in events(s), "the follower up again")
    b.until(lambda s: (s["history"][leader][-1]["lag_ops"] or 0) == 0, "the lag gone")


def test_read_everywhere_raft(board_of: Callable[..., Board]) -> None:
    b = board_of("raft")
    leader = b.until(lambda s: s["leader"], "a leader")
    follower = next(n for n in b.harness.ids if n != leader)
    status, r = b.call("POST", "/api/read-everywhere", {"key": "k", "value": "hello", "via": follower})
    assert status == 200 and r["write"] == {**r["write"], "ok": True}
    assert r["levels"] == ["linearizable", "lease", "bounded", "session", "prefix", "eventual"]
    assert r["session_token"]
    for node in b.harness.ids:  # a healthy cluster: every level on every node sees the write
        for level in ("linearizable", "lease", "session"):
            assert r["reads"][node][level]["value"] == "hello", (node, level, r["reads"][node][level])
    status, r = b.call("POST", "/api/read-everywhere", {"key": "k", "value": "x", "via": "n9"})
    assert status == 409 and "no node 'n9'" in r["error"]


def test_refusals_when_attached(board_of: Callable[..., Board]) -> None:
    b = board_of("raft", attached=True)
    s = b.state()
    assert s["playground"]["kind"] == "attached"
    assert "did not start the nodes" in s["playground"]["refusals"]["restart"]
    assert "network namespace" in s["playground"]["refusals"]["cut"]
    status, body = b.call("POST", "/api/action", {"action": "cut", "node": "n1", "peer": "n2"})
    assert status == 409 and "network namespace" in body["error"]
    status, body = b.call("POST", "/api/action", {"action": "restart", "node": "n1"})
    assert status == 409 and "replikv node --config" in body["error"]
    # kill works by the pid n3 reported in INFO
    assert b.call("POST", "/api/action", {"action": "kill", "node": "n3"})[0] == 200
    wait_for(lambda: not b.harness.running("n3"), 10, "n3's process to end")
    b.until(lambda s: next(n for n in s["nodes"] if n["id"] == "n3")["state"] == "down", "n3 down")


def test_leaderless_ring_and_levels(board_of: Callable[..., Board]) -> None:
    b = board_of("leaderless")
    s = b.until(lambda s: s["ring"] and s, "the ring")
    assert s["ring"]["members"] == ["n1", "n2", "n3"] and s["ring"]["replicas"] == 3
    assert len(s["ring"]["tokens"]) == 3 * s["ring"]["vnodes"]
    status, p = b.call("GET", "/api/placement?key=user:1")
    assert status == 200 and sorted(p["replicas"]) == ["n1", "n2", "n3"] and 0 <= p["token"] < 1
    status, r = b.call("POST", "/api/read-everywhere", {"key": "user:1", "value": "ada", "via": "n1",
                                                        "write_level": "all"})
    assert status == 200 and r["write"]["ok"], r["write"]
    assert r["levels"] == ["one", "quorum", "all", "serial"]
    for node in b.harness.ids:
        assert r["reads"][node]["all"]["value"] == "ada"
        assert r["reads"][node]["quorum"]["value"] == "ada"


def test_multi_leader_convergence(board_of: Callable[..., Board]) -> None:
    b = board_of("multi-leader")
    status, r = b.call("POST", "/api/read-everywhere", {"key": "m", "value": "1", "via": "n2"})
    assert status == 200 and r["write"]["ok"] and r["levels"] == ["session", "eventual"]
    assert r["reads"]["n2"]["session"]["value"] == "1"
    # a poll from before the write may show the empty vectors converged; then every node has n2's op
    s = b.until(lambda s: s["converged"] and all("n2:" in n["extra"]["version_vector"] for n in s["nodes"])
                and s, "one version vector, with n2's write, everywhere")
    assert len({",".join(sorted(n["extra"]["version_vector"].split(","))) for n in s["nodes"]}) == 1


@pytest.mark.root
@pytest.mark.skipif(not can_partition()[0], reason=can_partition()[1] or "partitions unavailable")
def test_cut_and_heal_links(board_of: Callable[..., Board]) -> None:
    b = board_of("raft", use_netns=True)
    leader = b.until(lambda s: s["leader"], "a leader")
    others = [n for n in b.harness.ids if n != leader]
    for peer in others:
        status, body = b.call("POST", "/api/action", {"action": "cut", "node": leader, "peer": peer})
        assert status == 200, body
    s = b.state()
    assert sorted(map(tuple, s["playground"]["cut"])) == sorted(tuple(sorted((leader, p))) for p in others)
    # the cut-off leader steps down or is replaced: the rest elect one of themselves
    b.until(lambda s: s["leader"] in others and s, "a leader on the majority side", 30)
    for peer in others:
        assert b.call("POST", "/api/action", {"action": "heal", "node": leader, "peer": peer})[0] == 200
    assert b.state()["playground"]["cut"] == []


def test_up_dashboard_supervisor_levers(tmp_path: Path) -> None:
    """`replikv up --dashboard`: the page's kill and restart reach the supervisor's processes."""
    import re
    import signal
    import urllib.request

    from tests.integration.test_cli_cluster import start_up

    up, base, _, up_log, alive = start_up(tmp_path, "raft", "--quiet", "--election-timeout-ms", "300",
                                          "--dashboard", "--dashboard-port", "0")
    try:
        url = wait_for(lambda: (m := re.search(r"Dashboard: (http://127\.0\.0\.1:\d+/)", up_log.read_text()))
                       and m.group(1), 60, "the dashboard's address in up's output")

        def call(method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
            req = urllib.request.Request(url + path, method=method, data=json.dumps(body).encode() if body else None,
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())

        def state() -> dict[str, Any]:
            return call("GET", "api/state")[1]
        s = wait_for(lambda: state()["leader"] and state(), 30, "a leader on the page")
        assert s["playground"]["kind"] == "up" and "host's network" in s["playground"]["refusals"]["cut"]
        assert call("POST", "api/action", {"action": "cut", "node": "n1", "peer": "n2"})[0] == 409
        victim = next(n["id"] for n in s["nodes"] if n["id"] != s["leader"])
        assert call("POST", "api/action", {"action": "kill", "node": victim}) == \
            (200, {"ok": True, "message": f"{victim} killed (SIGKILL)"})
        wait_for(lambda: next(n for n in state()["nodes"] if n["id"] == victim)["state"] == "down", 20,
                 f"{victim} shown down")
        assert up.poll() is None  # up reports the exit and keeps running
        assert call("POST", "api/action", {"action": "restart", "node": victim})[0] == 200
        wait_for(lambda: f"{victim} is up (follower)" in events(state()), 30, f"{victim} up again")
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(60)
    assert up.returncode == 0, alive()


def test_dashboard_command_needs_a_source(tmp_path: Path) -> None:
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "replikv", "dashboard"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "--config" in done.stderr and "--playground" in done.stderr


def test_sharded_raft_groups(board_of: Callable[..., Board]) -> None:
    b = board_of("raft", shards=3)
    s = b.until(lambda s: len(s["groups"]) == 3 and all(g["leader"] for g in s["groups"]) and s,
                "every group led")
    assert [g["group"] for g in s["groups"]] == [0, 1, 2]
    assert s["groups"][0]["slots"].startswith("0-") and s["groups"][2]["slots"].endswith("-16383")
    assert all(sorted(g["members"]) == ["n1", "n2", "n3"] for g in s["groups"])
    group0_leader = s["groups"][0]["leader"]
    assert b.call("POST", "/api/action", {"action": "kill", "node": group0_leader})[0] == 200
    s = b.until(lambda s: any(t.startswith("group ") and t.startswith(f"group {g['group']} leader: {group0_leader} ->")
                              for g in s["groups"] for t in events(s)) and s, "a group leader event")
    assert all(g["leader"] != group0_leader for g in s["groups"] if g["leader"])


def test_levers_refuse_other_origins(board_of: Callable[..., Board]) -> None:
    b = board_of("raft")

    async def post(headers: dict[str, str], data: bytes) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as s:
            async with s.post(b.url + "api/action", data=data, headers=headers) as r:
                return r.status, await r.json()
    body = json.dumps({"action": "kill", "node": "n1"}).encode()
    status, r = asyncio.run(post({"Content-Type": "text/plain"}, body))
    assert status == 415 and "application/json" in r["error"]
    status, r = asyncio.run(post({"Content-Type": "application/json", "Origin": "http://evil.example"}, body))
    assert status == 403 and "evil.example" in r["error"]
    assert all(b.harness.running(n) for n in b.harness.ids)


def test_leader_follower_write_levels(board_of: Callable[..., Board]) -> None:
    b = board_of("leader-follower")
    s = b.until(lambda s: s["leader"] and s, "the leader")
    assert s["leader"] == "n1" and s["write_levels"] == ["async", "semi-sync 1", "sync"]
    for level in s["write_levels"]:
        status, r = b.call("POST", "/api/read-everywhere", {"key": "lf", "value": level, "write_level": level})
        assert status == 200 and r["write"]["ok"], r["write"]
        assert r["levels"] == ["bounded", "session", "prefix", "eventual"]
        # the leader and (with the writer's token) every follower read the write
        assert all(r["reads"][n]["session"]["value"] == level for n in r["nodes"]), r["reads"]


def _serve_cli(args: list[str], log: Path, timeout_s: float = 60) -> tuple[Any, str]:
    """`python -m replikv dashboard ARGS --port 0` in the background: (process, its URL)."""
    import re
    import subprocess
    import sys
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "replikv", "dashboard", *args, "--port", "0"],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)

    def url() -> str | None:
        if proc.poll() is not None:
            raise AssertionError(f"replikv dashboard exited {proc.returncode}: {log.read_text()}")
        m = re.search(r"Dashboard: (http://127\.0\.0\.1:\d+/)", log.read_text())
        return m.group(1) if m else None
    return proc, wait_for(url, timeout_s, "the dashboard's address")


def _get_state(url: str) -> dict[str, Any]:
    import urllib.request
    with urllib.request.urlopen(url + "api/state", timeout=10) as r:
        return json.loads(r.read())


def test_dashboard_cli_config_and_playground(tmp_path: Path) -> None:
    import signal
    h = Harness(tmp_path / "c", "raft", 3, use_netns=False, election_timeout_ms=300).start()
    try:
        proc, url = _serve_cli(["--config", str(h.config_path)], tmp_path / "attached.log")
        try:
            s = wait_for(lambda: (s := _get_state(url))["leader"] and s, 30, "the cluster's leader on the page")
            assert s["playground"]["kind"] == "attached" and [n["state"] for n in s["nodes"]] == ["up"] * 3
        finally:
            proc.send_signal(signal.SIGINT)
            assert proc.wait(30) == 0
    finally:
        h.close()

    data = tmp_path / "pg"
    proc, url = _serve_cli(["--playground", "--mode", "leaderless", "--data-dir", str(data)], tmp_path / "pg.log")
    try:
        s = wait_for(lambda: (s := _get_state(url))["ring"] and s, 30, "the playground's ring")
        assert s["mode"] == "leaderless" and s["playground"]["kind"] == "playground"
        assert s["playground"]["refusals"]["kill"] == ""
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    assert (data / "cluster.toml").exists()  # a --data-dir given is kept
