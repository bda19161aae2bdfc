"""The Lua libraries Redis's scripts have beside the standard ones, written
in Python for ``kv/lua.py``: ``bit`` (LuaBitOp 1.0's API and behaviour)
and ``cjson`` (``encode``, ``decode`` and ``null`` of lua-cjson 2.1 with
Redis's defaults: numbers as ``%.14g``, ``/`` escaped, an empty table is
``{}``, a sparse array (highest index over twice the item count and over
10) is refused, ``null`` decodes to ``cjson.null``; its error texts). Its
configuration functions (``encode_keep_buffer``, ``new``, ...) are absent.

A library is a dict of Python callables; a Lua number arrives as ``int``
(integral) or ``float``, a string as ``bytes``. Argument errors are worded
as LuaBitOp's ``luaL_argerror`` and positioned at the script's line
(``ScriptEngine.lib_error``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import math
import re

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


# --- cjson ------------------------------------------------------------------------------

_ESCAPES = {0x22: b'\\"', 0x5C: b"\\\\", 0x2F: b"\\/", 0x08: b"\\b", 0x0C: b"\\f", 0x0A: b"\\n",
            0x0D: b"\\r", 0x09: b"\\t"}
_ESCAPE_TABLE = [_ESCAPES.get(c, b"\\u%04x" % c if c < 0x20 or c == 0x7F else bytes([c]))
                 for c in range(256)]
_MAX_DEPTH = 1000


def _json_string(raw: bytes) -> bytes:
    return b'"' + b"".join(_ESCAPE_TABLE[c] for c in raw) + b'"'


def _json_number(engine: ScriptEngine, value: float) -> bytes:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        raise engine.lib_error(b"Cannot serialise number: must not be NaN or Inf")
    return b"%.14g" % value


class _Encoder:
    def __init__(self, engine: ScriptEngine, null: Any, rawequal: Any) -> None:
        self.engine = engine
        self.null = null
        self.rawequal = rawequal

    def value(self, v: Any, depth: int) -> bytes:
        if v is None or (lua51.lua_type(v) == "userdata" and self.rawequal(v, self.null)):
            return b"null"
        if v is True:
            return b"true"
        if v is False:
            return b"false"
        t = type(v)
        if t is bytes:
            return _json_string(v)
        if t is int or t is float:
            return _json_number(self.engine, v)
        kind = lua51.lua_type(v)
        if kind == "table":
            return self.table(v, depth + 1)
        raise self.engine.lib_error(
            b"Cannot serialise %s: type not supported" % (kind or "userdata").encode())

    def table(self, t: Any, depth: int) -> bytes:
        if depth > _MAX_DEPTH:
            raise self.engine.lib_error(b"Cannot serialise, excessive nesting (%d)" % depth)
        items = list(t.items())
        length = self._array_length(items)
        if length > 0:
            return b"[" + b",".join(self.value(t[i], depth) for i in range(1, length + 1)) + b"]"
        parts = []
        for key, value in items:
            if type(key) is bytes:
                name = _json_string(key)
            elif type(key) in (int, float):
                name = b'"' + _json_number(self.engine, key) + b'"'
            else:
                raise self.engine.lib_error(
                    b"Cannot serialise %s: table key must be a number or string"
                    % _lua_type(key).encode())
            parts.append(name + b":" + self.value(value, depth))
        return b"{" + b",".join(parts) + b"}"

    def _array_length(self, items: list[tuple[Any, Any]]) -> int:
        """The array length if every key is a positive integer, else -1 (an object)."""
        highest = 0
        for key, _ in items:
            if type(key) is not int or key < 1:
                if type(key) is float and key.is_integer() and key >= 1:
                    key = int(key)
                else:
                    return -1
            highest = max(highest, key)
        if highest > 10 and highest > 2 * len(items):
            raise self.engine.lib_error(b"Cannot serialise table: excessively sparse array")
        return highest


_WHITESPACE = b" \t\n\r"
_NUMBER = re.compile(rb"-?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")
_LITERALS = {b"t": (b"true", "T_BOOLEAN", True), b"f": (b"false", "T_BOOLEAN", False),
             b"n": (b"null", "T_NULL", None)}
_PUNCTUATION = {b"{": "T_OBJ_BEGIN", b"}": "T_OBJ_END", b"[": "T_ARR_BEGIN", b"]": "T_ARR_END",
                b",": "T_COMMA", b":": "T_COLON"}
_SIMPLE_ESCAPES = {b'"': b'"', b"\\": b"\\", b"/": b"/", b"b": b"\b", b"f": b"\f",
                   b"n": b"\n", b"r": b"\r", b"t": b"\t"}


class _Decoder:
    """lua-cjson's tokenizer and grammar, with its error texts."""

    def __init__(self, engine: ScriptEngine, null: Any, text: bytes) -> None:
        self.engine = engine
        self.null = null
        self.text = text
        self.pos = 0

    def fail(self, expected: str, token: tuple[str, Any, int]) -> Exception:
        kind, value, at = token
        found = value if kind == "T_ERROR" else kind
        return self.engine.lib_error(
            b"Expected %s but found %s at character %d"
            % (expected.encode(), found.encode(), at + 1)
        )

    def token(self) -> tuple[str, Any, int]:
        text, n = self.text, len(self.text)
        while self.pos < n and text[self.pos] in _WHITESPACE:
            self.pos += 1
        at = self.pos
        if at >= n:
            return "T_END", None, at
        ch = text[at : at + 1]
        if ch in _PUNCTUATION:
            self.pos += 1
            return _PUNCTUATION[ch], None, at
        if ch == b'"':
            return self.string(at)
        if ch == b"-" or ch.isdigit():
            match = _NUMBER.match(text, at)
            if not match:
                return "T_ERROR", "invalid number", at
            self.pos = match.end()
            raw = match.group()
            hexa = raw.lstrip(b"-")[:2].lower() == b"0x"
            number = float(int(raw, 16)) if hexa else float(raw)
            return "T_NUMBER", number, at
        literal = _LITERALS.get(ch)
        if literal and text.startswith(literal[0], at):
            self.pos = at + len(literal[0])
            return literal[1], literal[2], at
        return "T_ERROR", "invalid token", at

    def string(self, at: int) -> tuple[str, Any, int]:
        text, n = self.text, len(self.text)
        out = bytearray()
        i = at + 1
        while True:
            if i >= n:
                return "T_ERROR", "unexpected end of string", i
            ch = text[i : i + 1]
            if ch == b'"':
                self.pos = i + 1
                return "T_STRING", bytes(out), at
            if ch != b"\\":
                out += ch
                i += 1
                continue
            esc = text[i + 1 : i + 2]
            if esc in _SIMPLE_ESCAPES:
                out += _SIMPLE_ESCAPES[esc]
                i += 2
            elif esc == b"u":
                code, after = self.unicode(i)
                if code is None:
                    return "T_ERROR", "invalid unicode escape code", i
                out += chr(code).encode("utf-8", "surrogatepass")
                i = after
            else:
                return "T_ERROR", "invalid escape code", i

    def unicode(self, i: int) -> tuple[int | None, int]:
        """\\uXXXX (a surrogate pair: two of them) at ``i``: the code point and the next index."""
        def hex4(j: int) -> int | None:
            digits = self.text[j + 2 : j + 6]
            if len(digits) != 4 or not all(c in b"0123456789abcdefABCDEF" for c in digits):
                return None
            return int(digits, 16)
        code = hex4(i)
        if code is None:
            return None, i
        if 0xD800 <= code < 0xDC00:
            low = hex4(i + 6) if self.text[i + 6 : i + 8] == b"\\u" else None
            if low is None or not 0xDC00 <= low < 0xE000:
                return None, i
            return 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00), i + 12
        if 0xDC00 <= code < 0xE000:
            return None, i
        return code, i + 6

    def document(self) -> Any:
        value = self.value(self.token(), 0)
        end = self.token()
        if end[0] != "T_END":
            raise self.fail("the end", end)
        return value

    def value(self, token: tuple[str, Any, int], depth: int) -> Any:
        kind = token[0]
        if kind in ("T_STRING", "T_NUMBER", "T_BOOLEAN"):
            return token[1]
        if kind == "T_NULL":
            return self.null
        if kind in ("T_OBJ_BEGIN", "T_ARR_BEGIN"):
            if depth >= _MAX_DEPTH:
                raise self.engine.lib_error(
                    b"Found too many nested data structures (%d) at character %d"
                    % (depth + 1, token[2] + 1))
            return self.object(depth + 1) if kind == "T_OBJ_BEGIN" else self.array(depth + 1)
        raise self.fail("value", token)

    def object(self, depth: int) -> Any:
        result: dict[bytes, Any] = {}
        token = self.token()
        if token[0] == "T_OBJ_END":
            return self.engine.lua.table_from(result)
        while True:
            if token[0] != "T_STRING":
                raise self.fail("object key string", token)
            colon = self.token()
            if colon[0] != "T_COLON":
                raise self.fail("colon", colon)
            result[token[1]] = self.value(self.token(), depth)
            token = self.token()
            if token[0] == "T_OBJ_END":
                return self.engine.lua.table_from(result)
            if token[0] != "T_COMMA":
                raise self.fail("comma or object end", token)
            token = self.token()

    def array(self, depth: int) -> Any:
        items: list[Any] = []
        token = self.token()
        if token[0] == "T_ARR_END":
            return self.engine.lua.table_from(items)
        while True:
            items.append(self.value(token, depth))
            token = self.token()
            if token[0] == "T_ARR_END":
                return self.engine.lua.table_from(items)
            if token[0] != "T_COMMA":
                raise self.fail("comma or array end", token)
            token = self.token()


def _cjson_library(engine: ScriptEngine, null: Any, rawequal: Any) -> dict[str, Any]:
    def encode(*args: Any) -> bytes:
        if len(args) != 1:
            raise engine.lib_error(b"bad argument #1 to 'encode' (expected 1 argument)")
        return _Encoder(engine, null, rawequal).value(args[0], 0)

    def decode(*args: Any) -> Any:
        if len(args) != 1:
            raise engine.lib_error(b"bad argument #1 to 'decode' (expected 1 argument)")
        text = args[0]
        if type(text) in (int, float):
            text = b"%.14g" % text
        if type(text) is not bytes:
            raise engine.lib_error(
                b"bad argument #1 to 'decode' (string expected, got %s)"
                % _lua_type(text).encode())
        return _Decoder(engine, null, text).document()

    return {"encode": encode, "decode": decode, "null": null}


def libraries(engine: ScriptEngine, null: Any, rawequal: Any) -> dict[str, dict[str, Any]]:
    """name -> {function name -> callable}, each bound to ``engine`` for its
    errors; ``null`` is the Lua value cjson.null (a userdata), ``rawequal``
    Lua's (identity of two Lua values)."""
    return {"bit": _bit_library(engine), "cjson": _cjson_library(engine, null, rawequal)}
