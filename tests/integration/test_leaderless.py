"""Leaderless mode on real processes: what a user of Cassandra, Riak or Dynamo expects.

Any node coordinates any key; the client picks per connection how many of the
key's replicas must answer; a replica that was down is brought back up to
date by hints (when a stand-in held its writes) and read repair; a level that
cannot be reached is refused at once (UNAVAILABLE) or fails with the count of
replicas that answered; concurrent writes merge by type (counters add up,
sets join) or become siblings that VGET shows and VSET resolves.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
import redis

from replikv.core.dynamo.ring import Ring
from tests.integration.cluster import Cluster, limit_peer_frames, wait_for

pytestmark = pytest.mark.integration


def ll_cluster(root: Path, n: int = 3, **options: Any) -> Cluster:
    options.setdefault("fsync", "always")
    options.setdefault("ack_timeout_ms", 2000)
    c = Cluster(root, n, **options)
    c.config.mode = "leaderless"
    c.config.save(c.path)
    return c.start()


def ring_of(c: Cluster) -> Ring:
    opts = c.config.options
    return Ring(list(c.config.nodes), opts.replicas, opts.vnodes)


def level(r: redis.Redis, read: str | None = None, write: str | None = None) -> redis.Redis:
    if read:
        assert r.execute_command("CONSISTENCY", "READ", read) == b"OK"
    if write:
        assert r.execute_command("CONSISTENCY", "WRITE", write) == b"OK"
    return r


def test_any_node_coordinates_and_types_merge(tmp_path: Path) -> None:
    c = ll_cluster(tmp_path / "c")
    try:
        clients = {n: c.client(n) for n in c.config.nodes}
        for i in range(10):
            for n, r in clients.items():
                assert r.incr("hits") >= 1
                assert r.sadd("members", f"{n}-{i}") == 1
                r.hset("profile", n, i)
                r.set(f"k:{n}:{i}", i)
        for n, r in clients.items():  # quorum reads (R + W > N): every acknowledged write is seen
            assert r.get("hits") == b"30", n
            assert r.scard("members") == 30
            assert r.hgetall("profile") == {b"n1": b"9", b"n2": b"9", b"n3": b"9"}
            assert [r.get(f"k:{m}:9") for m in c.config.nodes] == [b"9"] * 3
        r = clients["n2"]
        assert r.execute_command("CONSISTENCY") == b"read=quorum write=quorum"
        pipe = r.pipeline(transaction=True)  # EXEC: the commands in order, no isolation
        pipe.set("a", "1").incr("a").get("a")
        assert pipe.execute() == [True, 2, b"2"]
        with pytest.raises(redis.ResponseError, match="not offered in leaderless mode"):
            r.zadd("z", {"m": 1})
        with pytest.raises(redis.ResponseError, match="not offered in leaderless mode"):
            r.flushall()
        with pytest.raises(redis.ResponseError, match="needs 4 replicas"):
            level(c.client("n1", single_connection_client=True), read="4").get("a")
        with pytest.raises(redis.ResponseError, match="unknown read level"):
            r.execute_command("CONSISTENCY", "READ", "psychic")
        info = c.replication("n1")
        assert info["replikv_mode"] == "leaderless" and info["replikv_replicas"] == 3
    finally:
        c.close()


def test_levels_that_cannot_be_reached_are_refused_or_time_out_with_counts(tmp_path: Path) -> None:
    c = ll_cluster(tmp_path / "c")
    try:
        r = c.client("n1", single_connection_client=True)
        assert r.set("k", "v") is True
        c.kill("n2")
        c.kill("n3")
        wait_for(lambda: c.replication("n1")["connected_slaves"] == 0, 20, "n1 to see its peers gone")
        with pytest.raises(redis.ResponseError, match=r"UNAVAILABLE write at quorum needs 2 of 3 replicas; "
                                                       r"1 reachable; nothing was written"):
            r.set("k", "w")
        with pytest.raises(redis.ResponseError, match="UNAVAILABLE read at quorum"):
            r.get("k")
        level(r, read="one", write="one")
        assert r.set("k", "one") is True  # ONE: this replica is enough
        assert r.get("k") == b"one"
        assert int(c.replication("n1")["replikv_hints_held"]) == 2  # n1 keeps the write for each of them
        c.start("n2", "n3")
        for n in ("n2", "n3"):  # hinted handoff once they are back
            rn = level(c.client(n, single_connection_client=True), read="one")
            wait_for(lambda: rn.get("k") == b"one", 10, f"{n} to get its hint")
        # at least one delivery each (a hint the first write's deadline added for n3 may go again);
        # n1 counts a delivery when the replica's ack comes back, after the replica shows the value
        wait_for(lambda: int(c.replication("n1")["replikv_hints_delivered"]) >= 2, 10, "n1 to count both deliveries")
        wait_for(lambda: int(c.replication("n1")["replikv_hints_held"]) == 0, 10, "n1 to hold no hint")
    finally:
        c.close()


def test_a_read_repairs_a_replica_that_lost_its_data(tmp_path: Path) -> None:
    # only n1's reads repair here: no anti-entropy, and no read of n3's asking the others (its ONE
    # read of k0 below would repair k0 itself one time in ten with the default read_repair_pct)
    c = ll_cluster(tmp_path / "c", anti_entropy_ms=0, read_repair_pct=0)
    try:
        r = level(c.client("n1", single_connection_client=True), read="all", write="all")
        for i in range(20):  # ALL: every replica acknowledged each write, so n1 keeps no hint for n3
            assert r.set(f"k{i}", i) is True
        c.kill("n3")
        shutil.rmtree(c.config.nodes["n3"].data_dir)  # its disk was replaced: it starts empty
        c.start("n3")
        wait_for(lambda: c.replication("n1")["connected_slaves"] == 2, 20, "n1 to see n3 back")
        one = level(c.client("n3", single_connection_client=True), read="one")
        assert one.get("k0") is None
        assert [r.get(f"k{i}") for i in range(20)] == [str(i).encode() for i in range(20)]  # ALL
        assert int(c.replication("n1")["replikv_read_repairs"]) >= 20  # each read sent the value back to n3
        wait_for(lambda: all(one.get(f"k{i}") == str(i).encode() for i in range(20)), 10, "n3 to be repaired")
    finally:
        c.close()


def test_concurrent_writes_become_siblings_that_vset_resolves(tmp_path: Path) -> None:
    c = ll_cluster(tmp_path / "c", conflicts="siblings")
    try:
        # each write is made while the other's coordinator is down: concurrent
        c.kill("n2")
        c.kill("n3")
        a = level(c.client("n1", single_connection_client=True), write="one")
        assert a.set("doc", "from-a") is True
        c.kill("n1")
        c.start("n2")
        b = level(c.client("n2", single_connection_client=True), write="one")
        assert b.set("doc", "from-b") is True
        c.start("n1", "n3")
        wait_for(lambda: c.replication("n3")["connected_slaves"] == 2, 20, "n3 to see its peers")
        q = level(c.client("n3", single_connection_client=True), read="all")
        ctx, values = q.execute_command("VGET", "doc")
        assert sorted(values) == [b"from-a", b"from-b"]
        assert q.get("doc") in (b"from-a", b"from-b")  # plain GET: one value, the LWW winner
        level(q, write="all")
        assert q.execute_command("VSET", "doc", "merged", "CONTEXT", ctx) == b"OK"
        for n in c.config.nodes:
            r = level(c.client(n, single_connection_client=True), read="one")
            assert r.execute_command("VGET", "doc")[1] == [b"merged"], n
    finally:
        c.close()


def test_five_nodes_survive_a_kill_under_load_and_hints_repair_the_returning_node(tmp_path: Path) -> None:
    c = ll_cluster(tmp_path / "c", 5)
    try:
        ring = ring_of(c)
        errors: list[str] = []
        acked: dict[str, str] = {}
        stop = threading.Event()

        def writer(node: str) -> None:
            r = c.client(node)
            i = 0
            while not stop.is_set():
                key = f"{node}:{i}"
                try:
                    r.set(key, i)
                    acked[key] = str(i)
                except redis.RedisError as e:
                    errors.append(f"{key}: {e}")
                i += 1

        threads = [threading.Thread(target=writer, args=(n,)) for n in ("n1", "n2", "n4")]
        for t in threads:
            t.start()
        wait_for(lambda: len(acked) > 150, 30, "writes before the kill")
        c.kill("n3")
        before = len(acked)
        wait_for(lambda: len(acked) > before + 300, 60, "writes after the kill")
        stop.set()
        for t in threads:
            t.join(30)
        # QUORUM kept succeeding: the only failures are writes in flight when n3 died
        assert len(errors) <= 6, errors[:10]
        r = c.client("n5")
        for key, value in list(acked.items())[::7]:
            assert r.get(key) == value.encode(), key  # every acknowledged write, at QUORUM
        mine = [k for k in acked if "n3" in ring.preference_list(k.encode())]
        assert len(mine) > 50
        held = sum(int(c.replication(n)["replikv_hints_held"]) for n in ("n1", "n2", "n4", "n5"))
        assert held > 0  # stand-ins hold what n3 missed
        c.start("n3")
        wait_for(lambda: sum(int(c.replication(n)["replikv_hints_held"]) for n in ("n1", "n2", "n4", "n5")) == 0,
                 60, "the hints to be delivered")
        one = level(c.client("n3", single_connection_client=True), read="one")
        missing = [k for k in mine if one.get(k) != acked[k].encode()]
        # n3 answers ONE reads of its keys from its own replica: hints gave it every write it missed
        # (writes acknowledged before the kill it already had)
        assert missing == [], missing[:10]
    finally:
        c.close()


def test_sloppy_quorum_counts_a_stand_in_toward_the_level(tmp_path: Path) -> None:
    for sloppy in (False, True):
        c = ll_cluster(tmp_path / f"c{sloppy}", 4, sloppy_quorum=sloppy)
        try:
            ring = ring_of(c)
            key = next(f"k{i}" for i in range(1000) if ring.preference_list(f"k{i}".encode())[0] == "n1"
                       and "n4" in ring.preference_list(f"k{i}".encode()))
            c.kill("n4")
            r = level(c.client("n1", single_connection_client=True), write="all")
            wait_for(lambda: c.replication("n1")["connected_slaves"] == 2, 20, "n1 to see n4 gone")
            if sloppy:
                assert r.set(key, "v") is True
            else:
                with pytest.raises(redis.ResponseError, match="UNAVAILABLE write at all needs 3 of 3"):
                    r.set(key, "v")
        finally:
            c.close()


def test_anti_entropy_repairs_a_replica_nobody_reads_from(tmp_path: Path) -> None:
    c = ll_cluster(tmp_path / "c", anti_entropy_ms=50, read_repair_pct=0)
    try:
        r = level(c.client("n1", single_connection_client=True), write="all")
        for i in range(200):
            assert r.set(f"k{i}", i) is True
        assert r.delete("k7") == 1
        c.kill("n3")
        shutil.rmtree(c.config.nodes["n3"].data_dir)  # its disk was replaced: it starts empty
        c.start("n3")
        one = level(c.client("n3", single_connection_client=True), read="one")

        def repaired() -> bool:
            return all(one.get(f"k{i}") == (None if i == 7 else str(i).encode()) for i in range(200))
        wait_for(repaired, 60, "anti-entropy to bring n3 up to date")
        infos = [c.replication(n) for n in c.config.nodes]
        # a round is counted by the node that starts it: n1 and n2 may have pushed everything
        # to n3 before n3 started one of its own
        assert sum(int(i["replikv_ae_rounds"]) for i in infos) > 0
        assert sum(int(i["replikv_ae_keys_repaired"]) for i in infos) >= 199
        assert one.exists("k7") == 0
        digests = {c.digest(n) for n in c.config.nodes}
        assert len(digests) == 1
    finally:
        c.close()


def test_paxos_cas_set_nx_and_serial_reads(tmp_path: Path) -> None:
    """CAS, SET NX and SERIAL reads run single-decree Paxos among the key's replicas: of many
    clients racing SET NX on one key exactly one wins; CAS increments from every node never lose
    an update; a SERIAL read sees the last CAS; a minority down does not stop them."""
    c = ll_cluster(tmp_path / "c")
    try:
        winners: list[str] = []
        maybe: list[str] = []

        def take(i: int) -> None:
            r = c.client(f"n{i % 3 + 1}")
            try:
                if r.set("lock", f"owner-{i}", nx=True):
                    winners.append(f"owner-{i}")
            except redis.ResponseError as e:  # TRYAGAIN (redis-py: TryAgainError) or NOREPLICAS
                assert isinstance(e, redis.exceptions.TryAgainError) or "NOREPLICAS" in str(e), e
                if "may still be applied" in str(e):
                    maybe.append(f"owner-{i}")

        threads = [threading.Thread(target=take, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(winners) <= 1, winners
        serial = level(c.client("n2", single_connection_client=True), read="serial")
        holder = serial.get("lock")
        # one owner: the one told it won, or (when none was told) one whose outcome was unknown
        if winners:
            assert holder == winners[0].encode(), (holder, winners, maybe)
        else:
            assert holder is None or holder.decode() in maybe, (holder, maybe)
        if holder is not None:
            assert c.client("n3").set("lock", "late", nx=True) is None

        assert c.client("n1").set("n", "0") is True
        done = {"ok": 0, "unknown": 0}

        def bump(node: str) -> None:
            r = level(c.client(node, single_connection_client=True), read="serial")
            for _ in range(15):
                while True:
                    cur = r.get("n")
                    try:
                        swapped = r.execute_command("CAS", "n", cur, str(int(cur) + 1))
                    except redis.ResponseError as e:
                        if "may still be applied" in str(e):  # preempted after acceptors took it
                            done["unknown"] += 1
                            break
                        assert isinstance(e, redis.exceptions.TryAgainError) or "NOREPLICAS" in str(e), e
                        continue
                    if swapped == 1:
                        done["ok"] += 1
                        break

        threads = [threading.Thread(target=bump, args=(n,)) for n in ("n1", "n2", "n3")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert done["ok"] + done["unknown"] == 45 and done["ok"] >= 30, done
        final = int(serial.get("n"))  # no acknowledged increment lost, none applied twice
        assert done["ok"] <= final <= done["ok"] + done["unknown"], (final, done)
        assert c.client("n3").execute_command("CAS", "n", str(final), str(final)) == 1
        assert c.client("n3").execute_command("CAS", "n", str(final - 1), "x") == 0
        c.kill("n3")
        wait_for(lambda: c.replication("n1")["connected_slaves"] == 1, 20, "n1 to see n3 gone")
        assert c.client("n1").execute_command("CAS", "n", str(final), "next") == 1  # a majority is enough
        assert serial.get("n") == b"next"
        w = level(c.client("n1", single_connection_client=True), write="serial")
        assert w.set("n", "plain") is True
        assert w.incr("other") == 1  # not a Paxos command: at QUORUM, as Cassandra's serial consistency
        assert serial.get("n") == b"plain"
    finally:
        c.close()


def test_a_background_snapshot_taken_mid_batch_does_not_count_an_increment_twice(tmp_path: Path) -> None:
    """BGSAVE pipelined right behind writes: the writes' WAL entries are written before the
    snapshot is taken at the WAL's last index, so a restart (snapshot + WAL after it) replays each
    increment once."""
    c = ll_cluster(tmp_path / "c")
    try:
        r = level(c.client("n1", single_connection_client=True), write="all", read="all")
        pipe = r.pipeline(transaction=False)
        for _ in range(50):
            pipe.incr("c")
        pipe.bgsave()
        pipe.execute()
        wait_for(lambda: int(r.info("persistence")["rdb_bgsave_in_progress"]) == 0
                 and int(r.info("persistence")["replikv_snapshots_in_background"]) == 1, 20,
                 "the background snapshot")
        for node in list(c.config.nodes):
            c.stop(node)
        c.start()
        wait_for(lambda: c.replication("n1")["connected_slaves"] == 2, 20, "the nodes to reconnect")
        one = level(c.client("n1", single_connection_client=True), read="one")
        assert one.get("c") == b"50"
        assert int(c.client("n1").info("persistence")["replikv_snapshot_index"]) > 0
    finally:
        c.close()


def test_concurrent_single_sets_survive_a_kill_of_their_coordinator_and_reach_every_replica(
        tmp_path: Path) -> None:
    """Many connections' single SETs at ONE and QUORUM (those of one loop iteration are joined
    into one write: LeaderlessRunner._join): every acknowledged one is in its coordinator's data
    after a kill -9 and restart (fsync always: ONE is durable here when it answers), and every
    replica ends up with the last acknowledged value of every key."""
    c = ll_cluster(tmp_path / "c")
    try:
        acked: dict[str, str] = {}
        errors: list[BaseException] = []
        lock = threading.Lock()

        def worker(node: str, t: int) -> None:
            try:
                r = level(c.client(node, single_connection_client=True), write="one" if t % 2 else "quorum")
                for i in range(120):
                    key, value = f"{node}:{t}:{i % 30}", str(i)
                    assert r.set(key, value) is True
                    with lock:
                        acked[key] = value
            except BaseException as exc:  # the test fails below with it
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(n, t)) for n in c.config.nodes for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(120)
        assert not errors and len(acked) == 3 * 4 * 30
        c.kill("n1")
        c.start("n1")
        r1 = level(c.client("n1", single_connection_client=True), read="one")
        mine = {k: v for k, v in acked.items() if k.startswith("n1:")}
        assert {k: r1.get(k) for k in mine} == {k: v.encode() for k, v in mine.items()}
        for n in c.config.nodes:
            rn = level(c.client(n, single_connection_client=True), read="one")
            wait_for(lambda: all(rn.get(k) == v.encode() for k, v in acked.items()), 20,
                     f"{n} to hold every acknowledged SET")
    finally:
        c.close()


def test_large_values_of_one_loop_iteration_reach_every_replica_without_a_link_drop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 9: a pipeline of near-max values and many connections each writing one, at QUORUM,
    read by the coordinator in a few loop iterations of several MiB each, under a peer frame
    limit of 3 MiB (``max_bulk_len`` 1 MiB, ``REPLIKV_PEER_FRAME_SLACK_BYTES`` 2 MiB: the same
    overflow as 64 MiB of slack meets with more values, on a smaller scale). The frames are cut
    at the limit and a run's batch at its bytes bound: every SET is acknowledged, every replica
    holds every value, no link was dropped, and no hint was needed."""
    bulk = limit_peer_frames(monkeypatch)
    c = ll_cluster(tmp_path / "c", max_bulk_len=bulk, ack_timeout_ms=20000)
    try:
        n = 40
        piped = {f"p{i}": bytes([65 + i % 26]) * (bulk - i) for i in range(n)}
        piped["p0"] = b"Z" * bulk  # exactly max_bulk_len
        single = {f"c{i}": bytes([97 + i % 26]) * (bulk - 7 * i) for i in range(n)}
        pipe_conn = level(c.client("n1", timeout=120, single_connection_client=True), write="quorum")
        conns = [level(c.client("n1", timeout=120, single_connection_client=True), write="quorum")
                 for _ in range(n)]
        replies: dict[str, Any] = {}
        sending: list[str] = []

        def pipelined() -> None:
            p = pipe_conn.pipeline(transaction=False)
            for k, v in piped.items():
                p.set(k, v)
            sending.append("pipe")
            replies["pipe"] = p.execute(raise_on_error=False)

        def one(i: int) -> None:
            sending.append(f"c{i}")
            try:
                replies[f"c{i}"] = conns[i].set(f"c{i}", single[f"c{i}"])
            except redis.RedisError as exc:
                replies[f"c{i}"] = exc

        c.pause("n1")  # what the clients send waits in the sockets: n1 reads it in big iterations
        threads = [threading.Thread(target=pipelined)] + [threading.Thread(target=one, args=(i,)) for i in range(n)]
        try:
            for th in threads:
                th.start()
            wait_for(lambda: len(sending) == n + 1, 20, "every client to send")
        finally:
            c.resume("n1")
        for th in threads:
            th.join(180)
        assert replies.pop("pipe") == [True] * n
        assert replies == {f"c{i}": True for i in range(n)}
        values = {**piped, **single}
        for node in c.config.nodes:
            one_read = level(c.client(node, timeout=60, single_connection_client=True), read="one")
            wait_for(lambda: all(one_read.get(k) == v for k, v in values.items()), 60,
                     f"{node} to hold every value")
        c.assert_no_peer_link_closed()
        for node in c.config.nodes:
            assert int(c.replication(node)["replikv_hints_held"]) == 0
    finally:
        c.close()


def test_hints_of_large_values_reach_the_returning_replica(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 9: a replica down while twelve values of about 1 MiB are written at QUORUM gets
    them as hints when it is back, in deliveries that fit a peer frame (3 MiB here: ``max_bulk_len``
    1 MiB and ``REPLIKV_PEER_FRAME_SLACK_BYTES`` 2 MiB), not in one frame the size of them all,
    which would close the link at every reconnect."""
    bulk = limit_peer_frames(monkeypatch)
    c = ll_cluster(tmp_path / "c", max_bulk_len=bulk, anti_entropy_ms=0, read_repair_pct=0)
    try:
        c.kill("n3")
        r = level(c.client("n1", timeout=60, single_connection_client=True), write="quorum")
        values = {f"h{i}": bytes([65 + i]) * (bulk - i) for i in range(12)}
        for k, v in values.items():
            assert r.set(k, v) is True
        assert int(c.replication("n1")["replikv_hints_held"]) == len(values)
        c.start("n3")
        wait_for(lambda: int(c.replication("n1")["replikv_hints_held"]) == 0, 60, "the hints to be delivered")
        one = level(c.client("n3", timeout=60, single_connection_client=True), read="one")
        assert {k: one.get(k) for k in values} == values
        assert "exceeds the limit" not in c.log_text("n3")
    finally:
        c.close()


def test_anti_entropy_refills_an_emptied_replica_of_large_values_without_a_link_drop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 9: a replica whose disk was replaced starts empty; its own anti-entropy rounds alone
    (n1 and n2 run none, no read repair, no hints: the writes were at ALL) refill it with twelve
    values of about 1 MiB under a peer frame limit of 3 MiB. It asks for what it lacks one key
    per ``Get``: a single answer of every differing key (12 MiB) closed the link at every round."""
    bulk = limit_peer_frames(monkeypatch)
    c = ll_cluster(tmp_path / "c", max_bulk_len=bulk, anti_entropy_ms=0, read_repair_pct=0)
    try:
        r = level(c.client("n1", timeout=60, single_connection_client=True), write="all")
        values = {f"a{i}": bytes([65 + i]) * (bulk - i) for i in range(12)}
        for k, v in values.items():
            assert r.set(k, v) is True
        c.kill("n3")
        shutil.rmtree(c.config.nodes["n3"].data_dir)  # its disk was replaced: it starts empty
        c.config.options.anti_entropy_ms = 100  # n3 alone runs rounds: it asks, the others answer
        c.config.save(tmp_path / "n3.toml")
        c.start("n3", config_path=tmp_path / "n3.toml")
        one = level(c.client("n3", timeout=60, single_connection_client=True), read="one")
        wait_for(lambda: all(one.get(k) == v for k, v in values.items()), 60, "anti-entropy to refill n3")
        c.assert_no_peer_link_closed()
        for node in c.config.nodes:
            assert "exceeds the limit" not in c.log_text(node), node
    finally:
        c.close()


def test_a_multi_key_read_of_large_values_answers_under_the_frame_limit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 9: an MGET at QUORUM and at ALL of six values of about 1 MiB (6 MiB, twice the peer
    frame limit of 3 MiB here: ``max_bulk_len`` 1 MiB, ``REPLIKV_PEER_FRAME_SLACK_BYTES`` 2 MiB)
    answers every value: the replicas send their answers in parts that fit a frame. One answer
    of them all closed the link, and the read failed with the level's error."""
    bulk = limit_peer_frames(monkeypatch)
    c = ll_cluster(tmp_path / "c", max_bulk_len=bulk, anti_entropy_ms=0, read_repair_pct=0)
    try:
        w = level(c.client("n1", timeout=60, single_connection_client=True), write="all")
        values = {f"g{i}": bytes([65 + i]) * (bulk - i) for i in range(6)}
        for k, v in values.items():
            assert w.set(k, v) is True
        keys = [*values, "missing"]
        for read in ("quorum", "all"):
            r = level(c.client("n2", timeout=60, single_connection_client=True), read=read)
            assert r.mget(keys) == [*values.values(), None], read
        c.assert_no_peer_link_closed()
    finally:
        c.close()
