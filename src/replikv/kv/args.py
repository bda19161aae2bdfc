"""Argument parsing and error replies shared by the data-type families.

Integers follow Redis's ``string2ll``: canonical decimal only, 64-bit
signed. Floats follow C's ``strtod`` as Redis calls it (decimal or hex
mantissa, ``inf``/``infinity``/``nan`` in any case, the whole argument
consumed); scores and increments go through :func:`parse_float` (Redis's
``getDoubleFromObject``: no leading space, no overflow, no NaN) and are
written back with :func:`format_float` (``%.17g``, as Redis 7.0 does). An
error is raised (``RespError``) before anything is changed, so a refused
command never leaves a half-applied state behind.
"""

from __future__ import annotations

import math
import re

from replikv.core.replies import NOT_INTEGER, RespError

__all__ = [
    "I64_MAX",
    "I64_MIN",
    "INVALID_CURSOR",
    "NEEDS_CLOCK",
    "NEVER",
    "NOT_FLOAT",
    "OVERFLOW",
    "SEC_MAX",
    "SEC_MIN",
    "expire_time_error",
    "format_float",
    "needs_clock",
    "parse_cursor",
    "parse_float",
    "parse_int",
    "strtod",
]

I64_MIN = -(1 << 63)
I64_MAX = (1 << 63) - 1
SEC_MAX = I64_MAX // 1000  # C's LLONG_MAX / 1000
SEC_MIN = -(I64_MAX // 1000)  # C's LLONG_MIN / 1000 (truncates toward 0)
NEVER = I64_MAX + 1  # later than any expiry time: ``expires.get(key, NEVER)``

OVERFLOW = RespError("ERR increment or decrement would overflow")
NEEDS_CLOCK = RespError("ERR command needs a clock and cannot be applied from the log")
NOT_FLOAT = RespError("ERR value is not a valid float")
INVALID_CURSOR = RespError("ERR invalid cursor")


def parse_int(arg: bytes) -> int:
    """Parse a 64-bit signed integer exactly as Redis's string2ll does.

    Only canonical decimal is accepted: no sign ``+``, no leading zeros, no
    ``-0``, no spaces; otherwise NOT_INTEGER is raised.
    """
    # Fast path: up to 18 ASCII digits without a leading zero always fit.
    if arg.isdigit() and len(arg) < 19 and (arg[0] != 0x30 or len(arg) == 1):
        return int(arg)
    try:
        value = int(arg)
    except ValueError:
        raise NOT_INTEGER from None
    if b"%d" % value != arg or not I64_MIN <= value <= I64_MAX:
        raise NOT_INTEGER
    return value


def expire_time_error(name: str) -> RespError:
    return RespError(f"ERR invalid expire time in '{name}' command")


def needs_clock(sm: object, argv: list[bytes], ctx: object) -> object:
    """The apply operation of a command with a relative time (EXPIRE, SETEX, ...).

    The leader always logs such a command rewritten to an absolute time, so
    one found in a log is refused rather than read against a local clock.
    """
    raise NEEDS_CLOCK


# C's strtod grammar (C locale): sign, then a hex or decimal mantissa with an
# optional exponent, or inf/infinity, or nan with an optional (n-char-seq).
_C_DOUBLE = re.compile(
    rb"[+-]?(?:"
    rb"(?P<hex>0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?)"
    rb"|(?P<dec>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    rb"|(?P<inf>(?i:inf|infinity))"
    rb"|(?P<nan>(?i:nan)(?:\([0-9A-Za-z_]*\))?)"
    rb")"
)
_C_SPACE = b" \t\n\v\f\r"


def strtod(arg: bytes) -> tuple[float, bool] | None:
    """``arg`` as C's ``strtod`` reads it when it must consume all of it.

    Leading white space is skipped as strtod does; the empty string reads as
    0 (strtod converts nothing and stops at its end). Returns ``(value,
    out_of_range)`` (``out_of_range``: the text is finite but the value
    overflowed to infinity or underflowed to zero, where strtod sets
    ERANGE), or None when something is left over. NaN is returned as NaN.
    """
    text = arg.lstrip(_C_SPACE)
    if not text:
        return (0.0, False) if not arg else None
    m = _C_DOUBLE.fullmatch(text)
    if m is None:
        return None
    if m.group("nan") is not None:
        return math.nan, False
    if m.group("inf") is not None:
        return (-math.inf if text[0] == 0x2D else math.inf), False
    if m.group("hex") is not None:
        try:
            value = float.fromhex(text.decode())
        except OverflowError:
            return (-math.inf if text[0] == 0x2D else math.inf), True
        mantissa = m.group("hex").lower().split(b"p")[0][2:]
    else:
        value = float(text)
        mantissa = m.group("dec").lower().split(b"e")[0]
    if math.isinf(value):
        return value, True
    return value, value == 0 and mantissa.strip(b"0.") != b""


def parse_float(arg: bytes, error: RespError = NOT_FLOAT) -> float:
    """A double as Redis's ``getDoubleFromObject`` accepts it, else ``error``.

    The whole argument must be a strtod number with no leading white space,
    in range (no overflow to infinity, no underflow to zero) and not NaN;
    ``inf``/``-inf`` themselves are accepted.
    """
    if not arg or arg[0] in _C_SPACE:
        raise error
    parsed = strtod(arg)
    if parsed is None or parsed[1] or math.isnan(parsed[0]):
        raise error
    return parsed[0]


def format_float(value: float) -> bytes:
    """A double as Redis 7.0 writes it: ``%.17g`` (``1.5``, ``3``, ``inf``, ``-inf``)."""
    return b"%.17g" % value


_CURSOR_RE = re.compile(rb"[+-]?[0-9]+")


def parse_cursor(arg: bytes) -> int:
    """A SCAN-family cursor as Redis reads it (strtoul: sign allowed, wraps mod 2**64)."""
    # 2**64 has 20 digits (and int() refuses more than 4300)
    if _CURSOR_RE.fullmatch(arg) is None or len(arg) > 21:
        raise INVALID_CURSOR
    value = int(arg)
    if abs(value) >= 1 << 64:
        raise INVALID_CURSOR
    return value % (1 << 64)
