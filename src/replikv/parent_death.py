"""Node processes die with the tool that started them.

``replikv up`` and ``replikv check`` run nodes as child processes; if such a
tool is killed outright (SIGKILL, the OOM killer), nothing else would stop
its nodes. The tool puts its pid in the node's environment
(``child_env``), and the node asks the kernel for SIGTERM when its parent
goes (``PR_SET_PDEATHSIG``, in ``die_with_parent``), then checks that the
parent is still the one named: it may have died before the request.

The request is made by the node itself, after exec, not between fork and
exec: ``replikv check`` starts nodes through ``setpriv --regid``, and a
change of group clears the setting. The kernel sends the signal when the
*thread* that forked the child exits, so a tool forks its nodes from a
thread that lives as long as the tool does.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
from collections.abc import Mapping

__all__ = ["ENV", "child_env", "die_with_parent"]

ENV = "REPLIKV_PARENT_PID"
_PR_SET_PDEATHSIG = 1

log = logging.getLogger("replikv")


def child_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` for a node this process starts: the node exits when we do."""
    return {**env, ENV: str(os.getpid())}


def die_with_parent() -> None:
    """In a node started by a tool (``ENV`` set): SIGTERM when that parent exits;
    exit now if it already has. Elsewhere (a node started by hand, systemd,
    not Linux) nothing changes."""
    parent = os.environ.get(ENV)
    if not parent or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    except OSError as e:
        log.warning("cannot ask to be stopped with the parent process %s: %s", parent, e)
        return
    if str(os.getppid()) != parent:
        raise SystemExit(f"the process that started this node ({parent}) has exited")
