"""Thread CPU time per runtime function in raft node processes, for benchmarks/sharded_cpu_split.py.

Loaded by every Python process that has this directory on ``PYTHONPATH`` (Python imports
``sitecustomize`` at start-up); it does nothing unless ``REPLIKV_CPU_SPLIT`` names a directory.
Then it wraps the methods listed in ``TARGETS`` (no source is changed) so that each call adds
its thread's CPU time (``time.thread_time_ns``) to its function's totals, inclusive and self
(minus the wrapped functions it called), and a ``gc`` callback times the collector; every half
second the process writes ``<dir>/<pid>.json``: ``{name: [calls, inclusive ns, self ns, wrapped
calls it made]}``, and ``"(wrapper overhead ns)"``: what one wrapped call adds to its caller's
self time, measured at start-up, so a reader can take it off (sharded_cpu_split.py does).

Why not a sampling profiler: py-spy counts a runnable thread that waits for a core as busy, and
on this shared 2-core machine a 3-group node waits for one 0.5-0.7 s of every second
(BENCHMARKS.md, sessions 21-22), while a one-group follower sleeps; a thread's CPU clock counts
only the time it ran. The cost: ``thread_time_ns`` is a system call (~0.5 us here) and each
wrapped call makes two, so a wrapped call costs ~1-2 us, charged to its caller's self time
(taken off with the calibrated overhead); the node's total CPU per SET still includes it.
"""

from __future__ import annotations

import os

DIRECTORY = os.environ.get("REPLIKV_CPU_SPLIT")

# (module, class or "" for module functions, names): what a SET touches on its way through a node
TARGETS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("replikv.runtime.resp_server", "ClientConnection", ("data_received", "flush")),
    ("replikv.runtime.tcp_transport", "_FrameProtocol", ("data_received", "write_held")),
    ("replikv.runtime.tcp_transport", "PeerTransport", ("write_held", "send")),
    ("replikv.runtime.peer_auth", "FrameSealer", ("tag",)),
    ("replikv.runtime.peer_auth", "FrameOpener", ("open",)),
    ("replikv.runtime.base", "BaseRunner", ("_scheduled_flush", "_flush_clients", "execute", "service_frame")),
    ("replikv.runtime.sharded_raft", "ShardedRaftRunner",
     ("_drain", "write", "_route", "_elsewhere", "_on_frame", "run_forwarded", "_resolve_write")),
    ("replikv.runtime.raft_runner", "RaftRunner",
     ("_drain", "_carry_out", "_finish", "_send_all", "_persist", "write", "_on_frame")),
    ("replikv.runtime.forwarding", "Forwarder", ("forward", "on_forward", "on_reply", "handle")),
    ("replikv.runtime.forwarding", "ForwardedCommand", ("__init__", "send_reply")),
    ("replikv.runtime.pending", "PendingReplies", ("add", "pop")),
    ("replikv.core.multiraft.host", "GroupHost", ("ready", "step", "propose")),
    ("replikv.runtime.raft_group", "RaftGroup", ("apply", "persist")),
    ("replikv.storage.node_log", "NodeLog", ("commit",)),
    ("replikv.core.raft.node", "RaftNode", ("advance",)),
    ("replikv.core.multiraft.codec", "", ("encode", "decode")),
    ("replikv.runtime.raft_app", "", ("encode_write",)),
)


def _install(directory: str) -> None:
    import functools
    import gc
    import importlib
    import json
    import threading
    import time

    clock = time.thread_time_ns
    stats: dict[str, list[int]] = {}
    # per open wrapped call: [CPU ns of the wrapped calls it made, how many it made]
    stack: list[list[int]] = [[0, 0]]

    def timed(name: str, original):  # type: ignore[no-untyped-def]
        totals = stats.setdefault(name, [0, 0, 0, 0])

        @functools.wraps(original)
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            inner = [0, 0]
            stack.append(inner)
            t0 = clock()
            try:
                return original(*args, **kwargs)
            finally:
                spent = clock() - t0
                stack.pop()
                outer = stack[-1]
                outer[0] += spent
                outer[1] += 1
                totals[0] += 1
                totals[1] += spent
                totals[2] += spent - inner[0]
                totals[3] += inner[1]
        return wrapper

    def overhead_ns() -> int:
        """What one wrapped call adds to its caller's self time: a wrapped no-op called 20,000
        times from a wrapped loop, less the same loop calling the bare no-op (best of 5)."""
        def noop() -> None:
            pass
        wrapped_noop = timed("(calibration)", noop)

        def loop(f):  # type: ignore[no-untyped-def]
            for _ in range(20_000):
                f()
        best = []
        for f in (wrapped_noop, noop):
            runs = []
            for _ in range(5):
                t0 = clock()
                timed("(calibration loop)", loop)(f)
                runs.append(clock() - t0)
            best.append(min(runs))
        del stats["(calibration)"], stats["(calibration loop)"]
        return max(0, (best[0] - best[1]) // 20_000)

    for module_name, cls_name, names in TARGETS:
        module = importlib.import_module(module_name)
        owner = getattr(module, cls_name) if cls_name else module
        for name in names:
            label = f"{cls_name or module_name.rsplit('.', 1)[1]}.{name}"
            setattr(owner, name, timed(label, getattr(owner, name)))
    # names bound by `from ... import` before the wrapping: rebind them to the wrapped functions
    from replikv.runtime import raft_app, raft_runner, sharded_raft
    sharded_raft.encode_write = raft_app.encode_write  # type: ignore[attr-defined]
    raft_runner.encode_write = raft_app.encode_write  # type: ignore[attr-defined]

    started = [0]
    stats["(wrapper overhead ns)"] = [overhead_ns(), 0, 0, 0]
    for generation in range(3):  # made now: the dumping thread never sees the dict grow
        stats[f"gc generation {generation}"] = [0, 0, 0, 0]

    def collector(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = clock()
        else:
            totals = stats[f"gc generation {info['generation']}"]
            spent = clock() - started[0]
            totals[0] += 1
            totals[1] += spent
            totals[2] += spent
    gc.callbacks.append(collector)

    path = os.path.join(directory, f"{os.getpid()}.json")

    def dump_forever() -> None:
        while True:
            time.sleep(0.5)
            with open(path + ".tmp", "w") as f:
                json.dump(stats, f)
            os.replace(path + ".tmp", path)
    threading.Thread(target=dump_forever, name="cpu-split", daemon=True).start()


if DIRECTORY:
    try:
        _install(DIRECTORY)
    except ImportError:
        pass  # a Python process without replikv on its path (redis tools, pip): nothing to time
