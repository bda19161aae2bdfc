"""The Lua libraries Redis's scripts have beside the standard ones, written
in Python for ``kv/lua.py``: ``bit`` (LuaBitOp 1.0's API and behaviour).

A library is a dict of Python callables; a Lua number arrives as ``int``
(integral) or ``float``, a string as ``bytes``. Argument errors are worded
as LuaBitOp's ``luaL_argerror`` and positioned at the script's line
(``ScriptEngine.lib_error``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import lupa.lua51 as lua51

if TYPE_CHECKING:
    from replikv.kv.lua import ScriptEngine

__all__ = ["libraries"]

_MASK = 0xFFFFFFFF
_NO_VALUE = object()


def _lua_type(value: Any) -> str:
    if value is _NO_VALUE:
        return "no value"
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, bytes):
        return "string"
    if isinstance(value, (int, float)):
        return "number"
    return lua51.lua_type(value) or "userdata"


def _number(value: Any) -> float | int | None:
    """Lua's tonumber of an argument (numbers, numeric strings), or None."""
    t = type(value)
    if t is int or t is float:
        return value  # type: ignore[no-any-return]
    if t is bytes:
        text = value.strip()
        try:
            return int(text, 16) if text.lower().startswith((b"0x", b"-0x")) else float(text)
        except ValueError:
            return None
    return None


def _bit_library(engine: ScriptEngine) -> dict[str, Callable[..., Any]]:
    def arg(fn: str, args: tuple[Any, ...], i: int) -> int:
        """Argument ``i`` (0-based) as LuaBitOp's barg: rounded, modulo 2**32."""
        value = args[i] if i < len(args) else _NO_VALUE
        number = _number(value)
        if number is None:
            raise engine.lib_error(
                b"bad argument #%d to '%s' (number expected, got %s)"
                % (i + 1, fn.encode(), _lua_type(value).encode())
            )
        try:
            return round(number) & _MASK  # round half to even, as the FPU's addition trick
        except (OverflowError, ValueError):
            return 0

    def signed(u: int) -> int:
        return u - (1 << 32) if u & 0x80000000 else u

    def tobit(*args: Any) -> int:
        return signed(arg("tobit", args, 0))

    def bnot(*args: Any) -> int:
        return signed(~arg("bnot", args, 0) & _MASK)

    def fold(name: str, op: Callable[[int, int], int]) -> Callable[..., int]:
        def folded(*args: Any) -> int:
            acc = arg(name, args, 0)
            for i in range(1, len(args)):
                acc = op(acc, arg(name, args, i))
            return signed(acc)
        return folded

    def shift(name: str, op: Callable[[int, int], int]) -> Callable[..., int]:
        def shifted(*args: Any) -> int:
            x, n = arg(name, args, 0), arg(name, args, 1) & 31
            return signed(op(x, n) & _MASK)
        return shifted

    def tohex(*args: Any) -> bytes:
        x = arg("tohex", args, 0)
        n = 8 if len(args) < 2 or args[1] is None else signed(arg("tohex", args, 1))
        digits = b"%08X" % x if n < 0 else b"%08x" % x
        n = min(abs(n), 8)
        return digits[8 - n :] if n else b""

    def bswap(*args: Any) -> int:
        return signed(int.from_bytes(arg("bswap", args, 0).to_bytes(4, "little"), "big"))

    def arshift(x: int, n: int) -> int:
        return signed(x) >> n

    def rol(x: int, n: int) -> int:
        return (x << n) | (x >> (32 - n))

    def ror(x: int, n: int) -> int:
        return (x >> n) | (x << (32 - n))

    return {
        "tobit": tobit,
        "tohex": tohex,
        "bnot": bnot,
        "band": fold("band", lambda a, b: a & b),
        "bor": fold("bor", lambda a, b: a | b),
        "bxor": fold("bxor", lambda a, b: a ^ b),
        "lshift": shift("lshift", lambda x, n: x << n),
        "rshift": shift("rshift", lambda x, n: x >> n),
        "arshift": shift("arshift", arshift),
        "rol": shift("rol", rol),
        "ror": shift("ror", ror),
        "bswap": bswap,
    }


def libraries(engine: ScriptEngine) -> dict[str, dict[str, Callable[..., Any]]]:
    """name -> {function name -> callable}, each bound to ``engine`` for its errors."""
    return {"bit": _bit_library(engine)}
