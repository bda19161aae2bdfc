"""Cross-group transactions on a sharded raft node: coordinating, participating, recovering.

The rules are in core/txn/ (the table a group replicates, the coordinator's steps) and
runtime/txn_entries.py (the log entries). This module is the glue in the node
(runtime/sharded_raft.py):

- ``begin``: an EXEC whose keys live in several groups. This node coordinates it
  (``core/txn/coordinator.py``): each step is an internal admin command, ``REPLIKV TXN
  PREPARE|COMMIT|DECIDE|RESOLVE|FORGET <group> <msgpack>``, run by the group's leader (here, or
  forwarded to its node like any admin command); the leader proposes the matching entry and
  answers with the entry's result once it applied.
- Participant side (``admin``): a group leader turns a step into its log entry. While a prepare
  is proposed but not applied, its keys count as locked for the leader's own admission (a
  plain write proposed after it would otherwise be refused at apply).
- Recovery (``recover``, four times a second; default setting only): a group leader holding an
  intent past its transaction's deadline asks the record (``decide recover``): committed or
  aborted, it resolves every participant with it and forgets the record; still pending (the
  record's log time has not passed the deadline), it asks again later. A primary's leader also
  finishes the decided records nobody forgot. So a coordinator crash blocks its keys for about
  the transaction timeout plus, if a leader died too, an election.
- ``classic`` (``--txn classic``): no record and no recovery: prepared participants wait for
  their coordinator's word however long it takes (textbook 2PC, the blocking the seed's 2PC has).
- ``REPLIKV TXN INTENTS``: the prepared transactions of the groups this node leads, for
  operators and ``replikv check``. ``REPLIKV FAILPOINT txn-exit-after-prepare`` (nodes started
  with ``REPLIKV_FAILPOINTS=1`` only): the next transaction coordinated here exits the process
  once every participant voted yes, before the decision.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgpack

from replikv.core.replies import NULL_ARRAY, RespError
from replikv.core.resp import encode_reply
from replikv.core.txn import ABORTED, COMMITTED, Coordinator, Step
from replikv.core.txn.coordinator import Outcome
from replikv.kv.commands import lookup
from replikv.kv.lua import with_bodies
from replikv.runtime.base import wall_ms
from replikv.runtime.raft_app import prepare_items
from replikv.runtime.txn_entries import txn_entry

if TYPE_CHECKING:
    from replikv.runtime.sharded_raft import ShardedRaftRunner

log = logging.getLogger("replikv.txn")

__all__ = ["InternalCall", "TxnService", "checked_step", "command_keys"]

RECOVER_EVERY_S = 0.25
# a decided record is kept at least this long past its transaction's deadline: far beyond the
# coordinator's give-up (four timeouts past it), so no coordinator asks about a forgotten record
# while clocks agree within RECORD_KEEP_MS minus that (docs/design.md)
RECORD_KEEP_MS = 30_000
_LEASE_COMMANDS = frozenset({b"LOCK", b"RENEW", b"UNLOCK", b"LOCKEXPIRE"})  # lease state is no undo's
STEP_RETRY_MS = 50


def command_keys(commands: list[list[bytes]]) -> list[bytes]:
    """The keys ``commands`` name, each once, in order."""
    seen: dict[bytes, None] = {}
    for argv in commands:
        spec = lookup(argv[0])
        for k in spec.keys(argv) if spec is not None else ():
            seen[k] = None
    return list(seen)


_TXN, _INT, _GROUPS = "a transaction id", "an integer", "a list of groups"
_SHAPES: dict[bytes, tuple[tuple[str, str], ...]] = {
    b"PREPARE": (("txn", _TXN), ("ts", _INT), ("deadline", _INT), ("primary", "group"), ("groups", _GROUPS),
                 ("commands", "commands"), ("watch", "watch"), ("resp3", "bool"), ("classic", "bool")),
    b"COMMIT": (("txn", _TXN), ("ts", _INT), ("deadline", _INT), ("groups", _GROUPS), ("commands", "commands"),
                ("watch", "watch"), ("resp3", "bool")),
    b"DECIDE": (("txn", _TXN), ("want", "decision"), ("deadline", _INT), ("groups", _GROUPS)),
    b"RESOLVE": (("txn", _TXN), ("commit", "bool")),
    b"FORGET": (("txns", "txns"),),
}


def _field_ok(kind: str, v: Any, groups: dict[int, Any]) -> bool:
    if kind == _TXN:
        return isinstance(v, bytes) and 0 < len(v) <= 256
    if kind == _INT:
        return type(v) is int
    if kind == "group":
        return type(v) is int and v in groups
    if kind == _GROUPS:
        return isinstance(v, list) and bool(v) and all(type(g) is int and g in groups for g in v)
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "decision":
        return v in ("commit", "abort", "recover")
    if kind == "txns":
        return isinstance(v, list) and all(isinstance(t, bytes) for t in v)
    if kind == "watch":
        return isinstance(v, list) and all(isinstance(w, list) and len(w) == 2 and isinstance(w[0], bytes)
                                           and type(w[1]) is int for w in v)
    # commands: each a known command with its arity (the keys are read from them)
    if not isinstance(v, list):
        return False
    for argv in v:
        if not (isinstance(argv, list) and argv and all(isinstance(a, bytes) for a in argv)):
            return False
        spec = lookup(argv[0])
        if spec is not None and not spec.arity_ok(len(argv)):
            return False
    return True


def checked_step(op: bytes, raw: bytes, groups: dict[int, Any]) -> list[Any]:
    """A coordinator's step body, every field checked before anything is proposed: a peer (or
    a client) speaking garbage gets an error, and nothing malformed reaches a group's log."""
    try:
        body = msgpack.unpackb(raw)
    except Exception as e:  # msgpack raises several types for bad input
        raise RespError(f"ERR undecodable transaction step ({type(e).__name__}: {e})") from None
    shape = _SHAPES[op]
    if not isinstance(body, list) or len(body) != len(shape):
        raise RespError(f"ERR a {op.decode()} step is a list of {len(shape)} fields")
    for (name, kind), value in zip(shape, body, strict=True):
        if not _field_ok(kind, value, groups):
            raise RespError(f"ERR bad field {name!r} in a {op.decode()} step (expected {kind})")
    return body


class InternalCall:
    """The connection of a command a node sends itself (a transaction's or a slot move's step),
    run by a group's leader here or forwarded to its node: ``done(payload)`` once answered, the
    payload of a bulk or simple string reply, or None for an error (or no answer in time)."""

    resp3 = False
    cluster_aware = False
    readonly = False
    read_level = "linearizable"
    write_level: Any = None
    session_index = 0
    watch: dict[bytes, int] = {}

    def __init__(self, done: Callable[[bytes | None], None]) -> None:
        self.done = done
        self.answered = False

    def _answer(self, data: bytes) -> None:
        if self.answered:
            return
        self.answered = True
        payload = None
        if data[:1] == b"$" and not data.startswith(b"$-1"):
            head = data.index(b"\r\n")
            payload = data[head + 2:head + 2 + int(data[1:head])]
        elif data[:1] == b"+":
            payload = data[1:-2]
        elif data[:1] == b"-":
            log.debug("a transaction step failed: %s", data[:200])
        self.done(payload)

    def slot(self) -> "_CallSlot":
        return _CallSlot(self)

    def reply(self, value: Any) -> None:
        self._answer(encode_reply(value, False))

    def reply_bytes(self, data: bytes) -> None:
        self._answer(data)


class _CallSlot:
    def __init__(self, conn: InternalCall) -> None:
        self.conn = conn

    def resolve(self, data: bytes) -> None:
        self.conn._answer(data)


class _Running:
    """A transaction this node coordinates: its core, its client and its commands."""

    def __init__(self, core: Coordinator, slot: Any, resp3: bool, per_group: dict[int, list[list[bytes]]],
                 watch: dict[int, list[list[Any]]]) -> None:
        self.core, self.slot, self.resp3 = core, slot, resp3
        self.per_group, self.watch = per_group, watch


class _Recovery:
    """Finishing a transaction met past its deadline: ask the record, resolve, forget."""

    def __init__(self, txn: bytes, primary: int, groups: list[int], deadline: int, status: str | None) -> None:
        self.txn, self.primary, self.groups, self.deadline = txn, primary, groups, deadline
        self.status = status
        self.left: set[int] = set()


class TxnService:
    def __init__(self, node: "ShardedRaftRunner", incarnation: int) -> None:
        self.node = node
        self.classic = node.options.txn == "classic"
        self.timeout_ms = node.options.txn_timeout_ms
        self.prefix = f"{node.id}.{incarnation}.".encode()
        self.count = 0
        self.running: dict[bytes, _Running] = {}
        self.recovering: dict[bytes, _Recovery] = {}
        self.delayed: list[tuple[int, bytes, Step]] = []
        self.forgets: dict[int, list[bytes]] = {}  # primary group -> records to forget (one entry per tick)
        self.failpoint = ""
        self.failpoints_allowed = os.environ.get("REPLIKV_FAILPOINTS") == "1"
        self.next_recovery = 0.0
        self.stats = node.stats  # INFO stats
        self.stats.update({"txn_committed": 0, "txn_aborted": 0, "txn_unknown": 0, "txn_recovered": 0})

    # -- coordinating ----------------------------------------------------------------------------
    def begin(self, conn: Any, queued: list[list[bytes]], group_of: Callable[[bytes], int]) -> None:
        """Run ``queued`` (a MULTI block over several groups) as one transaction."""
        node = self.node
        if any(argv[0].upper() in _LEASE_COMMANDS for argv in queued):
            conn.reply(RespError("ERR LOCK, RENEW and UNLOCK cannot be part of a transaction across groups (a "
                                 "lease is granted by its group's leader alone); FENCED can"))
            return
        queued = with_bodies(node.sm, queued)
        per_group: dict[int, list[list[bytes]]] = {}
        positions: dict[int, list[int]] = {}
        keyless: list[int] = []
        primary = -1
        for pos, argv in enumerate(queued):
            keys = command_keys([argv])
            if not keys:
                keyless.append(pos)
                continue
            g = group_of(keys[0])
            if any(group_of(k) != g for k in keys[1:]):
                name = argv[0].decode(errors="replace").upper()
                conn.reply(RespError(f"CROSSSLOT Keys in request don't hash to the same slot ({name} in the "
                                     "transaction: each command's own keys must live in one group)"))
                return
            if primary < 0:
                primary = g
            per_group.setdefault(g, []).append(argv)
            positions.setdefault(g, []).append(pos)
        for pos in keyless:  # PING, ECHO ... inside the block: run by the primary, in order
            places = positions[primary]
            at = next((i for i, p in enumerate(places) if p > pos), len(places))
            places.insert(at, pos)
            per_group[primary].insert(at, queued[pos])
        watch: dict[int, list[list[Any]]] = {}
        for key, since in conn.watch.items():
            watch.setdefault(group_of(key), []).append([key, since])
        if any(g not in per_group for g in watch):
            watch_only = [g for g in watch if g not in per_group]
            for g in watch_only:  # a WATCHed key's group takes part (it checks the key, changes nothing)
                per_group[g], positions[g] = [], []
        self.count += 1
        now = wall_ms()
        txn = self.prefix + str(self.count).encode()
        writes = any("write" in (lookup(a[0]).flags if lookup(a[0]) else ()) for a in queued)  # type: ignore[union-attr]
        core = Coordinator(txn=txn, ts=now, deadline=now + self.timeout_ms, primary=primary, positions=positions,
                           writes=writes, classic=self.classic)
        self.running[txn] = _Running(core, conn.slot(), conn.resp3, per_group, watch)
        self._run(txn, core.start())

    def _run(self, txn: bytes, steps: list[Step]) -> None:
        work = deque(steps)
        while work:
            step = work.popleft()
            run = self.running.get(txn)
            if run is None:
                return
            deciding = step.kind == "commit" or (
                step.kind == "resolve" and step.arg is True and run.core.classic and run.core.writes)
            if deciding and self.failpoint == "txn-exit-after-prepare":
                log.warning("failpoint txn-exit-after-prepare: exiting after every participant of %s voted yes",
                            txn.decode())
                os._exit(137)
            self._send(txn, run, step)
        self._settle(txn)

    def _settle(self, txn: bytes) -> None:
        run = self.running.get(txn)
        if run is None:
            return
        core = run.core
        for outcome in core.replies:
            self._answer(run, outcome)
        core.replies.clear()
        if core.phase == "done":
            del self.running[txn]

    def _answer(self, run: _Running, outcome: Outcome) -> None:
        if outcome.kind == "commit":
            self.stats["txn_committed"] += 1
            data = b"*%d\r\n" % len(outcome.replies) + b"".join(outcome.replies)
        elif outcome.kind == "watch":
            self.stats["txn_aborted"] += 1
            data = encode_reply(NULL_ARRAY, run.resp3)
        elif outcome.kind == "abort":
            self.stats["txn_aborted"] += 1
            data = encode_reply(RespError(f"TRYAGAIN transaction aborted: {outcome.reason}; retry"), run.resp3)
        else:
            self.stats["txn_unknown"] += 1
            data = encode_reply(RespError(f"TRYAGAIN transaction outcome unknown: {outcome.reason}"), run.resp3)
        run.slot.resolve(data)
        self.node._flush_clients()

    def _send(self, txn: bytes, run: _Running, step: Step) -> None:
        core, g = run.core, step.group
        if step.kind == "prepare":
            body = [txn, core.ts, core.deadline, core.primary, core.groups, run.per_group[g], run.watch.get(g, []),
                    run.resp3, core.classic]
            self._call(g, b"PREPARE", body, lambda r: self._on_vote(txn, g, r))
        elif step.kind == "commit":
            body = [txn, core.ts, core.deadline, core.groups, run.per_group[g], run.watch.get(g, []), run.resp3]
            self._call(g, b"COMMIT", body, lambda r: self._on_vote(txn, g, r))
        elif step.kind == "decide":
            body = [txn, step.arg, core.deadline, core.groups]
            self._call(g, b"DECIDE", body, lambda r: self._on_decided(txn, r))
        elif step.kind == "resolve":
            self._call(g, b"RESOLVE", [txn, step.arg], lambda r: self._on_resolved(txn, g, r))
        elif step.kind == "forget":  # batched (tick); a lost one is finished by the primary's recovery
            self.forgets.setdefault(g, []).append(txn)
            core.on_forgotten()

    def _step(self, txn: bytes, fn: Callable[[Coordinator], list[Step]]) -> None:
        run = self.running.get(txn)
        if run is not None:
            self._run(txn, fn(run.core))

    def _on_vote(self, txn: bytes, g: int, raw: bytes | None) -> None:
        vote = msgpack.unpackb(raw) if raw is not None else None
        self._step(txn, lambda c: c.on_vote(g, vote, wall_ms()))

    def _on_decided(self, txn: bytes, raw: bytes | None) -> None:
        run = self.running.get(txn)
        if run is None:
            return
        status = raw.decode() if raw is not None else None
        if status is None and wall_ms() < run.core.give_up_ms:  # ask again a little later
            self.delayed.append((wall_ms() + STEP_RETRY_MS, txn, Step(kind="decide", group=run.core.primary,
                                                                      arg="abort")))
            return
        self._step(txn, lambda c: c.on_decided(status, wall_ms()))

    def _on_resolved(self, txn: bytes, g: int, raw: bytes | None) -> None:
        run = self.running.get(txn)
        if run is None:
            return
        steps = run.core.on_resolved(g, raw is not None)
        for s in steps:  # a failed resolve is tried again a little later
            if s.kind == "resolve":
                self.delayed.append((wall_ms() + STEP_RETRY_MS, txn, s))
        self._run(txn, [s for s in steps if s.kind != "resolve"])

    def _call(self, g: int, op: bytes, body: list[Any], done: Callable[[bytes | None], None]) -> None:
        node = self.node
        argv = [b"REPLIKV", b"TXN", op, str(g).encode(), msgpack.packb(body)]
        conn = InternalCall(done)
        if node.leads(g):
            try:
                self.admin(conn, argv)
            except RespError as e:
                conn.reply(e)
        else:
            node.forwarder.forward(conn, node.leader_of(g), [argv], False, admin=True)

    def tick(self) -> None:
        """Often (every tick): forgets, prepares and steps due again, deadlines; recovery now and then."""
        now = wall_ms()
        if self.forgets:
            forgets, self.forgets = self.forgets, {}
            for g, txns in forgets.items():
                self._call(g, b"FORGET", [txns], lambda r: None)
        if self.delayed:
            due = [d for d in self.delayed if d[0] <= now]
            self.delayed = [d for d in self.delayed if d[0] > now]
            for _, txn, step in due:
                run = self.running.get(txn)
                if run is not None:
                    self._send(txn, run, step)
        for txn, run in list(self.running.items()):
            steps = run.core.due(now) + run.core.expire(now)
            if steps or run.core.replies or run.core.phase == "done":
                self._run(txn, steps)
        mono = time.monotonic()
        if mono >= self.next_recovery:
            self.next_recovery = mono + RECOVER_EVERY_S
            if not self.classic:
                self.recover(now)

    # -- participating ---------------------------------------------------------------------------
    def admin(self, conn: Any, argv: list[bytes]) -> None:
        """REPLIKV TXN PREPARE|COMMIT|DECIDE|RESOLVE|FORGET <group> <msgpack> (a coordinator's step) and
        REPLIKV TXN INTENTS; REPLIKV FAILPOINT <name>."""
        node = self.node
        if argv[1].upper() == b"FAILPOINT":
            if not self.failpoints_allowed:
                raise RespError("ERR failpoints are off (start the node with REPLIKV_FAILPOINTS=1)")
            if len(argv) != 3 or argv[2].lower() not in (b"txn-exit-after-prepare", b"off"):
                raise RespError("ERR usage: REPLIKV FAILPOINT txn-exit-after-prepare|off")
            self.failpoint = argv[2].lower().decode() if argv[2].lower() != b"off" else ""
            conn.reply(b"OK")
            return
        op = argv[2].upper() if len(argv) > 2 else b""
        if op == b"INTENTS" and len(argv) == 3:
            conn.reply(self.intents())
            return
        if op not in (b"PREPARE", b"COMMIT", b"DECIDE", b"RESOLVE", b"FORGET") or len(argv) != 5 \
                or not argv[3].isdigit():
            raise RespError("ERR usage: REPLIKV TXN INTENTS (the other TXN subcommands are the nodes' own)")
        g = int(argv[3])
        if g not in node.placement:
            raise RespError(f"ERR no group {g}")
        body = checked_step(op, argv[4], node.placement)  # refused here, wherever the group's leader is
        if not node.leads(g):
            node.forwarder.forward(conn, node.leader_of(g), [argv], False, admin=True)
            return
        now = wall_ms()
        grp = node.groups[g]
        if op == b"PREPARE":
            txn, ts, deadline, primary, groups, commands, watch, resp3, classic = body
            items = prepare_items(grp.sm, commands, now, node.id)
            # WATCHed keys are locked too: a change after this vote, before the decision, would
            # otherwise go unseen (the primary checks its own in the one commit entry)
            keys = list(dict.fromkeys([*command_keys(commands), *(w[0] for w in watch)]))
            data = txn_entry("prepare", now, txn, ts, deadline, primary, groups, items, keys, watch, resp3, classic)
            for k in keys:
                grp.proposing[k] = (txn, deadline)
        elif op == b"COMMIT":
            txn, ts, deadline, groups, commands, watch, resp3 = body
            items = prepare_items(grp.sm, commands, now, node.id)
            data = txn_entry("commit", now, txn, ts, deadline, groups, items, command_keys(commands), watch, resp3)
        elif op == b"DECIDE":
            txn, want, deadline, groups = body
            data = txn_entry("decide", now, txn, want, deadline, groups)
        elif op == b"RESOLVE":
            txn, commit = body
            data = txn_entry("resolve", now, txn, bool(commit))
        else:
            data = txn_entry("forget", now, list(body[0]))
        node.propose_step(g, data, conn)

    def intents(self) -> list[Any]:
        now = wall_ms()
        out: list[Any] = []
        for g, grp in sorted(self.node.groups.items()):
            if self.node.leads(g):
                for p in grp.txns.prepared.values():
                    out.append([p.txn, g, max(0, now - p.ts), *p.keys])
        return out

    # -- recovering ------------------------------------------------------------------------------
    def recover(self, now: int) -> None:
        """Finish what a dead coordinator left (module docstring)."""
        node = self.node
        for g, grp in node.groups.items():
            if not (grp.txns.prepared or grp.txns.records) or not node.leads(g):  # idle groups: one test
                continue
            for p in list(grp.txns.prepared.values()):
                if p.classic or now <= p.deadline or p.txn in self.running or p.txn in self.recovering:
                    continue
                self._start_recovery(_Recovery(p.txn, p.primary, p.groups, p.deadline, None))
            for txn, (status, deadline, groups, _replies) in list(grp.txns.records.items()):
                if (now > deadline + RECORD_KEEP_MS and txn not in self.running and txn not in self.recovering
                        and status in (COMMITTED, ABORTED)):
                    self._start_recovery(_Recovery(txn, g, groups, deadline, status))

    def _start_recovery(self, rec: _Recovery) -> None:
        self.recovering[rec.txn] = rec
        if rec.status is None:
            self._call(rec.primary, b"DECIDE", [rec.txn, "recover", rec.deadline, rec.groups],
                       lambda r: self._recovery_decided(rec, r))
        else:
            self._recovery_resolve(rec)

    def _recovery_decided(self, rec: _Recovery, raw: bytes | None) -> None:
        status = raw.decode() if raw is not None else None
        if status not in (COMMITTED, ABORTED):  # pending, or no answer: the next round asks again
            del self.recovering[rec.txn]
            return
        rec.status = status
        self._recovery_resolve(rec)

    def _recovery_resolve(self, rec: _Recovery) -> None:
        self.stats["txn_recovered"] += 1
        log.info("node %s: finishing transaction %s left by its coordinator: %s", self.node.id, rec.txn.decode(),
                 rec.status)
        rec.left = set(rec.groups)
        for g in rec.groups:
            self._call(g, b"RESOLVE", [rec.txn, rec.status == COMMITTED],
                       lambda r, g=g: self._recovery_resolved(rec, g, r))

    def _recovery_resolved(self, rec: _Recovery, g: int, raw: bytes | None) -> None:
        if raw is None:  # that group will be asked again by the next round
            self.recovering.pop(rec.txn, None)
            return
        rec.left.discard(g)
        if not rec.left and self.recovering.get(rec.txn) is rec:
            if wall_ms() > rec.deadline + RECORD_KEEP_MS:
                self._call(rec.primary, b"FORGET", [[rec.txn]], lambda r: self.recovering.pop(rec.txn, None))
            else:  # kept for a coordinator that may still ask; the primary's scan forgets it later
                del self.recovering[rec.txn]

