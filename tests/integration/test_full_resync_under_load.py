"""A follower that lost its data is fully resynced while clients keep writing
large values, and the resync completes instead of starting over (issue 15):
the live stream is bounded by the core's byte window, and no new snapshot
compacts the log while a follower is being sent one."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
import redis

from replikv.core.replies import RespError
from tests.integration.cluster import Cluster, RawConnection, wait_for

pytestmark = pytest.mark.integration

VALUE = b"x" * 16384


def test_full_resync_completes_while_large_writes_go_on(tmp_path: Path) -> None:
    c = Cluster(tmp_path / "c", 3, snapshot_bytes=512 * 1024, segment_bytes=128 * 1024)
    c.start()
    try:
        c.wait_streaming()
        r = c.client("n1")
        for i in range(400):  # 6.5 MB: a dozen snapshots' worth
            r.set(f"pre{i}", VALUE)
        c.kill("n3")
        shutil.rmtree(c.config.nodes["n3"].data_dir)
        stop = threading.Event()
        written = [0]

        def writer() -> None:
            w = redis.Redis(port=c.port("n1"), socket_timeout=10)
            while not stop.is_set():
                w.set(f"live{written[0] % 500}", VALUE)
                written[0] += 1

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        try:
            wait_for(lambda: written[0] > 200, 30, "writes under way")
            c.start("n3")
            def n3_streaming() -> bool:
                follower = c.replication("n1").get("slave1")  # peers n2, n3 in order
                return isinstance(follower, dict) and follower.get("id") == "n3" and follower["state"] == "online"
            wait_for(n3_streaming, 60, "n3 to be resynced and streaming while the writes go on")
            wait_for(lambda: written[0] > 600, 30, "writes after the resync")
        finally:
            stop.set()
            t.join(30)
        c.wait_replicated(["n2", "n3"])
        wait_for(lambda: len({c.digest(n) for n in ("n1", "n2", "n3")}) == 1, 30, "equal digests")
        stats = c.stats("n1")
        # every full resync that started finished (before: the send queue overflowed, the follower
        # was dropped and the resync began again, endlessly); the leader's compactions meanwhile
        # keep what n3 lacks in the replication backlog, so it then catches up by entries (a
        # SyncRequest retried while the snapshot is in flight may still start a second one)
        assert int(stats["full_resyncs_sent"]) >= 1
        assert int(stats["full_resyncs_completed"]) == int(stats["full_resyncs_sent"])
        follower = c.replication("n1")["slave1"]
        assert int(follower["inflight_bytes"]) <= 32 * 1024 * 1024
    finally:
        c.close()


def test_a_follower_installs_a_full_resync_in_steps_and_never_serves_a_half_installed_state(
        tmp_path: Path) -> None:
    """The follower decodes the leader's snapshot in slices (LeaderFollowerRunner._install_step),
    its loop running between them: a read meanwhile gets LOADING, never the emptied or a
    half-decoded data set (a key the snapshot holds is never missing once the install began),
    and the frames the leader sent meanwhile are stepped afterwards (equal digests)."""
    c = Cluster(tmp_path / "c", 3, snapshot_bytes=1024 * 1024, segment_bytes=256 * 1024, repl_backlog_bytes=0)
    c.start()
    try:
        c.wait_streaming()
        r = c.client("n1")
        pipe = r.pipeline(transaction=False)
        for i in range(100):  # 100,000 keys of 128 bytes: 13 MB, four steps of decoding
            pipe.mset({f"k{i}:{j}": f"v{j}".ljust(128, "-") for j in range(1000)})
        pipe.execute()
        c.kill("n3")
        shutil.rmtree(c.config.nodes["n3"].data_dir)

        def saved() -> bool:  # a snapshot of every key (SAVE waits for a background one to end)
            try:
                return bool(r.execute_command("SAVE"))
            except redis.ResponseError as exc:
                assert "in progress" in str(exc)
                return False

        wait_for(saved, 60, "n1 to SAVE: the log compacted, n3 needs a full resync of it all")
        replies: list[object] = []
        stop = threading.Event()

        def reader() -> None:  # GET k0:0 on n3 as fast as it answers, from its start to the end
            while not stop.is_set():  # a raw connection: redis-py retries a LOADING reply itself
                try:
                    conn = RawConnection(c.port("n3"))
                except OSError:
                    continue
                try:
                    while not stop.is_set():
                        replies.append(conn.call("GET", "k0:0"))
                except (ConnectionError, OSError):
                    pass
                finally:
                    conn.close()

        t = threading.Thread(target=reader, daemon=True)
        t.start()  # before n3: it asks from n3's first moment, through the whole install
        c.start("n3")
        try:
            r.set("after", "1")  # a write while n3 is being resynced: stepped after the install
            c.wait_replicated(["n3"], timeout=60)
            wait_for(lambda: c.client("n3").get("after") == b"1", 30, "n3 to apply the write made meanwhile")
        finally:
            stop.set()
            t.join(30)
        assert len({c.digest(n) for n in ("n1", "n2", "n3")}) == 1
        stats = c.stats("n3")
        assert int(stats["full_resync_install_slices"]) >= 4  # one per step: the loop ran between them
        # nil only before the install began (n3 started empty); then LOADING, then the value
        began = next((i for i, x in enumerate(replies) if x is not None), len(replies))
        assert all(x is not None for x in replies[began:])
        value = "v0".ljust(128, "-").encode()

        def loading(x: object) -> bool:
            return isinstance(x, RespError) and str(x).startswith("LOADING")

        assert all(x == value or loading(x) for x in replies[began:])
        # a GET waiting while a slice ran is answered before the next slice: LOADING
        assert any(loading(x) for x in replies)
        assert replies[-1] == value
    finally:
        c.close()
