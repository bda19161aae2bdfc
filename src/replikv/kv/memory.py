"""How much memory the data set takes: per value, per key and in all, estimated.

Python has no allocator figure like Redis's jemalloc ``used_memory``, and
a process's RSS does not shrink when keys are deleted (freed memory stays
with the allocator for reuse), so eviction cannot be steered by RSS. These
estimates are what MEMORY USAGE answers and what ``maxmemory`` is compared
against (``runtime/memory.py``):

- a value is ``sys.getsizeof`` of its container plus its elements; a
  container of more than ``samples`` elements is estimated from that many
  elements (as Redis's MEMORY USAGE samples 5 by default);
- a key adds its own size and ``KEY_OVERHEAD`` for its entries in the
  key and TTL tables;
- the data set is the sum over all keys when there are few, else the mean
  of ``DATASET_SAMPLES`` random keys (drawn through the SCAN index) times
  the number of keys.

Estimates, stated as such: INFO's ``used_memory_dataset`` is this figure,
not a measurement, and it errs by the sampling of very uneven data sets.
"""

from __future__ import annotations

import random
from itertools import islice
from sys import getsizeof
from typing import TYPE_CHECKING, Any

from replikv.kv.scan_index import SPACE

if TYPE_CHECKING:
    from replikv.kv.state_machine import StateMachine

__all__ = ["DATASET_SAMPLES", "KEY_OVERHEAD", "dataset_bytes", "key_bytes", "value_bytes"]

KEY_OVERHEAD = 72  # a dict entry and its share of the table, here and in the scan index
DATASET_SAMPLES = 64


def value_bytes(value: Any, samples: int = 5) -> int:
    """The estimated size of a stored value (see the module docstring)."""
    t = type(value)
    if t is bytes:
        return getsizeof(value)
    if t is dict or isinstance(value, dict):  # a SortedDict too (stream entries)
        n = len(value)
        pairs = list(islice(value.items(), samples))
        each = sum(value_bytes(k) + value_bytes(v) for k, v in pairs) / len(pairs) if pairs else 0
        return getsizeof(value) + int(each * n)
    if t in (list, tuple, set, frozenset) or hasattr(value, "__len__") and hasattr(value, "__iter__"):
        if t not in (list, tuple, set, frozenset, bytes) and hasattr(value, "__slots__"):
            return getsizeof(value) + sum(value_bytes(getattr(value, s, None), samples)
                                          for s in value.__slots__)
        n = len(value)
        items = list(islice(iter(value), samples))
        each = sum(value_bytes(x) for x in items) / len(items) if items else 0
        return getsizeof(value) + int(each * n)
    if hasattr(value, "__slots__"):
        return getsizeof(value) + sum(value_bytes(getattr(value, s, None), samples) for s in value.__slots__)
    return getsizeof(value)


def key_bytes(sm: StateMachine, key: bytes, samples: int = 5) -> int:
    """MEMORY USAGE: ``key``'s value, its name and its table entries; 0 if missing."""
    value = sm.data.get(key)
    if value is None:
        return 0
    return value_bytes(value, samples) + getsizeof(key) + KEY_OVERHEAD


def dataset_bytes(sm: StateMachine) -> int:
    """The estimated size of every key and value (see the module docstring)."""
    data = sm.data
    if len(data) <= DATASET_SAMPLES:
        return sum(key_bytes(sm, k) for k in data)
    drawn: list[bytes] = []
    for _ in range(4 * DATASET_SAMPLES):
        _, found = sm.scan(random.randrange(SPACE), 1)
        drawn += found
        if len(drawn) >= DATASET_SAMPLES:
            break
    if not drawn:
        return 0
    mean = sum(key_bytes(sm, k) for k in drawn) / len(drawn)
    return int(mean * len(data))
