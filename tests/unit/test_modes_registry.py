"""replikv.modes: the registry holds every built-in mode, the default first, whatever was
imported before it was first asked (a runtime module imports its own mode's spec)."""

from __future__ import annotations

import subprocess
import sys


def test_every_mode_is_registered_after_one_mode_module_was_imported_alone() -> None:
    code = ("import replikv.modes.multi_leader\n"
            "from replikv import modes\n"
            "print(','.join(modes.names())); print(modes.get('leader-follower').name)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    names = out[0].split(",")
    assert names[0] == "leader-follower"
    assert set(names) >= {"leader-follower", "multi-leader", "leaderless", "raft", "single"}
    assert out[1] == "leader-follower"
