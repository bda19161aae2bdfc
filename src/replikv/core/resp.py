"""Sans-I/O RESP2/RESP3 codec: bytes in, commands out; values in, bytes out.

Rules implemented (Redis ``networking.c`` ``processInlineBuffer`` /
``processMultibulkBuffer`` and ``sds.c`` ``sdssplitargs``; the RESP spec at
redis.io/docs/reference/protocol-spec):

* A request whose first byte is ``*`` is an array of bulk strings
  ``*<n>\\r\\n`` then ``n`` times ``$<len>\\r\\n<len bytes>\\r\\n``. Any other
  first byte starts an inline command: one line ended by ``\\n`` (an ``\\r``
  just before it is dropped), split like ``sdssplitargs``. Empty commands
  (a blank line, ``*0``, ``*-1``) are skipped, as Redis skips them.
* Numbers in headers follow Redis's ``string2ll``: no sign other than a
  leading ``-``, no leading zero, no blanks, within a signed 64-bit integer.
* Limits bound memory: an array count above ``max_args`` or a bulk length
  above ``max_bulk_len`` is refused as soon as its header line is in the
  buffer (not when its data has arrived); a header or inline line longer than
  ``max_inline_len`` is refused as soon as that many bytes are pending.
* Where Redis is lax this codec is strict, and says why: a header line must
  end with ``\\r\\n`` and bulk data must be followed by ``\\r\\n`` (Redis skips
  two bytes without looking at them).

Invariants of :class:`RequestParser`:

* The parse does not depend on how the stream is split across ``feed()``
  calls: the commands returned (summed over the calls, plus
  ``ProtocolError.commands``) and the error message, if any, are the same for
  every split.
* The array fast path uses ``hiredis.Reader`` and only ever trusts a batch
  it returned after checking that re-encoding the batch gives back exactly
  the bytes received; anything else (inline commands, non-bulk elements,
  empty arrays, oversized headers) is decided by the exact pure-Python parser
  in this module, which is the reference. So hiredis makes the common case
  fast but never decides what is accepted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import chain
from typing import Any, Final

import hiredis

from replikv.core.replies import NULL_ARRAY, PairMap, Pairs, Push, Raw, RespError

__all__ = [
    "NULL_ARRAY_REPLY",
    "NULL_BULK",
    "OK_REPLY",
    "PONG_REPLY",
    "QUEUED_REPLY",
    "RESP3_NULL",
    "ProtocolError",
    "ReplyParser",
    "RequestParser",
    "command_bytes",
    "encode_bulk",
    "encode_command",
    "encode_int",
    "encode_reply",
    "split_inline",
]


class ProtocolError(Exception):
    """Malformed or oversized input; the connection must be closed.

    ``str(err)`` is the text Redis puts after ``-ERR `` (``"Protocol error:
    ..."``), to be sent as ``RespError("ERR " + str(err))`` before closing the
    connection. Only malformed *input* raises it. ``commands`` holds the
    complete commands that preceded the bad bytes in the same
    ``RequestParser.commands()`` call: Redis executes those before it gives up.
    """

    def __init__(self, message: str, commands: list[list[bytes]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.commands: list[list[bytes]] = commands if commands is not None else []


# --------------------------------------------------------------------------- #
# Request parsing (server side)
# --------------------------------------------------------------------------- #

_STAR: Final = 42  # '*'
_DOLLAR: Final = 36  # '$'
_CR: Final = 13
_LF: Final = 10

# string2ll's grammar: "0", or an optional '-' then a non-zero digit and at
# most 18 more digits (range is checked after conversion).
_LL_RE: Final = re.compile(rb"0|-?[1-9][0-9]{0,18}")
_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1

_MSG_MBULK: Final = "Protocol error: invalid multibulk length"
_MSG_BULK: Final = "Protocol error: invalid bulk length"
_MSG_BIG_MBULK: Final = "Protocol error: too big mbulk count string"
_MSG_BIG_BULK: Final = "Protocol error: too big bulk count string"
_MSG_BIG_INLINE: Final = "Protocol error: too big inline request"
_MSG_QUOTES: Final = "Protocol error: unbalanced quotes in request"
_MSG_BULK_END: Final = "Protocol error: expected '\\r\\n' after bulk data"


def _parse_ll(digits: bytes | bytearray) -> int | None:
    """Redis ``string2ll``: the integer, or None if the text is not canonical."""
    if _LL_RE.fullmatch(digits) is None:
        return None
    value = int(digits)
    if value < _I64_MIN or value > _I64_MAX:
        return None
    return value


# Inline splitting (sdssplitargs). C's isspace() skips blanks between tokens;
# only these five bytes end an unquoted token.
_ISSPACE: Final = frozenset(b" \t\n\v\f\r")
_TOKEN_END: Final = frozenset(b" \n\r\t\0")
_HEX: Final = frozenset(b"0123456789abcdefABCDEF")
_ESCAPES: Final = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}
# bytes.split() agrees with sdssplitargs unless the line has a quote, NUL,
# vertical tab or form feed (Python splits on \v \f, Redis keeps them in a token).
_INLINE_SLOW: Final = re.compile(rb"[\"'\x00\x0b\x0c]")


def split_inline(line: bytes) -> list[bytes]:
    """Split one inline request line exactly as Redis's ``sdssplitargs``.

    Tokens are separated by blanks; ``"..."`` understands ``\\n \\r \\t \\b \\a``,
    ``\\xHH`` and ``\\<any>``; ``'...'`` understands only ``\\'``; a closing quote
    must be followed by a blank or the end. A NUL byte ends the line (C
    string). Raises ProtocolError("... unbalanced quotes ...") otherwise.
    """
    if _INLINE_SLOW.search(line) is None:
        return line.split()
    nul = line.find(b"\0")
    if nul >= 0:
        line = line[:nul]
    n = len(line)
    args: list[bytes] = []
    i = 0

    def at(j: int) -> int:
        return line[j] if j < n else 0

    while True:
        while i < n and line[i] in _ISSPACE:
            i += 1
        if i >= n:
            return args
        current = bytearray()
        in_dq = in_sq = False
        while True:
            c = at(i)
            done = False
            if in_dq:
                if c == 92 and at(i + 1) == 120 and at(i + 2) in _HEX and at(i + 3) in _HEX:
                    current.append(int(line[i + 2 : i + 4], 16))
                    i += 3
                elif c == 92 and at(i + 1):
                    i += 1
                    e = line[i]
                    current.append(_ESCAPES.get(e, e))
                elif c == 34:
                    if at(i + 1) and at(i + 1) not in _ISSPACE:
                        raise ProtocolError(_MSG_QUOTES)
                    done = True
                elif c == 0:
                    raise ProtocolError(_MSG_QUOTES)
                else:
                    current.append(c)
            elif in_sq:
                if c == 92 and at(i + 1) == 39:
                    i += 1
                    current.append(39)
                elif c == 39:
                    if at(i + 1) and at(i + 1) not in _ISSPACE:
                        raise ProtocolError(_MSG_QUOTES)
                    done = True
                elif c == 0:
                    raise ProtocolError(_MSG_QUOTES)
                else:
                    current.append(c)
            elif c in _TOKEN_END:
                done = True
            elif c == 34:
                in_dq = True
            elif c == 39:
                in_sq = True
            else:
                current.append(c)
            if i < n:
                i += 1
            if done:
                break
        args.append(bytes(current))


def _new_reader() -> hiredis.Reader:
    return hiredis.Reader()


_pack_command = hiredis.pack_command


class RequestParser:
    """Turns the bytes a client sends into commands (lists of bytes arguments).

    Usage: ``feed(data)`` then ``commands()`` after every read. ``commands()``
    returns each complete command buffered so far and raises ProtocolError on
    malformed or oversized input; after that the parser is dead (every later
    call raises the same message) and the caller closes the connection.

    Invariants (between calls):

    * ``_buf[0]`` is a command boundary: everything before it was returned.
    * The hiredis reader has been fed exactly ``_buf[_rstart:_fed]`` and
      ``_rstart`` is a command boundary; the reader is used only when
      ``_rstart`` equals the boundary being parsed (else it is replaced).
    * ``_scan_off``/``_scan_left`` describe how far the limit check of the
      incomplete array at ``_buf[0]`` got (0 = not started) and
      ``_inline_from`` how far the newline search of an incomplete inline
      line at ``_buf[0]`` got; both are reset when a command completes, so
      re-checking never rescans old bytes (no quadratic work on slow feeds).
    * Pending bytes are a prefix of one command whose declared sizes passed
      the limits (at most ``max_args`` bulks of at most ``max_bulk_len``), or
      a header / inline line of at most ``max_inline_len``, plus the last
      ``feed()``. A cap on the total (Redis's client-query-buffer-limit) is
      the runtime's to apply; it can read ``pending``.
    """

    __slots__ = (
        "_buf",
        "_error",
        "_fed",
        "_inline_from",
        "_reader",
        "_rstart",
        "_scan_left",
        "_scan_off",
        "_small",
        "_big_header",
        "max_args",
        "max_bulk_len",
        "max_inline_len",
    )

    def __init__(
        self,
        max_bulk_len: int = 512 * 1024 * 1024,
        max_args: int = 1024 * 1024,
        max_inline_len: int = 64 * 1024,
    ) -> None:
        self._buf: bytes | bytearray = bytearray()  # a bytes read kept as it came (feed)
        self.set_limits(max_bulk_len, max_args, max_inline_len)
        self._reader = _new_reader()
        self._rstart = 0
        self._fed = 0
        self._scan_off = 0
        self._scan_left = 0
        self._inline_from = 0
        self._error: str | None = None

    def set_limits(self, max_bulk_len: int, max_args: int, max_inline_len: int | None = None) -> None:
        """Change the limits (e.g. once a client has authenticated: Redis allows
        an unauthenticated client far less). Buffered bytes already passed the
        old limits; they are checked against the new ones as parsing goes on."""
        self.max_bulk_len = max_bulk_len
        self.max_args = max_args
        if max_inline_len is not None:
            self.max_inline_len = max_inline_len
        max_inline_len = self.max_inline_len
        # hiredis allocates an array the moment it reads its header (``*1000000000``
        # is an 8 GB list): an array header with as many digits as max_args goes to
        # the exact parser, which checks the count first.
        self._big_header = re.compile(rb"\*[0-9]{%d,}" % len(str(max_args)))
        # A verified batch no longer than this cannot break any limit. Header
        # lines (``*<count>``, ``$<len>``) are shorter than the batch, and
        # when counts and lengths within their limits always fit on a line of
        # max_inline_len (the defaults), the line limit adds nothing.
        self._small = min(max_bulk_len, max_args)
        if 1 + len(str(max(max_args, max_bulk_len))) > max_inline_len:
            self._small = min(self._small, max_inline_len)

    def feed(self, data: bytes) -> None:
        """Buffer bytes received from the client (ignored once the parser is dead).

        With nothing pending, ``data`` itself becomes the buffer (no copy: most reads
        hold whole commands, all consumed by the next ``commands()``); bytes added to
        pending ones go into a bytearray (appending is linear however the input is split)."""
        if self._error is None:
            buf = self._buf
            if not buf and type(data) is bytes:
                self._buf = data
            elif type(buf) is bytes:  # the rest of a read: from now on a bytearray
                self._buf = bytearray(buf)
                self._buf += data
            else:
                buf += data

    @property
    def pending(self) -> int:
        """Bytes buffered that are not yet part of a returned command."""
        return len(self._buf)

    def commands(self) -> list[list[bytes]]:
        """Every complete command buffered so far, in order (empty ones skipped).

        Raises ProtocolError (with ``.commands`` = the complete commands before
        the bad bytes) on malformed input or a broken limit.
        """
        if self._error is not None:
            raise ProtocolError(self._error)
        out: list[list[bytes]] = []
        try:
            self._parse(out)
        except ProtocolError as err:
            self._die(err.message)
            err.commands = out
            raise
        return out

    def _die(self, message: str) -> None:
        self._error = message
        self._buf = bytearray()
        self._reader = _new_reader()
        self._rstart = self._fed = 0

    def _parse(self, out: list[list[bytes]]) -> None:
        buf = self._buf
        n = len(buf)
        pos = 0
        # After hiredis stumbles (inline command, odd bytes) the rest of this
        # call is parsed exactly: switching back and forth could refeed the
        # same bytes many times.
        exact = False
        while pos < n:
            if buf[pos] == _STAR and not exact:
                # ---- fast path: hiredis parses a run of arrays ----
                if self._rstart != pos:
                    if self._fed != self._rstart:
                        self._reader = _new_reader()
                    self._rstart = self._fed = pos
                reader = self._reader
                if self._fed < n:
                    # the new bytes (and a header that may straddle the last feed)
                    if self._big_header.search(buf, max(pos, self._fed - 24), n):
                        self._reader = _new_reader()
                        self._rstart = self._fed = pos
                        exact = True
                        continue
                    reader.feed(buf, self._fed, n - self._fed)  # type: ignore[arg-type]
                    self._fed = n
                batch: list[Any] = []
                broken = False
                try:
                    gets = reader.gets
                    item = gets()
                    while item is not False:
                        batch.append(item)
                        item = gets()
                except Exception:  # noqa: BLE001 - any hiredis failure: the exact parser decides
                    broken = True
                if batch:
                    try:
                        packed: bytes | None = (
                            _pack_command(tuple(batch[0]))
                            if len(batch) == 1
                            else b"".join(map(_pack_command, map(tuple, batch)))
                        )
                    except TypeError:  # an element or a command that is not bytes / a list
                        packed = None
                    if (
                        packed is not None
                        and buf.startswith(packed, pos)
                        and (len(packed) <= self._small or self._within_limits(batch))
                    ):
                        if not all(batch):
                            batch = [c for c in batch if c]
                        out += batch
                        pos += len(packed)
                        self._rstart = pos
                        self._scan_off = 0
                        self._inline_from = 0
                    else:
                        broken = True
                if broken:
                    self._reader = _new_reader()
                    self._rstart = self._fed = pos
                    exact = True
                    continue
                if pos < n:
                    if buf[pos] != _STAR:
                        # hiredis took an inline command for a reply: drop it.
                        self._reader = _new_reader()
                        self._rstart = self._fed = pos
                        continue
                    self._check_partial(buf, pos, n)
                break
            # ---- exact path: one command ----
            if buf[pos] == _STAR:
                res = self._exact_array(buf, pos, n)
            else:
                res = self._exact_inline(buf, pos, n)
            if res is None:
                break
            args, pos = res
            if args:
                out.append(args)
            self._scan_off = 0
            self._inline_from = 0
        if pos:
            if type(buf) is bytearray:
                del buf[:pos]  # O(1): CPython moves the start of a bytearray
            else:
                self._buf = buf[pos:] if pos < n else b""
            self._rstart -= pos
            self._fed -= pos

    def _within_limits(self, batch: list[list[bytes]]) -> bool:
        """Every limit the exact parser checks, for a verified batch: the array
        counts, the bulk lengths, and the longest header line (``*<count>`` or
        ``$<len>``) against ``max_inline_len``."""
        most_args = max(map(len, batch))
        longest = max(map(len, chain.from_iterable(batch)), default=0)
        return (
            most_args <= self.max_args
            and longest <= self.max_bulk_len
            and 1 + len(str(max(most_args, longest))) <= self.max_inline_len
        )

    # -- exact parser ------------------------------------------------------ #

    def _header(self, buf: bytes | bytearray, start: int, n: int) -> tuple[int, int] | None:
        """Parse ``*<count>\\r\\n`` at start: (count, next) or None if incomplete."""
        nl = buf.find(b"\r", start + 1, n)
        if nl < 0:
            if n - start > self.max_inline_len:
                raise ProtocolError(_MSG_BIG_MBULK)
            return None
        if nl - start > self.max_inline_len:
            raise ProtocolError(_MSG_BIG_MBULK)
        if nl + 1 >= n:
            return None
        count = _parse_ll(buf[start + 1 : nl])
        if count is None or count > self.max_args or buf[nl + 1] != _LF:
            raise ProtocolError(_MSG_MBULK)
        return count, nl + 2

    def _bulks(
        self, buf: bytes | bytearray, p: int, n: int, left: int, args: list[bytes] | None
    ) -> tuple[int, int]:
        """Consume up to ``left`` bulk strings from p; returns (next p, still left).

        Checks every header as soon as it is in the buffer. With ``args`` the
        bulk values are appended to it; without, this only validates.
        """
        max_bulk = self.max_bulk_len
        max_line = self.max_inline_len
        find = buf.find
        while left and p < n:
            if buf[p] != _DOLLAR:
                raise ProtocolError(f"Protocol error: expected '$', got '{chr(buf[p])}'")
            nl = find(b"\r", p + 1, n)
            if nl < 0:
                if n - p > max_line:
                    raise ProtocolError(_MSG_BIG_BULK)
                break
            if nl - p > max_line:
                raise ProtocolError(_MSG_BIG_BULK)
            if nl + 1 >= n:
                break
            size = _parse_ll(buf[p + 1 : nl])
            if size is None or size < 0 or size > max_bulk or buf[nl + 1] != _LF:
                raise ProtocolError(_MSG_BULK)
            data = nl + 2
            end = data + size
            if end + 2 > n:
                break
            if buf[end] != _CR or buf[end + 1] != _LF:
                raise ProtocolError(_MSG_BULK_END)
            if args is not None:
                args.append(bytes(buf[data:end]))
            p = end + 2
            left -= 1
        return p, left

    def _exact_array(self, buf: bytes | bytearray, start: int, n: int) -> tuple[list[bytes], int] | None:
        head = self._header(buf, start, n)
        if head is None:
            return None
        count, p = head
        if count <= 0:
            return [], p
        args: list[bytes] = []
        p, left = self._bulks(buf, p, n, count, args)
        if left:
            return None
        return args, p

    def _check_partial(self, buf: bytes | bytearray, start: int, n: int) -> None:
        """Limit-check the incomplete array at start, resuming where it stopped."""
        if self._scan_off == 0:
            head = self._header(buf, start, n)
            if head is None:
                return
            left, p = head
        else:
            p, left = start + self._scan_off, self._scan_left
        p, left = self._bulks(buf, p, n, left, None)
        self._scan_off, self._scan_left = p - start, left

    def _exact_inline(self, buf: bytes | bytearray, start: int, n: int) -> tuple[list[bytes], int] | None:
        nl = buf.find(b"\n", start + self._inline_from, n)
        if nl < 0:
            known = n - start - (1 if buf[n - 1] == _CR else 0)
            if known > self.max_inline_len:
                raise ProtocolError(_MSG_BIG_INLINE)
            self._inline_from = n - start
            return None
        end = nl - 1 if nl > start and buf[nl - 1] == _CR else nl
        if end - start > self.max_inline_len:
            raise ProtocolError(_MSG_BIG_INLINE)
        return split_inline(bytes(buf[start:end])), nl + 1


# --------------------------------------------------------------------------- #
# Reply encoding (server side)
# --------------------------------------------------------------------------- #

OK_REPLY: Final = b"+OK\r\n"
PONG_REPLY: Final = b"+PONG\r\n"
QUEUED_REPLY: Final = b"+QUEUED\r\n"
NULL_BULK: Final = b"$-1\r\n"
NULL_ARRAY_REPLY: Final = b"*-1\r\n"
RESP3_NULL: Final = b"_\r\n"
EMPTY_ARRAY_REPLY: Final = b"*0\r\n"

_SIMPLE_CACHE: Final = {"OK": OK_REPLY, "PONG": PONG_REPLY, "QUEUED": QUEUED_REPLY}
_I64_LIMIT: Final = 2**63


def command_bytes(argv: list[bytes]) -> int:
    """A command's size as the replication limit counts it (``NodeOptions.max_command_bytes``):
    its arguments' bytes and 16 per argument (what an encoding spends on each: a length, a tag)."""
    return sum(map(len, argv)) + 16 * len(argv)


def encode_bulk(b: bytes) -> bytes:
    """``$<len>\\r\\n<b>\\r\\n``."""
    return b"$%d\r\n%b\r\n" % (len(b), b)


def encode_int(i: int) -> bytes:
    """``:<i>\\r\\n``; the caller guarantees a signed 64-bit value."""
    return b":%d\r\n" % i


def _encode_str(s: str) -> bytes:
    cached = _SIMPLE_CACHE.get(s)
    if cached is not None:
        return cached
    raw = s.encode()
    if b"\r" in raw or b"\n" in raw:
        # A simple string cannot hold a line break: send it as bulk instead.
        return b"$%d\r\n%b\r\n" % (len(raw), raw)
    return b"+%b\r\n" % raw


def _encode_bigint(i: int, resp3: bool) -> bytes:
    if resp3:
        return b"(%d\r\n" % i
    digits = b"%d" % i
    return b"$%d\r\n%b\r\n" % (len(digits), digits)


def _encode_float(f: float, resp3: bool) -> bytes:
    # %.17g round-trips every double; it writes inf, -inf and nan as Redis does.
    text = b"%.17g" % f
    if resp3:
        return b",%b\r\n" % text
    return b"$%d\r\n%b\r\n" % (len(text), text)


def _encode_error(e: RespError) -> bytes:
    message = e.message.removeprefix("-")
    return b"-%b\r\n" % (message or "ERR").encode()


def encode_reply(value: Any, resp3: bool = False) -> bytes:
    """Encode a handler's return value (see ``replies.py`` for the mapping).

    Raises TypeError for a value that has no RESP form (a bug in the caller).
    """
    t = type(value)
    if t is bytes:
        return b"$%d\r\n%b\r\n" % (len(value), value)
    if t is str:
        return _encode_str(value)
    if t is int:
        if -_I64_LIMIT <= value < _I64_LIMIT:
            return b":%d\r\n" % value
        return _encode_bigint(value, resp3)
    if value is None:
        return RESP3_NULL if resp3 else NULL_BULK
    if t is Raw:
        raw: bytes = value
        return raw
    parts: list[bytes] = []
    _encode_into(value, parts, resp3)
    return b"".join(parts)


def _encode_into(value: Any, out: list[bytes], resp3: bool) -> None:
    append = out.append
    t = type(value)
    if t is bytes:
        append(b"$%d\r\n%b\r\n" % (len(value), value))
    elif t is list or t is tuple or t is Push:
        append((b">%d\r\n" if resp3 and t is Push else b"*%d\r\n") % len(value))
        for item in value:
            if type(item) is bytes:
                append(b"$%d\r\n%b\r\n" % (len(item), item))
            else:
                _encode_into(item, out, resp3)
    elif t is str:
        append(_encode_str(value))
    elif t is int:
        if -_I64_LIMIT <= value < _I64_LIMIT:
            append(b":%d\r\n" % value)
        else:
            append(_encode_bigint(value, resp3))
    elif value is None:
        append(RESP3_NULL if resp3 else NULL_BULK)
    elif t is bool:
        append(
            (b"#t\r\n" if value else b"#f\r\n") if resp3 else (b":1\r\n" if value else b":0\r\n")
        )
    elif t is RespError or isinstance(value, RespError):
        append(_encode_error(value))
    elif t is Raw:
        append(bytes(value))
    elif value is NULL_ARRAY:
        append(RESP3_NULL if resp3 else NULL_ARRAY_REPLY)
    elif t is PairMap:
        append((b"%%%d\r\n" if resp3 else b"*%d\r\n") % len(value))
        for k, v in value.items():
            if not resp3:
                append(b"*2\r\n")
            _encode_into(k, out, resp3)
            _encode_into(v, out, resp3)
    elif t is dict or isinstance(value, dict):
        append((b"%%%d\r\n" if resp3 else b"*%d\r\n") % (len(value) * (1 if resp3 else 2)))
        for k, v in value.items():
            _encode_into(k, out, resp3)
            _encode_into(v, out, resp3)
    elif t is set or t is frozenset or isinstance(value, (set, frozenset)):
        append((b"~%d\r\n" if resp3 else b"*%d\r\n") % len(value))
        for item in value:
            _encode_into(item, out, resp3)
    elif t is float or isinstance(value, float):
        append(_encode_float(value, resp3))
    # Subclasses (IntEnum, str enums, bytearray, memoryview, list subclasses).
    elif isinstance(value, bool):
        _encode_into(bool(value), out, resp3)
    elif isinstance(value, int):
        _encode_into(int(value), out, resp3)
    elif isinstance(value, str):
        append(_encode_str(str(value)))
    elif isinstance(value, (bytes, bytearray, memoryview)):
        _encode_into(bytes(value), out, resp3)
    elif t is Pairs and resp3:
        _encode_into([[a, b] for a, b in zip(value[::2], value[1::2], strict=True)], out, resp3)
    elif isinstance(value, (list, tuple)):
        _encode_into(list(value), out, resp3)
    else:
        raise TypeError(f"cannot encode {t.__name__} as a RESP reply")


def encode_command(args: Sequence[bytes | str | int | float]) -> bytes:
    """A RESP array of bulk strings, as a client sends a command.

    str is sent as UTF-8, int in decimal, float as ``repr``; bool is refused
    (ambiguous), as redis-py refuses it.
    """
    parts = [b"*%d\r\n" % len(args)]
    append = parts.append
    for arg in args:
        data: bytes
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, bool):
            raise TypeError("cannot send bool as a command argument")
        elif isinstance(arg, int):
            data = b"%d" % arg
        elif isinstance(arg, float):
            data = repr(arg).encode()
        elif isinstance(arg, (bytearray, memoryview)):
            data = bytes(arg)
        else:
            raise TypeError(f"cannot send {type(arg).__name__} as a command argument")
        append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


# --------------------------------------------------------------------------- #
# Reply parsing (client side: tests and tools)
# --------------------------------------------------------------------------- #


class _Incomplete(Exception):
    pass


_INCOMPLETE: Final = _Incomplete()


class ReplyParser:
    """Decodes RESP2/RESP3 replies: bytes (bulk), str (simple), int, float,
    bool, None (``$-1``, ``*-1``, ``_``), RespError (``-`` and ``!``), list
    (``*``, ``>``), dict (``%``), set (``~``; a list if an element is not
    hashable), int for ``(`` big numbers, bytes for ``=`` verbatim text
    (format prefix dropped). Attributes (``|``) are read and dropped.

    Pure Python so that simple and bulk strings stay distinct (hiredis returns
    both as bytes). A reply is parsed again from its start when more data
    arrives, so it is meant for tests and tools, not for bulk traffic.
    Invariant: ``_buf[:_pos]`` has been returned; raises ProtocolError on
    bytes that are not RESP.
    """

    __slots__ = ("_buf", "_pos")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0

    def feed(self, data: bytes) -> None:
        self._buf += data

    def replies(self) -> list[Any]:
        out: list[Any] = []
        while self._pos < len(self._buf):
            try:
                value, self._pos = self._value(self._pos)
            except _Incomplete:
                break
            except RecursionError:
                raise ProtocolError("Protocol error: reply nested too deeply") from None
            except (ValueError, UnicodeDecodeError) as err:
                raise ProtocolError(f"Protocol error: {err}") from None
            out.append(value)
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        return out

    def _line(self, p: int) -> tuple[bytes, int]:
        nl = self._buf.find(b"\r\n", p)
        if nl < 0:
            raise _INCOMPLETE
        return bytes(self._buf[p:nl]), nl + 2

    def _blob(self, p: int, size: int) -> tuple[bytes, int]:
        end = p + size
        if end + 2 > len(self._buf):
            raise _INCOMPLETE
        if self._buf[end : end + 2] != b"\r\n":
            raise ProtocolError("Protocol error: bulk data not followed by CRLF")
        return bytes(self._buf[p:end]), end + 2

    def _items(self, p: int, count: int) -> tuple[list[Any], int]:
        items = []
        for _ in range(count):
            item, p = self._value(p)
            items.append(item)
        return items, p

    def _value(self, p: int) -> tuple[Any, int]:
        if p >= len(self._buf):
            raise _INCOMPLETE
        kind = chr(self._buf[p])
        line, q = self._line(p + 1)
        if kind == "+":
            return line.decode("utf-8", "surrogateescape"), q
        if kind == "-":
            return RespError(line.decode("utf-8", "replace")), q
        if kind == ":" or kind == "(":
            return int(line), q
        if kind == "$" or kind == "=" or kind == "!":
            size = int(line)
            if size < 0:
                return None, q
            data, q = self._blob(q, size)
            if kind == "=":
                return data[4:], q
            if kind == "!":
                return RespError(data.decode("utf-8", "replace")), q
            return data, q
        if kind == "*" or kind == ">":
            count = int(line)
            if count < 0:
                return None, q
            return self._items(q, count)
        if kind == "_":
            return None, q
        if kind == "#":
            if line not in (b"t", b"f"):
                raise ProtocolError("Protocol error: bad boolean")
            return line == b"t", q
        if kind == ",":
            return float(line), q
        if kind == "%" or kind == "|":
            flat, q = self._items(q, 2 * int(line))
            if kind == "|":
                return self._value(q)
            try:
                return dict(zip(flat[::2], flat[1::2])), q
            except TypeError:
                return list(zip(flat[::2], flat[1::2])), q
        if kind == "~":
            items, q = self._items(q, int(line))
            try:
                return set(items), q
            except TypeError:
                return items, q
        raise ProtocolError(f"Protocol error: unknown reply type {kind!r}")
