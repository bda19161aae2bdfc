"""Argument parsing and error replies shared by the data-type families.

Integers follow Redis's ``string2ll``: canonical decimal only, 64-bit
signed. An error is raised (``RespError``) before anything is changed, so a
refused command never leaves a half-applied state behind.
"""

from __future__ import annotations

from replikv.core.replies import NOT_INTEGER, RespError

__all__ = [
    "I64_MAX",
    "I64_MIN",
    "NEEDS_CLOCK",
    "NEVER",
    "OVERFLOW",
    "SEC_MAX",
    "SEC_MIN",
    "expire_time_error",
    "needs_clock",
    "parse_int",
    "parse_timeout_ms",
]

I64_MIN = -(1 << 63)
I64_MAX = (1 << 63) - 1
SEC_MAX = I64_MAX // 1000  # C's LLONG_MAX / 1000
SEC_MIN = -(I64_MAX // 1000)  # C's LLONG_MIN / 1000 (truncates toward 0)
NEVER = I64_MAX + 1  # later than any expiry time: ``expires.get(key, NEVER)``

OVERFLOW = RespError("ERR increment or decrement would overflow")
NEEDS_CLOCK = RespError("ERR command needs a clock and cannot be applied from the log")


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
