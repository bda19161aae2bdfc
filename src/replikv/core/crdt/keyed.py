"""The leaderless key space: the dot stores of ``store.py`` with one causal
context per key (Riak's dotted version vectors, Preguiça et al. 2012;
delta-state CRDTs, Almeida et al. 2018).

Why per key: in the leaderless mode a key lives on N replicas chosen by the
ring, and no node sees every write, so there is no node-wide version vector
to stand for "what I observed". Each key carries its own context instead:
``ctx[key]: origin -> greatest dot seq of that origin this replica holds the
outcome of, for this key``.

Rules:

- A write is made by one replica of the key (the coordinator) against its
  own state of the key. Its dot is ``(origin, hlc)``: the seq IS the HLC
  timestamp (``hlc.py``), unique per origin and increasing, also across a
  restart (the clock starts from the wall clock and the greatest timestamp
  on disk), so an origin never reuses a dot even after a tombstone was
  collected. Entries get ids ``(origin, hlc, i)`` as in ``store.py``.
- The write observed exactly what the key's context covered before it (plus
  its own earlier mutations): removals remove those entries only.
- Replicas exchange whole key states (``key_blob``) and join them
  (``join_key``): an entry on one side only stays iff the other side's
  context does not cover its dot. This is sound because a state is always
  shipped whole: a state whose context covers ``(o, s)`` descends from o's
  own state when o made ``s``, which held the outcome of every earlier dot
  of o for this key. (Caveat stated in docs/leaderless.md: an origin that
  loses its own acknowledged write to a machine crash under
  ``--fsync everysec`` can later ship a context covering a dot it no longer
  holds, which removes that write from the replicas that have it.) A second
  exception: a replica that missed a Paxos commit writes the next one over a
  context without it (``paxos.py``, "A replica that missed a commit"), so two
  replicas can hold covering, even equal, contexts with different entries.
  The join is still the rule above, but a state whose context covers
  another's is then not the join of the two.
- A write can travel as a delta instead (``write_delta`` / ``apply_delta``;
  Almeida et al.'s delta-mutators, in op form): its dot, its mutations and,
  for each key it touches, the key's context on the coordinator just before
  it (``before``). A replica applies it to a key only when its own context
  of the key covers ``before`` (it then holds the outcome of every dot the
  coordinator's state held, so its state is at least the coordinator's
  state before the write, and applying the mutations with "observed" =
  ``before`` plus the write's own dot gives exactly the join with the
  coordinator's state after it); a key whose context already covers the
  write's dot holds it already (nothing to do). Any other key lacks the
  base the delta needs: ``apply_delta`` names it, and the caller falls back
  to the whole key state (``key_blob``).
- A key whose parts are all empty but whose context is not is a tombstone:
  it must stay until every replica holds it (or a grace period passed, as
  Cassandra's gc_grace), or a replica that missed the delete brings the old
  entries back. ``dead_ms`` remembers when each key became one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgpack

from replikv.core.crdt.store import CrdtStore, KeyState, Mut, join_key_state
from replikv.core.crdt.vv import merge

__all__ = ["Delta", "KeyedStore", "decode_delta", "write_delta"]


_EMPTY: dict[str, int] = {}  # the context of a key not held (read only)

# one packer for every delta (``msgpack.packb`` makes a new one per call); packing is synchronous
_pack = msgpack.Packer(use_bin_type=True).pack


def write_delta(origin: str, hlc: int, muts: Sequence[Mut], before: Mapping[bytes, Mapping[str, int]]) -> bytes:
    """A write as a delta (deterministic bytes): its dot ``(origin, hlc)``, its mutations, and for
    each key it touches that key's context on ``origin`` just before the write (keys sorted, each
    context's origins sorted; a one-key write, a SET, skips sorting its one key)."""
    if len(before) == 1:
        ctx = [[k, sorted(c.items())] for k, c in before.items()]
    else:
        ctx = [[k, sorted(c.items())] for k, c in sorted(before.items())]
    out: bytes = _pack([origin, hlc, muts if type(muts) is list else list(muts), ctx])
    return out


Delta = tuple[str, int, list[Any], dict[bytes, dict[str, int]]]  # (origin, hlc, muts, before)


def decode_delta(blob: bytes) -> Delta:
    """``write_delta``'s parts; ValueError on anything else (a context must map origins, strings,
    to integers; every mutation's key must be named)."""
    try:
        origin, hlc, muts, raw = msgpack.unpackb(blob, raw=False)
        if type(origin) is not str or type(hlc) is not int or hlc <= 0 or type(muts) is not list:
            raise ValueError("bad delta header")
        before: dict[bytes, dict[str, int]] = {}
        for k, c in raw:
            ctx = before[bytes(k)] = dict(c)
            for o, s in ctx.items():
                if type(o) is not str or type(s) is not int:
                    raise ValueError("bad delta context")
        for mut in muts:
            if type(mut) is not list or len(mut) < 2 or type(mut[0]) is not str or bytes(mut[1]) not in before:
                raise ValueError("bad delta mutation")
    except (ValueError, TypeError, IndexError, KeyError, msgpack.UnpackException) as err:
        raise ValueError(f"bad delta: {err}") from err
    return origin, hlc, muts, before


class KeyedStore(CrdtStore):
    """A leaderless replica's keys; see the module docstring. ``vv`` (the
    node-wide vector of ``CrdtStore``) stays empty here.

    Invariant: every entry of a key's state has a dot its context covers (a
    write adds entries under its dot and puts the dot in the context; a join
    keeps entries and merges contexts). So a write ``(origin, hlc)`` that the
    key's context does not cover yet observes exactly the entries its base
    context covers, none of its own (one it covers already, a WAL entry
    replayed over a snapshot that holds it, observes its own entries through
    that context too), and a write of one ``put`` mutation (a
    SET) takes ``CrdtStore._put_fast``'s short way with that base context as
    the deps: the same entries, ids included, as the general path's ``seen``
    closure (``tests/unit/test_crdt_delta.py`` holds a twin store to it)."""

    __slots__ = ("_blobs", "ctx", "dead_ms")

    def __init__(self, conflicts: str = "lww") -> None:
        super().__init__(conflicts)
        self.ctx: dict[bytes, dict[str, int]] = {}
        self.dead_ms: dict[bytes, int] = {}
        self._blobs: dict[bytes, bytes] = {}  # key_blob's result until the key changes

    def context(self, key: bytes) -> Mapping[str, int]:
        return self.ctx.get(key, {})

    def known(self, key: bytes) -> bool:
        """Whether this replica holds anything of ``key``, a tombstone included."""
        return key in self.ctx

    def stored_keys(self) -> Iterable[bytes]:
        """Every key with a context (live keys and tombstones)."""
        return self.ctx.keys()

    # ------------------------------------------------------------- writes

    def apply_write(self, origin: str, hlc: int, muts: Sequence[Mut], now_ms: int) -> list[bytes]:
        """Apply a write this replica coordinates (dot ``(origin, hlc)``);
        returns the keys it touched, in first-touch order."""
        if len(muts) == 1 and muts[0][0] == "put":  # a SET: no closure when the short way applies
            key = bytes(muts[0][1])
            kctx = self.ctx.get(key, {})
            if self._put_fast(key, muts[0], origin, hlc, hlc, kctx):
                self._written(key, origin, hlc, now_ms)  # the short way (class docstring)
                return [key]
        changed: list[bytes] = []
        seen_by: dict[bytes, Any] = {}
        for i, mut in enumerate(muts):
            key = bytes(mut[1])
            seen = seen_by.get(key)
            if seen is None:
                before = dict(self.ctx.get(key, {}))

                def seen(o: str, s: int, before: dict[str, int] = before) -> bool:
                    return s <= before.get(o, 0) or (s == hlc and o == origin)

                seen_by[key] = seen
                changed.append(key)
            self._apply_one(key, mut, origin, hlc, i, hlc, seen)
        for key in changed:
            self._written(key, origin, hlc, now_ms)
        return changed

    def overwrite_absent(self, origin: str, hlc: int, key: bytes, value: bytes, now_ms: int) -> list[bytes]:
        """``apply_write(origin, hlc, overwrite_muts(self, key, value), now_ms)`` for a ``key`` not
        in ``data`` (absent, or a tombstone: a context and no entry) and a ``value`` (not None),
        built directly: the ``del`` (0) finds no entry and no counter (``overwrite_muts`` gave it
        no totals), the ``set`` (1) adds the register entry ``(origin, hlc, 1)``, the ``ttl`` (2)
        the TTL entry ``(origin, hlc, 2)`` without a deadline; the ``del`` drops the key's view
        hint. The same state, key context and blob (tests/property/test_overwrite_absent.py);
        a Paxos commit of a fresh key (``Replica._apply_commit``) takes it. The caller checked
        that the key's context does not hold the write already."""
        if key in self.data:
            raise ValueError("overwrite_absent: the key is present")
        ks = KeyState()
        ks._reg = {(origin, hlc, 1): (hlc, value)}
        ks._ttl = {(origin, hlc, 2): (hlc, None)}
        self.data[key] = ks
        if self.hints:
            self.hints.pop(key, None)
        self._written(key, origin, hlc, now_ms)
        return [key]

    def write_more(self, origin: str, hlc: int, muts: Sequence[Mut], start: int,
                   before: dict[bytes, dict[str, int]], now_ms: int) -> list[bytes]:
        """Mutations ``start, start + 1, ...`` of a write ``(origin, hlc)`` this replica coordinates
        whose mutations below ``start`` are applied already: one write made of several client
        writes, each translated against the state the earlier ones left (``Replica.batch_add``).
        ``before`` maps each key the write touched so far to its context just before the write; a
        key first touched here gets a copy of its context now. Returns the keys touched, in
        first-touch order.

        The outcome is ``apply_write(origin, hlc, <all the mutations>)``'s on the state before the
        write (what a replay of its WAL entry does): mutation ``i`` observes the entries
        ``before[key]`` covers and the write's own (``seen``); here that is ``{**before[key],
        origin: hlc}`` as a vv, exactly, since this replica's context covers every entry it
        holds, so it holds no entry of ``origin`` for the key between ``before[key][origin]`` and
        ``hlc`` (``_apply_observed``)."""
        ctx = self.ctx
        touched: dict[bytes, None] = {}
        for i, mut in enumerate(muts, start):
            key = bytes(mut[1])
            bctx = before.get(key)
            if bctx is None:
                bctx = before[key] = dict(ctx.get(key, _EMPTY))
            self._apply_observed(key, mut, origin, hlc, i, bctx, None)
            touched[key] = None
        for key in touched:
            self._written(key, origin, hlc, now_ms)
        return list(touched)

    def _apply_observed(self, key: bytes, mut: Mut, origin: str, hlc: int, i: int, bctx: Mapping[str, int],
                        seen: Any) -> None:
        """Mutation ``i`` of the write ``(origin, hlc)`` to ``key``, observing what ``bctx`` covers
        and the write's own entries. ``seen`` None: no entry of ``origin`` between
        ``bctx[origin]`` and ``hlc`` is here (the caller checked the key's context), so the vv
        ``{**bctx, origin: hlc}`` is that observation exactly and a ``put`` takes
        ``_put_fast``; otherwise ``seen`` is the exact closure and everything takes
        ``_apply_one``."""
        if seen is None:
            if mut[0] == "put":
                ks = self.data.get(key) if self.inline_puts else None
                one = None if ks is None else ks.one
                if one is not None and one[1] <= (hlc if one[0] == origin else bctx.get(one[0], 0)) \
                        and not self.hints and not ks.set and not ks.hash and not ks.lst:  # type: ignore[union-attr]
                    # the commonest put, inline (as CrdtStore.apply_muts does it): over a key a put
                    # wrote last, whose entry this one observes (the vv's get, without building it)
                    ks.one = (origin, hlc, i, hlc, bytes(mut[2]),  # type: ignore[union-attr]
                              None if mut[3] is None else int(mut[3]))
                    return
                if self._put_fast(key, mut, origin, hlc, hlc, {**bctx, origin: hlc}, i):
                    return

            def seen(o: str, s: int) -> bool:
                return s <= bctx.get(o, 0) or (s == hlc and o == origin)

        self._apply_one(key, mut, origin, hlc, i, hlc, seen)

    def _written(self, key: bytes, origin: str, hlc: int, now_ms: int) -> None:
        """``key`` now holds the outcome of the dot ``(origin, hlc)``."""
        self._blobs.pop(key, None)
        kctx = self.ctx.setdefault(key, {})
        if hlc > kctx.get(origin, 0):
            kctx[origin] = hlc
        self._mark(key, now_ms)

    def _mark(self, key: bytes, now_ms: int) -> None:
        if key in self.data:
            self.dead_ms.pop(key, None)
        elif key not in self.dead_ms:
            self.dead_ms[key] = now_ms

    # ------------------------------------------------------------- deltas

    def apply_delta(self, delta: Delta, now_ms: int) -> tuple[list[bytes], list[bytes]]:
        """Apply a delta (``decode_delta`` of a ``write_delta`` blob) to the keys where this replica
        holds its base (see the module docstring); returns (the keys that changed, the keys that
        lack the base: the caller needs their whole states)."""
        origin, hlc, muts, before = delta
        changed: list[bytes] = []
        missing: list[bytes] = []
        seen_by: dict[bytes, Any] = {}
        for key, bctx in before.items():
            mine = self.ctx.get(key, _EMPTY)
            had = mine.get(origin, 0)
            if had >= hlc:
                continue  # this write (or a later one of its origin) is here already
            if mine != bctx:  # (equal: the common case, the base held exactly, one C-level compare)
                lacks = False  # the base: a plain loop, not any() over a generator (one per key per delta)
                for o, s in bctx.items():
                    if mine.get(o, 0) < s:
                        lacks = True
                        break
                if lacks:
                    missing.append(key)
                    continue
            if len(muts) == 1 and muts[0][0] == "put" and self._put_fast(key, muts[0], origin, hlc, hlc, bctx):
                self._written(key, origin, hlc, now_ms)  # a SET: the short way (class docstring)
                return [key], missing

            if had <= bctx.get(origin, 0):
                seen_by[key] = None  # the vv of _apply_observed is exact here: the short way for puts
            else:  # an entry of origin newer than the base may be here: the exact closure

                def seen(o: str, s: int, bctx: dict[str, int] = bctx) -> bool:
                    return s <= bctx.get(o, 0) or (s == hlc and o == origin)

                seen_by[key] = seen
            changed.append(key)
        if not changed:
            return changed, missing
        for i, mut in enumerate(muts):
            key = bytes(mut[1])
            if key in seen_by:
                self._apply_observed(key, mut, origin, hlc, i, before[key], seen_by[key])
        for key in changed:
            self._written(key, origin, hlc, now_ms)
        return changed, missing

    # ----------------------------------------------------- exchanging keys

    def key_blob(self, key: bytes) -> bytes | None:
        """This replica's whole state of ``key`` (deterministic bytes), or None
        when it holds nothing of it."""
        blob = self._blobs.get(key)
        if blob is not None:
            return blob
        kctx = self.ctx.get(key)
        if kctx is None:
            return None
        ks = self.data.get(key)
        body = [sorted(kctx.items()), None if ks is None else ks.dump()]
        out: bytes = msgpack.packb(body, use_bin_type=True)
        self._blobs[key] = out
        return out

    def key_digest(self, key: bytes) -> bytes | None:
        """Equal on two replicas iff their states of ``key`` are equal."""
        blob = self.key_blob(key)
        return None if blob is None else hashlib.blake2b(blob, digest_size=16).digest()

    def join_key(self, key: bytes, blob: bytes, now_ms: int) -> bool:
        """Join another replica's ``key_blob(key)``; whether this state changed.
        Raises ValueError on a blob that does not decode as one. When the
        join is the incoming state, ``blob`` (a peer's ``key_blob``,
        deterministic) is kept as this key's ``key_blob``: no packing to digest
        it for the Merkle trees or to compare it in read repair. The incoming
        context covering this replica's does not make it so (the module
        docstring's second exception): it is so when, besides, no incoming
        entry was left out. Keeping their blob on the context alone once made
        two replicas' digests and shipped states lie about the data they held,
        and anti-entropy swapped them for ever (the simulator, seed 90222
        --paxos, with the coordinator's own promise not logged: ``paxos.py``,
        the durability rule)."""
        try:
            raw_ctx, dump = msgpack.unpackb(blob, raw=False, use_list=True)
            theirs = {str(o): int(s) for o, s in raw_ctx}
            b = KeyState() if dump is None else KeyState.load(dump)
        except (ValueError, TypeError, IndexError, KeyError, msgpack.UnpackException) as err:
            raise ValueError(f"bad key state: {err}") from err
        mine = self.ctx.get(key, {})
        dropped = False  # an entry of theirs that this replica's context covers left out

        def keep_mine(o: str, s: int) -> bool:
            return s > theirs.get(o, 0)

        def keep_theirs(o: str, s: int) -> bool:
            nonlocal dropped
            if s > mine.get(o, 0):
                return True
            dropped = True
            return False

        a = self.data.get(key) or KeyState()
        changed = join_key_state(a, b, keep_mine, keep_theirs)
        new_ctx = merge(mine, theirs)
        if not changed and new_ctx == mine:
            return False
        self._blobs.pop(key, None)
        self.hints.pop(key, None)
        if a.empty():
            self.data.pop(key, None)
        else:
            self.data[key] = a
        self.ctx[key] = new_ctx
        if new_ctx == theirs and not dropped and (not (a.ctr or a.hash or b.ctr or b.hash) or (
                None if a.empty() else a.dump()) == dump):
            # The join is their state, this very blob: their context covers ours, so every entry
            # of ours is on their side or left out (``keep_mine``), and none of theirs was left
            # out; counters (joined by maximum) are compared whole.
            self._blobs[key] = blob
        self._mark(key, now_ms)
        return True

    def collect(self, key: bytes) -> bool:
        """Drop the tombstone of ``key`` (the caller knows every replica holds
        it, or its grace period passed); False if ``key`` is not a tombstone."""
        if key in self.data or key not in self.ctx:
            return False
        del self.ctx[key]
        self.dead_ms.pop(key, None)
        self._blobs.pop(key, None)
        return True

    def forget(self, key: bytes) -> None:
        """Drop everything of ``key``, live or not (a hint store's delivered or dropped hint;
        never a replica's key: use ``collect``)."""
        self.ctx.pop(key, None)
        self.data.pop(key, None)
        self.dead_ms.pop(key, None)
        self._blobs.pop(key, None)
        self.hints.pop(key, None)

    # ------------------------------------------------------ whole state

    def snapshot(self) -> bytes:
        body = [
            [k, sorted(c.items()), None if (ks := self.data.get(k)) is None else ks.dump(),
             self.dead_ms.get(k)]
            for k, c in sorted(self.ctx.items())
        ]
        out: bytes = msgpack.packb(body, use_bin_type=True)
        return out

    @classmethod
    def restore(cls, blob: bytes, conflicts: str = "lww") -> KeyedStore:
        store = cls(conflicts)
        for k, c, dump, dead in msgpack.unpackb(blob, raw=False, use_list=True):
            store.ctx[k] = {str(o): int(s) for o, s in c}
            if dump is not None:
                store.data[k] = KeyState.load(dump)
            if dead is not None:
                store.dead_ms[k] = int(dead)
        return store

    def join(self, blob: bytes, now_ms: int = 0) -> list[bytes]:
        """Join another replica's :meth:`snapshot`, key by key; the keys that changed."""
        changed = []
        for k, c, dump, _ in msgpack.unpackb(blob, raw=False, use_list=True):
            if self.join_key(k, msgpack.packb([c, dump], use_bin_type=True), now_ms):
                changed.append(k)
        return changed
