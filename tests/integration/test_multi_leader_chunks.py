"""Multi-leader chunked state transfer on real processes (issue 10).

A node that was down while the others wrote 20,000 keys, longer than they
retain operations (``oplog_retain_ops`` small), catches up by a state
transfer that takes many chunks (``REPLIKV_STATE_CHUNK_BYTES`` made small):
it converges with the others (equal digests, every value right, no increment
counted twice), serves reads and writes while the chunks come in, and, killed
in the middle of a transfer, converges after its restart.
"""

from __future__ import annotations

from pathlib import Path
from collections.abc import Callable
from typing import Any

import pytest
import redis

from tests.integration.cluster import Cluster, wait_for
from tests.integration.test_multi_leader import converged, ml_cluster

pytestmark = pytest.mark.integration

KEYS = 20_000
CHUNK_BYTES = 4096


@pytest.fixture
def lagging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """n3 stopped while n1 and n2 write 20k keys and counters; they no longer hold what it missed."""
    monkeypatch.setenv("REPLIKV_STATE_CHUNK_BYTES", str(CHUNK_BYTES))
    # 20 ms each way on n3's links: a transfer takes a few seconds whatever the machine's speed, so a
    # test sees it in the middle (on a fast machine it could finish between two polls)
    c = ml_cluster(tmp_path / "c", oplog_retain_ops=100, fsync="no", peer_delays="n1-n3=20,n2-n3=20")
    c.stop("n3")
    r1, r2 = c.client("n1"), c.client("n2")
    for start in range(0, KEYS, 1000):
        p = r1.pipeline(transaction=False)
        for i in range(start, start + 1000):
            p.set(f"key:{i}", f"value-{i}")
        p.execute()
    for i in range(300):  # n2 may itself be catching up by a transfer: it may answer TRYAGAIN
        _retrying(lambda: (r1 if i % 2 else r2).incr("hits"))
        _retrying(lambda: r2.sadd("members", i))
    converged(c, ("n1", "n2"))
    yield c
    c.close()


def _retrying(write: Callable[[], Any]) -> Any:
    """A write as a client retries it: TRYAGAIN (a key joined from a transfer not yet caught up
    with) is retried until it is taken."""
    def attempt() -> Any:
        try:
            return (write(),)
        except redis.exceptions.TryAgainError:
            return None
        except redis.RedisError as e:  # not retried: an increment may have been taken
            raise AssertionError(f"write failed: {e!r}") from e
    return wait_for(attempt, 30, "a write refused with TRYAGAIN to be taken")[0]


def _info(c: Cluster, node: str) -> dict[str, Any]:
    r = c.client(node, timeout=5)
    return {**r.info("replication"), **r.info("stats")}


def _check(c: Cluster, extra_hits: int = 0) -> None:
    r3 = c.client("n3")
    assert r3.dbsize() >= KEYS + 2
    assert r3.get("hits") == str(300 + extra_hits).encode()  # no increment lost or counted twice
    assert r3.scard("members") == 300
    assert r3.get("key:0") == b"value-0" and r3.get(f"key:{KEYS - 1}") == f"value-{KEYS - 1}".encode()


def _receiving(c: Cluster) -> bool:
    info = _info(c, "n3")
    return bool(int(info["replikv_state_transfers_in"]) or int(info["replikv_state_chunks_queued"]))


def test_a_lagging_node_catches_up_in_many_chunks_and_serves_meanwhile(lagging: Cluster) -> None:
    c = lagging
    c.start("n3")
    r3, r1 = c.client("n3"), c.client("n1")
    wait_for(lambda: _receiving(c), 60, "n3 to receive a state transfer")
    during = i = hits = refused = 0  # during: writes n3 answered with a transfer under way before and after
    while True:
        before = _receiving(c)
        r3.set(f"live:{i}", i)  # a key no transfer brings: never refused
        assert r3.get(f"live:{i}") == str(i).encode()
        try:
            r3.incr("hits")  # a key the transfer brings: refused while joined beyond n3's vv
            hits += 1
        except redis.exceptions.TryAgainError:
            refused += 1
        _retrying(lambda: r1.incr("hits"))
        i += 1
        after = _receiving(c)
        during += before and after
        if not after and int(_info(c, "n3")["state_transfers_received"]) >= 1:
            break
        assert i < 20_000, "the state transfer never completed"
    converged(c)
    _check(c, extra_hits=i + hits)
    # n1 took more than oplog_retain_ops writes while its transfer streamed: n3 may need another,
    # still under way when the digests agree (its chunks brought the keys; its vv moves at the end)
    wait_for(lambda: not _receiving(c), 30, "the state transfers to n3 to end")
    stats = _info(c, "n3")
    assert during >= 1  # n3 served reads and writes while the chunks came in
    assert int(stats["state_transfer_refused_writes"]) == refused
    assert int(stats["state_chunks_received"]) > 50  # many chunks, not one frame
    sent = sum(int(_info(c, n)["state_chunks_sent"]) for n in ("n1", "n2"))
    assert sent >= int(stats["state_chunks_received"])


def test_a_receiver_killed_mid_transfer_converges_after_restart(lagging: Cluster) -> None:
    c = lagging
    c.start("n3")

    def mid_transfer() -> bool:
        info = _info(c, "n3")
        return int(info["state_chunks_received"]) >= 5 and int(info["state_transfers_received"]) == 0

    wait_for(mid_transfer, 60, "n3 to be in the middle of a state transfer")
    c.kill("n3")
    _retrying(lambda: c.client("n1").incr("hits"))  # and the others go on writing meanwhile
    c.start("n3")
    converged(c)
    _check(c, extra_hits=1)
    assert int(_info(c, "n3")["state_transfers_received"]) >= 1
