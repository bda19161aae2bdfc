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

A pattern is compiled once (kept in a small LRU cache) into star-free
segments matched with ``re`` (DOTALL, so ``?`` and ``*`` cover ``\\n`` too)
in time linear in the subject per segment (``compile_glob``).
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


_STAR = None  # a token: any run of bytes


def _tokens(pattern: bytes) -> list[bytes | None]:
    """``pattern`` as tokens: ``None`` for a star (a run of stars is one), else the
    regex atom of one byte (a literal, ``?`` or a class), under stringmatchlen rules."""
    out: list[bytes | None] = []
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == 0x2A:  # '*' — a run of stars is one star
            while i + 1 < n and pattern[i + 1] == 0x2A:
                i += 1
            out.append(_STAR)
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
    return out


def _translate(pattern: bytes) -> bytes:
    """The regex source equivalent to ``pattern`` (a reference for tests; matching
    never runs it, see ``compile_glob``)."""
    return b"".join(b".*" if t is _STAR else t for t in _tokens(pattern))


@lru_cache(maxsize=_CACHE_SIZE)
def compile_glob(pattern: bytes) -> Callable[[bytes], bool]:
    """A predicate ``subject -> bool`` for ``pattern`` (cached).

    Linear in the subject for each star-free segment, never exponential: the
    pattern is split at its stars into segments that each match a fixed
    number of bytes (every token consumes one byte); the first is anchored at
    the start, the last at the end, and each middle one is found at its
    leftmost place after the previous one, which is the right choice for
    globs (a later match can only leave less room). A backtracking regex of
    the whole pattern took 1.9 s for ``*a*a*a*a*b`` on a 200-byte key."""
    if not pattern:
        return lambda subject: not subject
    segments: list[list[bytes]] = [[]]
    for token in _tokens(pattern):
        if token is _STAR:
            segments.append([])
        else:
            segments[-1].append(token)
    flags = re.DOTALL
    if len(segments) == 1:
        whole = re.compile(b"".join(segments[0]), flags).fullmatch
        return lambda subject: bool(subject) and whole(subject) is not None
    head_len, tail_len = len(segments[0]), len(segments[-1])
    head = re.compile(b"".join(segments[0]), flags).match
    tail = re.compile(b"".join(segments[-1]), flags).match
    middle = [re.compile(b"".join(seg), flags).search for seg in segments[1:-1] if seg]

    def predicate(subject: bytes) -> bool:
        end = len(subject) - tail_len
        if not subject or end < head_len:
            return False
        if head_len and head(subject) is None:
            return False
        if tail_len and tail(subject, end) is None:
            return False
        pos = head_len
        for search in middle:
            found = search(subject, pos, end)
            if found is None:
                return False
            pos = found.end()
        return True

    return predicate


def match(pattern: bytes, subject: bytes) -> bool:
    """True when ``subject`` matches ``pattern`` (Redis stringmatchlen)."""
    return compile_glob(pattern)(subject)


def matches_all(pattern: bytes) -> bool:
    """True for the pattern KEYS and SCAN treat as "every key" (``*``)."""
    return pattern == b"*"
