"""Fuzz targets (atheris): what may happen to each decoder on hostile bytes.

Each target takes bytes and either returns normally or raises one of the
errors its module documents; anything else (IndexError, KeyError,
RecursionError, a parse that depends on how the input is split, a decode
that does not round-trip) is a crash the fuzzer reports. ``TARGETS`` maps a
name to ``(function, the exceptions it may raise)``.

Run one: ``python tests/fuzz/run.py resp -atheris_runs=100000 tests/fuzz/corpus/resp``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from replikv.config import ClusterConfig, ConfigError
from replikv.core.raft import codec as raft_codec
from replikv.core.resp import ProtocolError, RequestParser
from replikv.core.shipping import messages as shipping
from replikv.storage.errors import StorageError
from replikv.storage.meta import decode_meta
from replikv.storage.snapshot import read_snapshot_file
from replikv.storage.wal import WriteAheadLog, apply_repair, plan_repair, segment_name

_TMP = Path(tempfile.mkdtemp(prefix="replikv-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))


def resp(data: bytes) -> None:
    """Whole and split at a point the input chooses, the same commands or the same error."""
    if not data:
        return
    cut = data[0] % len(data)
    body = data[1:]
    results = []
    for pieces in ([body], [body[:cut], body[cut:]]):
        parser = RequestParser(max_bulk_len=4096, max_args=64, max_inline_len=256)
        out: list[list[bytes]] = []
        error = None
        for piece in pieces:
            parser.feed(piece)
            try:
                out += parser.commands()
            except ProtocolError as e:
                out += e.commands
                error = "error"
                break
        results.append((out, error))
    whole, split = results
    if whole[1] is None and split[1] is None:
        assert whole[0] == split[0], (body, cut)


def shipping_frame(data: bytes) -> None:
    msg = shipping.decode(data)
    assert shipping.decode(shipping.encode(msg)) == msg


def raft_frame(data: bytes) -> None:
    msg = raft_codec.decode(data)
    assert raft_codec.decode(raft_codec.encode(msg)) == msg


def wal(data: bytes) -> None:
    """Bytes as one or two segment files: recover reads them or refuses them; a
    repair plan, once applied, leaves a log that recovers."""
    d = _TMP / "wal"
    if d.exists():
        for p in d.iterdir():
            p.unlink()
    else:
        d.mkdir()
    cut = data[0] % (len(data) + 1) if data else 0
    (d / segment_name(1)).write_bytes(data[:cut])
    if cut < len(data):
        (d / segment_name(1 + (data[-1] % 4))).write_bytes(data[cut:])
    try:
        log = WriteAheadLog(d)
        for _ in log.recover():
            pass
        log.close()
        return
    except StorageError:
        pass
    plan = plan_repair(d)
    if plan is not None:
        apply_repair(d, plan)
        log = WriteAheadLog(d)
        for _ in log.recover():
            pass
        log.close()


def snapshot(data: bytes) -> None:
    path = _TMP / "snapshot-00000000000000000001.snap"
    path.write_bytes(data)
    read_snapshot_file(path)


def meta(data: bytes) -> None:
    decode_meta(data)


def config(data: bytes) -> None:
    """A config that loads saves to a file that loads as the same config."""
    path = _TMP / "cluster.toml"
    path.write_bytes(data)
    loaded = ClusterConfig.load(path)
    saved = _TMP / "saved.toml"
    loaded.save(saved)
    again = ClusterConfig.load(saved)
    assert again == loaded, (data, saved.read_bytes())  # source is not compared


def txn_step(data: bytes) -> None:
    """A transaction step from a peer: ``checked_step`` refuses it (RespError), or the entry it
    becomes applies to a group without raising (nothing malformed reaches a log)."""
    from replikv.core.replies import RespError
    from replikv.core.txn import TxnTable
    from replikv.kv.state_machine import StateMachine
    from replikv.runtime.txn_entries import apply_txn, txn_entry
    from replikv.runtime.txn_service import _SHAPES, checked_step, command_keys
    from replikv.runtime.raft_app import prepare_items

    if not data:
        return
    ops = sorted(_SHAPES)
    op = ops[data[0] % len(ops)]
    try:
        body = checked_step(op, data[1:], {0: None, 1: None, 2: None})
    except RespError:
        return
    table, sm = TxnTable(), StateMachine()
    if op in (b"PREPARE", b"COMMIT"):
        commands = body[5] if op == b"PREPARE" else body[4]
        items, keys = prepare_items(sm, commands, 1, "n1"), command_keys(commands)
        fields = ([*body[:5], items, keys, *body[6:]] if op == b"PREPARE"
                  else [*body[:4], items, keys, *body[5:]])
    else:
        fields = body
    apply_txn(table, sm, txn_entry(op.decode().lower(), 1, *fields), 1, lambda keys: False, {})


TARGETS: dict[str, tuple[Callable[[bytes], None], tuple[type[BaseException], ...]]] = {
    "resp": (resp, ()),
    "shipping": (shipping_frame, (ValueError,)),
    "raft": (raft_frame, (ValueError,)),
    "wal": (wal, (StorageError,)),
    "snapshot": (snapshot, (StorageError,)),
    "meta": (meta, (StorageError,)),
    "config": (config, (ConfigError,)),
    "txn": (txn_step, ()),
}
