"""The wire form of multi-leader messages (core/multileader/codec.py)."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replikv.core.multileader.codec import Decoder, MlCodecError, decode, encode, encode_ops, encode_ops_frames, pack_op
from replikv.core.multileader.messages import MlMsg, Op, Ops, State, StateAck, StateChunk, Sync

MSGS: list[MlMsg] = [
    Sync(sender="n1", vv={"n1": 3, "n2": 0}, matrix={"n2": {"n1": 2}, "n3": {}}),
    Ops(sender="n2", ops=(Op(origin="n1", seq=1, hlc=17, deps={"n1": 0}, payload=(("incr", "k", 2),)),
                          Op(origin="n3", seq=4, hlc=18, deps={"n3": 3, "n1": 1}, payload={"b": b"\x00"}))),
    Ops(sender="n2", ops=()),
    State(sender="n3", vv={"n1": 9}, blob=b"\x01\x02"),
    StateChunk(sender="n1", transfer=7, index=2, vv={"n1": 9}, at={"n1": 11, "n2": 1}, keys=b"\x90", last=True),
    StateAck(sender="n2", transfer=7, count=3),
]


@pytest.mark.parametrize("msg", MSGS)
def test_round_trip(msg: MlMsg) -> None:
    assert decode(encode(msg)) == msg


BAD = [
    b"", b"\xc1", b"\x91", msgpack.packb([]), msgpack.packb([9, "a"]), msgpack.packb({"a": 1}),
    msgpack.packb([1, "a", {"x": -1}, {}]), msgpack.packb([1, "", {}, {}]), msgpack.packb([1, "a", [], {}]),
    msgpack.packb([1, "a", {"x": True}, {}]), msgpack.packb([1, "a", {}, {"b": 3}]),
    msgpack.packb([2, "a", [["o", 0, 0, {}, None]]]),  # seq 0
    msgpack.packb([2, "a", [["o", 2, 0, {"o": 0}, None]]]),  # deps[o] != seq - 1
    msgpack.packb([2, "a", [["o", 1, 0, {"o": 0}]]]), msgpack.packb([2, "a", "ops"]),
    msgpack.packb([3, "a", {}, "not bytes"]), msgpack.packb([3, "a", {}]),
    msgpack.packb([1, "a", {}, {}]) + b"\x00",  # trailing bytes
    msgpack.packb([1, "a", {"x": 2**64 - 1}, {}]),
    msgpack.packb([4, "a", 1, 0, {"x": 2}, {"x": 1}, b"", False]),  # at does not cover vv
    msgpack.packb([4, "a", 1, -1, {}, {}, b"", False]), msgpack.packb([4, "a", 1, 0, {}, {}, "s", False]),
    msgpack.packb([4, "a", 1, 0, {}, {}, b"", 1]), msgpack.packb([4, "a", 1, 0, {}, {}, b""]),
    msgpack.packb([5, "a", 1, -1]), msgpack.packb([5, "a", 1]),
]


@pytest.mark.parametrize("data", BAD)
def test_garbage_raises_the_typed_error(data: bytes) -> None:
    with pytest.raises(MlCodecError):
        decode(data)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise_anything_else(data: bytes) -> None:
    try:
        decode(data)
    except MlCodecError:
        pass


_leaf = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=5) | st.binary(max_size=5)
_values = st.recursive(_leaf, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=12)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from([1, 2, 3, 6, 0, "x"]), st.lists(_values, max_size=4))
def test_random_structures_never_raise_anything_else(tag: object, rest: list[object]) -> None:
    try:
        decode(msgpack.packb([tag, *rest]))
    except MlCodecError:
        pass


def test_ops_of_older_nodes_still_decode_and_new_ones_use_their_own_tag() -> None:
    """An older node's ``Ops`` frame (tag 2, an overwrite as ``del`` + ``set`` + ``ttl``) is
    still understood; ours go under tag 6, which older nodes refuse (their ``decode`` raises on
    an unknown tag: the frame is dropped with a warning), because they may carry ``put``."""
    triple = (("del", b"k", {}, {}), ("set", b"k", b"v", None, None), ("ttl", b"k", None))
    old = msgpack.packb([2, "n1", [["n1", 1, 5, {"n1": 0}, triple]]], use_bin_type=True)
    assert decode(old) == Ops(sender="n1", ops=(Op(origin="n1", seq=1, hlc=5, deps={"n1": 0}, payload=triple),))
    op = Op(origin="n1", seq=1, hlc=5, deps={"n1": 0}, payload=(("put", b"k", b"v", None),))
    for frame in (encode(Ops(sender="n1", ops=(op,))), encode_ops("n1", [pack_op(op)])):
        assert msgpack.unpackb(frame)[0] == 6
        assert decode(frame) == Ops(sender="n1", ops=(op,))


def test_ops_payload_arrays_decode_as_tuples() -> None:
    """A received op's payload holds its arrays as tuples, nested ones too (``_decode_ops``:
    cheaper to build than lists, and the cyclic GC stops tracking a tuple of atoms), whatever
    the sender packed; every reader of a payload only indexes or unpacks it."""
    payload = [["put", b"k", b"v", None], ["del", b"k", [["n1", 1]], {"f": [1, 2]}]]
    op = Op(origin="n1", seq=1, hlc=5, deps={"n1": 0}, payload=payload)
    (got,) = decode(encode_ops("n2", [pack_op(op)])).ops
    assert got.payload == (("put", b"k", b"v", None), ("del", b"k", (("n1", 1),), {"f": (1, 2)}))
    assert type(got.payload) is tuple and all(type(m) is tuple for m in got.payload)


def test_ops_the_receiver_has_are_left_out_undecoded() -> None:
    """``decode(frame, have)``: the ops ``have`` covers are not built (duplicates), only counted,
    with the highest seq per origin; the frame must still be well formed around them."""
    ops = [Op(origin="n1", seq=s, hlc=s, deps={"n1": s - 1, "n2": 4}, payload=(("incr", b"k", 1),))
           for s in (1, 2, 3)] + [Op(origin="n2", seq=5, hlc=9, deps={"n1": 3, "n2": 4}, payload=None)]
    frame = encode(Ops(sender="n2", ops=tuple(ops)))
    assert decode(frame) == Ops(sender="n2", ops=tuple(ops))
    got = decode(frame, {"n1": 2, "n2": 9})
    assert got.ops == (ops[2],) and got.dropped == 3 and got.covered == {"n1": 2, "n2": 5}
    assert got.packed == (pack_op(ops[2]),)  # its bytes as the WAL holds them: not packed again
    assert decode(frame).packed == tuple(pack_op(o) for o in ops)
    with pytest.raises(MlCodecError):
        decode(frame + b"\x00", {"n1": 9, "n2": 9})  # trailing bytes
    with pytest.raises(MlCodecError):
        decode(frame[:-3], {"n1": 9, "n2": 9})  # cut short inside a skipped op


def test_a_decoder_reads_frame_after_frame_and_starts_clean_after_a_bad_one() -> None:
    """``Decoder`` keeps one unpacker for every frame: each decodes as ``decode`` would (the
    ops, their bytes, what ``have`` left out), and a frame it rejects (cut short, trailing
    bytes, a bad op) leaves nothing behind that the next frame would be read with."""
    ops = [Op(origin="n1", seq=s, hlc=s, deps={"n1": s - 1, "n2": 4}, payload=(("put", b"k%d" % s, b"v", None),))
           for s in (1, 2, 3)]
    frames = [encode(Ops(sender="n1", ops=tuple(ops[:k]))) for k in (1, 3, 2)]
    dec = Decoder()
    for have in (None, {"n1": 1}):
        for frame in frames:
            got, want = dec.decode(frame, have), decode(frame, have)
            assert got == want and got.packed == want.packed
    for bad in (frames[1][:-3], frames[1] + b"\x93", msgpack.packb([6, "n1", [["n1", 2, 0, {"n1": 0}, None]]])):
        with pytest.raises(MlCodecError):
            dec.decode(bad)
        got = dec.decode(frames[1])  # the bytes the bad frame left unread are gone
        assert got == decode(frames[1]) and got.packed == tuple(pack_op(o) for o in ops)
    for msg in MSGS:  # every other message as decode reads it
        assert dec.decode(encode(msg)) == msg


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_ops_frames_never_raise_anything_else(tail: bytes) -> None:
    for head in (b"\x93\x06", b"\x93\x02"):
        for have in (None, {"n1": 5}):
            try:
                decode(head + tail, have)
            except MlCodecError:
                pass


def test_ops_frames_fit_the_limit_and_carry_every_op_in_order() -> None:
    """Issue 9: ``encode_ops_frames`` cuts an ``Ops`` frame where it would pass the transport's
    frame limit; ops that fit together stay one frame, and an op above the limit alone is a
    frame of its own."""
    ops = [Op(origin="n1", seq=i + 1, hlc=i + 1, deps={"n1": i}, payload=(("set", b"k", b"v" * (100 * (i % 4))),))
           for i in range(20)]
    packed = [pack_op(op) for op in ops]
    assert encode_ops_frames("n1", packed, 1 << 20) == [encode_ops("n1", packed)]
    limit = 700
    frames = encode_ops_frames("n1", packed, limit)
    assert len(frames) > 3 and all(len(f) <= limit for f in frames)
    assert [op for f in frames for op in decode(f).ops] == ops  # type: ignore[union-attr]
    big = Op(origin="n1", seq=21, hlc=21, deps={"n1": 20}, payload=(("set", b"k", b"x" * 1000),))
    frames = encode_ops_frames("n1", [*packed[:2], pack_op(big), packed[2]], limit)
    assert [[op.seq for op in decode(f).ops] for f in frames] == [[1, 2], [21], [3]]  # type: ignore[union-attr]
