"""Version vectors: ``dict[origin, highest contiguous seq applied]``.

A dot ``(origin, seq)`` is covered by a vector iff ``seq <= vv.get(origin, 0)``.
A missing origin means 0. The text form (``b"n1:3,n2:5"``, sorted by origin)
is what VGET returns as a context and VSET ... CONTEXT and SESSION accept.
"""

from __future__ import annotations

from collections.abc import Mapping

VV = dict[str, int]


def covers(vv: Mapping[str, int], origin: str, seq: int) -> bool:
    """Whether the dot ``(origin, seq)`` is covered by ``vv``."""
    return seq <= vv.get(origin, 0)


def merge(a: Mapping[str, int], b: Mapping[str, int]) -> VV:
    """Pointwise maximum (the join of two version vectors)."""
    out = dict(a)
    for origin, seq in b.items():
        if seq > out.get(origin, 0):
            out[origin] = seq
    return out


def leq(a: Mapping[str, int], b: Mapping[str, int]) -> bool:
    """Whether ``b`` covers everything ``a`` covers."""
    return all(seq <= b.get(origin, 0) for origin, seq in a.items())


def vv_text(vv: Mapping[str, int]) -> bytes:
    """``b"n1:3,n2:5"``: sorted by origin, zero entries left out."""
    return ",".join(f"{o}:{s}" for o, s in sorted(vv.items()) if s > 0).encode()


def parse_vv_text(text: bytes) -> VV:
    """The inverse of :func:`vv_text`; ValueError on anything malformed."""
    out: VV = {}
    if not text:
        return out
    try:
        decoded = text.decode("ascii")
    except UnicodeDecodeError as err:
        raise ValueError("version vector is not ASCII") from err
    for part in decoded.split(","):
        origin, sep, seq_text = part.rpartition(":")
        if not sep or not origin or not seq_text.isdigit() or origin in out:
            raise ValueError(f"bad version vector entry {part!r}")
        seq = int(seq_text)
        if seq <= 0:
            raise ValueError(f"bad version vector entry {part!r}")
        out[origin] = seq
    return out
