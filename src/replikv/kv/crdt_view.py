"""Multi-leader mode: keep a plain ``StateMachine`` (the view every read is
served from) equal to the CRDT store's visible state.

``materialize(store, view, keys)`` makes ``view`` show exactly
``store.visible(key)`` for each key, through ordinary deterministic commands
applied with ``ApplyContext(None)`` (no time-based deletes: the view's own
read path hides expired keys), so the view's scan index and expiry heap stay
right. The commonest, a plain ``SET key value`` over a string or nothing, is
done by SET's own code (``StateMachine.set_string``) without building and
dispatching the command. Incremental where it is cheap (set members, hash fields, pushes and
pops at the ends of a list), a rebuild of the key otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from replikv.core.crdt.store import CrdtStore
from replikv.core.multileader.messages import Op
from replikv.kv.context import ApplyContext
from replikv.kv.state_machine import StateMachine

_CTX = ApplyContext(None)


def _current(view: StateMachine, key: bytes) -> tuple[str | None, Any]:
    value = view.data.get(key)
    if value is None:
        return None, None
    # read only: the view's own containers are compared, never changed, here
    if isinstance(value, bytes):
        return "string", value
    if isinstance(value, bytearray):
        return "string", bytes(value)
    if isinstance(value, (set, frozenset)):
        return "set", value
    if isinstance(value, dict):
        return "hash", value
    try:
        return "list", list(value)
    except TypeError:
        return "other", None


def _list_cmds(key: bytes, old: list[bytes], new: list[bytes]) -> list[list[bytes]] | None:
    """Pops and pushes at the ends turning ``old`` into ``new``, or None.

    The fewest left pops first, then the fewest right pops, the kept middle
    placed at its first occurrence in ``new``. For one ``lpop`` the first
    ``rpop`` that works keeps the longest prefix of ``old[lpop:]`` found in
    ``new``: one scan of ``new`` per ``lpop`` instead of a search per pair."""
    n = len(old)
    for lpop in range(n):
        want = old[lpop]
        rest = n - lpop
        best, at = 0, -1
        i = -1
        while True:
            try:
                i = new.index(want, i + 1)
            except ValueError:
                break
            k = min(rest, len(new) - i)
            if k > best and new[i : i + k] == old[lpop : lpop + k]:
                best, at = k, i
            else:
                m = 1
                while m < k and new[i + m] == old[lpop + m]:
                    m += 1
                if m > best:
                    best, at = m, i
            if best == rest:
                break
        if best:
            rpop = rest - best
            mid = old[lpop : n - rpop]
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


def _hinted(
    store: CrdtStore, view: StateMachine, key: bytes, touched: set[bytes], cmds: list[list[bytes]]
) -> bool:
    """The commands for a set or hash key the view showed as visible except for
    the ``touched`` members or fields (``store.hints``): the same commands the
    whole comparison gives, from the touched ones only. False (nothing added)
    when the key is not such a set or hash now."""
    ks = store.data.get(key)
    if ks is None:
        return False
    kind = ks.visible_type()
    old = view.data.get(key)
    if kind == "set":
        if type(old) is not set:
            return False
        members = ks.set or {}
        order = sorted(touched)
        new = [m for m in order if m in members and m not in old]
        gone = [m for m in order if m not in members and m in old]
        if len(old) + len(new) - len(gone) != len(members):
            return False  # not in step after all: compare whole
        if new:
            cmds.append([b"SADD", key, *new])
        if gone:
            cmds.append([b"SREM", key, *gone])
    elif kind == "hash":
        if type(old) is not dict:
            return False
        fields = ks.hash or {}
        changed: list[bytes] = []
        hgone: list[bytes] = []
        for f in sorted(touched):
            cell = fields.get(f)
            v = None if cell is None else cell.value()
            if v is None:
                if f in old:
                    hgone.append(f)
            elif old.get(f) != v:
                changed.append(f)
        if changed:
            hset: list[bytes] = [b"HSET", key]
            for f in changed:
                hset.append(f)
                hset.append(fields[f].value() or b"")
            cmds.append(hset)
        if hgone:
            cmds.append([b"HDEL", key, *hgone])
    else:
        return False
    deadline = ks.deadline()
    current = view.expires.get(key)
    if deadline is None:
        if current is not None:
            cmds.append([b"PERSIST", key])
    elif current != deadline:
        cmds.append([b"PEXPIREAT", key, str(deadline).encode()])
    return True


def materialize(store: CrdtStore, view: StateMachine, keys: Iterable[bytes]) -> None:
    """Make ``view`` show ``store.visible(key)`` for every key in ``keys``."""
    cmds: list[list[bytes]] = []
    hints = store.hints
    if store.hints_view is not view:  # hints are about one view
        hints.clear()
        store.hints_view = view
    data, expires, visible, states = view.data, view.expires, store.visible, store.data
    set_string = view.set_string
    for key in keys if isinstance(keys, dict) else dict.fromkeys(keys):
        if hints:
            touched = hints.pop(key, None)
            if touched is not None and _hinted(store, view, key, touched, cmds):
                hints[key] = set()
                continue
        ks = states.get(key)
        vtype: str
        value: Any
        deadline: int | None
        plain = ks if ks is not None and not ks.ctr and not ks.set and not ks.hash and not ks.lst else None
        one = plain.one if plain is not None else None  # a string key with no counter: SET's
        if one is not None:  # what SET leaves, in the store's one-entry form (KeyState.one)
            vtype, value, deadline = "string", one[4], one[5]
        elif plain is not None and (reg := plain.reg):
            # a string key with no counter: store.visible's string case read in place, no
            # ``Visible`` built: the LWW winner's value (one register value: what SET leaves;
            # several: concurrent SETs) and KeyState.deadline
            vtype = "string"
            if len(reg) == 1:
                for _, value in reg.values():
                    break
            else:
                value = plain.winner()[2]  # type: ignore[index]
            ttl = plain.ttl
            if not ttl:
                deadline = None
            elif len(ttl) == 1:
                for _, deadline in ttl.values():
                    break
            else:
                deadline = plain.deadline()
        elif (head := ks.counter_alone() if ks is not None and ks.ctr else None) is not None and head[1]:
            # what INCRs leave, a live counter alone: store.visible's counter case read in
            # place (the cached sum as the string, no deadline), no ``Visible`` built
            vtype, value, deadline = "string", str(head[0]).encode(), None
        else:
            vis = visible(key) if head is None else None  # a dead counter alone shows nothing
            if vis is None:
                if data.get(key) is not None:  # _current's kind is not None
                    cmds.append([b"DEL", key])
                continue
            vtype, value, deadline = vis
        old: Any = data.get(key)
        current = expires.get(key)
        if vtype == "string" and current is None and (old is None or type(old) is bytes):
            # the hot path, a string over a string or nothing, no TTL on it yet: what the
            # SET (and PEXPIREAT) below would do, done at once (set_string is SET's own)
            if old != value:
                set_string(key, value)
            if deadline is not None:
                cmds.append([b"PEXPIREAT", key, str(deadline).encode()])
            continue
        if type(old) is bytes:  # the common view value, what _current says of it
            kind: str | None = "string"
        else:
            kind, old = _current(view, key)
        rebuild = kind != vtype
        if not rebuild:
            if vtype == "string":
                if old != value:
                    # without a TTL on the key KEEPTTL changes nothing: the view's hot path
                    keep = current is not None
                    cmds.append([b"SET", key, value, b"KEEPTTL"] if keep else [b"SET", key, value])
            elif vtype == "set":
                gone, new = sorted(old - value), sorted(value - old)
                if new:
                    cmds.append([b"SADD", key, *new])
                if gone:
                    if not value:
                        rebuild = True
                    else:
                        cmds.append([b"SREM", key, *gone])
            elif vtype == "hash":
                gone = sorted(old.keys() - value.keys())
                try:  # fields whose value is new or differs
                    changed = sorted({f for f, _ in value.items() - old.items()})
                except TypeError:  # an unhashable value in the view
                    changed = sorted(f for f, v in value.items() if old.get(f) != v)
                if changed:
                    cmds.append([b"HSET", key, *[x for f in changed for x in (f, value[f])]])
                if gone:
                    cmds.append([b"HDEL", key, *gone])
            else:
                lc = _list_cmds(key, old, value)
                if lc is None:
                    rebuild = True
                else:
                    cmds.extend(lc)
        if rebuild:
            if kind is not None:
                cmds.append([b"DEL", key])
            if vtype == "string":
                cmds.append([b"SET", key, value])
            elif vtype == "set":
                cmds.append([b"SADD", key, *sorted(value)])
            elif vtype == "hash":
                cmds.append([b"HSET", key, *[x for f, v in sorted(value.items()) for x in (f, v)]])
            else:
                cmds.append([b"RPUSH", key, *value])
            current = None
        if deadline is None:
            if current is not None:
                cmds.append([b"PERSIST", key])
        elif current != deadline:
            cmds.append([b"PEXPIREAT", key, str(deadline).encode()])
        if vtype in ("set", "hash"):
            hints[key] = set()  # in step once ``cmds`` are applied
    if cmds:
        view.apply(cmds, _CTX)


def deliver_ops(
    store: CrdtStore, view: StateMachine, ops: Sequence[Op], me: str, index: int
) -> tuple[int, int, int, int]:
    """Apply delivered ``ops`` (causal order, each once) to ``store`` in order, then bring
    ``view``'s keys they changed to the store's visible state at once (nothing reads the view
    in between). The ops take the view's positions ``index + 1, index + 2, ...``; each changed
    key's WATCH index (``view.changes``) is that of the last op that changed it. Returns
    ``(index after the ops, ops of other origins than me, their newest HLC, keys those left
    with concurrent string values)``."""
    store_data, apply = store.data, store.apply
    changed_keys: dict[bytes, int] = {}  # key -> the index of the last op that changed it
    received = conflicts = newest = 0
    for op in ops:
        index += 1
        origin, seq, hlc, deps, payload = op
        changed = apply(origin, seq, hlc, deps, payload)
        changed_keys.update(dict.fromkeys(changed, index))  # a key keeps its first place
        if origin == me:
            continue
        received += 1
        if hlc > newest:
            newest = hlc
        for key, maybe in changed.items():  # only a key apply says may hold several entries
            if maybe:
                ks = store_data.get(key)
                if ks is not None and ks.one is None and len(ks.reg) > 1:  # concurrent values: LWW or siblings
                    conflicts += 1
    if changed_keys:
        _show(store, view, changed_keys)
    return index, received, newest, conflicts


def show_applied(store: CrdtStore, view: StateMachine, keys: Iterable[bytes], index: int) -> None:
    """``deliver_ops``'s view side for one op of this node that ``store`` holds already
    (applied as it was made, ``CrdtStore.apply_muts``): ``keys`` (the keys it changed) get
    WATCH index ``index`` (the op's view position) and show the store's visible state."""
    if view.changes.watching:  # at rest the index records nothing (kv/watch.py): no dict for it
        _show(store, view, dict.fromkeys(keys, index))
    else:
        materialize(store, view, keys)


def _show(store: CrdtStore, view: StateMachine, changed_keys: dict[bytes, int]) -> None:
    view.changes.touch_keys(changed_keys)  # one update for the batch, as per op in its order
    materialize(store, view, changed_keys)
