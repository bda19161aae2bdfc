"""Bit commands on strings: SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP.

The value is the string family's ``bytes``; bit 0 is the most significant
bit of byte 0, as in Redis. Behaviour and error texts are Redis 7.0's
(``bitops.c``):

- an offset is a canonical 64-bit integer, not negative, below 2**32 bits
  (512 MB, Redis's default ``proto-max-bulk-len``, a fixed limit here so
  that every replica agrees), else "bit offset is not an integer or out of
  range"; a bit value other than 0 or 1 is "bit is not an integer or out of
  range";
- SETBIT zero-pads the string up to the offset (creating it if missing),
  keeps the TTL and answers the old bit;
- BITCOUNT and BITPOS look the key up BEFORE parsing their range, so a
  missing key answers 0 (BITCOUNT) or ``bit ? -1 : 0`` (BITPOS) whatever
  the range says; a range is inclusive, negative from the end, in bytes or
  (``BIT``) bits. BITPOS looking for 0 without an explicit end treats the
  string as padded with zeros on the right (it may answer the bit just past
  the end); with one it answers -1 when the range holds no such bit;
- BITOP AND|OR|XOR|NOT dest key...: missing keys are empty strings, shorter
  strings are zero-padded; the result replaces ``dest`` whatever it held
  (without a TTL), or deletes it when the result is empty; the reply is its
  length.

All are deterministic: logged as sent.
"""

from __future__ import annotations

from functools import reduce
from operator import and_, or_, xor
from typing import TYPE_CHECKING, Any

from replikv.core.replies import SYNTAX_ERROR, WRONGTYPE, RespError
from replikv.kv.args import PROTO_MAX_BULK_LEN, parse_int
from replikv.kv.commands import command

if TYPE_CHECKING:
    from replikv.kv.context import ApplyContext
    from replikv.kv.state_machine import StateMachine

Reply = Any

BAD_OFFSET = RespError("ERR bit offset is not an integer or out of range")
BAD_BIT = RespError("ERR bit is not an integer or out of range")
BAD_BITPOS_BIT = RespError("ERR The bit argument must be 1 or 0.")
BITOP_NOT_ONE_KEY = RespError("ERR BITOP NOT must be called with a single source key.")


def _parse_offset(arg: bytes) -> int:
    try:
        offset = parse_int(arg)
    except RespError:
        raise BAD_OFFSET from None
    if offset < 0 or offset >> 3 >= PROTO_MAX_BULK_LEN:
        raise BAD_OFFSET
    return offset


def _bit_at(value: bytes, offset: int) -> int:
    byte = offset >> 3
    if byte >= len(value):
        return 0
    return (value[byte] >> (7 - (offset & 7))) & 1


@command("setbit", 4, "write denyoom")
def setbit(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    offset = _parse_offset(argv[2])
    try:
        on = parse_int(argv[3])
    except RespError:
        raise BAD_BIT from None
    if on not in (0, 1):
        raise BAD_BIT
    key = argv[1]
    old = sm.data.get(key)
    if old is None:
        old = b""
        sm.new_key(key)
    elif type(old) is not bytes:
        raise WRONGTYPE
    byte = offset >> 3
    previous = _bit_at(old, offset)
    if previous == on and byte < len(old):
        return previous  # nothing changes
    value = bytearray(old)
    if byte >= len(value):
        value.extend(bytes(byte + 1 - len(value)))
    mask = 1 << (7 - (offset & 7))
    value[byte] = value[byte] | mask if on else value[byte] & ~mask
    sm.data[key] = bytes(value)
    sm.dirty += 1
    return previous


@command("getbit", 3, "readonly fast")
def getbit(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    offset = _parse_offset(argv[2])
    value = sm.live_as(argv[1], now_ms, bytes)
    return 0 if value is None else _bit_at(value, offset)


def _unit(arg: bytes) -> bool:
    """BYTE or BIT (any case): True for BIT."""
    unit = arg.upper()
    if unit == b"BIT":
        return True
    if unit != b"BYTE":
        raise SYNTAX_ERROR
    return False


def _clamp(start: int, end: int, total: int) -> tuple[int, int]:
    """A Redis range (inclusive, negative from the end) clamped to ``[0, total)``;
    empty when ``start > end``."""
    if start < 0:
        start = max(total + start, 0)
    if end < 0:
        end = max(total + end, 0)
    return start, min(end, total - 1)


def _bits(value: bytes, first: int, last: int) -> int:
    """Bits ``first..last`` (inclusive, bit offsets, ``first <= last`` in range) as an int."""
    chunk = int.from_bytes(value[first >> 3 : (last >> 3) + 1], "big")
    width = ((last >> 3) - (first >> 3) + 1) * 8
    chunk >>= width - 1 - (last - (first & ~7))
    return chunk & ((1 << (last - first + 1)) - 1)


def _bit_offsets(value: bytes, start: int, end: int, is_bit: bool) -> tuple[int, int]:
    """The bit offsets ``(first, last)`` of a BITCOUNT/BITPOS range given in bytes
    or (``is_bit``) bits, clamped to the string; empty when ``first > last``."""
    total = len(value) * 8 if is_bit else len(value)
    start, end = _clamp(start, end, total)
    if is_bit or start > end:
        return start, end
    return start * 8, end * 8 + 7


@command("bitcount", -2, "readonly")
def bitcount(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    value = sm.live_as(argv[1], now_ms, bytes)
    if value is None:
        return 0
    argc = len(argv)
    if argc == 2:
        return int.from_bytes(value, "big").bit_count()
    if argc not in (4, 5):
        raise SYNTAX_ERROR
    start = parse_int(argv[2])
    end = parse_int(argv[3])
    if start < 0 and end < 0 and start > end:
        return 0
    start, end = _bit_offsets(value, start, end, argc == 5 and _unit(argv[4]))
    if start > end:
        return 0
    return _bits(value, start, end).bit_count()


@command("bitpos", -3, "readonly")
def bitpos(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    bit = parse_int(argv[2])
    if bit not in (0, 1):
        raise BAD_BITPOS_BIT
    value = sm.live_as(argv[1], now_ms, bytes)
    if value is None:
        return -1 if bit else 0
    argc = len(argv)
    if argc > 6:
        raise SYNTAX_ERROR
    end_given = argc >= 5
    if argc == 3:
        start, end = 0, len(value) * 8 - 1
    else:
        start = parse_int(argv[3])
        is_bit = argc == 6 and _unit(argv[5])
        end = parse_int(argv[4]) if end_given else len(value) - 1
        start, end = _bit_offsets(value, start, end, is_bit)
    if start > end:
        return -1
    width = end - start + 1
    chunk = _bits(value, start, end)
    if not bit:
        chunk ^= (1 << width) - 1  # look for a 1 in the complement
    if chunk:
        return start + width - chunk.bit_length()
    if bit or end_given:
        return -1
    return end + 1  # zeros are found just past the end


_BITOPS = {b"AND": and_, b"OR": or_, b"XOR": xor}


@command("bitop", -4, "write denyoom", (2, -1, 1))
def bitop(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    op = argv[1].upper()
    if op != b"NOT" and op not in _BITOPS:
        raise SYNTAX_ERROR
    if op == b"NOT" and len(argv) != 4:
        raise BITOP_NOT_ONE_KEY
    sources: list[bytes] = []
    for key in argv[3:]:
        value = sm.data.get(key)
        if value is not None and type(value) is not bytes:
            raise WRONGTYPE
        sources.append(value or b"")
    size = max(map(len, sources))
    dest = argv[2]
    if not size:
        sm.delete(dest)
        return 0
    ints = [int.from_bytes(s.ljust(size, b"\0"), "big") for s in sources]
    if op == b"NOT":
        result = ints[0] ^ ((1 << (size * 8)) - 1)
    else:
        result = reduce(_BITOPS[op], ints)
    if dest in sm.data:
        sm.delete(dest)
    sm.new_key(dest)
    sm.data[dest] = result.to_bytes(size, "big")
    sm.dirty += 1
    return size
