"""Positional builders of frozen, slotted dataclasses: the hot paths' construction.

A frozen dataclass's generated keyword ``__init__`` sets each field through
``object.__setattr__`` (it must bypass the frozen ``__setattr__``): most of the cost of
building a small message. ``positional_builder`` generates, once per class, a constructor
that creates the object with ``object.__new__`` and sets each field through its slot's
descriptor: the result is an ordinary instance of the class (equal, hashed, matched and
still frozen exactly as one built by ``__init__``), built in about half the time or less.
Used by Raft's replication round (raft/messages.py, raft/effects.py) and by leaderless
Paxos's messages and acceptor states (dynamo/paxos_messages.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any, TypeVar

__all__ = ["positional_builder"]

_T = TypeVar("_T")


def positional_builder(cls: type[_T]) -> Callable[..., _T]:
    """A constructor of the frozen, slotted dataclass ``cls`` taking every field positionally,
    in declaration order, with no defaults: the object is created with ``object.__new__`` and
    each field set through its slot's setter, instead of the dataclass's keyword ``__init__``,
    which sets each field through ``object.__setattr__`` (an AppendEntries 1.0 -> 0.4 us, a
    Persist 0.8 -> 0.3 us; BENCHMARKS.md, session 22; a Paxos Promise 1.2 -> 0.5 us, session 25).
    The result is an ordinary, equal, still frozen instance. A class that checks its fields in
    ``__post_init__`` has them checked here too: the built constructor calls it last, as
    ``__init__`` does, so nothing ``__init__`` refuses is built. The constructor's source is
    generated, as ``dataclasses`` generates ``__init__``."""
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]  # a dataclass (raises otherwise)
    ns: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    for name in names:
        ns[f"_set_{name}"] = getattr(cls, name).__set__
    sets = "".join(f"    _set_{name}(o, {name})\n" for name in names)
    post_init = getattr(cls, "__post_init__", None)
    if post_init is not None:
        ns["_post_init"] = post_init
        sets += "    _post_init(o)\n"
    exec(f"def {cls.__name__}_(" + ", ".join(names) + "):\n    o = _new(_cls)\n" + sets + "    return o\n", ns)
    build: Callable[..., _T] = ns[f"{cls.__name__}_"]
    build.__doc__ = f"{cls.__name__}({', '.join(names)}), every field positional (positional_builder)."
    return build
