"""Snapshots taken in a forked child, as Redis's BGSAVE: the event loop never stalls on one.

Serializing the state machine of a big data set takes seconds of CPU
(0.9-2.3 s for 170-260 MB measured on the loop, long enough for a raft
follower to elect another leader). ``fork()`` gives a child a copy-on-write
image of the parent at one instant: the child serializes the state as it was
when the snapshot was asked for, writes and fsyncs the file
(``storage.snapshot.write_snapshot``: temp file, rename, directory fsync),
and exits; the parent keeps serving and compacts once the child reports
success.

Rules:
- One child at a time; asking again while one runs is a no-op.
- The child touches nothing the parent owns: no event loop, no sockets, no
  logging; it resets the signal wakeup fd and signal handlers the parent
  installed (a SIGTERM to the child must not wake the parent's loop), asks
  to die with the parent, and leaves with ``os._exit`` (no atexit, no stdio
  flush). Its exit status is the only thing the parent reads: 0 = the
  snapshot file is durable.
- The parent waits on a pidfd registered with the loop (no polling, no
  thread). On success it calls ``on_done(index)``; on failure it logs one
  line and does not try again until ``retry_s`` has passed.
- On shutdown a running child is killed; its temp file is removed at the
  next start (``remove_temp_files``).

Failpoint (tests only: a node started with ``REPLIKV_FAILPOINTS=1`` and
``REPLIKV_SNAPSHOT_CHILD_STOP=1``): each child stops itself (SIGSTOP) before
it writes, as a snapshot stuck on a slow disk would; the test resumes it with
SIGCONT (its pid is INFO's ``replikv_snapshot_child_pid``).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from replikv.storage.errors import StorageError
from replikv.storage.snapshot import load_latest_snapshot, write_snapshot

log = logging.getLogger("replikv.snapshot")

_PR_SET_PDEATHSIG = 1


class BackgroundSnapshotter:
    def __init__(self, node_id: str, directory: Path, retry_s: float = 10.0) -> None:
        self.node_id = node_id
        self.directory = directory
        self.retry_s = retry_s
        self.pid = 0  # the child running now, or 0
        self.started = 0.0
        self.last_status = "ok"  # INFO persistence: rdb_last_bgsave_status
        self.last_duration_s = -1.0
        self.last_index = 0
        self.last_ok_time = 0  # unix time of the last snapshot written (LASTSAVE)
        self.taken = 0
        self._failed_at = 0.0
        self._pidfd = -1
        self._stop_child = (os.environ.get("REPLIKV_FAILPOINTS") == "1"
                            and os.environ.get("REPLIKV_SNAPSHOT_CHILD_STOP") == "1")

    @property
    def running(self) -> bool:
        return self.pid != 0

    def start(self, index: int, term: int, serialize: Callable[[], bytes | list[bytes]],
              on_done: Callable[[int], None], directory: Path | None = None) -> bool:
        """Snapshot the state as of now (covering ``index``) in a child; False if
        one is running or the last failure is too recent. ``serialize`` gives the
        snapshot's data, or its pieces in order (``write_snapshot``); ``directory``:
        where it goes, if not the node's (a sharded node's group has its own)."""
        if self.pid or (self._failed_at and time.monotonic() - self._failed_at < self.retry_s):
            return False
        loop = asyncio.get_running_loop()
        pid = os.fork()
        if pid == 0:  # the child: see the module rules
            code = 1
            try:
                signal.set_wakeup_fd(-1)
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    signal.signal(sig, signal.SIG_DFL)
                try:
                    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
                except OSError:
                    pass
                if self._stop_child:
                    os.kill(os.getpid(), signal.SIGSTOP)  # the failpoint above
                write_snapshot(directory or self.directory, index, term, serialize())
                code = 0
            finally:
                os._exit(code)
        self.pid, self.started = pid, time.monotonic()
        self._pidfd = os.pidfd_open(pid)
        loop.add_reader(self._pidfd, self._reap, index, on_done)
        log.info("node %s: snapshot of index %d started in child process %d", self.node_id, index, pid)
        return True

    def _reap(self, index: int, on_done: Callable[[int], None]) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = -1
        _, status = os.waitpid(self.pid, 0)
        pid, self.pid = self.pid, 0
        self.last_duration_s = time.monotonic() - self.started
        if os.waitstatus_to_exitcode(status) != 0:
            self.last_status = "err"
            self._failed_at = time.monotonic()
            log.error("node %s: the snapshot child %d failed (exit %d); retrying in %.0f s at the earliest",
                      self.node_id, pid, os.waitstatus_to_exitcode(status), self.retry_s)
            return
        self.last_status, self._failed_at = "ok", 0.0
        self.last_index, self.taken = index, self.taken + 1
        self.last_ok_time = int(time.time())
        log.info("node %s: snapshot of index %d written by child %d in %.2f s", self.node_id, index, pid,
                 self.last_duration_s)
        on_done(index)

    def stop(self) -> None:
        """Kill a running child (shutdown); its temp file is removed at the next start."""
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.pid = 0
        if self._pidfd >= 0:
            try:
                asyncio.get_running_loop().remove_reader(self._pidfd)
            except RuntimeError:
                pass
            os.close(self._pidfd)
            self._pidfd = -1

    def info(self) -> list[str]:
        """INFO persistence lines, with Redis's names."""
        return [f"rdb_bgsave_in_progress:{1 if self.pid else 0}",
                f"rdb_last_bgsave_status:{self.last_status}",
                f"rdb_last_bgsave_time_sec:{round(self.last_duration_s) if self.last_duration_s >= 0 else -1}",
                f"replikv_snapshot_child_pid:{self.pid}",
                f"replikv_snapshots_in_background:{self.taken}"]


# what SAVE / REPLIKV SNAPSHOT answer while a child writes (Redis: "Background save already in progress")
SNAPSHOT_RUNNING = "ERR a background snapshot is in progress; try again when it is done"


def read_back(directory: Path, index: int, deliver: Callable[[Any], None]) -> threading.Thread:
    """Read the newest snapshot in ``directory`` (the one a child just wrote at ``index``) back
    off the loop, mapped (not on the heap), and hand it to ``deliver`` on the loop; None instead
    when it is not that snapshot any more (a newer one, from the leader, superseded it) or the
    disk refused it (logged). A one-shot thread, not an executor pool: no thread may outlive it
    into the next fork (a thread holding a lock at fork time can deadlock the child), and the
    caller starts no snapshot while it runs."""
    loop = asyncio.get_running_loop()

    def run() -> None:
        try:
            stored: Any = load_latest_snapshot(directory, mapped=True)
        except StorageError as exc:
            log.error("cannot read back the snapshot at %d a child wrote in %s: %s", index, directory, exc)
            stored = None
        loop.call_soon_threadsafe(deliver, stored if stored is not None and stored.index == index else None)

    thread = threading.Thread(target=run, name="snapshot-read-back", daemon=True)
    thread.start()
    return thread
