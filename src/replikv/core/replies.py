"""Reply values: what command handlers return and the RESP encoder writes.

Handlers in ``kv/`` and ``runtime/`` return plain Python values; the codec in
``core/resp.py`` turns them into RESP2 or RESP3 bytes. One mapping, one place:

=====================  ===========================  ==========================
Python value           RESP2                        RESP3
=====================  ===========================  ==========================
``None``               ``$-1`` (null bulk)           ``_`` (null)
``bytes``              bulk string                  bulk string
``str``                simple string ``+...``       simple string
``int`` (not bool)     integer ``:n``               integer
``bool``               integer 1 / 0                boolean ``#t`` / ``#f``
``float``              bulk string                  double ``,``
``list`` / ``tuple``   array                        array
``dict``               flat array k1 v1 k2 v2       map ``%``
``PairMap``            array of ``[k, v]`` arrays   map ``%``
``set`` / frozenset    array                        set ``~``
``Pairs`` (flat list)  array                        array of 2-element arrays
``RespError``          error ``-...``               error
``NULL_ARRAY``         ``*-1``                      ``_``
``Raw``                the bytes as they are        the bytes as they are
``Push``               array                        push ``>`` (out of band)
=====================  ===========================  ==========================

Invariant: an error reply never carries a line break (RESP forbids it in
simple strings and errors); ``RespError`` replaces CR/LF with spaces.
"""

from __future__ import annotations

from typing import Final


class RespError(Exception):
    """An error reply, e.g. ``RespError("WRONGTYPE Operation against ...")``.

    The first word is the error code as Redis uses it (ERR, WRONGTYPE,
    NOAUTH, MOVED, ...). It is an Exception so that deep helpers may raise
    it and the command dispatcher turns it into a reply; it is also a value
    that can be returned directly.
    """

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        message = message.replace("\r", " ").replace("\n", " ")
        super().__init__(message)
        self.message = message

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RespError) and other.message == self.message

    def __hash__(self) -> int:
        return hash(self.message)

    def __repr__(self) -> str:
        return f"RespError({self.message!r})"


class _NullArray:
    """The null array ``*-1`` (EXEC after a WATCH/queue error, timeouts)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NULL_ARRAY"


NULL_ARRAY: Final = _NullArray()


class Push(list):  # type: ignore[type-arg]
    """An out-of-band message (Pub/Sub): a RESP3 push ``>``, an array in RESP2."""

    __slots__ = ()


class Raw(bytes):
    """Bytes that are already RESP-encoded and are written as they are."""

    __slots__ = ()


class Pairs(list):  # type: ignore[type-arg]
    """Pairs laid flat, ``[m1, s1, m2, s2, ...]``: Redis 7's replies WITH
    SCORES (ZRANGE ..): a flat array in RESP2, an array of ``[m, s]`` arrays
    in RESP3."""

    __slots__ = ()


OK: Final = "OK"
QUEUED: Final = "QUEUED"
PONG: Final = "PONG"


def wrong_arity(name: str) -> RespError:
    """Redis's reply for a wrong number of arguments."""
    return RespError(f"ERR wrong number of arguments for '{name.lower()}' command")


WRONGTYPE: Final = RespError("WRONGTYPE Operation against a key holding the wrong kind of value")
NOT_INTEGER: Final = RespError("ERR value is not an integer or out of range")
SYNTAX_ERROR: Final = RespError("ERR syntax error")


class PairMap(dict):  # type: ignore[type-arg]
    """A map that RESP2 writes as an array of ``[key, value]`` pairs (XREAD's
    streams), not as a flat array; RESP3 writes it as a map like any dict."""

    __slots__ = ()
