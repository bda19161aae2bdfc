"""core/dynamo: the writes no reply waits for (ONE) and their acks (replica.py, "Held sends";
messages.py, ``Puts.unawaited``, ``FEATURE_PUTS_UNAWAITED``): a ``Puts`` of such writes only says
so, to a peer that announced the feature; its replica's ``PutAcks`` is then unawaited too (a
driver may hold it); a peer of an older version gets the ``Puts`` as before and acks at once;
``held_sends`` splits a flush's sends by the rule."""

from __future__ import annotations

import msgpack
import pytest

from replikv.core.dynamo import messages as dm
from replikv.core.dynamo.replica import Send, held_sends
from tests.unit.dynamo.test_batched_writes import frames_to, replica, write


def announce(r, peer: str, features: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    r.step(peer, dm.Hello(features=features), 0, 0)


def test_the_wire_form_round_trips_and_an_older_reader_keeps_its_form() -> None:
    marked = dm.Puts(writes=((1, b"d1"), (7, b"d2")), unawaited=True)
    assert dm.decode(dm.encode(marked)) == marked
    plain = dm.Puts(writes=((1, b"d1"),))
    assert msgpack.unpackb(dm.encode(plain)) == [15, [[1, b"d1"]]]  # the form an older node reads
    assert dm.decode(dm.encode(plain)) == plain and not dm.decode(dm.encode(plain)).unawaited
    for bad in ([15, [[1, b"d"]], False], [15, [[1, b"d"]], 1], [15, [[1, b"d"]], True, True]):
        with pytest.raises(dm.DynamoCodecError):
            dm.decode(msgpack.packb(bad))


def test_writes_at_one_go_as_an_unawaited_puts_and_are_acked_by_an_unawaited_putacks() -> None:
    n1, n2 = replica("n1"), replica("n2")
    announce(n1, "n2", dm.FEATURES)
    announce(n2, "n1", dm.FEATURES)
    out = [*write(n1, 1, 10, b"SET", b"a", b"1", needed=1), *write(n1, 2, 11, b"SET", b"b", b"2", needed=1)]
    assert all(e.unawaited for e in out if isinstance(e, Send))
    [[puts]] = frames_to(n1, out, "n2")
    assert puts == dm.Puts(writes=puts.writes, unawaited=True) and len(puts.writes) == 2
    back = n2.step("n1", puts, 12, 12_000)
    [ack] = [e for e in back if isinstance(e, Send)]
    assert ack.msg == dm.PutAcks(ok=(1, 2), refused=()) and ack.unawaited  # may be held
    later, release = held_sends([ack])
    assert later == [ack] and not release


def test_a_quorum_write_in_the_frame_makes_the_puts_awaited_and_its_ack_leave_at_once() -> None:
    n1, n2 = replica("n1"), replica("n2")
    announce(n1, "n2", dm.FEATURES)
    out = [*write(n1, 1, 10, b"SET", b"a", b"1", needed=1), *write(n1, 2, 11, b"SET", b"b", b"2", needed=2)]
    later, release = held_sends([e for e in out if isinstance(e, Send)])
    assert release and {s.msg.req for s in later} == {1}  # the QUORUM write takes the ONE one along
    [[puts]] = frames_to(n1, out, "n2")
    assert not puts.unawaited and [req for req, _ in puts.writes] == [1, 2]  # in order
    [ack] = [e for e in n2.step("n1", puts, 12, 12_000) if isinstance(e, Send)]
    assert not ack.unawaited
    assert held_sends([ack]) == ([], False)  # an ack: at once, and it takes no held send along


def test_a_peer_of_an_older_version_gets_the_puts_it_reads_and_acks_at_once() -> None:
    """n2 announced ``FEATURE_PUTS`` but not ``FEATURE_PUTS_UNAWAITED`` (the version before it):
    the ONE writes still go as one ``Puts``, in the form it decodes, and its ack is awaited."""
    n1 = replica("n1")
    old = tuple(f for f in dm.FEATURES if f != dm.FEATURE_PUTS_UNAWAITED)
    announce(n1, "n2", old)
    announce(n1, "n3", dm.FEATURES)
    out = [*write(n1, 1, 10, b"SET", b"a", b"1", needed=1), *write(n1, 2, 11, b"SET", b"b", b"2", needed=1)]
    [[to_old]] = frames_to(n1, out, "n2")
    [[to_new]] = frames_to(n1, out, "n3")
    assert to_new.unawaited and not to_old.unawaited and to_old.writes == to_new.writes
    for to, frame in n1.frames([e for e in out if isinstance(e, Send)], 1 << 20):
        if to == "n2":
            assert len(msgpack.unpackb(frame)) == 2  # [tag, writes]: what the older node decodes
    n2 = replica("n2")
    [ack] = [e for e in n2.step("n1", to_old, 12, 12_000) if isinstance(e, Send)]
    assert not ack.unawaited  # it does not know: acked at once, as before
