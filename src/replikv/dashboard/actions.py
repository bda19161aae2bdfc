"""The playground: faults a user pulls from the page, and the write-then-read-everywhere probe.

Who can pull which lever depends on who owns the node processes; each
controller says what it cannot do and why (``refusal``), and the page shows
that sentence instead of a button that does nothing:

- ``HarnessController``: ``replikv dashboard --playground`` starts its own
  cluster with the ``replikv check`` harness (check/harness.py). Kill, pause
  (SIGSTOP), resume, restart work everywhere; cutting a link works as root,
  where the harness runs the nodes in a network namespace with iptables.
- ``SupervisorController``: ``replikv up --dashboard``; the supervisor of
  ``up`` owns the processes (kill, pause, resume, restart). The nodes share
  the host's network, so no link can be cut.
- ``AttachedController``: ``replikv dashboard --config`` on a cluster some
  other process started. It can signal a node whose pid INFO reported (kill,
  pause, resume) but cannot restart it or cut a link.

``read_everywhere`` writes one key through one node, then opens one
connection per (node, read level), sets ``CONSISTENCY READ <level>`` (and,
for ``session``, the writer's ``SESSION`` token) and reads the key, all at
once; each cell says what the node answered, or the error it refused with.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import redis

from replikv import modes
from replikv.cli import node_client
from replikv.config import ClusterConfig

if TYPE_CHECKING:
    from replikv.check.harness import Harness
    from replikv.cli import Supervisor

NODE_ACTIONS = ("kill", "pause", "resume", "restart")
LINK_ACTIONS = ("cut", "heal")
BOUNDED_MS = 500  # the staleness bound `bounded` reads are asked with


class ActionRefused(Exception):
    """This setup cannot do that; the message says why (shown in the page)."""


class Controller:
    """The levers of one setup. Subclasses implement the ``_kill``... they can pull."""

    kind = "none"

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.paused: set[str] = set()
        self.cut: set[frozenset[str]] = set()
        self.lock = threading.Lock()

    def refusal(self, action: str) -> str:
        """"" when ``action`` can work here; else the sentence that says why not."""
        return ""

    def capabilities(self) -> dict[str, str]:
        return {a: self.refusal(a) for a in NODE_ACTIONS + LINK_ACTIONS}

    def netns(self) -> contextlib.AbstractContextManager[None]:
        """Threads that talk to nodes run inside this (the harness's network namespace, if any)."""
        return contextlib.nullcontext()

    def do(self, action: str, node: str, peer: str = "") -> str:
        if action not in NODE_ACTIONS + LINK_ACTIONS:
            raise ActionRefused(f"unknown action {action!r}; one of {', '.join(NODE_ACTIONS + LINK_ACTIONS)}")
        for nid in (node, peer) if action in LINK_ACTIONS else (node,):
            if nid not in self.config.nodes:
                raise ActionRefused(f"no node {nid!r} in this cluster ({', '.join(self.config.nodes)})")
        if action in LINK_ACTIONS and node == peer:
            raise ActionRefused("a link joins two different nodes")
        why = self.refusal(action)
        if why:
            raise ActionRefused(why)
        with self.lock:
            if action in LINK_ACTIONS:
                pair = frozenset((node, peer))
                getattr(self, f"_{action}")(pair)
                a, b = sorted(pair)
                return f"link {a} <-> {b} {'cut' if action == 'cut' else 'healed'}"
            getattr(self, f"_{action}")(node)
            return {"kill": f"{node} killed (SIGKILL)", "pause": f"{node} paused (SIGSTOP)",
                    "resume": f"{node} resumed (SIGCONT)", "restart": f"{node} restarted"}[action]

    def close(self) -> None:
        """Let every paused node go on (a dashboard leaves no process stopped behind)."""
        for nid in list(self.paused):
            with contextlib.suppress(ActionRefused, OSError):
                self._resume(nid)

    def _kill(self, node: str) -> None:
        raise ActionRefused("not supported")

    _pause = _resume = _restart = _kill

    def _cut(self, pair: frozenset[str]) -> None:
        raise ActionRefused("not supported")

    _heal = _cut


NO_CUT_SHARED_NET = ("cutting a link needs the nodes in their own network namespace: run "
                     "`replikv dashboard --playground` as root (with ip and iptables installed)")


class HarnessController(Controller):
    kind = "playground"

    def __init__(self, harness: Harness) -> None:
        super().__init__(harness.config)
        self.harness = harness

    def refusal(self, action: str) -> str:
        if action in LINK_ACTIONS and not self.harness.use_netns:
            from replikv.check.harness import can_partition
            return (can_partition()[1] or "this playground runs without a network namespace") + \
                "; " + NO_CUT_SHARED_NET
        return ""

    def netns(self) -> contextlib.AbstractContextManager[None]:
        return self.harness.netns()

    def _kill(self, node: str) -> None:
        if not self.harness.running(node):
            raise ActionRefused(f"{node} is not running")
        self.harness.resume(node)
        self.harness.kill(node)
        self.paused.discard(node)

    def _pause(self, node: str) -> None:
        if not self.harness.running(node):
            raise ActionRefused(f"{node} is not running")
        self.harness.pause(node)
        self.paused.add(node)

    def _resume(self, node: str) -> None:
        if node not in self.paused:
            raise ActionRefused(f"{node} is not paused")
        self.harness.resume(node)
        self.paused.discard(node)

    def _restart(self, node: str) -> None:
        if self.harness.running(node):
            raise ActionRefused(f"{node} is running; kill it first")
        self.harness.restart(node)

    def _cut(self, pair: frozenset[str]) -> None:
        self.harness.partition(self.harness.cut | {pair})
        self.cut = set(self.harness.cut)

    def _heal(self, pair: frozenset[str]) -> None:
        if pair not in self.harness.cut:
            raise ActionRefused("that link is not cut")
        self.harness.partition(self.harness.cut - {pair})
        self.cut = set(self.harness.cut)


class SupervisorController(Controller):
    kind = "up"

    def __init__(self, sup: Supervisor) -> None:
        super().__init__(sup.config)
        self.sup = sup

    def refusal(self, action: str) -> str:
        if action in LINK_ACTIONS:
            return "replikv up runs the nodes on the host's network; " + NO_CUT_SHARED_NET
        return ""

    def _proc(self, node: str) -> Any:
        child = self.sup.children.get(node)
        if child is None or child.proc.poll() is not None:
            raise ActionRefused(f"{node} is not running")
        return child.proc

    def _kill(self, node: str) -> None:
        proc = self._proc(node)
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait(10)
        self.paused.discard(node)

    def _pause(self, node: str) -> None:
        self._proc(node).send_signal(signal.SIGSTOP)
        self.paused.add(node)

    def _resume(self, node: str) -> None:
        if node not in self.paused:
            raise ActionRefused(f"{node} is not paused")
        self._proc(node).send_signal(signal.SIGCONT)
        self.paused.discard(node)

    def _restart(self, node: str) -> None:
        child = self.sup.children.get(node)
        if child is not None and child.proc.poll() is None:
            raise ActionRefused(f"{node} is running; kill it first")
        self.sup.start_node(node)


class AttachedController(Controller):
    kind = "attached"

    def __init__(self, config: ClusterConfig, pid_of: Callable[[str], int | None]) -> None:
        super().__init__(config)
        self.pid_of = pid_of
        self.pids: dict[str, int] = {}

    def refusal(self, action: str) -> str:
        if action == "restart":
            return ("this dashboard did not start the nodes, so it cannot start one again: use "
                    "`replikv dashboard --playground` or `replikv up --dashboard`, or run "
                    "`replikv node --config CLUSTER.toml --id NODE` yourself")
        if action in LINK_ACTIONS:
            return "this dashboard did not start the nodes; " + NO_CUT_SHARED_NET
        return ""

    def _pid(self, node: str) -> int:
        pid = self.pid_of(node) or self.pids.get(node)
        if pid is None:
            raise ActionRefused(f"{node}'s process id is unknown (it has not answered INFO)")
        self.pids[node] = pid
        return pid

    def _signal(self, node: str, sig: int) -> None:
        try:
            os.kill(self._pid(node), sig)
        except ProcessLookupError:
            raise ActionRefused(f"{node} (pid {self._pid(node)}) is not running") from None
        except PermissionError:
            raise ActionRefused(f"not allowed to signal {node} (pid {self._pid(node)})") from None

    def _kill(self, node: str) -> None:
        self._signal(node, signal.SIGCONT)
        self._signal(node, signal.SIGKILL)
        self.paused.discard(node)
        self.pids.pop(node, None)

    def _pause(self, node: str) -> None:
        self._signal(node, signal.SIGSTOP)
        self.paused.add(node)

    def _resume(self, node: str) -> None:
        if node not in self.paused:
            raise ActionRefused(f"{node} is not paused")
        self._signal(node, signal.SIGCONT)
        self.paused.discard(node)


# -- write, then read everywhere ------------------------------------------------------------------

def read_levels(mode: str) -> list[str]:
    return list(modes.get(mode).read_levels)


def write_levels(mode: str, n_nodes: int) -> list[str]:
    """The CONSISTENCY WRITE levels of the mode, spelled as a user types them."""
    out = []
    for level in modes.get(mode).write_levels:
        out.append(f"{level} 1" if level == "semi-sync" else level)
    return out


def _level_words(level: str) -> list[str]:
    return ["bounded", str(BOUNDED_MS)] if level == "bounded" else level.split()


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list):
        return [_text(v) for v in value]
    return value


def _connect(config: ClusterConfig, node: str, timeout_s: float) -> redis.Redis:
    client = node_client(config, config.nodes[node], timeout_s)
    return client


def read_everywhere(config: ClusterConfig, key: str, value: str, via: str, *, write_level: str = "",
                    levels: list[str] | None = None, timeout_s: float = 3.0,
                    netns: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext,
                    ) -> dict[str, Any]:
    """Write ``key = value`` through ``via`` and read it from every node at every level at once."""
    if via not in config.nodes:
        raise ActionRefused(f"no node {via!r} in this cluster")
    levels = levels if levels is not None else read_levels(config.mode)
    out: dict[str, Any] = {"key": key, "value": value, "via": via, "write_level": write_level,
                           "levels": levels, "nodes": list(config.nodes), "bounded_ms": BOUNDED_MS}
    token: str | None = None
    with netns():
        client = _connect(config, via, timeout_s)
        started = time.monotonic()
        try:
            with client.client() as conn:
                if write_level:
                    conn.execute_command("CONSISTENCY", "WRITE", *write_level.split())
                reply = conn.execute_command("SET", key, value)
                out["write"] = {"ok": True, "reply": _text(reply), "ms": _ms(started)}
                with contextlib.suppress(redis.RedisError):
                    token = _text(conn.execute_command("SESSION"))
        except (redis.RedisError, OSError) as e:
            out["write"] = {"ok": False, "error": str(e) or type(e).__name__, "ms": _ms(started)}
        finally:
            client.close()
        out["session_token"] = token

        def read(node: str, level: str) -> dict[str, Any]:
            c = _connect(config, node, timeout_s)
            t0 = time.monotonic()
            try:
                with c.client() as conn:
                    conn.execute_command("CONSISTENCY", "READ", *_level_words(level))
                    if level == "session" and token is not None:
                        conn.execute_command("SESSION", token)
                    got = _text(conn.execute_command("GET", key))
                return {"ok": True, "value": got, "fresh": got == value, "ms": _ms(t0)}
            except (redis.RedisError, OSError) as e:
                return {"ok": False, "error": str(e) or type(e).__name__, "ms": _ms(t0)}
            finally:
                c.close()

        cells = [(n, lv) for n in config.nodes for lv in levels]
        with ThreadPoolExecutor(max_workers=min(32, len(cells))) as pool:
            results = list(pool.map(lambda nl: read(*nl), cells))
    out["reads"] = {n: {} for n in config.nodes}
    for (n, lv), r in zip(cells, results):
        out["reads"][n][lv] = r
    return out


def _ms(t0: float) -> float:
    return round((time.monotonic() - t0) * 1000, 1)
