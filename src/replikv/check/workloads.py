"""Workloads: what the clients do, over redis-py, and how the final state is read.

Every workload writes values unique per key (``"<process>-<seq>"``), which
the checkers rely on (a value read names its write). Op names per workload:

- ``register``: ``read`` (GET), ``write`` (SET), ``cas`` (``CAS key expected
  new``; only when the cluster has the command: `probe_cas` finds out, and
  modes without it simply issue no cas). Checked for linearizability, stale
  reads, read-your-writes, monotonic reads, lost writes.
- ``counter``: ``incr`` (INCR, value "1") and ``read`` (GET). Final value must
  lie between the acknowledged and the acknowledged + unknown increments.
- ``set``: ``add`` (SADD of a unique element) and ``read`` (SMEMBERS, value
  = JSON list). Every acknowledged element must be in the final set.
- ``set-rm``: ``add`` (SADD of a unique element), ``remove`` (SREM) and
  ``read`` (SMEMBERS, value = JSON list). A client removes some of its own
  elements after their add was acknowledged on the same connection (that
  remove observed the add), removes others' elements concurrently, and now and
  then re-adds one it removed. Checked by the observed-remove rule: no lost
  add, no resurrection, no phantom (check/setrm.py).
- ``append``: ``append`` (RPUSH of a unique element) and ``read`` (LRANGE 0 -1,
  value = JSON list). Every acknowledged element in the final list, in
  real-time order, once.
- ``list-append``: ``txn``, a MULTI/EXEC of 1-4 micro-operations over a few
  keys, each an append (RPUSH of a unique element) or a read (LRANGE 0 -1);
  value = JSON of the micro-operations with the reads' results
  (check/elle.py). Checked for transactional anomalies (G0 ... G2). With
  ``groups`` > 1 (sharded raft) the keys of every window are spread over every
  group, so most transactions span several groups.
- ``bank``: ``transfer`` (WATCH the source, GET it, then MULTI; DECRBY; INCRBY;
  EXEC between accounts spread over every group) and ``read`` (MULTI of a GET
  per account), after an ``init`` op that sets every balance (check/bank.py).
- ``queue``: ``enqueue`` (XADD of a unique value) and ``dequeue`` (one
  message for consumer group ``g``: XREADGROUP, or XAUTOCLAIM of one another
  consumer left pending, then XACK, unless the consumer "crashes" first;
  value = JSON ``{"v": .., "acked": true|false|null}``, null when the XACK's
  outcome is unknown: the delivery itself is certain). Checked for lost XADDs,
  at-least-once delivery, and no delivery after an acknowledged XACK
  (check/queue.py).
- ``lock`` / ``lock-unfenced``: each client, an OS process of its own
  (check/lock_client.py), takes a lock (``acquire``: ``LOCK name ttl WAIT``, value = the
  fencing token), works a little holding it, appends ``"<token>:<process>-<seq>"`` to the
  lock's log list (``write``: ``FENCED name token RPUSH``, or a plain RPUSH in the unfenced
  variant) and releases it (``release``: UNLOCK, value = the token). The ``client-pause``
  nemesis SIGSTOPs a holder before its write for longer than the lease (op ``pause`` of the
  holder's process, nemesis.py), so another client takes the lock meanwhile. Checked by
  check/locks.py: at most one holder at a time by the service's view, and no stale write in the
  log (the fenced variant must have none; the unfenced one shows the overlap).
"""

from __future__ import annotations

import itertools
import json
import random
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import redis

from replikv.check.bank import BANK_KEY, bank_accounts, keys_in_every_group
from replikv.check.elle import txn_value
from replikv.core.sharding.slots import SlotMap, key_slot

WORKLOADS = ("register", "counter", "set", "set-rm", "append", "list-append", "queue", "bank", "lock",
             "lock-unfenced")
# the workloads whose ops (but a register's CAS) are plain commands (Workload.command): the ones
# `replikv check --pipeline N` can send N at a time
PIPELINED_WORKLOADS = ("register", "counter", "set")


def pipeline_refusal(workload: str, pipeline: int) -> str | None:
    """Why ``--pipeline`` cannot be used with ``workload`` (None: it can)."""
    if pipeline > 1 and workload not in PIPELINED_WORKLOADS:
        return f"--pipeline needs one of the workloads {', '.join(PIPELINED_WORKLOADS)}"
    return None


@dataclass(frozen=True, slots=True)
class Invocation:
    op: str
    key: str
    value: str | None = None
    expected: str | None = None
    process: int = -1  # the history process that issues it (set-rm tracks what each one added)


class Workload:
    """Base: keys, the op mix, and how to run one op and the final read."""

    name = ""
    write_ops: tuple[str, ...] = ()

    def __init__(self, keys: int, read_ratio: float = 0.5, cas: bool = False) -> None:
        self.keys = [f"{self.name[0]}{i}" for i in range(keys)]
        self.read_ratio = read_ratio
        self.cas = cas

    def next(self, rng: random.Random, process: int, seq: int) -> Invocation:
        key = rng.choice(self.keys)
        if rng.random() < self.read_ratio:
            return Invocation("read", key)
        return self._write(rng, key, f"{process}-{seq}")

    def _write(self, rng: random.Random, key: str, value: str) -> Invocation:
        raise NotImplementedError

    def execute(self, client: redis.Redis, inv: Invocation) -> str | None:
        """Run ``inv``; returns the value to record (a read's result). Raises on error;
        a cas whose comparison failed raises `CasFailed`. By default ``inv``'s ``command``."""
        cmd = self.command(inv)
        if cmd is None:
            raise NotImplementedError(f"{self.name}: {inv.op}")
        return self.reply_value(inv, client.execute_command(*cmd))

    def command(self, inv: Invocation) -> tuple[str, ...] | None:
        """``inv`` as one plain command that a client may pipeline with others (``--pipeline``),
        or None when it is not one (a CAS, a transaction): those run alone, with ``execute``."""
        return None

    def reply_value(self, inv: Invocation, reply: Any) -> str | None:
        """The value to record for ``inv`` from its ``command``'s reply."""
        raise NotImplementedError

    def final(self, client: redis.Redis, key: str) -> Any:
        """The key's final state, JSON-encodable (read on the leader after heal)."""
        raise NotImplementedError

    def setup(self, client: redis.Redis) -> str | None:
        """Run once before the clients start (raises on failure); returns the value of the
        ``init`` op to record (None: the workload has no setup)."""
        return None

    def slot_keys(self) -> list[str]:
        """Keys whose slots a slot-move nemesis should move (the ones the clients use)."""
        return list(self.keys)


class CasFailed(Exception):
    """The cas ran and did not swap: a definite failure (``ok=false``)."""


class Declined(CasFailed):
    """The workload chose not to act (a transfer the balance does not cover) or a WATCH aborted the
    EXEC: definitely not applied (``ok=false``), and not an error."""


class NotApplied(CasFailed):
    """An error before the EXEC was sent (the WATCH or its GET failed): definitely not applied
    (``ok=false``); counted as a client error."""


class Register(Workload):
    name = "register"
    write_ops = ("write", "cas")

    def _write(self, rng: random.Random, key: str, value: str) -> Invocation:
        if self.cas and rng.random() < 0.3:
            return Invocation("cas", key, value, expected=None)  # expected is filled from the last read
        return Invocation("write", key, value)

    def command(self, inv: Invocation) -> tuple[str, ...] | None:
        if inv.op == "read":
            return ("GET", inv.key)
        return ("SET", inv.key, inv.value or "") if inv.op == "write" else None

    def reply_value(self, inv: Invocation, reply: Any) -> str | None:
        return reply if inv.op == "read" else inv.value  # type: ignore[no-any-return]

    def execute(self, client: redis.Redis, inv: Invocation) -> str | None:
        if inv.op != "cas":
            return super().execute(client, inv)
        reply = client.execute_command("CAS", inv.key, inv.expected or "", inv.value or "")
        if reply in (0, "0", False, None):
            raise CasFailed()
        return inv.value

    def final(self, client: redis.Redis, key: str) -> Any:
        return client.get(key)


class Counter(Workload):
    name = "counter"
    write_ops = ("incr",)

    def _write(self, rng: random.Random, key: str, value: str) -> Invocation:
        return Invocation("incr", key, "1")

    def command(self, inv: Invocation) -> tuple[str, ...] | None:
        return ("GET", inv.key) if inv.op == "read" else ("INCR", inv.key)

    def reply_value(self, inv: Invocation, reply: Any) -> str | None:
        if inv.op == "read":
            return None if reply is None else str(reply)
        return "1"

    def final(self, client: redis.Redis, key: str) -> Any:
        v = client.get(key)
        return 0 if v is None else int(v)  # type: ignore[arg-type]


class SetWorkload(Workload):
    name = "set"
    write_ops = ("add",)

    def _write(self, rng: random.Random, key: str, value: str) -> Invocation:
        return Invocation("add", key, value)

    def command(self, inv: Invocation) -> tuple[str, ...] | None:
        return ("SMEMBERS", inv.key) if inv.op == "read" else ("SADD", inv.key, inv.value or "")

    def reply_value(self, inv: Invocation, reply: Any) -> str | None:
        return json.dumps(sorted(reply)) if inv.op == "read" else inv.value

    def final(self, client: redis.Redis, key: str) -> Any:
        return sorted(client.smembers(key))  # type: ignore[arg-type]


class SetRemove(Workload):
    """Sets with removes (check/setrm.py). What a process added and saw acknowledged is its
    own: it may remove it later (an observing remove: same connection, after the ack) and
    re-add what it removed; others remove elements from a pool of recently acknowledged adds
    (concurrent removes: whether they observed the add is unknown). The bookkeeping is shared
    by the client threads, under a lock; a process's entries are only ever touched by the one
    thread that runs it."""

    name = "set-rm"
    write_ops = ("add", "remove")
    OWN_REMOVE = 0.3  # of writes: remove one of the process's own acknowledged elements
    OTHER_REMOVE = 0.15  # ... remove an element another process added
    READD = 0.05  # ... add again an element the process removed itself
    POOL = 256  # recent acknowledged adds other processes may remove
    KEEP = 64  # a process's own adds (and removes) it remembers: memory stays flat however long the run

    def __init__(self, keys: int, read_ratio: float = 0.5, cas: bool = False) -> None:
        super().__init__(keys, read_ratio, cas)
        self._lock = threading.Lock()
        self._own: dict[int, list[tuple[str, str]]] = {}  # process -> acknowledged adds not yet removed
        self._removed: dict[int, list[tuple[str, str]]] = {}  # process -> its own acknowledged removes
        self._pool: deque[tuple[int, str, str]] = deque(maxlen=self.POOL)  # (process, key, element)

    def next(self, rng: random.Random, process: int, seq: int) -> Invocation:
        if rng.random() < self.read_ratio:
            return Invocation("read", rng.choice(self.keys), process=process)
        x = rng.random()
        with self._lock:
            own = self._own.get(process, [])
            if own and x < self.OWN_REMOVE:
                key, element = own.pop(rng.randrange(len(own)))
                return Invocation("remove", key, element, process=process)
            x -= self.OWN_REMOVE
            others = [(k, e) for p, k, e in self._pool if p != process]
            if others and x < self.OTHER_REMOVE:
                key, element = rng.choice(others)
                return Invocation("remove", key, element, process=process)
            x -= self.OTHER_REMOVE
            removed = self._removed.get(process, [])
            if removed and x < self.READD:
                key, element = removed.pop(rng.randrange(len(removed)))
                return Invocation("add", key, element, process=process)
        return Invocation("add", rng.choice(self.keys), f"{process}-{seq}", process=process)

    def execute(self, client: redis.Redis, inv: Invocation) -> str | None:
        if inv.op == "read":
            return json.dumps(sorted(client.smembers(inv.key)))  # type: ignore[arg-type]
        element = inv.value or ""
        if inv.op == "add":
            client.sadd(inv.key, element)
            with self._lock:
                own = self._own.setdefault(inv.process, [])
                own.append((inv.key, element))
                del own[:-self.KEEP]
                self._pool.append((inv.process, inv.key, element))
        else:
            client.srem(inv.key, element)
            with self._lock:
                if element.startswith(f"{inv.process}-"):  # its own: it may re-add it
                    removed = self._removed.setdefault(inv.process, [])
                    removed.append((inv.key, element))
                    del removed[:-self.KEEP]
        return element

    def final(self, client: redis.Redis, key: str) -> Any:
        return sorted(client.smembers(key))  # type: ignore[arg-type]


class Append(Workload):
    name = "append"
    write_ops = ("append",)

    def _write(self, rng: random.Random, key: str, value: str) -> Invocation:
        return Invocation("append", key, value)

    def execute(self, client: redis.Redis, inv: Invocation) -> str | None:
        if inv.op == "read":
            return json.dumps(client.lrange(inv.key, 0, -1))
        client.rpush(inv.key, inv.value or "")
        return inv.value

    def final(self, client: redis.Redis, key: str) -> Any:
        return client.lrange(key, 0, -1)


class ListAppend(Workload):
    """Keys rotate, as Jepsen's ``max-writes-per-key``: the transactions share a
    window of ``len(keys)`` keys that moves on every ``ROTATE`` transactions
    (all clients together), so lists stay short and a read's size (and the
    history's) stays linear in the run's length instead of quadratic."""

    name = "list-append"
    write_ops = ("txn",)
    ROTATE = 200

    def __init__(self, keys: int, read_ratio: float = 0.5, cas: bool = False, groups: int = 1) -> None:
        super().__init__(keys, read_ratio, cas)
        self.groups = groups
        self._issued = itertools.count()  # shared by the client threads (next() is atomic in CPython)
        self._names: dict[int, str] = {}  # key number -> name (in group number mod groups)
        self._window = 0  # the first key number of the window the last transaction used
        if groups > 1:
            self.keys = keys_in_every_group("l", keys, groups)

    def key_name(self, n: int) -> str:
        """Key number ``n``'s name: ``l<n>``, or with ``groups`` > 1 a name in group ``n mod
        groups``, so each window of ``len(keys)`` keys covers every group."""
        if self.groups <= 1:
            return f"l{n}"
        name = self._names.get(n)
        if name is None:
            name = self._names[n] = _in_group(f"l{n}", n % self.groups, self.groups)
        return name

    def slot_keys(self) -> list[str]:
        """The keys of the current window and the next (the clients' keys now and soon)."""
        window = self._window
        return [self.key_name(window + i) for i in range(2 * len(self.keys))]

    def next(self, rng: random.Random, process: int, seq: int) -> Invocation:
        window = self._window = next(self._issued) // self.ROTATE * len(self.keys)
        mops: list[tuple[str, str, Any]] = []
        for i in range(rng.randint(1, 4)):
            key = self.key_name(window + rng.randrange(len(self.keys)))
            if rng.random() < self.read_ratio:
                mops.append(("r", key, None))
            else:
                mops.append(("append", key, f"{process}-{seq}-{i}"))
        return Invocation("txn", "txn", txn_value(mops))

    def execute(self, client: redis.Redis, inv: Invocation) -> str | None:
        mops = json.loads(inv.value or "[]")
        pipe = client.pipeline(transaction=True)  # MULTI ... EXEC
        for f, key, value in mops:
            if f == "append":
                pipe.rpush(key, value)
            else:
                pipe.lrange(key, 0, -1)
        for mop, result in zip(mops, pipe.execute()):
            if mop[0] == "r":
                mop[2] = list(result)
        return txn_value(mops)

    def final(self, client: redis.Redis, key: str) -> Any:
        return client.lrange(key, 0, -1)


class Bank(Workload):
    """Transfers between accounts spread over every group, and reads of every balance; see
    check/bank.py. Every op uses the key `BANK_KEY`."""

    name = "bank"
    write_ops = ("transfer",)
    INITIAL = 100
    MAX_AMOUNT = 5

    def __init__(self, accounts: int = 8, read_ratio: float = 0.3, groups: int = 3) -> None:
        super().__init__(1, read_ratio)
        self.accounts = bank_accounts(accounts, groups)
        self.keys = [BANK_KEY]

    def slot_keys(self) -> list[str]:
        return list(self.accounts)

    def next(self, rng: random.Random, process: int, seq: int) -> Invocation:
        if rng.random() < self.read_ratio:
            return Invocation("read", BANK_KEY, process=process)
        src, dst = rng.sample(self.accounts, 2)
        amount = rng.randint(1, self.MAX_AMOUNT)
        return Invocation("transfer", BANK_KEY, json.dumps({"from": src, "to": dst, "amount": amount}),
                          process=process)

    def _read_all(self, client: redis.Redis) -> dict[str, int | None]:
        with client.pipeline(transaction=True) as pipe:  # one serializable read of every balance
            for acct in self.accounts:
                pipe.get(acct)
            values = pipe.execute()
        return {acct: None if v is None else int(v) for acct, v in zip(self.accounts, values)}

    def execute(self, client: redis.Redis, inv: Invocation) -> str | None:
        if inv.op == "read":
            return json.dumps(self._read_all(client))
        t = json.loads(inv.value or "{}")
        src, dst, amount = t["from"], t["to"], int(t["amount"])
        with client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(src)
                balance = pipe.get(src)
            except (redis.RedisError, OSError) as e:
                raise NotApplied(f"before EXEC: {e}") from e
            if balance is None or int(balance) < amount:
                raise Declined(f"{src} holds {balance!r}, less than {amount}")
            pipe.multi()
            pipe.decrby(src, amount)
            pipe.incrby(dst, amount)
            try:
                pipe.execute()
            except redis.WatchError as e:
                if "occurred while watching" in str(e):
                    # redis-py turns a timeout or a lost connection during the EXEC into a WatchError
                    # ("A TimeoutError occurred while watching one or more keys"): the EXEC was sent,
                    # its outcome is unknown
                    raise redis.ConnectionError(f"EXEC outcome unknown: {e}") from e
                raise Declined(f"{src} changed after the WATCH") from e
        return inv.value

    def setup(self, client: redis.Redis) -> str | None:
        for acct in self.accounts:
            client.set(acct, self.INITIAL)
        return json.dumps({acct: self.INITIAL for acct in self.accounts})

    def final(self, client: redis.Redis, key: str) -> Any:
        return self._read_all(client)


class Queue(Workload):
    """Streams as job queues, one consumer group ``g`` per stream; see check/queue.py."""

    name = "queue"
    write_ops = ("enqueue",)
    GROUP = "g"
    CRASH = 0.1  # a consumer that read a message dies before its XACK
    CLAIM = 0.2  # ... and one in five dequeues first looks for such messages
    CLAIM_IDLE_MS = 1000  # pending this long: its consumer is taken for dead

    def _write(self, rng: random.Random, key: str, value: str) -> Invocation:
        return Invocation("enqueue", key, value)

    def next(self, rng: random.Random, process: int, seq: int) -> Invocation:
        key = rng.choice(self.keys)
        if rng.random() < self.read_ratio:
            mode = "claim" if rng.random() < self.CLAIM else "new"
            crash = "crash" if rng.random() < self.CRASH else "ack"
            return Invocation("dequeue", key, f"{process}", f"{mode} {crash}")
        return Invocation("enqueue", key, f"{process}-{seq}")

    def execute(self, client: redis.Redis, inv: Invocation) -> str | None:
        if inv.op == "enqueue":
            client.xadd(inv.key, {"v": inv.value or ""})
            return inv.value
        mode, crash = (inv.expected or "new ack").split()
        consumer = f"c{inv.value}"
        message = self._take(client, inv.key, consumer, mode == "claim")
        if message is None:
            return json.dumps(None)
        msg_id, value = message
        acked: bool | None = False
        if crash != "crash":
            try:
                acked = client.xack(inv.key, self.GROUP, msg_id) == 1
            except (redis.RedisError, OSError):
                acked = None  # delivered for sure; whether the XACK applied is unknown
        return json.dumps({"v": value, "acked": acked})

    def _take(self, client: redis.Redis, key: str, consumer: str, claim: bool,
              idle_ms: int | None = None) -> tuple[Any, str] | None:
        """One message for ``consumer``: a pending one idle long enough (``claim``), else a new one."""
        try:
            if claim:
                idle = self.CLAIM_IDLE_MS if idle_ms is None else idle_ms
                _, claimed, *_ = client.xautoclaim(key, self.GROUP, consumer, idle, "0-0", count=1)
                if claimed:
                    msg_id, fields = claimed[0]
                    return msg_id, _field(fields)
            got = client.xreadgroup(self.GROUP, consumer, {key: ">"}, count=1)
        except redis.ResponseError as e:
            if "NOGROUP" not in str(e):
                raise
            try:
                client.xgroup_create(key, self.GROUP, id="0", mkstream=True)
            except redis.ResponseError as e2:
                if "BUSYGROUP" not in str(e2):
                    raise
            return None
        if not got or not got[0][1]:
            return None
        msg_id, fields = got[0][1][0]
        return msg_id, _field(fields)

    def final(self, client: redis.Redis, key: str) -> Any:
        """The stream's values, and what draining the group delivers now (new
        messages, then everything still pending, claimed with no idle time)."""
        entries = [_field(fields) for _, fields in client.xrange(key)]
        drained = []
        for claim in (False, True):
            while (message := self._take(client, key, "final", claim, idle_ms=0)) is not None:
                client.xack(key, self.GROUP, message[0])
                drained.append(message[1])
        return {"entries": entries, "drained": drained}


class LockWorkload(Workload):
    """Clients take a lock, write under it and release it; see the module docstring. The clients
    are OS processes (check/lock_client.py runs the loop, `LockClientPool` starts them), so this
    class holds only what the checker needs: the locks, their constants and the final read."""

    name = "lock"
    write_ops = ("write",)
    TTL_MS = 600
    WAIT_MS = 1000  # below the clients' socket timeout (clients.py)

    def __init__(self, keys: int, fenced: bool = True) -> None:
        super().__init__(keys, read_ratio=0.0)
        self.keys = [f"lock{i}" for i in range(keys)]
        self.fenced = fenced
        self.name = "lock" if fenced else "lock-unfenced"

    @staticmethod
    def log_key(lock: str) -> str:
        return "{%s}log" % lock  # the lock's hash tag: one group with the lock in a sharded cluster

    def final(self, client: redis.Redis, key: str) -> Any:
        return [v.decode() if isinstance(v, bytes) else v for v in client.lrange(self.log_key(key), 0, -1)]


def _field(fields: dict[Any, Any]) -> str:
    """A queue message's value (field ``v``), whether the client decodes replies or not."""
    value = fields.get("v", fields.get(b"v"))
    return value.decode() if isinstance(value, bytes) else str(value)


def _in_group(base: str, group: int, groups: int) -> str:
    """``base``, or ``base.<j>`` with the first ``j`` that falls in ``group`` (`SlotMap.even`)."""
    table = _even_table(groups)
    name, j = base, 0
    while table[key_slot(name.encode())] != group:
        name, j = f"{base}.{j}", j + 1
    return name


_TABLES: dict[int, list[int]] = {}


def _even_table(groups: int) -> list[int]:
    table = _TABLES.get(groups)
    if table is None:
        table = _TABLES[groups] = list(SlotMap.even(groups).groups)
    return table


def make_workload(name: str, keys: int | None = None, cas: bool = False, groups: int = 1) -> Workload:
    """The workload ``name``; ``groups`` (the cluster's Raft groups, 1 when unsharded) spreads the
    keys of list-append and bank over every group."""
    if name == "register":
        return Register(keys or 16, cas=cas)
    if name == "counter":
        return Counter(keys or 4, read_ratio=0.2)
    if name == "set":
        return SetWorkload(keys or 4, read_ratio=0.1)
    if name == "set-rm":
        return SetRemove(keys or 4, read_ratio=0.1)
    if name == "append":
        return Append(keys or 4, read_ratio=0.2)
    if name == "list-append":
        return ListAppend(keys or 6, read_ratio=0.5, groups=groups)
    if name == "queue":
        return Queue(keys or 2, read_ratio=0.5)
    if name == "bank":
        return Bank(keys or 8, read_ratio=0.3, groups=groups)
    if name in ("lock", "lock-unfenced"):
        return LockWorkload(keys or 2, fenced=name == "lock")
    raise ValueError(f"unknown workload {name!r}; choose one of {', '.join(WORKLOADS)}")


def probe_cas(client: redis.Redis) -> bool:
    """True when the cluster answers ``CAS`` (an unknown command, or one the mode refuses as "not
    offered", as multi-leader does: no single writer orders what it compares, is an error)."""
    try:
        client.execute_command("CAS", "__replikv_check_probe", "x", "y")
        return True
    except redis.ResponseError as e:
        text = str(e).lower()
        return "unknown command" not in text and "not offered" not in text
