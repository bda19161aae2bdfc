"""runtime/pending.py: the one table of replies that wait with a deadline."""

from __future__ import annotations

from typing import Any

from replikv.core.replies import RespError
from replikv.runtime.pending import PendingReplies, SessionReads


class FakeSlot:
    def __init__(self, conn: "FakeConn") -> None:
        self.conn = conn
        self.data: bytes | None = None

    def resolve(self, data: bytes) -> None:
        assert self.data is None, "a slot is resolved once"
        self.data = data


class FakeConn:
    resp3 = False

    def __init__(self) -> None:
        self.slots: list[FakeSlot] = []

    def slot(self) -> Any:
        s = FakeSlot(self)
        self.slots.append(s)
        return s


def test_an_entry_is_answered_once_by_whoever_pops_it_or_by_its_deadline() -> None:
    table = PendingReplies()
    a, b = FakeConn(), FakeConn()
    table.add(1, a, deadline=10.0, on_expiry="TRYAGAIN late", payload="x")
    table.add(2, b, deadline=20.0, on_expiry="TRYAGAIN later")
    entry = table.pop(1)
    assert entry is not None and entry.payload == "x" and entry.conn is a
    assert table.pop(1) is None  # popped twice: one answerer
    assert not table.expire(15.0)  # 2 is not due yet
    assert table.expire(20.0)
    assert b.slots[0].data == b"-TRYAGAIN later\r\n"
    assert len(table) == 0 and not table


def test_fail_all_answers_every_entry_with_an_error_that_may_depend_on_it() -> None:
    table = PendingReplies()
    conns = [FakeConn() for _ in range(3)]
    for rid, conn in enumerate(conns):
        table.add(rid, conn, deadline=99.0, on_expiry="unused")
    assert table.fail_all(lambda rid, _: RespError(f"ERR {rid}"))
    assert [c.slots[0].data for c in conns] == [b"-ERR 0\r\n", b"-ERR 1\r\n", b"-ERR 2\r\n"]
    assert not table.fail_all(RespError("ERR none left"))


def test_session_reads_are_served_when_the_position_is_applied_or_refused_stale() -> None:
    reads = SessionReads(timeout_ms=500, what="this follower")
    early, late = FakeConn(), FakeConn()
    reads.add(5, early, b"GET a", now=0.0)
    reads.add(9, late, b"GET b", now=0.0)
    reads.release(6, lambda payload: payload)
    assert early.slots[0].data == b"$5\r\nGET a\r\n" and late.slots[0].data is None
    assert not reads.expire(0.4, applied=6)
    assert reads.expire(0.5, applied=6)
    assert late.slots[0].data == (b"-STALE session position 9 not reached within 500 ms "
                                  b"(this follower has applied 6)\r\n")
    assert not reads
