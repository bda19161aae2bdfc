"""Argument parsing and error replies shared by the data-type families.

Integers follow Redis's ``string2ll``: canonical decimal only, 64-bit
signed. An error is raised (``RespError``) before anything is changed, so a
refused command never leaves a half-applied state behind.

Floats (INCRBYFLOAT, HINCRBYFLOAT) follow Redis 7.0 on x86-64, which
computes in C ``long double`` (x87 80-bit extended: 64-bit significand,
exponents down to 2**-16445 with subnormals, overflow at 2**16384):
:func:`parse_float` is ``string2ld`` (``strtold`` over the whole argument),
:func:`add_floats` an addition rounded to that format, :func:`format_float`
``ld2string(.., LD_STR_HUMAN)`` (``%.17Lf``, trailing zeros and dot
stripped, ``-0`` as ``0``). Values are exact ``Fraction``s holding what the
long double holds, so every replica computes bit-identical results
whatever its platform.

Doubles (sorted-set scores, weights) follow C's ``strtod`` as Redis calls
it: :func:`strtod`, :func:`parse_double` (``getDoubleFromObject``: no
leading space, no overflow, no NaN) and :func:`format_double` (``%.17g``).

SCAN-family arguments: :func:`parse_cursor` (strtoul, as Redis) and
:func:`parse_scan_options` (MATCH/COUNT, and TYPE for SCAN).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import TypeVar

from replikv.core.replies import NOT_INTEGER, SYNTAX_ERROR, RespError
from replikv.kv.glob import compile_glob, matches_all

__all__ = [
    "I64_MAX",
    "I64_MIN",
    "INVALID_CURSOR",
    "NAN_OR_INFINITY",
    "NEEDS_CLOCK",
    "NEVER",
    "NOT_FLOAT",
    "NOT_POSITIVE",
    "NUMKEYS_NOT_POSITIVE",
    "OVERFLOW",
    "PROTO_MAX_BULK_LEN",
    "SEC_MAX",
    "SEC_MIN",
    "STRING_TOO_LONG",
    "TIMEOUT_NOT_FLOAT",
    "add_floats",
    "expire_time_error",
    "format_double",
    "format_float",
    "needs_clock",
    "parse_cursor",
    "parse_double",
    "parse_float",
    "parse_int",
    "parse_int_min",
    "parse_random_count",
    "parse_scan_options",
    "parse_timeout_ms",
    "random_picks",
    "strtod",
]

I64_MIN = -(1 << 63)
I64_MAX = (1 << 63) - 1
SEC_MAX = I64_MAX // 1000  # C's LLONG_MAX / 1000
SEC_MIN = -(I64_MAX // 1000)  # C's LLONG_MIN / 1000 (truncates toward 0)
NEVER = I64_MAX + 1  # later than any expiry time: ``expires.get(key, NEVER)``

OVERFLOW = RespError("ERR increment or decrement would overflow")
PROTO_MAX_BULK_LEN = 512 * 1024 * 1024  # Redis's default proto-max-bulk-len: the longest string
STRING_TOO_LONG = RespError("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
NEEDS_CLOCK = RespError("ERR command needs a clock and cannot be applied from the log")
NOT_POSITIVE = RespError("ERR value is out of range, must be positive")
NUMKEYS_NOT_POSITIVE = RespError("ERR numkeys should be greater than 0")
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


def parse_int_min(arg: bytes, low: int, error: RespError) -> int:
    """An integer >= ``low``; ``error`` for anything else, a non-integer included
    (Redis's custom messages: "numkeys should be greater than 0", ...)."""
    try:
        value = parse_int(arg)
    except RespError:
        raise error from None
    if value < low:
        raise error
    return value


def expire_time_error(name: str) -> RespError:
    return RespError(f"ERR invalid expire time in '{name}' command")


def needs_clock(sm: object, argv: list[bytes], ctx: object) -> object:
    """The apply operation of a command with a relative time (EXPIRE, SETEX, ...).

    The leader always logs such a command rewritten to an absolute time, so
    one found in a log is refused rather than read against a local clock.
    """
    raise NEEDS_CLOCK


# --- long double (x87 80-bit extended) emulation --------------------------------------

NOT_FLOAT = RespError("ERR value is not a valid float")
NAN_OR_INFINITY = RespError("ERR increment would produce NaN or Infinity")

Float = Fraction | float  # a finite value is a Fraction; +-inf is a float

_LD_MANT = 64  # significand bits, explicit integer bit included
_LD_MIN_EXP = -16382  # exponent of the smallest normal number (2**-16382)
_LD_TINY = _LD_MIN_EXP - _LD_MANT + 1  # exponent of the smallest subnormal's unit
_LD_OVERFLOW = 1 << 16384  # the first power of two beyond the largest finite value
_MAX_LD_CHARS = 5 * 1024  # Redis's MAX_LONG_DOUBLE_CHARS: longer input is refused

_DEC_RE = re.compile(rb"([+-]?)([0-9]*)(?:\.([0-9]*))?(?:[eE]([+-]?[0-9]+))?")
_HEX_RE = re.compile(rb"([+-]?)0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?(?:[pP]([+-]?[0-9]+))?")
_INF_RE = re.compile(rb"([+-]?)(?:inf|infinity)", re.IGNORECASE)


def _round_ld(value: Fraction) -> Float:
    """``value`` rounded to the nearest long double (ties to even); +-inf past the range."""
    if value == 0:
        return Fraction(0)
    mag = abs(value)
    num, den = mag.numerator, mag.denominator
    exp = num.bit_length() - den.bit_length()  # 2**exp <= mag < 2**(exp+2)
    if (num << max(0, -exp)) < (den << max(0, exp)):
        exp -= 1  # now 2**exp <= mag < 2**(exp+1)
    unit = max(exp - _LD_MANT + 1, _LD_TINY)  # the value of the last significand bit
    scaled = mag / Fraction(2) ** unit
    mant = round(scaled)  # Fraction rounds half to even
    rounded = Fraction(mant) * Fraction(2) ** unit
    if rounded >= _LD_OVERFLOW:
        return math.inf if value > 0 else -math.inf
    return rounded if value > 0 else -rounded


def _exponent(digits: bytes | None) -> int | None:
    """An exponent's value, or None when it is too large to matter (beyond any long double)."""
    if not digits:
        return 0
    sign = -1 if digits[:1] == b"-" else 1
    body = digits.lstrip(b"+-").lstrip(b"0") or b"0"
    if len(body) > 7:
        return None
    return sign * int(body)


def _parse_decimal(m: re.Match[bytes]) -> Float | None:
    whole, frac = m.group(2), m.group(3) or b""
    if not whole and not frac:
        return None
    digits = (whole + frac).lstrip(b"0")
    if not digits:
        return Fraction(0)
    exp = _exponent(m.group(4))
    if exp is None:  # 1e99999999 overflows, 1e-99999999 underflows to 0 (ERANGE)
        return None
    exp -= len(frac)
    lead = exp + len(digits) - 1  # decimal exponent of the leading digit
    if lead > 4933 or lead < -4952:
        return None
    return Fraction(_int_from_decimal(digits)) * Fraction(10) ** exp


# Python refuses int <-> decimal str conversions of more than 4300 digits; long
# doubles reach 4933 digits, so both directions go by chunks below that.
_CHUNK = 4000


def _int_from_decimal(digits: bytes) -> int:
    value = 0
    for i in range(0, len(digits), _CHUNK):
        chunk = digits[i : i + _CHUNK]
        value = value * 10 ** len(chunk) + int(chunk)
    return value


def _decimal_from_int(value: int) -> bytes:
    """``b"%d" % value`` for a non-negative int of any size."""
    if value < 10**_CHUNK:
        return b"%d" % value
    high, low = divmod(value, 10**_CHUNK)
    return _decimal_from_int(high) + b"%0*d" % (_CHUNK, low)


def _parse_hex(m: re.Match[bytes]) -> Float | None:
    whole, frac = m.group(2), m.group(3) or b""
    if not whole and not frac:
        return None
    digits = (whole + frac).lstrip(b"0")
    if not digits:
        return Fraction(0)
    exp = _exponent(m.group(4))
    if exp is None:
        return None
    exp -= 4 * len(frac)
    lead = exp + 4 * len(digits)
    if lead > 16390 or lead < -16460:
        return None
    return Fraction(int(digits, 16)) * Fraction(2) ** exp


def parse_float(arg: bytes) -> Float:
    """A number as Redis's ``string2ld`` reads it (``strtold``, then checks).

    Accepted: decimal and hexadecimal (``0x1p3``) floats with an optional
    sign, ``inf``/``infinity``; refused (NOT_FLOAT): empty, leading space,
    trailing garbage (a NUL byte included: strtold must consume every byte),
    NaN, and a value that overflows or underflows to 0. A finite result is a
    ``Fraction`` holding the exact long double; infinities are floats.
    """
    if not arg or len(arg) >= _MAX_LD_CHARS or arg[:1].isspace() or b"\0" in arg:
        raise NOT_FLOAT
    text = arg
    if (m := _DEC_RE.fullmatch(text)) is not None:
        value = _parse_decimal(m)
    elif (m := _HEX_RE.fullmatch(text)) is not None:
        value = _parse_hex(m)
    elif (m := _INF_RE.fullmatch(text)) is not None:
        return -math.inf if m.group(1) == b"-" else math.inf
    else:
        value = None
    if value is None:
        raise NOT_FLOAT
    negative = text[:1] == b"-"
    rounded = _round_ld(value)
    if isinstance(rounded, float) or (rounded == 0 and value != 0):
        raise NOT_FLOAT  # ERANGE: underflow to 0 or overflow
    return -rounded if negative else rounded


def add_floats(a: Float, b: Float) -> Fraction:
    """``a + b`` in long double; NAN_OR_INFINITY if it is not finite (as INCRBYFLOAT)."""
    if isinstance(a, float) or isinstance(b, float):  # an infinity: inf, or inf - inf = NaN
        raise NAN_OR_INFINITY
    total = _round_ld(a + b)
    if isinstance(total, float):
        raise NAN_OR_INFINITY
    return total


def format_float(value: Fraction) -> bytes:
    """A finite long double as Redis prints it for humans: ``%.17Lf``, then trailing
    zeros (and a bare ``.``) stripped, ``-0`` printed as ``0``."""
    scaled = round(value * 10**17)  # exact value, rounded half to even as glibc does
    sign = b"-" if scaled < 0 else b""
    digits = _decimal_from_int(abs(scaled)).rjust(18, b"0")
    text = digits[:-17] + b"." + digits[-17:]
    text = text.rstrip(b"0").rstrip(b".")
    if text == b"0":
        return b"0"  # also "-0"
    return sign + text


# --- double (C's strtod and %.17g: sorted-set scores) --------------------------------

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


def parse_double(arg: bytes, error: RespError = NOT_FLOAT) -> float:
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


def format_double(value: float) -> bytes:
    """A double as Redis 7.0 writes it: ``%.17g`` (``1.5``, ``3``, ``inf``, ``-inf``)."""
    return b"%.17g" % value


# --- SCAN family -----------------------------------------------------------------------

_CURSOR_RE = re.compile(rb"[+-]?[0-9]+")


def parse_cursor(arg: bytes) -> int:
    """A SCAN cursor as Redis reads it (strtoul: sign allowed, wraps mod 2**64)."""
    # 2**64 has 20 digits (and int() refuses more than 4300)
    if _CURSOR_RE.fullmatch(arg) is None or len(arg) > 21:
        raise INVALID_CURSOR
    value = int(arg)
    if abs(value) >= 1 << 64:
        raise INVALID_CURSOR
    return value % (1 << 64)


def parse_scan_options(
    argv: list[bytes], first: int, with_type: bool = False
) -> tuple[Callable[[bytes], bool] | None, int, str | None]:
    """``[MATCH pattern] [COUNT n] [TYPE t]`` from ``argv[first:]``: ``(pred,
    count, type)``; ``pred`` None when everything matches. TYPE only if
    ``with_type`` (SCAN); anything else, or COUNT < 1, is a syntax error."""
    pred: Callable[[bytes], bool] | None = None
    count = 10
    want_type: str | None = None
    i = first
    while i < len(argv):
        opt = argv[i].upper()
        if i + 1 >= len(argv):
            raise SYNTAX_ERROR
        arg = argv[i + 1]
        if opt == b"COUNT":
            count = parse_int(arg)
            if count < 1:
                raise SYNTAX_ERROR
        elif opt == b"MATCH":
            pred = None if matches_all(arg) else compile_glob(arg)
        elif opt == b"TYPE" and with_type:
            want_type = arg.decode("utf-8", "replace").lower()
        else:
            raise SYNTAX_ERROR
        i += 2
    return pred, count, want_type


# --- SRANDMEMBER / HRANDFIELD -------------------------------------------------------------

_T = TypeVar("_T")
_COUNT_RANGE = RespError(
    "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807"
)


def parse_random_count(arg: bytes) -> int:
    """The count of SRANDMEMBER/HRANDFIELD: an integer in [-(2**63 - 1), 2**63 - 1]."""
    count = parse_int(arg)
    if count == I64_MIN:
        raise _COUNT_RANGE
    return count


def random_picks(population: Sequence[_T], count: int) -> list[_T]:
    """``count`` > 0: up to ``count`` distinct elements (all of them, in random
    order, if there are fewer); ``count`` < 0: ``-count`` elements drawn with
    repetition; 0 or an empty population: none. Random: a read's reply only,
    never a replicated choice."""
    if count >= 0:
        return random.sample(population, min(count, len(population)))
    if not population:
        return []
    return random.choices(population, k=-count)


TIMEOUT_NOT_FLOAT = RespError("ERR timeout is not a float or out of range")
_TIMEOUT_HORIZON_MS = I64_MAX - 4_102_444_800_000  # Redis adds the time now; this is 2100-01-01


def parse_timeout_ms(arg: bytes) -> int:
    """A blocking command's timeout (seconds, a float as Redis 6+ takes it) in
    ms; 0 blocks forever. As Redis 7.0: the ms are truncated toward zero
    (``BLPOP k 0.0001`` blocks forever, ``-0.0001`` too), a value past the
    64-bit range (``inf``, ``1e20``) is "negative" as C's conversion makes it,
    one that would overflow once the time now is added is "out of range"."""
    if not arg or arg[:1].isspace() or arg[-1:].isspace():
        raise TIMEOUT_NOT_FLOAT
    try:
        seconds = float(arg)
    except ValueError:
        raise TIMEOUT_NOT_FLOAT from None
    if seconds != seconds:  # NaN
        raise TIMEOUT_NOT_FLOAT
    ms = seconds * 1000
    if not -I64_MAX <= ms < I64_MAX:
        raise RespError("ERR timeout is negative")
    tval = int(ms)
    if tval < 0:
        raise RespError("ERR timeout is negative")
    if tval > _TIMEOUT_HORIZON_MS:
        raise RespError("ERR timeout is out of range")
    return tval
