"""Starting the dashboard from the command line: ``replikv dashboard`` and ``replikv up --dashboard``.

``serve_command`` picks the levers by who owns the nodes (actions.py): a cluster of its own
(``--playground``: the ``replikv check`` harness, in a network namespace as root) or a running
one (``--config``: signals by pid); it serves until SIGINT/SIGTERM, then resumes what it paused
and stops a playground cluster (and removes its temporary directory). ``serve_for_supervisor``
serves on a thread beside ``replikv up``'s supervisor, which keeps its own main loop.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

from rich.markup import escape

from replikv import modes
from replikv.cli import FAILURE, Supervisor, console, err_console, fail, load_config
from replikv.config import ConfigError
from replikv.dashboard.actions import AttachedController, Controller, HarnessController, SupervisorController
from replikv.dashboard.server import Dashboard, DashboardThread, run_forever


def serve_for_supervisor(sup: Supervisor, port: int) -> DashboardThread | None:
    try:
        board = DashboardThread(Dashboard(sup.config, SupervisorController(sup)), port).start()
    except OSError as e:
        err_console.print(f"[bold red]no dashboard:[/] {escape(str(e))} (pick another --dashboard-port)")
        return None
    console.print(f"Dashboard: [bold]{board.url}[/]")
    return board


def serve_command(*, config_path: Path | None, playground: bool, mode: str | None, nodes: int, shards: int,
                  data_dir: Path | None, port: int) -> None:
    harness: Any = None
    tmp: str | None = None
    controller: Controller
    if playground:
        from replikv.check.harness import Harness, HarnessError
        root = data_dir
        if root is None:
            tmp = tempfile.mkdtemp(prefix="replikv-playground-")
            root = Path(tmp)
        options: dict[str, Any] = {"shards": shards} if shards else {}
        try:
            console.print(f"starting a {mode or modes.names()[0]} cluster of {nodes} nodes in "
                          f"{escape(str(root))} ...")
            harness = Harness(root, mode, nodes, **options).start()
        except (HarnessError, ConfigError, TypeError) as e:
            if tmp:
                shutil.rmtree(tmp, ignore_errors=True)
            fail(f"could not start the playground cluster: {e}", FAILURE)
        controller = HarnessController(harness)
        config = harness.config
        if not harness.use_netns:
            console.print("[yellow]note:[/] not root (or no ip/iptables): link cuts are off in this playground")
    else:
        assert config_path is not None
        config = load_config(config_path)
        controller = AttachedController(config, lambda n: None)
    board = Dashboard(config, controller)

    async def until_signal() -> None:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        for s in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(s, done.set)
        await done.wait()

    try:
        run_forever(board, port, lambda url: console.print(f"Dashboard: [bold]{url}[/]   Stop: Ctrl-C"),
                    until_signal)
    except OSError as e:
        fail(f"cannot serve on 127.0.0.1:{port}: {e}", FAILURE)
    finally:
        controller.close()
        if harness is not None:
            harness.close()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
