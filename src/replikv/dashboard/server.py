"""The dashboard's HTTP and WebSocket server (aiohttp), on loopback only.

Routes (JSON unless said otherwise):

- ``GET /``: the page (static/index.html; app.js and style.css under ``/static/``, all in the
  package: no CDN, no build step).
- ``GET /api/state``: the latest snapshot (poller.py) plus ``playground`` (what each lever
  can do here, or why not), ``read_levels`` and ``write_levels`` of the mode.
- POSTs must be ``Content-Type: application/json`` and, when the browser names an
  ``Origin``, come from this page's own (another site's page must not pull the levers).
- ``GET /ws``: a WebSocket; the server sends ``{"type": "state", ...snapshot}`` after every poll.
- ``POST /api/action`` ``{"action": "kill|pause|resume|restart|cut|heal", "node": "n1",
  "peer": "n2"}``: ``{"ok": true, "message": ...}``, or ``{"ok": false, "error": why}``
  with status 409 when this setup cannot do it (the page shows the sentence).
- ``POST /api/read-everywhere`` ``{"key", "value", "via", "write_level"}``: the matrix of
  actions.read_everywhere.
- ``GET /api/placement?key=K``: leaderless mode, the key's token and preference list.

Blocking work (INFO polls, signals, the probe's connections) runs in the loop's default
executor; the loop itself only serves and pushes. The poll loop runs every ``interval_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import WSMsgType, web

from replikv.config import ClusterConfig
from replikv.dashboard.actions import (
    ActionRefused,
    Controller,
    read_everywhere,
    read_levels,
    write_levels,
)
from replikv.dashboard.poller import Poller

HOST = "127.0.0.1"
STATIC = resources.files("replikv.dashboard") / "static"
TOKEN_SPACE = 1 << 64  # ring tokens are 64-bit (core/dynamo/ring.py token_of)


def ring_view(config: ClusterConfig, members: list[str]) -> dict[str, Any] | None:
    """Leaderless: every vnode token as a fraction of the ring, and its owner."""
    try:
        from replikv.core.dynamo.ring import Ring
    except ImportError:  # pragma: no cover - the mode always ships its ring
        return None
    if not members:
        return None
    ring = Ring(members, min(config.options.replicas, len(members)), config.options.vnodes)
    return {"members": list(ring.nodes), "replicas": min(config.options.replicas, len(members)),
            "vnodes": config.options.vnodes,
            "tokens": [[round(t / TOKEN_SPACE, 5), ring.owner(t)] for t in ring.tokens]}


class Dashboard:
    def __init__(self, config: ClusterConfig, controller: Controller, *, interval_s: float = 0.25,
                 timeout_s: float = 0.5) -> None:
        self.config = config
        self.controller = controller
        self.interval_s = interval_s
        self.poller = Poller(config, timeout_s=timeout_s, netns=controller.netns,
                             paused=lambda: set(controller.paused))
        if hasattr(controller, "pid_of"):
            controller.pid_of = lambda n: (self.poller.views[n].pid if n in self.poller.views else None)
        self.sockets: set[web.WebSocketResponse] = set()
        self._task: asyncio.Task[None] | None = None
        self.app = web.Application()
        self.app.add_routes([
            web.get("/", self.index), web.get("/api/state", self.state), web.get("/ws", self.ws),
            web.post("/api/action", self.action), web.post("/api/read-everywhere", self.probe),
            web.get("/api/placement", self.placement), web.static("/static", str(STATIC)),
            web.get("/favicon.ico", _no_content),
        ])
        self.app.on_startup.append(self._start_polling)
        self.app.on_shutdown.append(self._close_sockets)
        self.app.on_cleanup.append(self._stop_polling)

    # -- the poll loop --------------------------------------------------------------------------
    async def _start_polling(self, app: web.Application) -> None:
        self._task = asyncio.get_running_loop().create_task(self._poll_loop())

    async def _stop_polling(self, app: web.Application) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _close_sockets(self, app: web.Application) -> None:
        for ws in list(self.sockets):
            await ws.close()

    async def _poll_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await loop.run_in_executor(None, self.poller.poll_once)
            await self._push()
            await asyncio.sleep(max(0.0, self.interval_s - (loop.time() - started)))

    async def _push(self) -> None:
        if not self.sockets:
            return
        text = json.dumps({"type": "state", **self.full_state()})
        for ws in list(self.sockets):
            try:
                await ws.send_str(text)
            except (ConnectionError, RuntimeError):
                self.sockets.discard(ws)

    def full_state(self) -> dict[str, Any]:
        snap = self.poller.snapshot()
        members: list[str] = []
        for node in snap["nodes"]:
            ring = (node.get("extra") or {}).get("ring_members")
            if ring:
                members = ring.split(",")
                break
        snap["ring"] = ring_view(self.config, members) if members else None
        snap["playground"] = {"kind": self.controller.kind, "refusals": self.controller.capabilities(),
                              "paused": sorted(self.controller.paused),
                              "cut": sorted(sorted(p) for p in self.controller.cut)}
        snap["read_levels"] = read_levels(self.config.mode)
        snap["write_levels"] = write_levels(self.config.mode, len(self.config.nodes))
        return snap

    # -- handlers ---------------------------------------------------------------------------------
    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text=(STATIC / "index.html").read_text(encoding="utf-8"), content_type="text/html")

    async def state(self, request: web.Request) -> web.Response:
        return web.json_response(self.full_state())

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=20)
        await ws.prepare(request)
        self.sockets.add(ws)
        try:
            await ws.send_str(json.dumps({"type": "state", **self.full_state()}))
            async for msg in ws:  # the page only listens; a message from it is ignored
                if msg.type == WSMsgType.ERROR:
                    break
        finally:
            self.sockets.discard(ws)
        return ws

    async def _json_body(self, request: web.Request) -> dict[str, Any]:
        # The levers kill processes: a page of another site in the user's browser must not pull
        # them. A cross-site request names its Origin, and JSON needs a CORS preflight we never grant.
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"http://{request.host}":
            raise web.HTTPForbidden(text=json.dumps({"ok": False, "error": f"requests from {origin} are refused"}),
                                    content_type="application/json")
        if request.content_type != "application/json":
            raise web.HTTPUnsupportedMediaType(
                text=json.dumps({"ok": False, "error": "send Content-Type: application/json"}),
                content_type="application/json")
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise web.HTTPBadRequest(text=json.dumps({"ok": False, "error": "the body must be JSON"}),
                                     content_type="application/json") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text=json.dumps({"ok": False, "error": "the body must be a JSON object"}),
                                     content_type="application/json")
        return body

    async def action(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        action, node, peer = str(body.get("action", "")), str(body.get("node", "")), str(body.get("peer", ""))
        loop = asyncio.get_running_loop()
        try:
            message = await loop.run_in_executor(None, self.controller.do, action, node, peer)
        except ActionRefused as e:
            return web.json_response({"ok": False, "error": str(e)}, status=409)
        except Exception as e:  # noqa: BLE001 - a lever that broke (iptables failed, ...): the page says so
            return web.json_response({"ok": False, "error": f"{action} failed: {e}"}, status=500)
        self.poller.note("fault", message, node)
        return web.json_response({"ok": True, "message": message})

    async def probe(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        key = str(body.get("key") or "dashboard:probe")
        value = str(body.get("value") or "")
        via = str(body.get("via") or self.poller.snapshot()["leader"] or next(iter(self.config.nodes)))
        write_level = str(body.get("write_level") or "")
        if not value:
            return web.json_response({"ok": False, "error": "give a value to write"}, status=400)
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(None, lambda: read_everywhere(
                self.config, key, value, via, write_level=write_level, netns=self.controller.netns))
        except ActionRefused as e:
            return web.json_response({"ok": False, "error": str(e)}, status=409)
        self.poller.note("info", f"probe: wrote {key}={value} via {via}; read it at "
                                 f"{len(result['levels'])} levels on {len(result['nodes'])} nodes", via)
        return web.json_response({"ok": True, **result})

    async def placement(self, request: web.Request) -> web.Response:
        key = request.query.get("key", "")
        ring = self.full_state()["ring"]
        if ring is None:
            return web.json_response({"ok": False, "error": "only a leaderless cluster has a ring"}, status=409)
        from replikv.core.dynamo.ring import Ring, token_of
        r = Ring(ring["members"], ring["replicas"], ring["vnodes"])
        return web.json_response({"ok": True, "key": key, "token": round(token_of(key.encode()) / TOKEN_SPACE, 5),
                                  "replicas": list(r.preference_list(key.encode()))})


async def _no_content(request: web.Request) -> web.Response:
    return web.Response(status=204)


async def serve(dashboard: Dashboard, port: int, host: str = HOST) -> web.AppRunner:
    """Start serving (returns the runner; ``await runner.cleanup()`` stops it)."""
    runner = web.AppRunner(dashboard.app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner


def bound_port(runner: web.AppRunner) -> int:
    for addr in runner.addresses:
        return int(addr[1])
    raise RuntimeError("the dashboard is not listening")


class DashboardThread:
    """The dashboard on its own thread and event loop (``replikv up --dashboard``, tests)."""

    def __init__(self, dashboard: Dashboard, port: int, host: str = HOST) -> None:
        self.dashboard = dashboard
        self.port = port
        self.host = host
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="replikv-dashboard", daemon=True)

    def start(self, timeout_s: float = 10.0) -> DashboardThread:
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError("the dashboard did not start")
        if self._error is not None:
            raise self._error
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            runner = await serve(self.dashboard, self.port, self.host)
        except BaseException as e:  # noqa: BLE001 - handed to the starting thread
            self._error = e
            self._ready.set()
            return
        self.port = bound_port(runner)
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def stop(self) -> None:
        """Stop serving, and let every node the page paused go on."""
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self.dashboard.controller.close()


def run_forever(dashboard: Dashboard, port: int, on_ready: Callable[[str], None],
                until: Callable[[], Awaitable[None]]) -> None:
    """Serve until ``until()`` returns (``replikv dashboard``)."""
    async def main() -> None:
        runner = await serve(dashboard, port)
        on_ready(f"http://{HOST}:{bound_port(runner)}/")
        try:
            await until()
        finally:
            await runner.cleanup()
    asyncio.run(main())
