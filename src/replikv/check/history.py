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
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TextIO, cast

__all__ = [
    "HistoryFormatError",
    "Op",
    "dump_history",
    "load_history",
    "op_from_json",
    "op_to_json",
]


class HistoryFormatError(ValueError):
    """A history line is not a well-formed operation (the message names the line)."""


@dataclass(frozen=True, slots=True)
class Op:
    """One client operation; `ret` is the JSON field "return" (a Python keyword)."""

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


def op_from_json(obj: Any) -> Op:
    """Build an `Op` from a decoded JSON object; raises HistoryFormatError saying why not."""
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


def load_history(path: str | os.PathLike[str]) -> list[Op]:
    """Read a JSON-lines history (gzip-compressed when the name ends in .gz).

    Blank lines are skipped; any other malformed line raises HistoryFormatError
    naming the file and the 1-based line number.
    """
    ops: list[Op] = []
    with _open_text(path, "r") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise HistoryFormatError(f"{os.fspath(path)}:{lineno}: invalid JSON: {e}") from e
            try:
                ops.append(op_from_json(obj))
            except HistoryFormatError as e:
                raise HistoryFormatError(f"{os.fspath(path)}:{lineno}: {e}") from None
    return ops


def dump_history(ops: Iterable[Op], path: str | os.PathLike[str]) -> None:
    """Write `ops` in the JSON-lines format (gzip when the name ends in .gz)."""
    with _open_text(path, "w") as f:
        for op in ops:
            f.write(json.dumps(op_to_json(op)))
            f.write("\n")
