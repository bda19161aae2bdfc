"""runtime/peer_features.py: what each peer's version reads, learned from the peer (a rolling
upgrade sends newer wire forms only to peers that announced them)."""

from __future__ import annotations

import msgpack
import pytest

from replikv.runtime.peer_features import PeerFeatures


def test_each_side_learns_the_others_features_whichever_connection_came_up_first() -> None:
    a, b = PeerFeatures(("x", "y")), PeerFeatures(("y",))
    assert not a.has("b", "y") and not b.has("a", "x")  # nothing announced yet: the older forms
    answer = b.received("a", a.hello())  # a's connection to b came up first
    assert answer is not None and b.has("a", "x") and b.has("a", "y")
    assert a.received("b", answer) is None  # an answer is not answered again
    assert a.has("b", "y") and not a.has("b", "x")


def test_a_peer_is_forgotten_when_its_connection_drops_until_it_announces_again() -> None:
    a, b = PeerFeatures(("x",)), PeerFeatures(("x",))
    a.received("b", b.hello())
    assert a.has("b", "x")
    a.forget("b")  # it may come back as an older version
    assert not a.has("b", "x")
    older = PeerFeatures(())  # comes back announcing nothing new
    a.received("b", older.hello())
    assert not a.has("b", "x")


@pytest.mark.parametrize("body", [b"\xc1", msgpack.packb("x"), msgpack.packb([["x"]]), msgpack.packb([["x"], 1]),
                                  msgpack.packb([[1], True]), msgpack.packb([["x"] * 65, True]),
                                  msgpack.packb([b"x", True])])
def test_garbage_is_a_value_error_and_records_nothing(body: bytes) -> None:
    a = PeerFeatures(("x",))
    with pytest.raises(ValueError):
        a.received("b", body)
    assert not a.has("b", "x")
