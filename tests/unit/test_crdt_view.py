"""kv/crdt_view.py: the list diff gives exactly the commands of the plain search."""

from __future__ import annotations

import random

from replikv.kv.crdt_view import _list_cmds


def _reference(key: bytes, old: list[bytes], new: list[bytes]) -> list[list[bytes]] | None:
    """The definition: the first (lpop, rpop) whose kept middle occurs in ``new``."""

    def find(seq: list[bytes], sub: list[bytes]) -> int:
        for i in range(len(seq) - len(sub) + 1):
            if seq[i : i + len(sub)] == sub:
                return i
        return -1

    for lpop in range(len(old) + 1):
        for rpop in range(len(old) - lpop + 1):
            mid = old[lpop : len(old) - rpop]
            if not mid:
                continue
            at = find(new, mid)
            if at < 0:
                continue
            cmds: list[list[bytes]] = []
            if lpop:
                cmds.append([b"LPOP", key, str(lpop).encode()])
            if rpop:
                cmds.append([b"RPOP", key, str(rpop).encode()])
            head, tail = new[:at], new[at + len(mid) :]
            if head:
                cmds.append([b"LPUSH", key, *reversed(head)])
            if tail:
                cmds.append([b"RPUSH", key, *tail])
            return cmds
    return None


def test_list_cmds_match_the_plain_search() -> None:
    rng = random.Random(5)
    for _ in range(5000):
        alphabet = [b"a", b"b", b"c", b"d"][: rng.randint(1, 4)]
        old = [rng.choice(alphabet) for _ in range(rng.randint(0, 8))]
        case = rng.randrange(4)
        if case == 0:
            new = [rng.choice(alphabet) for _ in range(rng.randint(0, 8))]
        else:
            lo = rng.randint(0, len(old))
            hi = rng.randint(lo, len(old))
            new = (
                [rng.choice(alphabet) for _ in range(rng.randint(0, 3))]
                + old[lo:hi]
                + [rng.choice(alphabet) for _ in range(rng.randint(0, 3))]
            )
        assert _list_cmds(b"k", old, new) == _reference(b"k", old, new), (old, new)
