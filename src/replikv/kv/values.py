"""The value types a key can hold, as their families declare them.

Each family module under ``kv/types/`` declares its type once with
:func:`value_type`: the Python type that stores it in ``StateMachine.data``,
the name ``TYPE`` and ``SCAN .. TYPE`` use, its tag in the snapshot format
(``kv/dump.py``) and how it is dumped, loaded and hashed into the digest.

Rules: a tag, once used, keeps its meaning (snapshots on disk carry it);
``dump``/``load`` round-trip exactly; ``digest`` hashes everything that makes
two values different (order only where the type is ordered) and starts with
a marker of its own so two types never hash alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any

__all__ = ["BY_TAG", "VALUE_TYPES", "ValueType", "type_name", "unordered_digest", "value_type"]


@dataclass(frozen=True, slots=True)
class ValueType:
    py_type: type
    name: str  # what TYPE answers
    tag: int  # its number in a snapshot row
    dump: Callable[[Any], Any]  # value -> msgpack-able payload
    load: Callable[[Any], Any]  # payload -> value
    digest: Callable[[Any, Any], None]  # (blake2b hasher, value): feed the value


VALUE_TYPES: dict[type, ValueType] = {}
BY_TAG: dict[int, ValueType] = {}


def value_type(vt: ValueType) -> ValueType:
    """Register a family's value type (tags and Python types are unique)."""
    if vt.py_type in VALUE_TYPES or vt.tag in BY_TAG:
        raise ValueError(f"value type {vt.name}: its Python type or tag {vt.tag} is taken")
    VALUE_TYPES[vt.py_type] = vt
    BY_TAG[vt.tag] = vt
    return vt


def type_name(value: Any) -> str:
    """What TYPE answers for a stored value."""
    return VALUE_TYPES[type(value)].name


def unordered_digest(items: Iterable[bytes]) -> bytes:
    """Order-independent 32-byte hash of distinct byte strings (sets, hash fields).

    The sum mod 2**256 of one blake2b per item, so equal collections hash
    alike whatever their insertion order.
    """
    total = 0
    for item in items:
        total += int.from_bytes(blake2b(item, digest_size=32).digest(), "little")
    return (total & ((1 << 256) - 1)).to_bytes(32, "little")
