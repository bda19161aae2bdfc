"""Convergent replicated data types for the multi-leader (and leaderless) modes.

Pure: no I/O, no clock, no randomness. ``hlc`` (hybrid logical clocks),
``vv`` (version vectors) and ``store`` (the per-key dot stores every Redis
type is mapped onto, with the mutation kinds documented there).
"""

from replikv.core.crdt.hlc import Hlc, hlc_ms
from replikv.core.crdt.store import CrdtStore, Mut, Visible
from replikv.core.crdt.vv import covers, leq, merge, parse_vv_text, vv_text

__all__ = [
    "CrdtStore",
    "Hlc",
    "Mut",
    "Visible",
    "covers",
    "hlc_ms",
    "leq",
    "merge",
    "parse_vv_text",
    "vv_text",
]
