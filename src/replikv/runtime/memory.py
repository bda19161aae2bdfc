"""maxmemory: a replikv node used as a cache, as Redis's maxmemory and its policies.

``used`` is the process's memory at start (interpreter, code, buffers:
``used_memory_startup``) plus the data set's estimate (``kv/memory.py``,
refreshed at most every ``REFRESH_S`` and after every eviction). When a
write that may grow memory (Redis's ``denyoom`` flag) arrives at the leader
and ``used`` is over ``maxmemory``:

- ``noeviction``: the write is refused with Redis's OOM error (reads and
  deletes go on);
- otherwise keys are evicted until the estimate is under the limit, then
  the write runs; OOM only if there is nothing left to evict (a
  ``volatile-*`` policy with no key that has a TTL).

Which keys, per policy, as Redis approximates them: a pool of candidates
sampled ``maxmemory-samples`` at a time from all keys (``allkeys-*``) or
keys with a TTL (``volatile-*``), the best of each sample evicted: least
recently used (``*-lru``: the last access this node saw), least frequently
used (``*-lfu``: Redis's logarithmic counter with decay), soonest to expire
(``volatile-ttl``), any (``*-random``).

Replication: only the leader evicts, and an eviction is a ``DEL`` of the
chosen keys written to the log like any write (the mode's ``evict``), so
followers never evict on their own and never disagree with the leader, as
Redis replicas do. Access times are this node's: after a failover the new
leader ranks keys by the reads it served.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import math
import random
import sys
import time
from typing import TYPE_CHECKING

from replikv.core.replies import OK, SYNTAX_ERROR, RespError
from replikv.kv.args import parse_int
from replikv.kv.memory import KEY_OVERHEAD, dataset_bytes, key_bytes
from replikv.kv.scan_index import SPACE
from replikv.runtime.info import human_bytes, rss_bytes

if TYPE_CHECKING:
    from replikv.runtime.base import BaseRunner

__all__ = ["OOM", "MemoryLimit", "memory_command", "return_freed_memory"]

OOM = RespError("OOM command not allowed when used memory > 'maxmemory'.")
REFRESH_S = 0.1
_LFU_INIT = 5  # Redis's LFU_INIT_VAL: a new key is not the first to go
_ROUNDS = 64  # samples drawn per eviction before giving up on finding a candidate
_BYTES_HEADER = sys.getsizeof(b"")  # what a bytes object costs beyond its length


def _malloc_trim() -> object:
    """glibc's ``malloc_trim``, or None (another C library)."""
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_TRIM = _malloc_trim()


def return_freed_memory() -> None:
    """Hand the pages of freed heap blocks back to the kernel (glibc ``malloc_trim(0)``,
    which also releases whole free pages inside the heap, not only at its top).

    Called after a compaction: the log entries it dropped are tens of MB of large
    bytes objects on the C heap (1M keys loaded with MSETs: ~39 MB), which glibc
    would keep in the process's RSS for reuse (issue 15's memory target; Redis's
    jemalloc purges freed pages the same way). A few ms for a heap of a few
    hundred MB; a no-op where the C library has no ``malloc_trim``."""
    if _TRIM is not None:
        _TRIM(0)  # type: ignore[operator]


class MemoryLimit:
    def __init__(self, node: "BaseRunner") -> None:
        self.node = node
        self.maxmemory = 0
        self._policy = self.tracking = ""
        self.policy = "noeviction"
        self.samples = 5
        self.lfu_log_factor = 10
        self.lfu_decay_minutes = 1
        self.evicted_keys = 0
        self.startup = rss_bytes()
        self._dataset = 0
        self._at = -math.inf
        # key -> last access (monotonic s) for *-lru, [counter, minute] for *-lfu
        self.access: dict[bytes, object] = {}

    # -- the figure -------------------------------------------------------------------
    def dataset(self) -> int:
        now = time.monotonic()
        if now - self._at >= REFRESH_S:
            self._dataset = dataset_bytes(self.node.sm)
            self._at = now
        return self._dataset

    def used(self) -> int:
        return self.startup + self.dataset()

    @property
    def policy(self) -> str:
        return self._policy

    @policy.setter
    def policy(self, name: str) -> None:
        """Set the policy and what accesses must record under it (``tracking``:
        "lru", "lfu" or ""), once here rather than on every command."""
        self._policy = name
        self.tracking = name[-3:] if name.endswith(("lru", "lfu")) else ""

    # -- admission ----------------------------------------------------------------------
    def admit(self, argv: list[bytes]) -> bool:
        """Before a ``denyoom`` write on the leader: False when it must be
        refused with OOM (after evicting what the policy allows).

        The write's arguments are added to the estimate at once (the sampled
        figure is refreshed only every ``REFRESH_S``): without that, the
        writes of one interval went unseen and the next refresh evicted them
        all in one burst, hot keys included, instead of one key per write."""
        # as kv/memory.py sizes a key: each argument a bytes object (its header too), plus the entry
        self._dataset = self.dataset() + sum(map(len, argv[1:])) + _BYTES_HEADER * (len(argv) - 1) + KEY_OVERHEAD
        if self.used() <= self.maxmemory:
            return True
        if self.policy == "noeviction":
            return False
        need = self.used() - self.maxmemory
        keys, freed = self._choose(need)
        if keys:
            self.node.evict(keys)
            self.evicted_keys += len(keys)
            for key in keys:
                self.access.pop(key, None)
            self._dataset = max(self._dataset - freed, 0)
        return self.used() <= self.maxmemory or (bool(keys) and freed >= need)

    def _choose(self, need: int) -> tuple[list[bytes], int]:
        """Keys whose estimated sizes add up to ``need``, picked by the policy."""
        sm = self.node.sm
        chosen: list[bytes] = []
        taken: set[bytes] = set()
        freed = 0
        volatile = self.policy.startswith("volatile")
        if self.policy == "volatile-ttl" and sm.expires:
            by_ttl = sorted(sm.expires.items(), key=lambda kv: kv[1]) if len(sm.expires) < 4096 else \
                sorted(random.sample(list(sm.expires.items()), 4096), key=lambda kv: kv[1])
            for key, _ in by_ttl:
                if freed >= need:
                    break
                chosen.append(key)
                freed += key_bytes(sm, key)
            return chosen, freed
        rounds = 0
        while freed < need and rounds < _ROUNDS:
            rounds += 1
            evicting = self.node.evicting  # proposed for eviction, not yet applied (raft)
            sample = [k for k in self._sample(volatile)
                      if k not in taken and k not in evicting and k in sm.data]
            if not sample:
                continue
            key = min(sample, key=self._rank)
            taken.add(key)
            chosen.append(key)
            freed += key_bytes(sm, key)
            rounds = 0
        return chosen, freed

    def _sample(self, volatile: bool) -> list[bytes]:
        sm = self.node.sm
        population = sm.expires if volatile else sm.data
        if not population:
            return []
        if len(population) <= self.samples or (volatile and len(sm.expires) * 8 < len(sm.data)):
            pool = list(population)  # few candidates (or TTL keys too rare to draw by chance)
            return random.sample(pool, min(self.samples, len(pool)))
        out: list[bytes] = []
        for _ in range(4 * self.samples):
            _, found = sm.scan(random.randrange(SPACE), 1)
            out += [k for k in found if not volatile or k in sm.expires]
            if len(out) >= self.samples:
                break
        return out[: self.samples]

    def _rank(self, key: bytes) -> float:
        """Lower goes first."""
        mode = self.tracking
        seen = self.access.get(key)
        if mode == "lru":
            return seen if isinstance(seen, float) else 0.0
        if mode == "lfu":
            return self._lfu_decayed(seen) if isinstance(seen, list) else _LFU_INIT
        return random.random()

    # -- access recording (the dispatcher calls it under an lru/lfu policy) ----------------
    def touch(self, keys: list[bytes]) -> None:
        if self.tracking == "lru":
            now = time.monotonic()
            for key in keys:
                self.access[key] = now
        else:
            for key in keys:
                seen = self.access.get(key)
                counter = self._lfu_decayed(seen) if isinstance(seen, list) else _LFU_INIT
                if counter < 255 and random.random() < 1.0 / ((max(counter - _LFU_INIT, 0))
                                                             * self.lfu_log_factor + 1):
                    counter += 1
                self.access[key] = [counter, time.monotonic() / 60]
        if len(self.access) > 2 * len(self.node.sm.data) + 10_000:  # forget deleted keys
            data = self.node.sm.data
            self.access = {k: v for k, v in self.access.items() if k in data}

    def _lfu_decayed(self, seen: list[float]) -> int:
        counter, minute = seen
        if self.lfu_decay_minutes:
            counter -= int((time.monotonic() / 60 - minute) // self.lfu_decay_minutes)
        return max(int(counter), 0)

    # -- INFO ---------------------------------------------------------------------------
    def info(self) -> list[str]:
        dataset = self.dataset()
        used = self.startup + dataset
        rss = rss_bytes()
        return [f"used_memory:{used}", f"used_memory_human:{human_bytes(used)}",
                f"used_memory_rss:{rss}", f"used_memory_rss_human:{human_bytes(rss)}",
                f"used_memory_startup:{self.startup}", f"used_memory_dataset:{dataset}",
                f"maxmemory:{self.maxmemory}", f"maxmemory_human:{human_bytes(self.maxmemory)}",
                f"maxmemory_policy:{self.policy}", "replikv_used_memory_is:estimate"]


def memory_command(node: "BaseRunner", argv: list[bytes]) -> object:
    """MEMORY USAGE key [SAMPLES n] | STATS | DOCTOR | PURGE | MALLOC-STATS | HELP."""
    sub = argv[1].upper()
    sm = node.sm
    if sub == b"USAGE" and len(argv) >= 3:
        samples = 5
        if len(argv) > 3:
            if len(argv) != 5 or argv[3].upper() != b"SAMPLES":
                return SYNTAX_ERROR
            try:
                samples = parse_int(argv[4])
            except RespError as err:
                return err
            if samples < 0:
                return SYNTAX_ERROR
            samples = samples or (1 << 62)  # SAMPLES 0: every element
        if argv[2] not in sm.data or sm.live(argv[2], int(time.time() * 1000)) is None:
            return None
        return key_bytes(sm, argv[2], samples)
    if sub == b"STATS" and len(argv) == 2:
        limit = node.memory
        dataset, keys = limit.dataset(), len(sm.data)
        return {b"peak.allocated": node.peak_rss, b"total.allocated": limit.startup + dataset,
                b"startup.allocated": limit.startup, b"keys.count": keys,
                b"keys.bytes-per-key": dataset // keys if keys else 0, b"dataset.bytes": dataset,
                b"dataset.percentage": round(100 * dataset / max(limit.startup + dataset, 1), 2)}
    if sub == b"DOCTOR" and len(argv) == 2:
        return b"Sam, I have no memory problems (replikv estimates its data set; see INFO memory)"
    if sub == b"PURGE" and len(argv) == 2:
        gc.collect()
        return OK
    if sub == b"MALLOC-STATS" and len(argv) == 2:
        return b"Stats not supported for the current allocator"
    if sub == b"HELP" and len(argv) == 2:
        return ["MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "DOCTOR", "    Return memory problems reports.",
                "MALLOC-STATS", "    Return internal statistics report from the memory allocator.",
                "PURGE", "    Attempt to purge dirty pages for reclamation by the allocator.",
                "STATS", "    Return information about the memory usage of the server.",
                "USAGE <key> [SAMPLES <count>]",
                "    Return memory in bytes used by <key> and its value. Nested values are",
                "    sampled up to <count> times (default: 5, 0 means sample all).",
                "HELP", "    Prints this help."]
    if sub in (b"USAGE", b"STATS", b"DOCTOR", b"PURGE", b"MALLOC-STATS", b"HELP"):
        return RespError(f"ERR wrong number of arguments for 'memory|{sub.decode().lower()}' command")
    return RespError(f"ERR unknown subcommand '{argv[1].decode(errors='replace')}'. Try MEMORY HELP.")
