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

SCAN-family arguments: :func:`parse_cursor` (strtoul, as Redis) and
:func:`parse_scan_options` (MATCH/COUNT, and TYPE for SCAN).
"""

from __future__ import annotations

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
    "NEEDS_CLOCK",
    "NEVER",
    "NOT_A_FLOAT",
    "NOT_POSITIVE",
    "NUMKEYS_NOT_POSITIVE",
    "OVERFLOW",
    "SEC_MAX",
    "SEC_MIN",
    "add_floats",
    "expire_time_error",
    "format_float",
    "needs_clock",
    "parse_cursor",
    "parse_float",
    "parse_int",
    "parse_random_count",
    "parse_scan_options",
    "random_picks",
"parse_int_min",
"parse_timeout_ms",
]

I64_MIN = -(1 << 63)
I64_MAX = (1 << 63) - 1
SEC_MAX = I64_MAX // 1000  # C's LLONG_MAX / 1000
SEC_MIN = -(I64_MAX // 1000)  # C's LLONG_MIN / 1000 (truncates toward 0)
NEVER = I64_MAX + 1  # later than any expiry time: ``expires.get(key, NEVER)``

OVERFLOW = RespError("ERR increment or decrement would overflow")
NEEDS_CLOCK = RespError("ERR command needs a clock and cannot be applied from the log")
NOT_POSITIVE = RespError("ERR value is out of range, must be positive")
NUMKEYS_NOT_POSITIVE = RespError("ERR numkeys should be greater than 0")
NOT_A_FLOAT = RespError("ERR value is not a valid float")
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


# --- long double ------------------------------------------------------------------------

_LD_SUBNORMAL_EXP = -16382 - 63  # the quantum of subnormals: 2**-16445
_LD_OVERFLOW = Fraction(1 << 16384)  # the first power of two past the largest finite value
_LD_MAX_CHARS = 5 * 1024  # Redis's MAX_LONG_DOUBLE_CHARS: longer arguments are refused
_INF = float("inf")
_C_SPACE = b" \t\n\v\f\r"
_DECIMAL_RE = re.compile(rb"([+-]?)(?:([0-9]+)\.?([0-9]*)|\.([0-9]+))(?:[eE]([+-]?[0-9]+))?")
_HEX_RE = re.compile(
    rb"([+-]?)0[xX](?:([0-9a-fA-F]+)\.?([0-9a-fA-F]*)|\.([0-9a-fA-F]+))(?:[pP]([+-]?[0-9]+))?"
)
_INF_RE = re.compile(rb"([+-]?)(?:inf|infinity)", re.IGNORECASE)


def _round_ld(x: Fraction) -> Fraction | float:
    """``x`` rounded to the nearest long double (ties to even); ±inf on overflow."""
    if x == 0:
        return Fraction(0)
    a = abs(x)
    n, d = a.numerator, a.denominator
    e = n.bit_length() - d.bit_length()  # floor(log2(a)) is e or e - 1
    if (n < d << e) if e >= 0 else (n << -e < d):
        e -= 1
    q = max(e - 63, _LD_SUBNORMAL_EXP)  # 64 significant bits, fewer once subnormal
    num, den = (n, d << q) if q >= 0 else (n << -q, d)
    m, r = divmod(num, den)
    if 2 * r > den or (2 * r == den and m & 1):
        m += 1
    rounded = Fraction(m << q) if q >= 0 else Fraction(m, 1 << -q)
    if rounded >= _LD_OVERFLOW:
        return _INF if x > 0 else -_INF
    return rounded if x > 0 else -rounded


_CHUNK = 4000  # decimal digits per int <-> str step (Python refuses more than 4300 at once)


def _decimal_to_int(digits: str) -> int:
    """``int(digits)`` for any length (a 5 KiB float argument has 5,000+ digits)."""
    value = 0
    for i in range(0, len(digits), _CHUNK):
        part = digits[i : i + _CHUNK]
        value = value * 10 ** len(part) + int(part)
    return value


def _int_to_decimal(n: int) -> str:
    """``str(n)`` (n >= 0) for any size (a long double up to 2**16384 has 4,933 digits)."""
    if n < 10**_CHUNK:
        return str(n)
    high, low = divmod(n, 10**_CHUNK)
    return _int_to_decimal(high) + str(low).zfill(_CHUNK)


def _digits_value(digits: str, base: int, exp: int, exp_base: int) -> Fraction:
    """``int(digits, base) * exp_base**exp`` exactly; NOT_A_FLOAT when it lies so
    far outside the long double range that it overflows or rounds to zero
    (checked on the order of magnitude first, to keep huge exponents out of
    big integers)."""
    digits = digits.lstrip("0")
    if not digits:
        return Fraction(0)
    mantissa = _decimal_to_int(digits) if base == 10 else int(digits, 16)
    if exp_base == 10:
        order = len(digits) - 1 + exp  # 10**order <= value < 10**(order + 1)
        if order > 4933 or order < -4952:
            raise NOT_A_FLOAT
        return Fraction(mantissa * 10**exp) if exp >= 0 else Fraction(mantissa, 10**-exp)
    order = mantissa.bit_length() - 1 + exp  # 2**order <= value < 2**(order + 1)
    if order >= 16384 or order < -16447:
        raise NOT_A_FLOAT
    return Fraction(mantissa << exp) if exp >= 0 else Fraction(mantissa, 1 << -exp)


def parse_float(arg: bytes) -> Fraction | float:
    """Parse a float as Redis's ``string2ld`` does (``strtold``, C locale).

    Returns the exact value of the long double it yields, or the ``float``
    ±inf for ``inf``/``infinity``. Refused (:data:`NOT_A_FLOAT`): an empty or
    5 KiB+ argument, leading white space, anything ``strtold`` does not
    consume entirely (an embedded NUL included), NaN,
    and values that overflow or round to zero (``ERANGE``). Accepted:
    decimal and hexadecimal (``0x1.8p3``) notations, an optional sign.
    """
    if not arg or len(arg) >= _LD_MAX_CHARS or arg[0] in _C_SPACE:
        raise NOT_A_FLOAT
    if (m := _DECIMAL_RE.fullmatch(arg)) is not None:
        sign, whole, frac, only_frac, exp = m.groups()
        digits = (whole or b"") + (frac or only_frac or b"")
        scale = len(frac or only_frac or b"")
        value = _digits_value(digits.decode(), 10, int(exp or 0) - scale, 10)
    elif (m := _HEX_RE.fullmatch(arg)) is not None:
        sign, whole, frac, only_frac, exp = m.groups()
        digits = (whole or b"") + (frac or only_frac or b"")
        scale = 4 * len(frac or only_frac or b"")
        value = _digits_value(digits.decode(), 16, int(exp or 0) - scale, 2)
    elif (m := _INF_RE.fullmatch(arg)) is not None:
        return -_INF if m.group(1) == b"-" else _INF
    else:
        raise NOT_A_FLOAT
    rounded = _round_ld(value)
    if isinstance(rounded, float) or (rounded == 0 and value != 0):  # ERANGE
        raise NOT_A_FLOAT
    return -rounded if sign == b"-" else rounded


def add_floats(a: Fraction | float, b: Fraction | float) -> Fraction | None:
    """``a + b`` rounded to a long double; None when it is infinite or NaN
    (Redis: "increment would produce NaN or Infinity")."""
    if isinstance(a, float) or isinstance(b, float):
        return None
    total = _round_ld(a + b)
    return None if isinstance(total, float) else total


def format_float(value: Fraction) -> bytes:
    """``value`` as Redis writes a long double result (``%.17Lf``, trailing
    zeros and a trailing dot removed, ``-0`` written ``0``)."""
    scaled = round(abs(value) * 10**17)  # ties to even, as glibc's printf
    digits = _int_to_decimal(scaled).zfill(18).encode()
    text = (digits[:-17] + b"." + digits[-17:]).rstrip(b"0").rstrip(b".")
    if value < 0 and text != b"0":
        text = b"-" + text
    return text


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
