"""The lock workload's checkers (check/workloads.py ``LockWorkload``; docs/design.md "Locks").

A key is one lock. Its ops: ``acquire`` (value = the fencing token granted),
``pause`` (the client-pause nemesis SIGSTOPped the holder's process past its
lease: value = the token, from the SIGSTOP to the SIGCONT; check/nemesis.py,
check/lock_client.py), ``write`` (value
``"<token>:<process>-<seq>"`` appended to the lock's log list, fenced or
not), ``release`` (UNLOCK; ok=False: the token no longer held the lock). The
final read is the log list in the order the writes applied. Times are the
checker's monotonic clock (the client processes report on it too: it is
system-wide), the clock the nodes count leases on (one machine: the same rate,
so the clock bound of the design holds with rho = 0).

- ``lock exclusion`` (at most one holder at a time, by the service's view):
  for two grants in token order t1 < t2, the grant of t2 was acknowledged
  no earlier than t1 could have been freed: by its UNLOCK (not before the
  release was sent) or by expiry (not before a full ttl after t1's LOCK was
  sent: the grant applied after that, and the leader counts the whole ttl
  from then on, a new leader from when it took over). A grant acknowledged
  before both is a second holder while the first still held the lock. Tokens
  must also be unique. O(n log n) per lock.
- ``stale writes`` (no write from a stale holder is applied): an entry of the
  log with token t is stale when it follows an entry with a higher token (it
  applied after a newer holder wrote), or when its write was sent after the
  grant of a higher token was acknowledged. The fenced variant claims none
  (FENCED refuses them at apply); the unfenced variant measures them: the
  overlap a lease alone allows once a holder is paused past it.
"""

from __future__ import annotations

import json

from replikv.check.history import KeyOps, Op
from replikv.check.result import Anomaly, CheckResult, FinalStateChecker, KeyChecker, ms

__all__ = ["LockExclusion", "StaleWrites"]

_NEVER = 1 << 62


def _grants(group: KeyOps) -> list[tuple[int, int, Op]]:
    """(token, history index, op) of every acknowledged grant, in token order."""
    out = [(int(op.value), i, op) for i, op in zip(group.indices, group.ops)
           if op.op == "acquire" and op.ok is True and op.value is not None]
    out.sort(key=lambda g: g[0])
    return out


class LockExclusion(KeyChecker):
    """At most one holder at a time by the service's view; see the module docstring."""

    name = "lock exclusion"

    def __init__(self, ttl_ms: int) -> None:
        self.ttl_ns = ttl_ms * 1_000_000
        self.res = CheckResult(self.name, "pass", "")
        self.grants = 0
        self.expired = 0  # a holder's UNLOCK found its lease gone
        self.paused = 0

    def key(self, group: KeyOps) -> None:
        grants = _grants(group)
        self.grants += len(grants)
        released: dict[int, Op] = {}
        for op in group.ops:
            if op.op == "release" and op.value is not None:
                released[int(op.value)] = op
                self.expired += op.ok is False
            elif op.op == "pause" and op.ok is True:
                self.paused += 1
        for (t1, i1, a1), (t2, i2, a2) in zip(grants, grants[1:]):
            if t1 == t2:
                self.res.add(Anomaly("token granted twice", group.key, f"token {t1} was granted to process "
                                     f"{a1.process} and to process {a2.process}", [i1, i2], a2.call, a2.process))
                continue
            rel = released.get(t1)
            by_release = rel.call if rel is not None and rel.ok is not False else _NEVER
            by_expiry = a1.call + self.ttl_ns
            freed = min(by_release, by_expiry)
            if a2.ret is not None and a2.ret < freed:
                how = (f"its UNLOCK was sent at {ms(by_release):.1f} ms" if by_release < _NEVER
                       else "it was never released")
                self.res.add(Anomaly(
                    "two holders", group.key,
                    f"token {t2} (process {a2.process}) was granted by {ms(a2.ret):.1f} ms while token {t1} "
                    f"(process {a1.process}, LOCK sent at {ms(a1.call):.1f} ms, ttl {self.ttl_ns // 1_000_000} "
                    f"ms) still held the lock: {how}", [i1, i2], a2.ret, a2.process,
                    magnitude=ms(freed - a2.ret)))

    def result(self) -> CheckResult:
        res = self.res
        res.stats.update({"grants": self.grants, "expired before release": self.expired, "paused": self.paused})
        if res.count:
            res.status = "fail"
            res.summary = f"{res.count} grant(s) while another holder still held the lock"
        elif not self.grants:
            res.status = "unknown"
            res.summary = "no lock was granted: nothing to judge (is LOCK offered by this mode?)"
        else:
            res.summary = (f"{self.grants} grants, each after the previous holder released or its lease ran out "
                           f"({self.expired} expired under a paused holder)")
        return res


class StaleWrites(FinalStateChecker):
    """No write from a stale holder in the applied log; see the module docstring."""

    name = "stale writes"
    what = "lock log(s)"

    def __init__(self) -> None:
        super().__init__()
        self.entries = 0
        self.refused = 0  # fenced writes the store refused

    def stats(self) -> dict[str, int]:
        return {"entries": self.entries, "fenced out": self.refused}

    def key(self, group: KeyOps) -> None:
        final = group.final
        if final is None or final.ok is not True or final.value is None:
            self.missing_final.append(group.key)
            return
        log = json.loads(final.value)
        self.entries += len(log)
        grants = _grants(group)
        writes: dict[str, tuple[int, Op]] = {}
        for i, op in zip(group.indices, group.ops):
            if op.op == "write" and op.value is not None:
                writes[op.value] = (i, op)
                self.refused += op.ok is False
        highest = 0
        for entry in log:
            token = int(str(entry).split(":", 1)[0])
            w = writes.get(entry)
            superseded = [t for t, _, a in grants if t > token and w is not None and a.ret is not None
                          and a.ret < w[1].call]
            if token < highest or superseded:
                newer = max([highest, *superseded])
                self.res.add(Anomaly(
                    "stale write", group.key,
                    f"the write {entry!r} of token {token} was applied after token {newer} "
                    + ("wrote" if token < highest else "was granted"),
                    [w[0]] if w else [], w[1].call if w else 0, w[1].process if w else None))
            highest = max(highest, token)

    def _failed(self) -> str:
        return f"{self.res.count} write(s) of a stale holder applied"

    def _passed(self) -> str:
        return f"{self.entries} writes, none from a stale holder ({self.refused} fenced out)"
