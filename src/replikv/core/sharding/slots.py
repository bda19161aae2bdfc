"""Hash slots: which slot a key belongs to, slot ranges, and the slot -> group table.

Rules implemented (Redis Cluster specification, "Keys distribution model",
"Hash tags" and Appendix A; redis.io/docs/reference/cluster-spec):

* The key space is ``SLOT_COUNT`` = 16384 hash slots. ``HASH_SLOT = CRC16(key)
  mod 16384`` where CRC16 is the XMODEM variant (poly 0x1021, init 0, no
  reflection, no final xor; ``crc16(b"123456789") == 0x31C3``), the one in
  Redis's ``crc16.c``. ``binascii.crc_hqx`` computes exactly this CRC in C.
* Hash tags: if the key contains a ``{``, and a ``}`` somewhere after the first
  ``{``, and at least one byte lies between that first ``{`` and the first
  ``}`` after it, only those bytes are hashed. Otherwise the whole key is
  hashed. So ``{user1000}.following`` and ``{user1000}.followers`` share a
  slot, ``foo{}{bar}`` hashes the whole key (the first tag is empty),
  ``foo{{bar}}`` hashes ``{bar`` and ``foo{bar}{zap}`` hashes ``bar``.
* Slot ranges are written as Redis writes them in ``CLUSTER NODES`` and
  ``redis-cli --cluster``: comma-separated, a single slot ``5461`` or an
  inclusive range ``0-5460``.
* ``SlotMap`` assigns every slot to exactly one group (replikv's "every slot
  belongs to one group", issue 13) and carries an epoch that grows by one on
  every change, as Redis's config epoch orders competing slot claims. The
  initial map splits the slots into K contiguous blocks, the way
  ``redis-cli --cluster create`` gives master i the i-th block
  (``clusterManagerCommandCreate``), so 3 groups own 0-5460, 5461-10922 and
  10923-16383 as in every Redis Cluster tutorial.

Invariants: ``SlotMap.groups`` has exactly ``SLOT_COUNT`` entries, each a
non-negative group id; a normalised range list is sorted, non-overlapping and
never has two ranges that touch (they are merged).
"""

from __future__ import annotations

import binascii
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from replikv.core.invariant import invariant, violated

__all__ = [
    "SLOT_COUNT",
    "SlotMap",
    "SlotSpecError",
    "crc16",
    "format_ranges",
    "hash_tag",
    "key_slot",
    "normalise_ranges",
    "parse_ranges",
    "ranges_to_slots",
    "slots_to_ranges",
]

SLOT_COUNT: Final = 16384

SlotRange = tuple[int, int]
"""An inclusive range of slots ``(start, end)``, ``start <= end``."""


class SlotSpecError(ValueError):
    """A slot, range spec or encoded slot map that is malformed (user input or
    a peer's message): an expected condition, reported to whoever sent it."""


def crc16(data: bytes) -> int:
    """CRC16-XMODEM of ``data``, as Redis's ``crc16.c``."""
    return binascii.crc_hqx(data, 0)


def hash_tag(key: bytes) -> bytes:
    """The part of ``key`` that decides its slot: the hash tag if there is a
    non-empty one, else the whole key (cluster spec, "Hash tags")."""
    start = key.find(b"{")
    if start < 0:
        return key
    end = key.find(b"}", start + 1)
    if end < 0 or end == start + 1:
        return key
    return key[start + 1 : end]


def key_slot(key: bytes) -> int:
    """The hash slot of ``key``: ``CRC16(hash_tag(key)) mod 16384``. A key without ``{`` is its
    own hash tag (the test is the routing of every keyed command: no call for it)."""
    return binascii.crc_hqx(hash_tag(key) if b"{" in key else key, 0) & (SLOT_COUNT - 1)


def _check_slot(slot: int) -> int:
    if not 0 <= slot < SLOT_COUNT:
        raise SlotSpecError(f"slot {slot} is out of range 0-{SLOT_COUNT - 1}")
    return slot


def _parse_int(text: str, spec: str) -> int:
    # Redis's getSlotOrReply accepts only plain decimal digits.
    if not text.isdigit() or not text.isascii():
        raise SlotSpecError(f"invalid slot {text!r} in {spec!r}")
    return _check_slot(int(text))


def parse_ranges(spec: str) -> list[SlotRange]:
    """Parse ``"0-5460,5461,6000-6001"`` into normalised ranges.

    Blanks around items are ignored; an empty item, an end before its start or
    a slot outside 0..16383 raises ``SlotSpecError``. The result is normalised
    (sorted, overlaps and adjacent ranges merged).
    """
    ranges: list[SlotRange] = []
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            raise SlotSpecError(f"empty slot range in {spec!r}")
        start_text, dash, end_text = item.partition("-")
        start = _parse_int(start_text.strip(), spec)
        end = _parse_int(end_text.strip(), spec) if dash else start
        if end < start:
            raise SlotSpecError(f"slot range {item!r} ends before it starts")
        ranges.append((start, end))
    return normalise_ranges(ranges)


def format_ranges(ranges: Iterable[SlotRange], sep: str = ",") -> str:
    """``[(0, 5460), (5461, 5461)]`` -> ``"0-5460,5461"`` (``sep=" "`` gives the
    CLUSTER NODES form). The ranges are written in the order given."""
    return sep.join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def normalise_ranges(ranges: Iterable[SlotRange]) -> list[SlotRange]:
    """Sort ranges and merge the ones that overlap or touch."""
    out: list[SlotRange] = []
    for start, end in sorted(ranges):
        if start > end:
            violated(f"range ({start}, {end}) ends before it starts")
        if out and start <= out[-1][1] + 1:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def slots_to_ranges(slots: Iterable[int]) -> list[SlotRange]:
    """A set of slots as sorted contiguous ranges: ``{1, 2, 3, 5}`` -> ``[(1, 3), (5, 5)]``."""
    return normalise_ranges((_check_slot(s), s) for s in slots)


def ranges_to_slots(ranges: Iterable[SlotRange]) -> Iterator[int]:
    """Every slot of ``ranges``, in the order given."""
    for start, end in ranges:
        yield from range(start, end + 1)


def _even_split(shards: int) -> tuple[int, ...]:
    if not 1 <= shards <= SLOT_COUNT:
        raise SlotSpecError(f"shards must be between 1 and {SLOT_COUNT}, not {shards}")
    # redis-cli's clusterManagerCommandCreate: a float cursor advancing by
    # 16384/K, each block ending at lround(cursor + per - 1), the last one at
    # 16383; so 3 groups get 0-5460, 5461-10922, 10923-16383 as in Redis.
    per = SLOT_COUNT / shards
    cursor = 0.0
    first = 0
    groups: list[int] = []
    for group in range(shards):
        last = math.floor(cursor + per - 1 + 0.5)  # lround, the value is positive
        if last > SLOT_COUNT - 1 or group == shards - 1:
            last = SLOT_COUNT - 1
        groups.extend([group] * (last - first + 1))
        cursor += per
        first = last + 1
    invariant(len(groups) == SLOT_COUNT, lambda: f"even split of {shards} gave {len(groups)} slots")
    return tuple(groups)


@dataclass(frozen=True, slots=True, kw_only=True)
class SlotMap:
    """Which group owns each of the 16384 slots, and the map's epoch.

    Immutable: ``with_slots`` returns a new map with ``epoch + 1``. Two maps are
    equal when they have the same epoch and the same owners.
    """

    groups: tuple[int, ...]  # groups[slot] = owning group id; len == SLOT_COUNT
    epoch: int = 0

    def __post_init__(self) -> None:
        invariant(len(self.groups) == SLOT_COUNT, lambda: f"slot map has {len(self.groups)} slots")
        invariant(self.epoch >= 0, lambda: f"negative slot map epoch {self.epoch}")

    @classmethod
    def even(cls, shards: int, epoch: int = 0) -> SlotMap:
        """K groups ``0..K-1``, group g owning the g-th contiguous block of slots."""
        return cls(groups=_even_split(shards), epoch=epoch)

    def group_of(self, slot: int) -> int:
        """The group owning ``slot`` (SlotSpecError if it is not a slot)."""
        return self.groups[_check_slot(slot)]

    def group_of_key(self, key: bytes) -> int:
        return self.groups[key_slot(key)]

    def group_of_keys(self, keys: Iterable[bytes]) -> int | None:
        """The one group all ``keys`` belong to, or None if they span several
        (the caller replies CROSSSLOT). At least one key is required."""
        group: int | None = None
        for key in keys:
            g = self.groups[key_slot(key)]
            if group is None:
                group = g
            elif g != group:
                return None
        if group is None:
            raise SlotSpecError("no keys")
        return group

    def group_ids(self) -> list[int]:
        """The groups that own at least one slot, sorted."""
        return sorted(set(self.groups))

    def ranges_of(self, group: int) -> list[SlotRange]:
        """The slots of ``group`` as sorted contiguous ranges (empty if none)."""
        return [(a, b) for a, b, g in self.ranges() if g == group]

    def slots_of(self, group: int) -> list[int]:
        return [slot for slot, g in enumerate(self.groups) if g == group]

    def ranges(self) -> list[tuple[int, int, int]]:
        """The whole map as ``(start, end, group)`` runs, in slot order."""
        out: list[tuple[int, int, int]] = []
        start = 0
        groups = self.groups
        for slot in range(1, SLOT_COUNT + 1):
            if slot == SLOT_COUNT or groups[slot] != groups[start]:
                out.append((start, slot - 1, groups[start]))
                start = slot
        return out

    def ranges_by_group(self) -> dict[int, list[SlotRange]]:
        """Every group's ranges, in one pass."""
        out: dict[int, list[SlotRange]] = {}
        for a, b, g in self.ranges():
            out.setdefault(g, []).append((a, b))
        return out

    def with_slots(self, slots: Iterable[int], group: int) -> SlotMap:
        """A new map where ``slots`` belong to ``group``, epoch + 1."""
        if group < 0:
            raise SlotSpecError(f"invalid group id {group}")
        groups = list(self.groups)
        for slot in slots:
            groups[_check_slot(slot)] = group
        return SlotMap(groups=tuple(groups), epoch=self.epoch + 1)

    def with_ranges(self, ranges: Iterable[SlotRange], group: int) -> SlotMap:
        return self.with_slots(ranges_to_slots(ranges), group)

    def counts(self) -> dict[int, int]:
        """How many slots each group owns."""
        out: dict[int, int] = {}
        for g in self.groups:
            out[g] = out.get(g, 0) + 1
        return out

    @classmethod
    def from_ranges(cls, owners: Mapping[int, Iterable[SlotRange]], epoch: int = 0) -> SlotMap:
        """A map from ``{group: ranges}``; every slot must be owned exactly once."""
        groups: list[int | None] = [None] * SLOT_COUNT
        for group, ranges in owners.items():
            if group < 0:
                raise SlotSpecError(f"invalid group id {group}")
            for slot in ranges_to_slots(ranges):
                if groups[_check_slot(slot)] is not None:
                    raise SlotSpecError(f"slot {slot} is given to two groups")
                groups[slot] = group
        missing = [s for s, g in enumerate(groups) if g is None]
        if missing:
            raise SlotSpecError(f"slots {format_ranges(slots_to_ranges(missing))} have no group")
        return cls(groups=tuple(g for g in groups if g is not None), epoch=epoch)
