"""Random stream workloads against redis-server 7.0 (a seeded differential fuzz).

Each step sends one random stream command (valid or not: odd ids, missing
keys and groups, a string key, every trimming option, entries large enough
to fill Redis's 4096-byte nodes) to Redis and to replikv's three write
paths, compares the replies, then compares what both hold: XINFO STREAM,
XINFO GROUPS, XPENDING (summary and entries) and XINFO CONSUMERS, with the
fields that hold a time (idle, seen-time) or Redis's radix-tree internals
(radix-tree-nodes) masked. It found several of the orderings fixed in
``kv/types/streams.py``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.differential.oracle import Differential
from tests.differential.test_streams import _hiredis

MASKED = {b"seen-time", b"idle"}
TOP = "18446744073709551615-18446744073709551615"
STATE = [
    ["XINFO", "STREAM", "s"], ["XINFO", "STREAM", "t"], ["XINFO", "GROUPS", "s"],
    ["XINFO", "GROUPS", "t"], ["XPENDING", "s", "g"], ["XPENDING", "t", "h"],
    ["XPENDING", "s", "h", "-", "+", "100"], ["XINFO", "CONSUMERS", "t", "g"],
]


def _mask(reply: Any) -> Any:
    """Time fields (after a masked name, XPENDING's idle column) become "T"."""
    if not isinstance(reply, list):
        return reply
    out = [_mask(v) for v in reply]
    for i in range(len(reply) - 1):
        if isinstance(reply[i], bytes) and reply[i] in MASKED:
            out[i + 1] = "T"
    if out and all(isinstance(r, list) and len(r) == 4 and isinstance(r[2], int) for r in out):
        out = [[r[0], r[1], "T", r[3]] for r in out]  # XPENDING entries: idle
    return out


class _Workload:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.top = {"s": 0, "t": 0, "str": 0}

    def sid(self) -> str:
        r = self.rng
        m = max(self.top.values()) + 2
        return r.choice([f"{r.randint(0, m)}-{r.randint(0, 2)}", str(r.randint(0, m)), "0", "-",
                         "+", f"({r.randint(0, m)}", "$", ">", "x", TOP, "0-0"])

    def fields(self) -> list[str]:
        r = self.rng
        out: list[str] = []
        for _ in range(r.randint(1, 3)):
            out += [r.choice(["f", "g", "1", "x" * r.randint(0, 80)]),
                    r.choice(["v", "12", "-5", "y" * r.randint(0, 300), "99999999999"])]
        return out

    def trim(self) -> list[str]:
        r = self.rng
        return r.choice([
            [], [], [], ["MAXLEN", str(r.randint(0, 300))], ["MAXLEN", "~", str(r.randint(0, 300))],
            ["MINID", self.sid()], ["MINID", "~", self.sid()],
            ["MAXLEN", "~", str(r.randint(0, 300)), "LIMIT", str(r.randint(0, 120))],
            ["NOMKSTREAM"],
        ])

    def xadd(self, k: str, trim: bool = True) -> list[str]:
        r = self.rng
        if r.random() < 0.95:
            self.top[k] += r.randint(1, 3)
            n = self.top[k]
            sid = r.choice([f"{n}-*", f"{n}-{r.randint(0, 5)}", str(n)])
            return ["XADD", k, *(self.trim() if trim else []), sid, *self.fields()]
        odd = r.choice(["0-0", "x", "1", f"{self.top[k]}-0", "+", "-", "(1"])
        return ["XADD", k, *self.trim(), odd, *self.fields()]  # mostly refused

    def command(self) -> list[str]:
        r = self.rng
        k, g, c = r.choice(["s", "t", "str"]), r.choice(["g", "h"]), r.choice(["a", "b", "c", ""])
        sid = self.sid
        ops: list[tuple[float, Callable[[], list[str]]]] = [
            (8, lambda: self.xadd(k)),
            (1, lambda: ["XDEL", k, *[sid() for _ in range(r.randint(1, 3))]]),
            (1, lambda: ["XTRIM", k, *(self.trim() or ["MAXLEN", "2"])]),
            (1, lambda: ["XLEN", k]),
            (1, lambda: ["XRANGE", k, sid(), sid(), "COUNT", str(r.randint(-1, 4))]),
            (0.5, lambda: ["XRANGE", k, sid(), sid()]),
            (1, lambda: ["XREVRANGE", k, sid(), sid(), "COUNT", str(r.randint(-1, 4))]),
            (1, lambda: ["XREAD", "COUNT", str(r.randint(0, 3)), "STREAMS", k, sid()]),
            (1, lambda: ["XGROUP", "CREATE", k, g, sid(),
                         *r.choice([[], ["MKSTREAM"], ["ENTRIESREAD", str(r.randint(-1, 5))]])]),
            (1, lambda: ["XGROUP", "SETID", k, g, sid(),
                         *r.choice([[], ["ENTRIESREAD", str(r.randint(-1, 5))]])]),
            (0.3, lambda: ["XGROUP", "DESTROY", k, g]),
            (0.5, lambda: ["XGROUP", "CREATECONSUMER", k, g, c]),
            (0.5, lambda: ["XGROUP", "DELCONSUMER", k, g, c]),
            (3, lambda: ["XREADGROUP", "GROUP", g, c,
                         *r.choice([[], ["COUNT", str(r.randint(0, 3))], ["NOACK"]]), "STREAMS",
                         *([k, r.choice([">", ">", sid()])] if r.random() < 0.7
                           else ["s", "t", ">", r.choice([">", "0"])])]),
            (1, lambda: ["XACK", k, g, *[sid() for _ in range(r.randint(1, 3))]]),
            (1, lambda: ["XPENDING", k, g]),
            (1, lambda: ["XCLAIM", k, g, c, r.choice(["0", "100000"]),
                         *[sid() for _ in range(r.randint(1, 2))],
                         *r.choice([[], ["JUSTID"], ["FORCE"], ["RETRYCOUNT", "3"],
                                    ["LASTID", sid()], ["IDLE", "500000"], ["TIME", "12345"]])]),
            (1, lambda: ["XAUTOCLAIM", k, g, c, r.choice(["0", "100000"]), sid(),
                         *r.choice([[], ["COUNT", str(r.randint(1, 3))], ["JUSTID"]])]),
            (0.2, lambda: ["XSETID", k, sid(), *r.choice(
                [[], ["ENTRIESADDED", str(r.randint(0, 20))], ["MAXDELETEDID", sid()]])]),
            (0.05, lambda: ["DEL", k]),
            (0.1, lambda: ["SET", "str", "x"]),
        ]
        return r.choices([op for _, op in ops], weights=[w for w, _ in ops])[0]()


def _same(diff: Differential, argv: list[str]) -> None:
    """Redis's and replikv's replies, time fields masked."""
    args = [a.encode() for a in argv]
    expected = diff.redis.call(*args)
    got = _hiredis(diff.run_replikv(*args))
    assert repr(_mask(got)) == repr(_mask(expected)), (argv, got, expected)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_stream_workload_matches_redis(diff: Differential, seed: int) -> None:
    work = _Workload(seed)
    for i in range(1500):
        argv = work.xadd("st"[i % 2], trim=False) if i < 300 else work.command()  # fill nodes
        if argv[0] in ("XPENDING", "XCLAIM", "XAUTOCLAIM") or argv[:2] == ["XINFO", "STREAM"]:
            _same(diff, argv)
        else:
            diff.run(*argv)
        now = int(time.time() * 1000)
        for query in STATE:
            expected = diff.redis.call(*query)
            got = _hiredis(diff.leader.read([q.encode() for q in query], now))
            assert repr(_mask(got)) == repr(_mask(expected)), (argv, query, got, expected)
