"""The check harness's node processes live exactly as long as the harness.

A node restarted from a short-lived thread (as a nemesis does) outlives that
thread; every node exits when the process running the harness is killed
outright (SIGKILL), instead of running on as an orphan (parent_death.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's"),
]

SCRIPT = textwrap.dedent("""
    import signal, sys, threading
    from pathlib import Path
    from replikv.check.harness import Harness

    h = Harness(Path(sys.argv[1]), "leader-follower", 3, use_netns=False).start()
    h.kill("n2")
    t = threading.Thread(target=h.restart, args=("n2",), kwargs={"wait": True})
    t.start()
    t.join()  # the thread that asked for the restart is gone
    h.wait_up("n2", 30)
    print(" ".join(str(p.pid) for p in h.procs.values()), flush=True)
    signal.pause()
""")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def _wait(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(0.05)


def test_nodes_outlive_the_restarting_thread_and_die_with_the_harness(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path / "cluster")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.strip(), f"harness did not start: {proc.stderr.read()}"  # type: ignore[union-attr]
        pids = [int(p) for p in line.split()]
        assert len(pids) == 3 and all(_alive(p) for p in pids)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        _wait(lambda: not any(_alive(p) for p in pids), 20, "every node to exit with the harness")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in locals().get("pids", []):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
