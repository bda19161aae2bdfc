"""core/crdt/keyed.py: a write made of several client writes (``write_more``, the leaderless
coordinator's batches) and shipped as one delta (``apply_delta``): on every replica, through the
short ways for ``put`` (``_apply_observed``: inline, ``_put_fast``), the state is the one the
general path leaves (every mutation through ``apply_mut`` with the exact ``seen`` rule), ids
included, and the replicas converge."""

from __future__ import annotations

import random

import pytest

from replikv.core.crdt.keyed import KeyedStore, decode_delta, write_delta
from replikv.kv.crdt_writes import translate

NODES = ("n1", "n2", "n3")
KEYS = (b"a", b"b", b"c")


class _GeneralKeyed(KeyedStore):
    """A keyed store that takes every mutation through the general path."""

    __slots__ = ()
    inline_puts = False

    def _put_fast(self, *args: object) -> bool:
        return False


def command(rng: random.Random) -> list[bytes]:
    key = rng.choice(KEYS)
    return rng.choice([[b"SET", key, b"v%d" % rng.randrange(9)], [b"SET", key, b"w", b"PX", b"5000"],
                       [b"INCR", key], [b"SADD", key, b"m%d" % rng.randrange(3)], [b"DEL", key]])


def state(store: KeyedStore) -> dict[bytes, bytes | None]:
    return {k: store.key_blob(k) for k in store.stored_keys()}


@pytest.mark.parametrize("seed", range(40))
def test_batches_through_the_short_ways_equal_the_general_path_and_converge(seed: int) -> None:
    rng = random.Random(seed)
    stores = {n: KeyedStore("lww") for n in NODES}
    twins = {n: _GeneralKeyed("lww") for n in NODES}
    hlc = 1000
    for step in range(30):
        origin = rng.choice(NODES)
        hlc += rng.randrange(1, 5)
        before: dict[bytes, dict[str, int]] = {}
        twin_before: dict[bytes, dict[str, int]] = {}
        muts: list = []
        for _ in range(rng.randrange(1, 7)):
            argv = command(rng)
            got, _ = translate(stores[origin], argv, 10_000, rng, "leaderless")
            twin_got, _ = translate(twins[origin], argv, 10_000, random.Random(0), "leaderless")
            assert [m[0] for m in got] == [m[0] for m in twin_got]
            if not got:
                continue
            stores[origin].write_more(origin, hlc, got, len(muts), before, 10_000 + step)
            twins[origin].write_more(origin, hlc, got, len(muts), twin_before, 10_000 + step)
            muts += got
        assert state(stores[origin]) == state(twins[origin])
        if not muts:
            continue
        blob = write_delta(origin, hlc, muts, before)
        for n in NODES:
            if n == origin or rng.random() < 0.2:  # some replicas miss it, and get whole states later
                continue
            for s in (stores[n], twins[n]):
                changed, missing = s.apply_delta(decode_delta(blob), 10_000 + step)
                for key in missing:
                    s.join_key(key, stores[origin].key_blob(key) or b"", 10_000 + step)
            assert state(stores[n]) == state(twins[n])
    for n in NODES:  # anti-entropy: every replica joins every other's states
        for m in NODES:
            for key in list(stores[m].stored_keys()):
                for s, src in ((stores[n], stores[m]), (twins[n], twins[m])):
                    blob = src.key_blob(key)
                    if blob is not None:
                        s.join_key(key, blob, 99_999)
    assert len({tuple(sorted(state(s).items())) for s in stores.values()}) == 1
    assert state(stores["n1"]) == state(twins["n1"])
