"""Key slots, slot ranges and the SlotMap (core/sharding/slots.py)."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot as redis_py_key_slot

from replikv.core.sharding import (
    SLOT_COUNT,
    SlotMap,
    SlotSpecError,
    crc16,
    format_ranges,
    hash_tag,
    key_slot,
    normalise_ranges,
    parse_ranges,
    ranges_to_slots,
    slots_to_ranges,
)


def _crc16_bitwise(data: bytes) -> int:
    """CRC16-XMODEM bit by bit, straight from its definition (poly 0x1021,
    init 0, no reflection): an independent reference for crc16()."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def test_crc16_check_value_of_the_spec() -> None:
    assert crc16(b"123456789") == 0x31C3
    assert crc16(b"") == 0


@given(st.binary(max_size=64))
def test_crc16_matches_the_bitwise_definition(data: bytes) -> None:
    assert crc16(data) == _crc16_bitwise(data)


def test_key_slot_examples_from_the_redis_docs() -> None:
    assert key_slot(b"somekey") == 11058
    assert key_slot(b"foo{hash_tag}") == key_slot(b"bar{hash_tag}") == 2515
    assert key_slot(b"{user1000}.following") == key_slot(b"{user1000}.followers")


@pytest.mark.parametrize(
    ("key", "hashed"),
    [
        (b"{user1000}.following", b"user1000"),
        (b"foo{}{bar}", b"foo{}{bar}"),  # the first tag is empty: the whole key
        (b"foo{{bar}}zap", b"{bar"),  # first '{', then the first '}' after it
        (b"foo{bar}{zap}", b"bar"),  # only the first tag counts
        (b"{}", b"{}"),
        (b"{", b"{"),
        (b"}{", b"}{"),
        (b"a}b{c}", b"c"),
        (b"no tag", b"no tag"),
        (b"", b""),
    ],
)
def test_hash_tag_rules(key: bytes, hashed: bytes) -> None:
    assert hash_tag(key) == hashed
    assert key_slot(key) == crc16(hashed) % SLOT_COUNT


def test_key_slot_agrees_with_redis_py_on_random_keys() -> None:
    rng = random.Random(13)
    alphabet = b"ab{}{}\x00\xff0123456789"
    for _ in range(5000):
        n = rng.randrange(0, 24)
        # Keys made mostly of braces exercise every hash-tag branch.
        key = (
            bytes(rng.choice(alphabet) for _ in range(n))
            if rng.random() < 0.5
            else rng.randbytes(n)
        )
        assert key_slot(key) == redis_py_key_slot(key), key


@given(st.binary(max_size=40))
def test_key_slot_agrees_with_redis_py(key: bytes) -> None:
    assert 0 <= key_slot(key) < SLOT_COUNT
    assert key_slot(key) == redis_py_key_slot(key)


def test_parse_and_format_ranges() -> None:
    assert parse_ranges("0-5460,5461") == [(0, 5461)]
    assert parse_ranges(" 10-20 , 5, 21-30,0-0") == [(0, 0), (5, 5), (10, 30)]
    assert parse_ranges("16383") == [(16383, 16383)]
    assert format_ranges([(0, 5460), (5461, 5461), (7000, 7002)]) == "0-5460,5461,7000-7002"
    assert format_ranges([(0, 1), (3, 3)], sep=" ") == "0-1 3"


@pytest.mark.parametrize(
    "spec", ["", "1,,2", "16384", "-1", "5-3", "a", "1-", "1-2-3", "+5", "0x10", "1.5", "١"]
)
def test_parse_ranges_refuses_bad_specs(spec: str) -> None:
    with pytest.raises(SlotSpecError):
        parse_ranges(spec)


@given(st.sets(st.integers(0, SLOT_COUNT - 1), max_size=200))
def test_slots_to_ranges_is_sorted_contiguous_and_exact(slots: set[int]) -> None:
    ranges = slots_to_ranges(slots)
    assert list(ranges_to_slots(ranges)) == sorted(slots)
    for (_, end), (start, _) in itertools.pairwise(ranges):
        assert start > end + 1  # neither overlapping nor touching
    if ranges:
        assert parse_ranges(format_ranges(ranges)) == ranges


@given(st.lists(st.tuples(st.integers(0, 100), st.integers(0, 20)), max_size=20))
def test_normalise_ranges_keeps_the_same_slots(pairs: list[tuple[int, int]]) -> None:
    ranges = [(a, a + d) for a, d in pairs]
    merged = normalise_ranges(ranges)
    assert set(ranges_to_slots(merged)) == set(ranges_to_slots(ranges))
    assert merged == slots_to_ranges(ranges_to_slots(ranges))


def test_even_split_is_redis_clis() -> None:
    m = SlotMap.even(3)
    assert m.ranges() == [(0, 5460, 0), (5461, 10922, 1), (10923, 16383, 2)]
    assert m.ranges_of(1) == [(5461, 10922)]
    assert m.group_of(0) == 0 and m.group_of(5461) == 1 and m.group_of(16383) == 2
    assert m.epoch == 0
    assert SlotMap.even(1).ranges() == [(0, SLOT_COUNT - 1, 0)]


@given(st.integers(1, 600))
def test_even_split_gives_contiguous_blocks_of_near_equal_size(k: int) -> None:
    m = SlotMap.even(k)
    runs = m.ranges()
    assert [g for _, _, g in runs] == list(range(k))  # group g: one block, in order
    sizes = [b - a + 1 for a, b, _ in runs]
    assert sum(sizes) == SLOT_COUNT and max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("k", [0, -1, SLOT_COUNT + 1])
def test_even_split_refuses_impossible_counts(k: int) -> None:
    with pytest.raises(SlotSpecError):
        SlotMap.even(k)


def test_with_slots_returns_a_new_map_one_epoch_later() -> None:
    m = SlotMap.even(3)
    moved = m.with_slots(range(1001), 2)
    assert moved.epoch == 1 and m.epoch == 0
    assert m.group_of(0) == 0  # the old map is unchanged
    assert moved.ranges_of(2) == [(0, 1000), (10923, 16383)]
    assert moved.ranges_of(0) == [(1001, 5460)]
    assert moved.group_of_key(b"{x}") == moved.group_of(key_slot(b"x"))
    assert moved.with_ranges(parse_ranges("0-1000"), 0).ranges_of(0) == [(0, 5460)]
    assert moved.counts() == {0: 5460 - 1000, 1: 5462, 2: 1001 + 5461}
    assert moved != m and SlotMap.even(3) == m
    with pytest.raises(SlotSpecError):
        m.with_slots([SLOT_COUNT], 1)
    with pytest.raises(SlotSpecError):
        m.with_slots([1], -1)


def test_from_ranges_refuses_gaps_and_doubles() -> None:
    with pytest.raises(SlotSpecError, match="no group"):
        SlotMap.from_ranges({0: [(0, 100)]})
    with pytest.raises(SlotSpecError, match="two groups"):
        SlotMap.from_ranges({0: [(0, 16383)], 1: [(5, 5)]})


def test_group_of_keys() -> None:
    m = SlotMap.even(3)
    assert m.group_of_keys([b"{a}1", b"{a}2"]) == m.group_of(key_slot(b"a"))
    left = next(k for k in (b"k%d" % i for i in range(100)) if key_slot(k) <= 5460)
    right = next(k for k in (b"k%d" % i for i in range(100)) if key_slot(k) > 10922)
    assert m.group_of_keys([left, right]) is None
    assert m.group_of_keys([left, left]) == 0
    # Different slots, same group: allowed (replikv checks groups, not slots).
    other = next(
        k
        for k in (b"j%d" % i for i in range(100))
        if key_slot(k) <= 5460 and key_slot(k) != key_slot(left)
    )
    assert m.group_of_keys([left, other]) == 0
    with pytest.raises(SlotSpecError):
        m.group_of_keys([])
