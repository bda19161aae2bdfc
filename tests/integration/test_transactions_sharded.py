"""MULTI/EXEC across Raft groups (runtime/txn_service.py, core/txn/) on real processes."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis

from tests.integration.cluster import Cluster, wait_for
from tests.integration.test_sharded_raft import keys_per_group, retrying, settled, sharded


def started(root: Path, **options: Any) -> tuple[Cluster, list[str]]:
    """A 3-node, 3-group cluster with every group led by its preferred node. Waiting only for
    a leader in each group left the leader's hand-back to its preferred node (sharded_raft.py
    ``_hand_back_leadership``) to happen during the test: a read forwarded to the old leader
    was answered TRYAGAIN (a clean clone's run, session 32)."""
    c = sharded(root, **options)
    nodes = list(c.config.nodes)
    wait_for(lambda: settled(c, nodes, 3), 30, "every group led by its preferred node")
    return c, nodes


def transact(r: redis.Redis, *commands: tuple[Any, ...], watch: tuple[str, ...] = (),
             raise_on_error: bool = True) -> Any:
    """One MULTI/EXEC (redis-py's pipeline); WatchError is returned, not raised."""
    with r.pipeline(transaction=True) as p:
        try:
            if watch:
                p.watch(*watch)
                p.multi()
            for cmd in commands:
                p.execute_command(*cmd)
            return p.execute(raise_on_error=raise_on_error)
        except redis.exceptions.WatchError as e:
            return e


def open_accounts(r: redis.Redis) -> tuple[list[str], int]:
    """Two accounts in each group, 100 in each; their names and the total."""
    accounts = [key for keys in keys_per_group(3, 2).values() for key in keys]
    for acct in accounts:
        retrying(lambda acct=acct: r.set(acct, 100))
    return accounts, 100 * len(accounts)


def intents(c: Cluster, nodes: list[str]) -> list[Any]:
    out: list[Any] = []
    for n in nodes:
        try:
            out.extend(c.client(n, timeout=2).execute_command("REPLIKV", "TXN", "INTENTS"))
        except redis.RedisError:
            pass
    return out


def test_cross_group_exec_is_one_transaction(tmp_path: Path) -> None:
    c, nodes = started(tmp_path / "c")
    try:
        k = keys_per_group(3, 1)
        a, b, d = k[0][0], k[1][0], k[2][0]
        r = c.client(nodes[1])
        retrying(lambda: r.set(a, 10))
        retrying(lambda: r.set(b, 20))
        # replies come back in MULTI order though three groups computed them
        out = transact(r, ("INCRBY", a, -5), ("INCRBY", b, 5), ("GET", d), ("SET", d, "x"), ("GET", a))
        assert out == [5, 25, None, True, b"5"]
        for n in nodes:  # every node, each reading from its group's leader
            assert [c.client(n).get(x) for x in (a, b, d)] == [b"5", b"25", b"x"]
        # a read-only transaction over every group
        assert transact(c.client(nodes[2]), ("GET", a), ("GET", b), ("GET", d)) == [b"5", b"25", b"x"]
        # its locks are released after its reply (the release may reach the groups after the client
        # sends the next EXEC, which wait-die then aborts with TRYAGAIN): wait for the release
        wait_for(lambda: intents(c, nodes) == [], 10, "the read-only transaction's locks to be released")
        # a runtime error in one command does not stop the others (Redis's EXEC), across groups too
        out = transact(r, ("INCR", d), ("INCR", a), raise_on_error=False)
        assert isinstance(out[0], redis.ResponseError) and out[1] == 6
        # one command whose own keys span groups cannot be split: the EXEC is refused, nothing applied
        with pytest.raises(redis.ResponseError, match="hash to the same slot .MSET in the transaction"):
            transact(r, ("SET", d, "y"), ("MSET", a, "1", b, "2"))
        assert [r.get(x) for x in (a, b, d)] == [b"6", b"25", b"x"]
        wait_for(lambda: intents(c, nodes) == [], 10, "the locks to be released")  # resolved after the reply
        assert c.client(nodes[1]).info("stats")["txn_committed"] == 2  # the node that coordinated them
    finally:
        c.close()


def test_watch_across_groups_aborts_the_exec(tmp_path: Path) -> None:
    c, nodes = started(tmp_path / "c")
    try:
        k = keys_per_group(3, 1)
        a, b = k[0][0], k[1][0]
        r, other = c.client(nodes[0]), c.client(nodes[2])
        retrying(lambda: r.set(a, "1"))
        with r.pipeline(transaction=True) as p:
            p.watch(a)
            other.set(a, "changed")
            p.multi()
            p.set(a, "mine")
            p.set(b, "mine")
            with pytest.raises(redis.exceptions.WatchError):
                p.execute()
        assert r.get(a) == b"changed" and r.get(b) is None
        out = transact(r, ("SET", a, "t"), ("SET", b, "t"), watch=(a, b))  # unchanged: commits
        assert out == [True, True] and other.get(b) == b"t"
    finally:
        c.close()


def test_malformed_transaction_steps_are_refused_and_change_nothing(tmp_path: Path) -> None:
    """REPLIKV TXN steps are the nodes' own, but a client (or a peer speaking garbage) may send
    them: each malformed one gets a clear error before anything reaches a group's log."""
    c, nodes = started(tmp_path / "c")
    try:
        r = c.client(nodes[0])
        retrying(lambda: r.set("k", "v"))
        bodies = [b"\xc1", msgpack.packb(None), msgpack.packb([1, 2]), msgpack.packb(["a"] * 9),
                  msgpack.packb([b"t", 1, 2, 0, [0, 1], [[b"SET"]], [], False, False]),  # SET without its args
                  msgpack.packb([b"t", 1, 2, 99, [0, 99], [[b"SET", b"k", b"x"]], [], False, False]),  # no group 99
                  msgpack.packb([b"t", "x", 2, [0], [], [], False])]
        for body in bodies:  # refused by the node asked, whether or not it leads the group
            for op in ("PREPARE", "COMMIT", "DECIDE", "RESOLVE", "FORGET"):
                for g in ("0", "1", "2"):
                    with pytest.raises(redis.ResponseError, match="transaction step|step is a list|bad field"):
                        r.execute_command("REPLIKV", "TXN", op, g, body)
        with pytest.raises(redis.ResponseError, match="usage"):
            r.execute_command("REPLIKV", "TXN", "BOGUS", "0", b"")
        with pytest.raises(redis.ResponseError, match="failpoints are off"):
            r.execute_command("REPLIKV", "FAILPOINT", "txn-exit-after-prepare")
        assert r.get("k") == b"v" and intents(c, nodes) == []
        assert "Traceback" not in "".join(c.log_text(n) for n in nodes)
    finally:
        c.close()


def test_concurrent_transfers_keep_the_total(tmp_path: Path) -> None:
    """Transfers between accounts in every group, from clients on every node, with reads of all
    balances in between: every read sees the initial total, and so does the end."""
    c, nodes = started(tmp_path / "c")
    try:
        r = c.client(nodes[0])
        accounts, total = open_accounts(r)
        seen: list[int] = []
        failures: list[str] = []
        done = {"transfers": 0, "aborts": 0}

        start = time.monotonic()

        def enough() -> bool:  # 8 s of load, and enough of each kind to check (a loaded machine
            # commits fewer: reads of every group abort while transfers hold locks), or 60 s
            elapsed = time.monotonic() - start
            return elapsed > 60 or (elapsed > 8 and done["transfers"] > 20 and len(seen) > 5)

        def worker(i: int) -> None:
            rng = random.Random(i)
            cl = c.client(nodes[i % len(nodes)], timeout=20)
            while not enough():
                try:
                    if rng.random() < 0.3:
                        out = transact(cl, *[("GET", acct) for acct in accounts])
                        seen.append(sum(int(v) for v in out))
                    else:
                        src, dst = rng.sample(accounts, 2)
                        amount = rng.randint(1, 10)
                        transact(cl, ("DECRBY", src, amount), ("INCRBY", dst, amount))
                        done["transfers"] += 1
                except redis.exceptions.TryAgainError as e:
                    if "outcome unknown" in str(e):
                        failures.append(str(e))
                    done["aborts"] += 1
                except redis.RedisError as e:
                    failures.append(repr(e))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not failures, failures[:5]
        assert done["transfers"] > 20 and len(seen) > 5, done
        assert set(seen) == {total}, sorted(set(seen))
        assert sum(int(r.get(acct)) for acct in accounts) == total
        wait_for(lambda: intents(c, nodes) == [], 10, "every transaction to release its locks")
    finally:
        c.close()


def test_transfers_survive_a_killed_group_leader(tmp_path: Path) -> None:
    """Transfers and reads of every balance while the node leading one group is killed and comes
    back: no read ever sees a changed total (no transfer applied in part), the end neither, and
    every lock is released once the cluster is whole again."""
    c, nodes = started(tmp_path / "c")
    try:
        r = c.client(nodes[0])
        accounts, total = open_accounts(r)
        seen: list[int] = []
        errors: list[str] = []
        stop = threading.Event()
        counts = {"ok": 0, "failed": 0}

        def worker(i: int) -> None:
            rng = random.Random(i)
            cl = c.client(nodes[i % 2], timeout=20)  # clients on the two nodes that stay up
            while not stop.is_set():
                try:
                    if rng.random() < 0.3:
                        seen.append(sum(int(v) for v in transact(cl, *[("GET", acct) for acct in accounts])))
                    else:
                        src, dst = rng.sample(accounts, 2)
                        amount = rng.randint(1, 10)
                        transact(cl, ("DECRBY", src, amount), ("INCRBY", dst, amount))
                    counts["ok"] += 1
                except (redis.exceptions.TryAgainError, redis.exceptions.ConnectionError,
                        redis.exceptions.TimeoutError):
                    counts["failed"] += 1
                except redis.RedisError as e:
                    errors.append(repr(e))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        wait_for(lambda: counts["ok"] > 30, 30, "transactions before the kill")
        c.kill(nodes[2])
        before = counts["ok"]
        wait_for(lambda: counts["ok"] > before + 30, 60, "transactions while a node is down")
        c.start(nodes[2])
        before = counts["ok"]
        wait_for(lambda: counts["ok"] > before + 30, 60, "transactions after the restart")
        stop.set()
        for t in threads:
            t.join(60)
        assert not errors, errors[:5]
        assert seen and set(seen) == {total}, sorted(set(seen))
        wait_for(lambda: intents(c, nodes) == [], 30, "every lock to be released")
        assert retrying(lambda: sum(int(r.get(acct)) for acct in accounts)) == total
    finally:
        c.close()


def _prepared_then_coordinator_exits(c: Cluster, nodes: list[str]) -> tuple[redis.Redis, str, str]:
    """Keys a and b of the two groups led by the nodes that stay up (group g prefers node g) set to
    "old"; then n1 coordinates a transaction over them and exits between the two phases (the
    failpoint). Returns a client of n2 and the two keys."""
    k = keys_per_group(3, 1)
    a, b = k[1][0], k[2][0]
    r = c.client(nodes[1])
    retrying(lambda: r.set(a, "old"))
    retrying(lambda: r.set(b, "old"))
    victim = c.client(nodes[0])
    assert victim.execute_command("REPLIKV", "FAILPOINT", "txn-exit-after-prepare") == b"OK"
    with pytest.raises(redis.exceptions.ConnectionError):
        transact(victim, ("SET", a, "new"), ("SET", b, "new"))
    c.procs[nodes[0]].wait(10)  # the failpoint exits the process between the two phases
    c.procs.pop(nodes[0])
    return r, a, b


def test_a_dead_coordinator_blocks_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default (transaction record): the coordinator dies after every participant voted yes;
    the participants' recovery aborts it past its deadline, and its keys are free again."""
    monkeypatch.setenv("REPLIKV_FAILPOINTS", "1")
    c, nodes = started(tmp_path / "c", txn_timeout_ms=1000)
    try:
        r, a, b = _prepared_then_coordinator_exits(c, nodes)
        wait_for(lambda: intents(c, nodes[1:]) == [], 15, "the recovery to release the dead coordinator's locks")
        # all or nothing: never decided, so aborted everywhere
        assert [r.get(a), r.get(b)] == [b"old", b"old"]
        assert retrying(lambda: r.set(a, "after")) is True
        assert sum(int(c.client(n).info("stats")["txn_recovered"]) for n in nodes[1:]) >= 1
    finally:
        c.close()


def test_classic_2pc_leaves_participants_blocked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--txn classic: the same crash leaves the prepared participants holding their locks (the
    weakness of textbook two-phase commit); a write to a locked key waits, then gets TRYAGAIN."""
    monkeypatch.setenv("REPLIKV_FAILPOINTS", "1")
    c, nodes = started(tmp_path / "c", txn="classic", txn_timeout_ms=500, ack_timeout_ms=1500)
    try:
        r, a, b = _prepared_then_coordinator_exits(c, nodes)
        held = wait_for(lambda: intents(c, nodes[1:]), 10, "the participants to show their prepared transaction")
        assert sorted(key for row in held for key in row[3:]) == sorted([a.encode(), b.encode()])
        with pytest.raises(redis.exceptions.TryAgainError, match="locked by a transaction"):
            r.set(a, "blocked")
        # well past the timeout the default mode would recover in: still held
        assert len(intents(c, nodes[1:])) == len(held)
        assert c.client(nodes[2]).info("stats")["txn_recovered"] == 0
    finally:
        c.close()
