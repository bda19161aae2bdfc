"""Redis-style glob patterns on bytes (KEYS, SCAN MATCH).

Rules (those of Redis's ``stringmatchlen`` in ``util.c``, case-sensitive):

- ``*`` matches any run of bytes, ``?`` exactly one byte.
- ``[abc]`` one byte of the set, ``[^abc]`` one byte not in it, ``[a-z]`` a
  range (bounds are swapped when reversed, ``[z-a]`` == ``[a-z]``); inside a
  class ``\\x`` is the literal ``x``. A class that is never closed runs to
  the end of the pattern. ``[]`` never matches, ``[^]`` matches any byte.
  A class always consumes exactly one byte.
- ``\\x`` outside a class is the literal ``x``; a trailing lone ``\\`` is a
  literal backslash.
- Every other byte matches itself.
- An empty subject matches only the empty pattern (``stringmatchlen`` never
  enters its loop for an empty string, so even ``*`` does not match ``b""``).
  KEYS and SCAN special-case the pattern ``*`` to mean "everything", as
  Redis does; see :func:`matches_all`.

A pattern is translated once into an anchored ``re`` bytes regex (DOTALL, so
``?`` and ``*`` cover ``\\n`` too) and kept in a small LRU cache.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

__all__ = ["compile_glob", "match", "matches_all"]

_CACHE_SIZE = 256


def _lit(byte: int) -> bytes:
    """A regex atom for one literal byte, safe inside and outside classes."""
    return b"\\x%02x" % byte


def _translate(pattern: bytes) -> bytes:
    """The regex source equivalent to ``pattern`` under stringmatchlen rules."""
    out: list[bytes] = []
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == 0x2A:  # '*' — a run of stars is one star
            while i + 1 < n and pattern[i + 1] == 0x2A:
                i += 1
            out.append(b".*")
        elif c == 0x3F:  # '?'
            out.append(b".")
        elif c == 0x5B:  # '['
            i += 1
            negate = i < n and pattern[i] == 0x5E  # '^'
            if negate:
                i += 1
            items: list[bytes] = []
            while True:
                if i >= n:  # unterminated: the class ends with the pattern
                    break
                b = pattern[i]
                if b == 0x5C and n - i >= 2:  # '\' escapes the next byte
                    i += 1
                    items.append(_lit(pattern[i]))
                elif b == 0x5D:  # ']'
                    break
                elif n - i >= 3 and pattern[i + 1] == 0x2D:  # 'a-z'
                    lo, hi = b, pattern[i + 2]
                    if lo > hi:
                        lo, hi = hi, lo
                    items.append(_lit(lo) + b"-" + _lit(hi))
                    i += 2
                else:
                    items.append(_lit(b))
                i += 1
            if items:
                out.append((b"[^" if negate else b"[") + b"".join(items) + b"]")
            else:
                out.append(b"." if negate else b"(?!)")
        elif c == 0x5C and n - i >= 2:  # '\x' outside a class
            i += 1
            out.append(_lit(pattern[i]))
        else:
            out.append(_lit(c))
        i += 1
    return b"".join(out)


@lru_cache(maxsize=_CACHE_SIZE)
def compile_glob(pattern: bytes) -> Callable[[bytes], bool]:
    """A predicate ``subject -> bool`` for ``pattern`` (cached)."""
    if not pattern:
        return lambda subject: not subject
    fullmatch = re.compile(_translate(pattern), re.DOTALL).fullmatch

    def predicate(subject: bytes) -> bool:
        return bool(subject) and fullmatch(subject) is not None

    return predicate


def match(pattern: bytes, subject: bytes) -> bool:
    """True when ``subject`` matches ``pattern`` (Redis stringmatchlen)."""
    return compile_glob(pattern)(subject)


def matches_all(pattern: bytes) -> bool:
    """True for the pattern KEYS and SCAN treat as "every key" (``*``)."""
    return pattern == b"*"
