"""Write the seed corpus of every fuzz target under tests/fuzz/corpus/<target>/
from the real encoders (run from the repository root; the output is committed).

    python tests/fuzz/make_corpus.py
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import msgpack  # noqa: E402

from replikv.config import ClusterConfig, NodeAddress, NodeOptions  # noqa: E402
from replikv.core.raft import codec as raft_codec  # noqa: E402
from replikv.core.shipping import messages as sm  # noqa: E402
from replikv.core.shipping.effects import Send  # noqa: E402
from replikv.core.shipping.node import ShippingNode  # noqa: E402
from replikv.runtime.txn_service import _SHAPES as TXN_SHAPES  # noqa: E402
from replikv.storage.meta import encode_meta  # noqa: E402
from replikv.storage.snapshot import write_snapshot  # noqa: E402
from replikv.storage.wal import WriteAheadLog  # noqa: E402
from tests.unit.raft.test_codec import EVERY_MESSAGE  # noqa: E402

OUT = Path(__file__).resolve().parent / "corpus"


def put(target: str, data: bytes) -> None:
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    for cmd in (b"*1\r\n$4\r\nPING\r\n", b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n", b"PING\r\n",
                b"set k v\r\nget k\r\n", b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nQUIT\r\n",
                b"*1000000000\r\n", b"*2\r\n$-1\r\n$0\r\n\r\n", b'"quoted arg" \'x\'\r\n'):
        put("resp", bytes([len(cmd) // 2]) + cmd)
    for msg in EVERY_MESSAGE:
        put("raft", raft_codec.encode(msg))  # type: ignore[arg-type]
    leader = ShippingNode("n1", ["n2"], epoch=1, leader="n1")
    effects = leader.step(sm.SyncRequest(sender="n2", epoch=1, last_index=0, epoch_starts=[]), 0)
    effects += leader.propose([[[b"SET", b"k", b"v"]], [[b"DEL", b"k"]]], 0)[1] + leader.tick(100)
    for e in effects:
        if isinstance(e, Send):
            put("shipping", sm.encode(e.msg))
    put("shipping", sm.encode(sm.Ack(sender="n2", epoch=1, durable_index=2)))
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "wal"
        log = WriteAheadLog(d, segment_bytes=200)
        list(log.recover())
        for i in range(1, 12, 3):
            log.append_entries(i, [[1, [[b"SET", b"k%d" % j, b"v"]]] for j in range(i, i + 3)])
            log.commit()
        log.close()
        segs = sorted(d.glob("wal-*.log"))
        put("wal", bytes([len(segs[0].read_bytes()) % 256]) + segs[0].read_bytes() + segs[1].read_bytes())
        for seg in segs[:3]:
            put("wal", bytes([255]) + seg.read_bytes())
        snap = write_snapshot(Path(tmp) / "snaps", 5, 1, b"\x92\x90\x80")
        put("snapshot", snap.read_bytes())
        put("meta", encode_meta({"epoch": 3, "leader": "n1", "led_epochs": [1, 3]}))
        put("meta", encode_meta({"term": 7, "vote": 2, "commit": 40}))
        cfg = ClusterConfig(mode="raft", secret="s", initial_leader="n1", options=NodeOptions(requirepass="p"),
                            nodes={"n1": NodeAddress("n1", "127.0.0.1", 7001, 17001, "/d/n1"),
                                   "n2": NodeAddress("n2", "127.0.0.1", 7002, 17002, "/d/n2", tls_port=7102)})
        put("config", cfg.dump().encode())
    ops = sorted(TXN_SHAPES)  # the txn target's first byte picks the step (tests/fuzz/harnesses.py)
    for op, body in ((b"PREPARE", [b"n1.1.1", 5, 1005, 0, [0, 1], [[b"INCRBY", b"a", b"1"], [b"GET", b"b"]],
                                   [[b"a", 3]], False, False]),
                     (b"COMMIT", [b"n1.1.1", 5, 1005, [0, 1], [[b"SET", b"k", b"v"], [b"LPUSH", b"l", b"x"]], [],
                                  True]),
                     (b"DECIDE", [b"n1.1.1", "recover", 1005, [0, 1]]), (b"RESOLVE", [b"n1.1.1", True]),
                     (b"FORGET", [[b"n1.1.1", b"n2.1.7"]])):
        put("txn", bytes([ops.index(op)]) + msgpack.packb(body))
    print(f"wrote {sum(1 for _ in OUT.rglob('*') if _.is_file())} seeds under {OUT}")


if __name__ == "__main__":
    main()
