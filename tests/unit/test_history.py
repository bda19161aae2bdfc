"""History format: load / dump round trip, gzip, and errors that name the line."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from replikv.check.history import (
    FINAL_PROCESS,
    NEMESIS_PROCESS,
    HistoryFile,
    HistoryFormatError,
    HistoryWriter,
    Op,
    by_key,
    dump_history,
    load_history,
    op_from_json,
    op_to_json,
)

HISTORIES = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "histories"

OPS = [
    Op(0, "write", "k1", "a", None, True, 10, 20),
    Op(1, "read", "k1", "a", None, True, 15, 25),
    Op(2, "cas", "k1", "b", "a", False, 30, 31),
    Op(3, "cas", "k2", "c", None, None, 40, None),
    Op(4, "incr", "k3", None, None, True, 50, 60),  # another workload's op
]


def test_op_to_json_key_order_and_expected_only_for_cas() -> None:
    assert list(op_to_json(OPS[0])) == ["process", "op", "key", "value", "ok", "call", "return"]
    assert list(op_to_json(OPS[2])) == [
        "process",
        "op",
        "key",
        "value",
        "expected",
        "ok",
        "call",
        "return",
    ]
    assert op_to_json(OPS[3])["expected"] is None
    assert op_to_json(OPS[3])["return"] is None


def test_round_trip_plain_and_gzip(tmp_path: Path) -> None:
    for name in ("h.jsonl", "h.jsonl.gz"):
        path = tmp_path / name
        dump_history(OPS, path)
        assert load_history(path) == OPS
        assert [op_from_json(op_to_json(op)) for op in OPS] == OPS
    with gzip.open(tmp_path / "h.jsonl.gz", "rt") as f:
        assert json.loads(f.readline())["op"] == "write"


def test_dump_reproduces_the_shared_format_byte_for_byte(tmp_path: Path) -> None:
    src = HISTORIES / "small.ok.jsonl"
    if not src.exists():
        pytest.skip(f"shared test data not found at {HISTORIES}")
    out = tmp_path / "copy.jsonl"
    dump_history(load_history(src), out)
    assert out.read_bytes() == src.read_bytes()


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text("\n" + json.dumps(op_to_json(OPS[0])) + "\n\n")
    assert load_history(path) == [OPS[0]]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (
            '{"process": 1, "op": "read", "key": "k", "value": null, "ok": true, "call": 1}',
            "missing field(s) 'return'",
        ),
        (
            '{"process": 1, "op": "cas", "key": "k", "value": "v", "ok": true, "call": 1,'
            ' "return": 2}',
            "missing field(s) 'expected'",
        ),
        (
            '{"process": 1, "op": "read", "key": "k", "value": null, "ok": true, "call": 1,'
            ' "return": 2, "node": 3}',
            "unknown field(s) 'node'",
        ),
        (
            '{"process": "p", "op": "read", "key": "k", "value": null, "ok": true, "call": 1,'
            ' "return": 2}',
            "'process' must be an integer",
        ),
        (
            '{"process": 1, "op": "read", "key": "k", "value": 5, "ok": true, "call": 1,'
            ' "return": 2}',
            "'value' must be a string or null",
        ),
        (
            '{"process": 1, "op": "read", "key": "k", "value": null, "ok": 1, "call": 1,'
            ' "return": 2}',
            "'ok' must be true, false or null",
        ),
        (
            '{"process": 1, "op": "read", "key": "k", "value": null, "ok": true, "call": 1,'
            ' "return": null}',
            "needs a 'return' time",
        ),
        (
            '{"process": 1, "op": "read", "key": "k", "value": null, "ok": true, "call": 5,'
            ' "return": 2}',
            "is before 'call'",
        ),
        (
            '{"process": 1, "op": "", "key": "k", "value": null, "ok": true, "call": 1,'
            ' "return": 2}',
            "'op' must be a non-empty string",
        ),
    ],
)
def test_malformed_line_is_named(tmp_path: Path, line: str, reason: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(op_to_json(OPS[0])) + "\n" + line + "\n")
    with pytest.raises(HistoryFormatError) as info:
        load_history(path)
    assert "bad.jsonl:2: " in str(info.value)
    assert reason in str(info.value)


def test_unknown_outcome_may_carry_a_return_time() -> None:
    op = op_from_json(
        {"process": 1, "op": "write", "key": "k", "value": "v", "ok": None, "call": 1, "return": 9}
    )
    assert op.ok is None and op.ret == 9


def test_writer_streams_and_history_file_reads_back_by_key(tmp_path: Path) -> None:
    ops = OPS + [Op(NEMESIS_PROCESS, "nemesis", "kill", "n1", None, True, 5, 70),
                 Op(FINAL_PROCESS, "final", "k1", json.dumps("a"), None, True, 80, 81)]
    path = tmp_path / "history.jsonl"
    writer = HistoryWriter(path, flush_every_s=0)
    for i, op in enumerate(ops[:3]):
        assert writer.append(op, now_ns=i + 1) == i
    # flushed as it goes: a reader sees the ops already written before close
    assert load_history(path) == ops[:3]
    for op in ops[3:]:
        writer.append(op, now_ns=10)
    writer.close()
    assert load_history(path) == ops

    hf = HistoryFile(path)
    try:
        assert len(hf) == len(ops) and list(hf) == ops
        assert hf[1] == ops[1] and hf[-1] == ops[-1] and hf[2:4] == ops[2:4]
        with pytest.raises(IndexError):
            hf[len(ops)]
        assert hf.nemesis_ops() == [ops[5]]
        from_file = [(g.key, g.indices, g.ops, g.final) for g in hf.by_key()]
        in_memory = [(g.key, g.indices, g.ops, g.final) for g in by_key(ops)]
        assert from_file == in_memory
        k1 = hf.ops_of("k1")
        assert k1.indices == [0, 1, 2] and k1.final == ops[6]
    finally:
        hf.close()


def test_history_file_names_a_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text(json.dumps(op_to_json(OPS[0])) + "\n\n{\"process\": 1}\n")
    with pytest.raises(HistoryFormatError, match=r"h.jsonl:3: missing field"):
        HistoryFile(path)
    # a line whose start looks right is decoded (and refused) when its key is read
    path.write_text(json.dumps(op_to_json(OPS[0])) + "\n" +
                    '{"process": 1, "op": "read", "key": "k1", "value": 7, "ok": true}\n')
    hf = HistoryFile(path)
    with pytest.raises(HistoryFormatError, match=r"h.jsonl:2: missing field"):
        hf.ops_of("k1")
    hf.close()
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert len(HistoryFile(empty)) == 0
