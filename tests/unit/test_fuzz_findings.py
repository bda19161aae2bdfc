"""Regression tests for what the fuzz harnesses (tests/fuzz) found, one per
finding, written against the real code without atheris. The inputs
themselves also stay in tests/fuzz/corpus/<target>/ (``crash-*``), where
every fuzz run replays them."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import msgpack
import pytest
from crc32c import crc32c

from replikv.config import ClusterConfig, ConfigError, NodeAddress, NodeOptions
from replikv.core.resp import ProtocolError, RequestParser, encode_command
from replikv.core.shipping import messages as shipping
from replikv.runtime import forwarding
from replikv.storage.errors import CorruptLogError
from replikv.storage.wal import (
    HEADER_BYTES,
    INTENT_FILE,
    SEGMENT_HEADER_BYTES,
    WriteAheadLog,
    apply_repair,
    encode_record,
    encode_seal,
    plan_repair,
    segment_name,
)

# ------------------------------------------------------------------ RESP parser


@pytest.mark.parametrize(
    "pieces", [[b"*1000000000\r\n"], [b"*10000", b"00000\r\n"], [b"*", b"9999999\r\n"]]
)
def test_a_huge_array_header_is_refused_without_allocating_for_it(pieces: list[bytes]) -> None:
    parser = RequestParser()  # max_args 1048576: hiredis used to allocate the list first (8 GB)
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError, match="invalid multibulk length"):
            for piece in pieces:
                parser.feed(piece)
                parser.commands()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024


def test_arrays_with_as_many_digits_as_max_args_still_parse() -> None:
    parser = RequestParser(max_args=1000)
    big = [b"k"] * 1000  # *1000: four digits, like max_args: parsed exactly, same result
    wire = encode_command([b"PING"]) + encode_command(big) + encode_command([b"GET", b"*12345"])
    parser.feed(wire)
    assert parser.commands() == [[b"PING"], big, [b"GET", b"*12345"]]


# ------------------------------------------------------------------ config loader

_CLUSTER = b'[cluster]\nsecret = "x"\n'
_NODE = b'[nodes.a]\nport = 7001\ndata_dir = "d"\n'


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (b"x\xd8", "not UTF-8"),
        (b"nodes = 5\n" + _CLUSTER, "[nodes] must be a table"),
        (b"cluster = 5\n" + _NODE, "[cluster] must be a table"),
        (_CLUSTER + b"[nodes]\na = 5\n", "[nodes.a] must be a table"),
        (_CLUSTER + b'[nodes.a]\nport = inf\ndata_dir = "d"\n', "infinity"),
        (_CLUSTER + b"[nodes]\n", "at least one node"),
        (_CLUSTER + b"x = " + b"[" * 3000 + b"]" * 3000 + b"\n" + _NODE, "nested too deeply"),
        (_CLUSTER + b"[options]\nack = 4\n" + _NODE, "ack must be a string"),
        (_CLUSTER + b"[options]\nrequirepass = 5\n" + _NODE, "requirepass must be a string"),
        (_CLUSTER + b"[options]\nheartbeat_ms = true\n" + _NODE, "heartbeat_ms must be an integer"),
        (_CLUSTER + b'[options]\nredirect = "yes"\n' + _NODE, "redirect must be true or false"),
    ],
)
def test_a_bad_cluster_toml_is_a_config_error(tmp_path: Path, toml: bytes, message: str) -> None:
    path = tmp_path / "cluster.toml"
    path.write_bytes(toml)
    with pytest.raises(ConfigError) as err:
        ClusterConfig.load(path)
    assert message in str(err.value)


@pytest.mark.parametrize("node_id", ["a b", "n.1", 'q"uote', "", "ü"])
def test_a_node_id_that_needs_quotes_survives_save_and_load(tmp_path: Path, node_id: str) -> None:
    node = NodeAddress(id=node_id, host="127.0.0.1", port=7001, peer_port=17001, data_dir="d")
    config = ClusterConfig(
        mode="raft",
        secret="s",
        initial_leader=node_id,
        nodes={node_id: node},
        options=NodeOptions(),
    )
    config.save(tmp_path / "cluster.toml")
    assert ClusterConfig.load(tmp_path / "cluster.toml") == config


# ------------------------------------------------------------------ WAL recovery and repair


def write_log(directory: Path, batches: int = 3) -> WriteAheadLog:
    """A log of ``batches`` one-entry records in one segment, closed."""
    log = WriteAheadLog(directory, fsync="always")
    list(log.recover())
    for i in range(1, batches + 1):
        log.append_entries(i, [[b"SET", b"k%d" % i, b"v"]])
        log.commit()
    log.close()
    return log


def recover_all(directory: Path) -> list[tuple[int, list[object]]]:
    log = WriteAheadLog(directory, fsync="always")
    try:
        return list(log.recover())
    finally:
        log.close()


def write_intent(directory: Path, intent: object) -> None:
    body = msgpack.packb(intent)
    (directory / INTENT_FILE).write_bytes(b"RKWI" + crc32c(body).to_bytes(4, "little") + body)


@pytest.mark.parametrize(
    "intent",
    [
        b"\xc1",  # checksum-valid bytes that are not msgpack (written raw below)
        ["truncate", 1],
        {"op": "truncate", "index": 1, "segment": 1, "offset": "x", "record": b""},
        {
            "op": "truncate",
            "index": 1,
            "segment": 99,
            "offset": 24,
            "record": b"",
        },  # no such segment
        {
            "op": "truncate",
            "index": 1,
            "segment": 1,
            "offset": 1 << 40,
            "record": b"",
        },  # past its end
        {"op": "reset", "next_index": 0},
        {"op": "compact"},
    ],
)
def test_a_checksum_valid_intent_that_replikv_never_writes_is_a_refusal(
    tmp_path: Path, intent: object
) -> None:
    write_log(tmp_path)
    if isinstance(intent, bytes):
        (tmp_path / INTENT_FILE).write_bytes(
            b"RKWI" + crc32c(intent).to_bytes(4, "little") + intent
        )
    else:
        write_intent(tmp_path, intent)
    before = (tmp_path / segment_name(1)).read_bytes()
    with pytest.raises(CorruptLogError, match=INTENT_FILE):
        recover_all(tmp_path)
    assert (tmp_path / segment_name(1)).read_bytes() == before  # nothing carried out


def test_repair_counts_the_records_before_an_index_gap(tmp_path: Path) -> None:
    write_log(tmp_path, batches=2)
    seg = tmp_path / segment_name(1)
    seg.write_bytes(seg.read_bytes() + encode_record(7, msgpack.packb([b"x"]), 1))  # 3 expected
    with pytest.raises(CorruptLogError, match="index gap"):
        recover_all(tmp_path)
    plan = plan_repair(tmp_path)
    assert plan is not None and plan.last_index_kept == 2  # it said 0: nothing kept
    apply_repair(tmp_path, plan)
    assert [first for first, _ in recover_all(tmp_path)] == [1, 2]


def test_repair_covers_a_checksum_valid_record_that_does_not_decode(tmp_path: Path) -> None:
    write_log(tmp_path, batches=2)
    seg = tmp_path / segment_name(1)
    seg.write_bytes(
        seg.read_bytes() + encode_record(3, b"\xc1", 1) + encode_record(4, msgpack.packb([1]), 1)
    )
    with pytest.raises(CorruptLogError, match="undecodable payload"):
        recover_all(tmp_path)
    plan = plan_repair(tmp_path)  # it found nothing to repair: the node could not start, ever
    assert plan is not None and plan.last_index_kept == 2 and "undecodable" in plan.damage
    apply_repair(tmp_path, plan)
    assert [first for first, _ in recover_all(tmp_path)] == [1, 2]


def test_repair_of_a_headerless_segment_bad_from_its_first_record(tmp_path: Path) -> None:
    write_log(tmp_path, batches=2)
    seg = tmp_path / segment_name(1)
    data = bytearray(seg.read_bytes()[SEGMENT_HEADER_BYTES:])  # format 0: records from byte 0
    data[HEADER_BYTES] ^= 0xFF  # the first record's payload: a checksum mismatch
    seg.write_bytes(bytes(data))
    with pytest.raises(CorruptLogError):
        recover_all(tmp_path)
    plan = plan_repair(tmp_path)
    assert plan is not None and plan.cut is None and [p.name for p, _ in plan.delete] == [seg.name]
    apply_repair(tmp_path, plan)  # it cut the file to 0 bytes, which recover refuses as emptied
    assert recover_all(tmp_path) == []


def test_repair_of_bytes_after_a_seal_removes_the_seal_too(tmp_path: Path) -> None:
    write_log(tmp_path, batches=2)
    seg = tmp_path / segment_name(1)
    seg.write_bytes(seg.read_bytes() + encode_seal(3) + b"junk")  # the next segment is gone too
    with pytest.raises(CorruptLogError, match="bytes after the seal"):
        recover_all(tmp_path)
    plan = plan_repair(tmp_path)
    assert plan is not None and plan.last_index_kept == 2
    apply_repair(tmp_path, plan)  # it cut after the seal, which then named a missing segment
    assert [first for first, _ in recover_all(tmp_path)] == [1, 2]


# ------------------------------------------------------------------ leader-follower frames


@pytest.mark.parametrize(
    "frame",
    [
        [1, "n1", 3, 40, 5, False],  # SyncRequest, epoch_starts = 5
        [1, "n1", 3, 40, [[]], False],  # a row that is not [epoch, first_index]
        [1, "n1", 3, 40, [[1, b"x"]], False],
        [6, "n1", 3, 30, 3, 5, [1]],  # SnapshotBegin
    ],
)
def test_a_frame_with_malformed_nested_fields_is_refused(frame: list[object]) -> None:
    with pytest.raises(ValueError, match="malformed"):
        shipping.decode(msgpack.packb(frame))


def test_well_formed_nested_fields_still_decode() -> None:
    msg = shipping.SyncRequest(sender="n1", epoch=3, last_index=40, epoch_starts=[[1, 1], [3, 30]])
    assert shipping.decode(shipping.encode(msg)) == msg


# ------------------------------------------------------------------ forwarding frames


@pytest.mark.parametrize(
    "body",
    [
        b"\xc1",  # not msgpack
        msgpack.packb([1, [["SET"]], False, False, "async", None, False, [], "quorum"]),  # a str argument
        msgpack.packb([1, [[]], False, False, "async", None, False, [], "quorum"]),  # an empty command
        msgpack.packb([1, [], False, False, "async", None, False, [], "quorum"]),  # no command
        msgpack.packb([1, [[b"GET", b"k"]], False, False, "async", [1], False, [], "quorum"]),  # client is [id, seq]
        msgpack.packb([1, [[b"GET", b"k"]], True, False, "async", None, False, [[b"k"]], "quorum"]),  # watch [key, since]
        msgpack.packb([1, [[b"GET", b"k"]], True, False, "async", None, False, [["k", 1]], "quorum"]),  # key not bytes
        msgpack.packb([1, [[b"GET", b"k"]], False, False, "async", None, False, [], 1]),  # read level not str
        msgpack.packb([1, [[b"GET", b"k"]], False, False, "async", None, False, []]),  # no read level
        msgpack.packb([1, [[b"GET", b"k"]], False]),  # too few fields
    ],
)
def test_a_malformed_forward_is_refused(body: bytes) -> None:
    with pytest.raises(ValueError, match="FORWARD"):
        forwarding._decode_forward(body)


def test_a_malformed_forward_reply_is_refused() -> None:
    with pytest.raises(ValueError, match="FORWARD_REPLY"):
        forwarding._decode_reply(msgpack.packb([1, "not bytes", 0]))
    assert forwarding._decode_reply(msgpack.packb([1, b"+OK\r\n", 7])) == [1, b"+OK\r\n", 7]


def test_a_well_formed_forward_decodes() -> None:
    fields = [3, [[b"SET", b"k", b"v"]], False, True, "quorum", [9, 2], False, [[b"k", 12]], "one"]
    assert forwarding._decode_forward(msgpack.packb(fields)) == fields
