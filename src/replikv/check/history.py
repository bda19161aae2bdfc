"""Operation histories: the record a checker judges, and its JSON-lines format.

A history is a list of completed (or abandoned) client operations, one JSON
object per line, keys in this order::

    {"process": 3, "op": "write", "key": "k1", "value": "v",
     "expected": "old",   # present for cas only (and for other ops that set it)
     "ok": true, "call": 1200, "return": 1350}

Invariants of a well-formed `Op` (checked by `op_from_json`, hence by
`load_history`):
- `ok is True` means the operation completed and took effect between `call`
  and `ret`, so `ret` is an int;
- `ok is False` means it definitely did not take effect;
- `ok is None` means the outcome is unknown (the client timed out or lost its
  connection): it may have taken effect at any time after `call`, or never;
  `ret` is then usually None;
- `ret is None or ret >= call` (times are integer nanoseconds).

The op name is free text: the register workload uses read / write / cas and
other workloads add their own names; a checker rejects the names it does not
know, the loader does not.

Long runs (bounded memory): `HistoryWriter` appends each op to the file as it
completes, holding nothing; `HistoryFile` reads the file back as a
`Sequence[Op]` (an op's index is its line number among the ops) without
loading it: one pass indexes the byte offset of every line per key, and
`by_key` then yields one key's operations at a time, so a checker that works
key by key holds one key's ops, never the whole history. `by_key` works on an
in-memory list too (the grouping every per-key checker uses).
"""

from __future__ import annotations

import gzip
import json
import mmap
import os
import re
import sys
import threading
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TextIO, cast, overload

__all__ = [
    "FINAL_PROCESS",
    "NEMESIS_PROCESS",
    "HistoryFile",
    "HistoryFormatError",
    "HistoryWriter",
    "KeyOps",
    "Op",
    "by_key",
    "dump_history",
    "iter_history",
    "load_history",
    "op_from_json",
    "op_to_json",
]


NEMESIS_PROCESS = -1  # fault windows: op="nemesis", key = the fault, value = what was done
FINAL_PROCESS = -2  # reads after heal and quiescence: op="final", value = JSON of the key's state


class HistoryFormatError(ValueError):
    """A history line is not a well-formed operation (the message names the line)."""


class Op(NamedTuple):
    """One client operation; `ret` is the JSON field "return" (a Python keyword).

    A named tuple (immutable, hashable) rather than a frozen dataclass: a
    long run has millions of ops, and a tuple is built four times faster."""

    process: int
    op: str
    key: str
    value: str | None
    expected: str | None
    ok: bool | None
    call: int
    ret: int | None


_FIELDS = ("process", "op", "key", "value", "expected", "ok", "call", "return")
_REQUIRED = ("process", "op", "key", "value", "ok", "call", "return")


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


_FIELD_SET = frozenset(_FIELDS)
_MISSING = object()


def op_from_json(obj: Any) -> Op:
    """Build an `Op` from a decoded JSON object; raises HistoryFormatError saying why not."""
    # Fast path for the well-formed case (a subset of what the checks below accept).
    if type(obj) is dict and obj.keys() <= _FIELD_SET:
        g = obj.get
        process, name, key, value = g("process"), g("op"), g("key"), g("value", _MISSING)
        expected, ok, call, ret = g("expected"), g("ok", _MISSING), g("call"), g("return", _MISSING)
        if (type(process) is int and type(name) is str and name and type(key) is str
                and (value is None or type(value) is str) and (ok is None or type(ok) is bool)
                and (expected is None or type(expected) is str) and type(call) is int
                and (ret is None and ok is not True or type(ret) is int and ret >= call)
                and (name != "cas" or "expected" in obj)):
            return Op(process, name, key, value, expected, ok, call, ret)
    return _op_from_json_checked(obj)


def _op_from_json_checked(obj: Any) -> Op:
    if not isinstance(obj, dict):
        raise HistoryFormatError(f"expected a JSON object, got {type(obj).__name__}")
    unknown = [k for k in obj if k not in _FIELDS]
    if unknown:
        raise HistoryFormatError(f"unknown field(s) {', '.join(map(repr, unknown))}")
    missing = [k for k in _REQUIRED if k not in obj]
    if obj.get("op") == "cas" and "expected" not in obj:
        missing.append("expected")
    if missing:
        raise HistoryFormatError(f"missing field(s) {', '.join(map(repr, missing))}")
    process, name, key = obj["process"], obj["op"], obj["key"]
    value, expected, ok = obj["value"], obj.get("expected"), obj["ok"]
    call, ret = obj["call"], obj["return"]
    if not _is_int(process):
        raise HistoryFormatError(f"'process' must be an integer, got {process!r}")
    if not isinstance(name, str) or not name:
        raise HistoryFormatError(f"'op' must be a non-empty string, got {name!r}")
    if not isinstance(key, str):
        raise HistoryFormatError(f"'key' must be a string, got {key!r}")
    if value is not None and not isinstance(value, str):
        raise HistoryFormatError(f"'value' must be a string or null, got {value!r}")
    if expected is not None and not isinstance(expected, str):
        raise HistoryFormatError(f"'expected' must be a string or null, got {expected!r}")
    if ok is not None and not isinstance(ok, bool):
        raise HistoryFormatError(f"'ok' must be true, false or null, got {ok!r}")
    if not _is_int(call):
        raise HistoryFormatError(f"'call' must be an integer, got {call!r}")
    if ret is not None and not _is_int(ret):
        raise HistoryFormatError(f"'return' must be an integer or null, got {ret!r}")
    if ok is True and ret is None:
        raise HistoryFormatError("a completed operation (ok=true) needs a 'return' time")
    if ret is not None and ret < call:
        raise HistoryFormatError(f"'return' ({ret}) is before 'call' ({call})")
    return Op(process, name, key, value, expected, ok, call, ret)


def op_to_json(op: Op) -> dict[str, Any]:
    """The JSON object for `op`, keys in the format's order; `expected` only for cas
    (or when another op carries one, so that nothing is lost)."""
    d: dict[str, Any] = {"process": op.process, "op": op.op, "key": op.key, "value": op.value}
    if op.op == "cas" or op.expected is not None:
        d["expected"] = op.expected
    d["ok"] = op.ok
    d["call"] = op.call
    d["return"] = op.ret
    return d


def _open_text(path: str | os.PathLike[str], mode: str) -> TextIO:
    if os.fspath(path).endswith(".gz"):
        return cast(TextIO, gzip.open(path, mode + "t", encoding="utf-8"))
    return cast(TextIO, open(path, mode, encoding="utf-8"))


def _parse_line(line: str | bytes, where: str) -> Op:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise HistoryFormatError(f"{where}: invalid JSON: {e}") from e
    try:
        return op_from_json(obj)
    except HistoryFormatError as e:
        raise HistoryFormatError(f"{where}: {e}") from None


def iter_history(path: str | os.PathLike[str]) -> Iterator[Op]:
    """Stream the ops of a JSON-lines history (gzip when the name ends in .gz),
    holding one line at a time; errors as `load_history`."""
    with _open_text(path, "r") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                yield _parse_line(line, f"{os.fspath(path)}:{lineno}")


def load_history(path: str | os.PathLike[str]) -> list[Op]:
    """Read a JSON-lines history (gzip-compressed when the name ends in .gz).

    Blank lines are skipped; any other malformed line raises HistoryFormatError
    naming the file and the 1-based line number.
    """
    return list(iter_history(path))


def dump_history(ops: Iterable[Op], path: str | os.PathLike[str]) -> None:
    """Write `ops` in the JSON-lines format (gzip when the name ends in .gz)."""
    with _open_text(path, "w") as f:
        for op in ops:
            f.write(json.dumps(op_to_json(op)))
            f.write("\n")


class HistoryWriter:
    """Appends ops to a JSON-lines history as they complete (thread-safe).

    Holds no op in memory: a run of any length costs a file handle and a
    counter. Lines reach the OS at least once a second (`flush_every_s`) and at
    `close`, so a crashed run leaves a readable prefix.
    """

    def __init__(self, path: str | os.PathLike[str], flush_every_s: float = 1.0) -> None:
        self.path = os.fspath(path)
        self.count = 0
        self.dropped = 0  # ops appended after close (not written)
        self._f = open(self.path, "w", encoding="utf-8")
        self._lock = threading.Lock()
        self._flush_every_ns = int(flush_every_s * 1e9)
        self._last_flush = 0

    def append(self, op: Op, now_ns: int = 0) -> int:
        """Write `op`; returns its index in the history (-1, and counted in `dropped`,
        once closed). `now_ns` (any monotonic clock) paces the flushes."""
        line = json.dumps(op_to_json(op)) + "\n"
        with self._lock:
            if self._f.closed:
                self.dropped += 1
                return -1
            self._f.write(line)
            index = self.count
            self.count += 1
            if now_ns - self._last_flush >= self._flush_every_ns:
                self._f.flush()
                self._last_flush = now_ns
        return index

    def close(self) -> None:
        with self._lock:
            if not self._f.closed:
                self._f.close()


@dataclass
class KeyOps:
    """One key's client operations (``process >= 0``) in history order, with their
    history indices, and the key's final read (``FINAL_PROCESS``) if any."""

    key: str
    indices: list[int] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)
    final: Op | None = None
    # what several checkers derive from the same ops (a sort, an index), computed once per key
    memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


def by_key(history: Sequence[Op]) -> Iterator[KeyOps]:
    """Group a history by key, keys in order of first appearance (nemesis ops are
    left out). A `HistoryFile` yields one key at a time from disk."""
    if isinstance(history, HistoryFile):
        yield from history.by_key()
        return
    groups: dict[str, KeyOps] = {}
    for i, op in enumerate(history):
        if op.process == NEMESIS_PROCESS:
            continue
        g = groups.get(op.key)
        if g is None:
            g = groups[op.key] = KeyOps(op.key)
        if op.process >= 0:
            g.indices.append(i)
            g.ops.append(op)
        elif op.process == FINAL_PROCESS:
            g.final = op
    yield from groups.values()


# The prefix `HistoryWriter` / `dump_history` write: indexing reads only this much of a line.
_PREFIX = re.compile(rb'\{"process": (-?\d+), "op": "[^"\\]*", "key": "((?:[^"\\]|\\.)*)"')


class HistoryFile(Sequence[Op]):
    """A JSON-lines history on disk, read as a sequence without loading it.

    Opening it makes one pass that records each line's byte offset (8 bytes
    per op) and, per key, the line numbers of its ops (4 bytes per op): the
    pass reads only the process and key at the start of each line (any other
    layout is decoded in full). Ops are parsed and validated when asked for,
    a key's lines in one JSON decode. Indices are line numbers among
    non-blank lines, as in `load_history`. Uncompressed files only (the
    runner writes those).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._offsets = array("q")
        self._keys: dict[str, array[int]] = {}
        self._nemesis = array("l")
        self._file = open(self.path, "rb")
        size = os.fstat(self._file.fileno()).st_size
        self._map: mmap.mmap | bytes = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ) \
            if size else b""
        self._index()

    def _index(self) -> None:
        data = self._map
        pos, end = 0, len(data)
        match, find = _PREFIX.match, data.find
        offsets, keys, nemesis = self._offsets, self._keys, self._nemesis
        while pos < end:
            nl = find(b"\n", pos)
            stop = end if nl < 0 else nl
            m = match(data, pos, stop)
            if m is not None:
                process = int(m.group(1))
                raw = m.group(2)
                key = raw.decode() if b"\\" not in raw else json.loads(b'"' + raw + b'"')
            elif data[pos:stop].strip():
                op = _parse_line(data[pos:stop], f"{self.path}:{self._lineno(pos)}")
                process, key = op.process, op.key
            else:
                pos = stop + 1
                continue
            n = len(offsets)
            offsets.append(pos)
            if process == NEMESIS_PROCESS:
                nemesis.append(n)
            else:
                idx = keys.get(key)
                if idx is None:
                    idx = keys[sys.intern(key)] = array("l")
                idx.append(n)
            pos = stop + 1

    def _lineno(self, offset: int) -> int:
        return self._map[:offset].count(b"\n") + 1

    def _line(self, i: int) -> bytes:
        start = self._offsets[i]
        nl = self._map.find(b"\n", start)
        return self._map[start: nl if nl >= 0 else len(self._map)]

    def _ops(self, indices: Iterable[int]) -> list[Op]:
        """The ops at `indices`, decoded in one call; a bad line is named by its line number."""
        idx = list(indices)
        lines = [self._line(i) for i in idx]
        try:
            objs = json.loads(b"[" + b",".join(lines) + b"]")
            return [op_from_json(o) for o in objs]
        except (ValueError, HistoryFormatError):
            pass  # find the culprit line by line
        return [_parse_line(line, f"{self.path}:{self._lineno(self._offsets[i])}")
                for i, line in zip(idx, lines)]

    def close(self) -> None:
        if isinstance(self._map, mmap.mmap):
            self._map.close()
        self._file.close()

    def __len__(self) -> int:
        return len(self._offsets)

    @overload
    def __getitem__(self, i: int) -> Op: ...

    @overload
    def __getitem__(self, i: slice) -> list[Op]: ...

    def __getitem__(self, i: int | slice) -> Op | list[Op]:
        if isinstance(i, slice):
            return self._ops(range(*i.indices(len(self))))
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._ops((i,))[0]

    def __iter__(self) -> Iterator[Op]:
        chunk = 4096
        for start in range(0, len(self), chunk):
            yield from self._ops(range(start, min(start + chunk, len(self))))

    def keys(self) -> list[str]:
        return list(self._keys)

    def nemesis_ops(self) -> list[Op]:
        return self._ops(self._nemesis)

    def ops_of(self, key: str) -> KeyOps:
        """`key`'s ops, parsed now (the caller holds them as long as it needs)."""
        g = KeyOps(key)
        idx = self._keys.get(key, array("l"))
        for i, op in zip(idx, self._ops(idx)):
            if op.process >= 0:
                g.indices.append(i)
                g.ops.append(op)
            elif op.process == FINAL_PROCESS:
                g.final = op
        return g

    def by_key(self) -> Iterator[KeyOps]:
        for key in self._keys:
            yield self.ops_of(key)
